"""The typer flags every trainer shares: ``--mixed-precision``, ``--grad-accum``, ``--report-to``.

Decorate a command that takes a ``launch: LaunchOptions`` parameter with :func:`launch_options`;
the three flags are added to its command line (same names, help and defaults everywhere) and arrive
as one :class:`~surgkit.utils.launch.LaunchOptions`; only the main process's stdout is printed
(:func:`main_process_output`; sharded-inference commands use that decorator alone)::

    @sub.command("train")
    @launch_options
    def train_cmd(data: Path = typer.Option(...), launch: LaunchOptions = None) -> None:
        train(data, launch=launch)
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import typer

from surgkit.utils.launch import MIXED_PRECISION, REPORT_TO, LaunchOptions, main_process_stdout

MIXED_PRECISION_HELP = (
    f"{' | '.join(MIXED_PRECISION)}: auto = bf16 on GPUs that support it, else full precision "
    "(default: the accelerate launch config's, else no)."
)
GRAD_ACCUM_HELP = (
    "Micro-batches per optimizer step; splits each process's share of the global batch, so the "
    "update does not change (default: the accelerate launch config's, else 1)."
)
REPORT_TO_HELP = (
    f"Experiment tracker(s), comma-separated: {', '.join(REPORT_TO)} (default: tensorboard when "
    "installed, else none). Every step is also written to <run>/train_log.jsonl."
)

_PARAMS = {
    "mixed_precision": (str | None, typer.Option(None, "--mixed-precision", help=MIXED_PRECISION_HELP)),
    "grad_accum": (int | None, typer.Option(None, "--grad-accum", min=1, help=GRAD_ACCUM_HELP)),
    "report_to": (str | None, typer.Option(None, "--report-to", help=REPORT_TO_HELP)),
}


def main_process_output(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A command run on N processes prints its result lines once: stdout of the other ranks is
    discarded (:func:`~surgkit.utils.launch.main_process_stdout`). ``@launch_options`` includes it."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with main_process_stdout():
            return fn(*args, **kwargs)

    return wrapper


def launch_options(
    fn: Callable[..., Any] | None = None, *, grad_accum_help: str | None = None
) -> Callable[..., Any]:
    """Add the shared launch flags to a typer command; the command receives ``launch=LaunchOptions``.

    Use bare (``@launch_options``) or with a trainer-specific ``--grad-accum`` help text
    (``@launch_options(grad_accum_help="...")``) where the trainer's batch is per process.
    """
    if fn is None:
        return functools.partial(launch_options, grad_accum_help=grad_accum_help)
    specs = dict(_PARAMS)
    if grad_accum_help is not None:
        specs["grad_accum"] = (int | None, typer.Option(None, "--grad-accum", min=1, help=grad_accum_help))
    sig = inspect.signature(fn)
    if "launch" not in sig.parameters:
        raise TypeError(f"{fn.__name__} must take a 'launch' parameter to use @launch_options")
    clash = set(_PARAMS) & set(sig.parameters)
    if clash:
        raise TypeError(f"{fn.__name__} already defines {sorted(clash)}; drop them for @launch_options")

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name, None) for name in _PARAMS}
        kwargs["launch"] = LaunchOptions(**values)
        with main_process_stdout():
            return fn(*args, **kwargs)

    params = [p for p in sig.parameters.values() if p.name != "launch"]
    params += [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        for name, (annotation, default) in specs.items()
    ]
    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    hints = {k: v for k, v in inspect.get_annotations(fn, eval_str=True).items() if k != "launch"}
    wrapper.__annotations__ = {**hints, **{name: ann for name, (ann, _) in specs.items()}}
    return wrapper
