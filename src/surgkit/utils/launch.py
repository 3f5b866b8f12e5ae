"""The one launch path of every surgkit trainer: options, the Accelerator, and launcher checks.

Every trainer gets its ``accelerate.Accelerator`` from :func:`make_accelerator`, with the user's
:class:`LaunchOptions` (``--mixed-precision``, ``--grad-accum``, ``--report-to``; the typer flags
are in :mod:`surgkit.utils.cli_options`). The same code then runs unchanged on one CPU, one GPU,
``accelerate launch --num_processes N`` or ``torchrun --nproc_per_node N`` (gloo on CPU, nccl on GPU).

Precedence of each option: the command-line value, else what ``accelerate launch`` passed down
(its flags or config file, through ``ACCELERATE_MIXED_PRECISION`` / ``ACCELERATE_GRADIENT_ACCUMULATION_STEPS``),
else the documented default (full precision, no accumulation, TensorBoard when installed).

``accelerate launch --cpu --num_processes N`` starts **one** process: with ``--cpu`` Accelerate always
takes its "simple" launcher, which starts several CPU processes only through MPI
(``--mpirun_hostfile``). :func:`check_launch_environment` detects that case and names the invocations
that do start N CPU processes (``accelerate launch --multi_gpu --num_processes N``, which uses torchrun
and gloo when no GPU is present; ``torchrun --nproc_per_node N``; or the shipped ``cpu-multiprocess``
recipe).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
from pathlib import Path
from typing import Any

from surgkit.errors import SurgkitError

MIXED_PRECISION = ("no", "fp16", "bf16", "auto")
TRACKERS = ("tensorboard", "wandb", "mlflow", "trackio")
REPORT_TO = (*TRACKERS, "none")
#: the module each tracker needs, and the pip extra that installs it
TRACKER_MODULES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "trackio": "trackio"}
_DIST_ENV = ("WORLD_SIZE", "LOCAL_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


@dataclasses.dataclass(frozen=True)
class LaunchOptions:
    """How a trainer runs: precision, gradient accumulation and experiment tracking.

    - ``mixed_precision``: ``no`` | ``fp16`` | ``bf16`` | ``auto`` (bf16 on GPUs that support it, else
      full precision); ``None`` = what ``accelerate launch`` was given, else ``no``.
    - ``grad_accum``: micro-batches per optimizer step. It never changes the global batch: each
      process's share of a step's batch is split into ``grad_accum`` micro-batches (less memory, the
      same update); ``None`` = what ``accelerate launch`` was given, else 1.
    - ``report_to``: comma-separated trackers among ``tensorboard, wandb, mlflow, trackio`` or
      ``none``; ``None`` = TensorBoard when it is installed, otherwise none (the run says which).
    """

    mixed_precision: str | None = None
    grad_accum: int | None = None
    report_to: str | None = None

    def __post_init__(self) -> None:
        if self.mixed_precision is not None and self.mixed_precision not in MIXED_PRECISION:
            raise SurgkitError(
                f"--mixed-precision '{self.mixed_precision}' is not one of {', '.join(MIXED_PRECISION)}"
            )
        if self.grad_accum is not None and int(self.grad_accum) < 1:
            raise SurgkitError(f"--grad-accum must be >= 1 (got {self.grad_accum})")
        if self.report_to is not None:
            parse_report_to(self.report_to)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> LaunchOptions:
        data = dict(data or {})
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise SurgkitError(f"unknown launch option(s) {unknown}")
        return cls(**data)

    def resolved_grad_accum(self) -> int:
        """``grad_accum``, else the launcher's ``ACCELERATE_GRADIENT_ACCUMULATION_STEPS``, else 1."""
        if self.grad_accum is not None:
            return int(self.grad_accum)
        return int(os.environ.get("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "1") or 1)

    def resolved_report_to(self) -> tuple[list[str], str]:
        """The trackers to use and one sentence saying why (printed and written into the run folder)."""
        return resolve_report_to(self.report_to)


def parse_report_to(value: str) -> list[str]:
    """``"tensorboard,wandb"`` -> ``["tensorboard", "wandb"]``; ``"none"`` -> ``[]``."""
    names = [v.strip().lower() for v in str(value).split(",") if v.strip()]
    bad = [n for n in names if n not in REPORT_TO]
    if bad or not names:
        raise SurgkitError(f"--report-to '{value}': choose from {', '.join(REPORT_TO)} (comma-separated)")
    if "none" in names:
        if len(names) > 1:
            raise SurgkitError(f"--report-to '{value}': 'none' cannot be combined with trackers")
        return []
    return list(dict.fromkeys(names))


def tracker_installed(name: str) -> bool:
    return importlib.util.find_spec(TRACKER_MODULES[name]) is not None


def resolve_report_to(value: str | None) -> tuple[list[str], str]:
    """Trackers for ``--report-to`` (None = the default) and a note saying what was chosen and why."""
    if value is None:
        if tracker_installed("tensorboard"):
            return ["tensorboard"], "default: TensorBoard (installed); --report-to none turns it off"
        return [], "default: no tracker (TensorBoard is not installed: pip install 'surgkit[tensorboard]')"
    names = parse_report_to(value)
    missing = [n for n in names if not tracker_installed(n)]
    if missing:
        raise SurgkitError(
            f"--report-to {','.join(missing)}: not installed; pip install "
            + " ".join(f"'surgkit[{n}]'" for n in missing)
        )
    return names, f"--report-to {value}" if names else "--report-to none: no tracker"


def resolve_mixed_precision(value: str | None, cpu: bool) -> str:
    """The precision Accelerate is given (see :class:`LaunchOptions`)."""
    if value is None:
        value = os.environ.get("ACCELERATE_MIXED_PRECISION", "no").lower() or "no"
    if value not in MIXED_PRECISION:
        raise SurgkitError(f"mixed precision '{value}' is not one of {', '.join(MIXED_PRECISION)}")
    if value == "auto":
        import torch

        return "bf16" if (not cpu and torch.cuda.is_bf16_supported()) else "no"
    if value == "fp16" and cpu:
        raise SurgkitError("--mixed-precision fp16 needs a GPU; on CPU use bf16 or no")
    return value


def _parent_cmdline() -> list[str]:
    try:
        raw = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
    except OSError:
        return []
    return [a for a in raw.decode(errors="replace").split("\0") if a]


def _launched_with_cpu_and_many_processes(cmdline: list[str]) -> int:
    """N when ``cmdline`` is ``accelerate launch --cpu --num_processes N>1`` without MPI, else 0."""
    if "launch" not in cmdline or not any(a == "--cpu" for a in cmdline):
        return 0
    if any(a.startswith(("--mpirun_hostfile", "--mpirun-hostfile")) for a in cmdline):
        return 0
    for i, arg in enumerate(cmdline):
        for flag in ("--num_processes", "--num-processes"):
            value = None
            if arg == flag and i + 1 < len(cmdline):
                value = cmdline[i + 1]
            elif arg.startswith(flag + "="):
                value = arg.split("=", 1)[1]
            if value is not None and value.isdigit() and int(value) > 1:
                return int(value)
    return 0


def check_launch_environment(environ: dict[str, str] | None = None, parent: list[str] | None = None) -> None:
    """Refuse the one launch that silently runs a single process: ``accelerate launch --cpu --num_processes N``.

    Accelerate's simple launcher (taken whenever ``--cpu`` is given) sets ``ACCELERATE_USE_CPU`` and,
    for N > 1, ``MASTER_ADDR``/``MASTER_PORT``, but starts one process unless MPI is used; no
    ``WORLD_SIZE`` reaches the script. The parent's command line confirms the flags (Linux).
    """
    env = os.environ if environ is None else environ
    if env.get("ACCELERATE_USE_CPU", "").lower() not in ("true", "1", "yes"):
        return
    if any(k in env for k in _DIST_ENV) or "MASTER_ADDR" not in env:
        return
    n = _launched_with_cpu_and_many_processes(_parent_cmdline() if parent is None else parent)
    if n:
        raise SurgkitError(
            f"`accelerate launch --cpu --num_processes {n}` starts ONE process (with --cpu Accelerate "
            "starts several only through MPI, --mpirun_hostfile). For "
            f"{n} CPU processes run `accelerate launch --multi_gpu --num_processes {n} -m surgkit ...` "
            "(torchrun + gloo; works without GPUs), `torchrun --nproc_per_node "
            f"{n} -m surgkit ...`, or `accelerate launch --config_file "
            "$(surgkit recipes path cpu-multiprocess) -m surgkit ...`"
        )


_RANK_VARS = ("RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "PMI_RANK")  # as Accelerate reads them


def launched_rank() -> int:
    """This process's global rank as its launcher set it (torchrun, accelerate launch, MPI), else 0.

    Read from the environment, so it can be asked before any process group exists.
    """
    for var in _RANK_VARS:
        value = os.environ.get(var, "").strip()
        if value.isdigit():
            return int(value)
    return 0


@contextlib.contextmanager
def main_process_stdout():
    """Discard this process's stdout unless it is the main process (rank 0), so a command's result
    lines are printed once, not once per process. stderr (warnings, errors) is left alone."""
    if launched_rank() == 0:
        yield
        return
    with open(os.devnull, "w", encoding="utf-8") as sink, contextlib.redirect_stdout(sink):
        yield


def process_state():
    """Accelerate's ``PartialState`` (rank, world size, barriers) for inference without an Accelerator.

    On a machine without GPUs it must be told ``cpu=True``, or a ``torchrun`` launch is not seen as
    distributed (Accelerate looks for a GPU backend first).
    """
    import torch
    from accelerate import PartialState

    check_launch_environment()
    return PartialState(cpu=not torch.cuda.is_available())


def process_device(device: str) -> str:
    """This process's torch device for inference: ``cpu`` stays; ``auto``/``cuda`` give this process's
    own GPU under ``accelerate launch``/``torchrun`` (``cuda:<local rank>``), ``cpu`` without GPUs."""
    import torch

    if device == "auto" and not torch.cuda.is_available():
        return "cpu"
    if device in ("auto", "cuda") and torch.cuda.is_available():
        return str(process_state().device)
    return device


def check_sharding(distributed_type: str, sharded_ok: bool) -> None:
    """Refuse FSDP / DeepSpeed for a trainer whose checkpoints are written from unsharded weights."""
    if distributed_type in ("FSDP", "DEEPSPEED") and not sharded_ok:
        raise SurgkitError(
            f"this trainer runs data-parallel (DDP) only, not {distributed_type}: its model fits one GPU and "
            "its checkpoints are written from whole weights; launch it with the multi-gpu recipe "
            "(accelerate launch --config_file $(surgkit recipes path multi-gpu) ...)"
        )


def make_accelerator(
    device: str = "auto",
    mixed_precision: str | None = None,
    gradient_accumulation_steps: int = 1,
    *,
    launch: LaunchOptions | None = None,
    split_batches: bool = False,
    sharded_ok: bool = False,
    **kwargs: Any,
):
    """An ``accelerate.Accelerator`` for ``device`` ("auto", "cpu", "cuda") and the launch options.

    With ``launch`` given, its precision and accumulation are used (the positional
    ``mixed_precision``/``gradient_accumulation_steps`` only fill in what it leaves ``None``); its
    trackers are opened by :func:`surgkit.utils.tracking.start_run`. ``split_batches=True`` makes a
    *prepared* DataLoader's batch size the global batch (split over the processes) and a prepared
    scheduler step once per optimizer step. Under ``accelerate launch``/``torchrun`` the process group
    comes from the launcher; :func:`check_launch_environment` refuses the ``--cpu`` single-process trap.
    FSDP / DeepSpeed launches are refused unless ``sharded_ok`` (surgkit's own trainers checkpoint whole
    weights from the main process; the TRL-based reasoning trainers shard through transformers).
    """
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, GradientAccumulationPlugin

    check_launch_environment()
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise SurgkitError(f"unknown device '{device}' (use auto, cpu or cuda)")
    cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    if launch is not None:
        if launch.mixed_precision is not None:
            mixed_precision = launch.mixed_precision
        gradient_accumulation_steps = launch.resolved_grad_accum()
    acc = Accelerator(
        cpu=cpu,
        mixed_precision=resolve_mixed_precision(mixed_precision, cpu),
        # a plugin, not gradient_accumulation_steps=: Accelerate lets its environment variable override the latter
        gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=int(gradient_accumulation_steps)),
        dataloader_config=DataLoaderConfiguration(split_batches=split_batches),
        **kwargs,
    )
    check_sharding(acc.distributed_type.value, sharded_ok)
    return acc
