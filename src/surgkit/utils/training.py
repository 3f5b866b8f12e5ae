"""Training plumbing shared by every surgkit trainer: seeding, Accelerate, resumable checkpoints.

The launch path lives in focused modules re-exported here: :mod:`surgkit.utils.launch`
(:class:`LaunchOptions`, :func:`make_accelerator`), :mod:`surgkit.utils.tracking` (trackers and
``train_log.jsonl``), :mod:`surgkit.utils.distributed` (global batches, schedule length, sharded
evaluation) and :mod:`surgkit.utils.cli_options` (the shared typer flags).

A checkpoint is a folder ``<run_dir>/checkpoint-<step>`` holding only safetensors and JSON:

- ``model.safetensors``      model weights (shared tensors stored once)
- ``optimizer.safetensors``  optimizer tensors (``state.<param_id>.<key>``), ``optimizer.json`` the rest
- ``scheduler.json``         LR-scheduler state (must be JSON-serialisable, as torch's built-ins are)
- ``rng_<rank>.safetensors`` + ``rng_<rank>.json``  torch / CUDA / numpy / python RNG states per process
- ``meta.json``              step, epoch and whatever the trainer adds

The folder is written under a temporary name and renamed when complete, so a killed job never leaves a
checkpoint that looks finished; :func:`latest_checkpoint` only ever sees complete ones. Nothing is pickled.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from surgkit.errors import SurgkitError
from surgkit.utils.io import save_tensors, write_json
from surgkit.utils.launch import LaunchOptions, make_accelerator

__all__ = [
    "LaunchOptions",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "make_accelerator",
    "save_checkpoint",
    "seed_everything",
    "temporary_run_dir",
]

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))  # noqa: NPY002 (global state is what is being seeded)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    return getattr(model, "_orig_mod", model)


def _split_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in state["state"].items():
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    for pid, values in rest.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(values)
    return {"state": state, "param_groups": rest["param_groups"]}


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002
    tensors["numpy.keys"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    py = random.getstate()
    rest = {
        "numpy": [kind, int(pos), int(has_gauss), float(gauss)],
        "python": [py[0], list(py[1]), py[2]],
    }
    return tensors, rest


def _set_rng_state(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    kind, pos, has_gauss, gauss = rest["numpy"]
    np.random.set_state((kind, tensors["numpy.keys"].numpy().astype(np.uint32), pos, has_gauss, gauss))  # noqa: NPY002
    version, internal, gauss_next = rest["python"]
    random.setstate((version, tuple(internal), gauss_next))


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    meta: dict[str, Any] | None = None,
    keep: int | None = 2,
    accelerator: Any | None = None,
) -> Path:
    """Write ``run_dir/checkpoint-<step>`` atomically; keep the newest ``keep`` checkpoints.

    With an Accelerator, every process saves its RNG state and only the main process writes the rest.
    """
    from surgkit.utils.modeling import _dedupe_shared

    run_dir = Path(run_dir)
    final = run_dir / f"checkpoint-{step:08d}"
    rank = accelerator.process_index if accelerator is not None else 0
    is_main = accelerator is None or accelerator.is_main_process
    run_dir.mkdir(parents=True, exist_ok=True)
    if accelerator is not None:
        accelerator.wait_for_everyone()
    staging = run_dir / f".checkpoint-{step:08d}.tmp"
    if is_main:
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
    if accelerator is not None:
        accelerator.wait_for_everyone()
    rng_tensors, rng_rest = _rng_state()
    save_tensors(staging / f"rng_{rank}.safetensors", rng_tensors)
    write_json(staging / f"rng_{rank}.json", rng_rest)
    if is_main:
        state = {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()}
        save_tensors(staging / "model.safetensors", _dedupe_shared(state))
        if optimizer is not None:
            tensors, rest = _split_optimizer_state(optimizer.state_dict())
            if tensors:
                save_tensors(staging / "optimizer.safetensors", tensors)
            write_json(staging / "optimizer.json", rest)
        if scheduler is not None:
            try:
                write_json(staging / "scheduler.json", scheduler.state_dict())
            except TypeError as e:
                raise SurgkitError(f"scheduler state is not JSON-serialisable: {e}") from None
        write_json(staging / "meta.json", {"step": int(step), **(meta or {})})
    if accelerator is not None:
        accelerator.wait_for_everyone()
    if is_main:
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        if keep is not None:
            for old in list_checkpoints(run_dir)[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return final


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in run_dir.iterdir() if p.is_dir() and (m := CHECKPOINT_RE.match(p.name))
    ]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def load_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    restore_rng: bool = True,
    accelerator: Any | None = None,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Restore a checkpoint written by :func:`save_checkpoint`; returns its ``meta`` (with ``step``)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / "meta.json").is_file():
        raise SurgkitError(f"{path}: not a surgkit checkpoint (no meta.json)")
    state = load_file(str(path / "model.safetensors"), device=str(map_location))
    missing, unexpected = _unwrap(model).load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if k in state]:
        raise SurgkitError(f"{path}: checkpoint does not match the model (unexpected keys {unexpected[:5]})")
    if optimizer is not None:
        if not (path / "optimizer.json").is_file():
            raise SurgkitError(f"{path}: checkpoint has no optimizer state")
        rest = json.loads((path / "optimizer.json").read_text())
        opt_file = path / "optimizer.safetensors"
        tensors = load_file(str(opt_file)) if opt_file.is_file() else {}
        optimizer.load_state_dict(_join_optimizer_state(tensors, rest))
    if scheduler is not None:
        scheduler.load_state_dict(json.loads((path / "scheduler.json").read_text()))
    if restore_rng:
        rank = accelerator.process_index if accelerator is not None else 0
        rng_file = path / f"rng_{rank}.safetensors"
        if rng_file.is_file():
            _set_rng_state(load_file(str(rng_file)), json.loads((path / f"rng_{rank}.json").read_text()))
    return json.loads((path / "meta.json").read_text())


def temporary_run_dir(prefix: str = "surgkit-run-") -> Path:
    """A fresh temporary folder for throwaway runs (tests, demos)."""
    return Path(tempfile.mkdtemp(prefix=prefix))
