"""Refuse to resume a run folder with different settings: :func:`check_resume`.

A resumable command (prep, training runs, benchmarks) records the settings that determine its
output in ``<run_dir>/surgkit-run.json`` the first time it writes the folder. A later run on the
same folder with other settings (seed, fps, config, model, ...) would mix two experiments in one
folder without a trace; it is refused with one line naming the first setting that differs::

    error: runs/frames: was written with fps='1', this run has fps='5'; pass --overwrite to start
    over, or use another output folder

``overwrite=True`` accepts the new settings (the caller then starts its outputs over). Settings
that do not change the output (workers, progress bars, batch size of a pure inference step) are
not passed in.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from surgkit.errors import DataFormatError, SurgkitError
from surgkit.utils.io import to_json, write_json

RUN_INFO_NAME = "surgkit-run.json"
RUN_INFO_FORMAT = "surgkit-run/1"
OVERWRITE_HINT = "pass --overwrite to start over, or use another output folder"


def _normalise(settings: Mapping[str, Any]) -> dict[str, Any]:
    """JSON round trip: tuples become lists, numpy scalars plain numbers, paths text."""
    return json.loads(to_json(dict(settings), indent=None))


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same kind (1 and 1.0 are the same number; True is not 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or (math.isnan(a) and math.isnan(b))
    return type(a) is type(b) and a == b


def first_difference(old: Any, new: Any, prefix: str = "") -> tuple[str, Any, Any] | None:
    """The first (dotted key, old value, new value) where two settings trees differ, or None."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in old:
                return name, "<not set>", new[key]
            if key not in new:
                return name, old[key], "<not set>"
            diff = first_difference(old[key], new[key], name)
            if diff is not None:
                return diff
        return None
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            diff = first_difference(a, b, f"{prefix}[{i}]")
            if diff is not None:
                return diff
        return None
    return None if _same(old, new) else (prefix or "settings", old, new)


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def read_run_info(run_dir: str | Path) -> dict[str, Any] | None:
    """The recorded run info of ``run_dir`` or None when there is none."""
    from surgkit.utils.inputs import as_dict, read_json

    path = Path(run_dir) / RUN_INFO_NAME
    if not path.is_file():
        return None
    data = as_dict(read_json(path), path, "top level")
    if data.get("format") != RUN_INFO_FORMAT or not isinstance(data.get("settings"), dict):
        raise DataFormatError(f"not a {RUN_INFO_FORMAT} file; delete it or use another folder", path=path)
    return data


def check_resume(
    run_dir: str | Path,
    settings: Mapping[str, Any],
    overwrite: bool = False,
    *,
    command: str | None = None,
    hint: str = OVERWRITE_HINT,
) -> str:
    """Record ``settings`` for ``run_dir`` or check them against the recorded ones.

    Returns ``"new"`` (nothing recorded yet), ``"same"`` (resume with identical settings) or
    ``"overwrite"`` (settings differed and ``overwrite`` was given: the caller starts over). Raises
    :class:`SurgkitError` naming the first differing setting otherwise.
    """
    run_dir = Path(run_dir)
    new = _normalise(settings)
    old = read_run_info(run_dir)
    if old is not None:
        diff = first_difference(old["settings"], new)
        if diff is None:
            return "same"
        if not overwrite:
            key, was, now = diff
            raise SurgkitError(
                f"{run_dir}: was written with {key}={_short(was)}, this run has {key}={_short(now)}; {hint}"
            )
    from surgkit import __version__

    write_json(
        run_dir / RUN_INFO_NAME,
        {
            "format": RUN_INFO_FORMAT,
            "command": command,
            "surgkit_version": __version__,
            "settings": new,
        },
    )
    return "new" if old is None else "overwrite"


# Settings that never change what a run computes: left out of the comparison.
NOT_SETTINGS = frozenset({
    "run_dir", "out", "out_dir", "output_dir", "device", "num_workers", "torch_threads", "progress",
    "log_every", "save_every", "report_to", "logging_dir", "quiet", "overwrite", "resume",
})  # fmt: skip


def settings_of(obj: Any, ignore: frozenset[str] | set[str] = NOT_SETTINGS) -> dict[str, Any]:
    """A settings dataclass (or dict) as the dict :func:`check_resume` records, minus ``ignore``."""
    import dataclasses

    data = dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else dict(obj)
    return {k: v for k, v in data.items() if k not in ignore}


def _world_size() -> int:
    import os

    value = os.environ.get("WORLD_SIZE", "1").strip()
    return int(value) if value.isdecimal() else 1


def clear_run_dir(run_dir: str | Path, only: tuple[str, ...] | None = None) -> None:
    """Remove a run folder's outputs (each entry renamed aside, then deleted, strictly inside it);
    the writer lock and the run record stay. ``only`` limits it to those entry names."""
    from surgkit.utils.ids import safe_reset
    from surgkit.utils.lock import LOCK_NAME

    run_dir = Path(run_dir)
    for entry in sorted(run_dir.iterdir()):
        if entry.name not in (LOCK_NAME, RUN_INFO_NAME) and (only is None or entry.name in only):
            safe_reset(entry, run_dir)


@contextlib.contextmanager
def run_folder(
    run_dir: str | Path,
    settings: Mapping[str, Any],
    overwrite: bool,
    command: str,
    clear: tuple[str, ...] | None = None,
    hint: str = OVERWRITE_HINT,
) -> Iterator[str]:
    """Hold the writer lock of a run folder for the whole run and check its recorded settings.

    Yields :func:`check_resume`'s status. With ``overwrite`` and different settings, the folder's
    old outputs (checkpoints included) are removed first, so the run starts over instead of resuming
    another experiment. Under ``accelerate launch`` only the main process locks, records and
    removes; the other processes compare the settings (and fail the same way) and wait for it.
    ``clear`` names the entries removed on overwrite (default: every output of the folder).
    """
    from surgkit.utils.lock import is_main_process, output_lock

    run_dir = Path(run_dir)
    with output_lock(run_dir, command):
        if is_main_process():
            status = check_resume(run_dir, settings, overwrite, command=command, hint=hint)
            if status == "overwrite":
                clear_run_dir(run_dir, clear)
        else:
            status = _compare_only(run_dir, settings, overwrite, hint)
        if _world_size() > 1:
            from surgkit.utils.launch import process_state

            process_state().wait_for_everyone()
        yield status


def _compare_only(run_dir: Path, settings: Mapping[str, Any], overwrite: bool, hint: str) -> str:
    old = read_run_info(run_dir)
    if old is None:
        return "new"
    diff = first_difference(old["settings"], _normalise(settings))
    if diff is None:
        return "same"
    if overwrite:
        return "overwrite"
    key, was, now = diff
    raise SurgkitError(
        f"{run_dir}: was written with {key}={_short(was)}, this run has {key}={_short(now)}; {hint}"
    )


def guarded_run(
    command: str,
    settings: Callable[[dict[str, Any]], Mapping[str, Any]],
    *,
    folder_arg: str = "out_dir",
    folder_of: Callable[[dict[str, Any]], str | Path] | None = None,
    overwrite: Callable[[dict[str, Any]], bool] | str = "overwrite",
    clear: tuple[str, ...] | None = None,
    hint: str = OVERWRITE_HINT,
) -> Callable:
    """Decorator form of :func:`run_folder` for an entry point (no change to its body).

    ``settings(args)`` builds the compared settings from the bound arguments; ``overwrite`` is the
    name of the boolean argument (or a function of the arguments) that allows starting over.
    """
    import functools
    import inspect

    def wrap(fn: Callable) -> Callable:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def run(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            a = dict(bound.arguments)
            allow = overwrite(a) if callable(overwrite) else bool(a.get(overwrite, False))
            folder = folder_of(a) if folder_of is not None else a[folder_arg]
            with run_folder(folder, settings(a), allow, command, clear, hint):
                return fn(*args, **kwargs)

        return run

    return wrap


def trainer_settings(args: dict[str, Any]) -> dict[str, Any]:
    """Settings of ``fn(settings, ..., launch=None)`` trainers: the settings dataclass plus the launch
    options that change the updates (gradient accumulation)."""
    launch = args.get("launch")
    return {**settings_of(args["settings"]), "grad_accum_launch": getattr(launch, "grad_accum", None)}


def settings_run_dir(args: dict[str, Any]) -> str:
    return str(args["settings"].run_dir)


def run_settings(args: dict[str, Any]) -> dict[str, Any]:
    """Settings of a training entry point ``fn(model_path, records, ..., settings, ...)``: the start
    model, the settings dataclass (minus :data:`NOT_SETTINGS` and callables) and a hash of the
    training records."""
    import dataclasses

    from surgkit.utils.io import sha256_json

    # max_steps may grow on resume: these trainers continue to a new step count by design
    cfg = (
        settings_of(args["settings"], NOT_SETTINGS | {"max_steps"})
        if args.get("settings") is not None
        else {}
    )
    cfg = {
        k: v for k, v in cfg.items() if not callable(v) and not (isinstance(v, list) and v and callable(v[0]))
    }
    records = [*(args.get("records") or []), *(args.get("extra_simple") or [])]
    data = [dataclasses.asdict(r) if dataclasses.is_dataclass(r) else r for r in records]
    return {"model": str(args.get("model_path")), "settings": cfg, "records_sha256": sha256_json(data)}
