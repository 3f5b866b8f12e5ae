"""Reading and writing checkpoint *files* in the layouts the official SurgVISTA code produces.

Layouts read (spec surgvista.md §7-8, §13):

* ``checkpoint-<epoch>.pth`` of the official ``utils.save_model``: ``{'model', 'optimizer', 'epoch',
  'scaler', 'args'}`` where ``args`` is the run's ``argparse.Namespace``;
* DeepSpeed ``checkpoint-<tag>/mp_rank_00_model_states.pt`` (the official fine-tuning runs):
  ``{'module': state_dict (fp16), 'buffer_names', 'optimizer', 'param_shapes', 'ds_config',
  'ds_version', 'global_steps', ..., 'epoch'}``; a DeepSpeed checkpoint *folder* is accepted too;
* a raw state dict, ``{'model': ...}``, ``{'module': ...}`` or ``{'state_dict': ...}``, with
  ``module.``/``encoder.``/``backbone.`` key prefixes;
* ``.safetensors`` files (no pickle at all).

Pickle policy: ``.pth``/``.pt``/``.bin``/``.ckpt`` are read only with ``trust_pickle=True``, and
then with ``torch.load(weights_only=True)`` plus a one-entry allow-list: ``argparse.Namespace``
(its fields are plain values; nothing executes). Any other class in the file is refused with its
name. The run's ``args`` are returned as a plain dict, so head counts and builder names can be read
from them instead of being assumed.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from surgkit.errors import SurgkitError

PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
DEEPSPEED_FILE = "mp_rank_00_model_states.pt"
SAFE_GLOBALS = (argparse.Namespace,)  # the only class the official checkpoints need
_PREFIXES = ("module.", "encoder.", "backbone.")


@dataclasses.dataclass
class CheckpointFile:
    """A checkpoint file's flat state dict, where it came from and what else it carried."""

    state: dict[str, torch.Tensor]
    path: Path
    layout: str  # "official-pth" | "deepspeed" | "state-dict" | "safetensors"
    args: dict[str, Any] | None = None  # the official run's argparse.Namespace, as a dict
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)  # epoch, ds_version, ...


def resolve_checkpoint_path(path: str | Path) -> Path:
    """A checkpoint file; a DeepSpeed checkpoint folder resolves to its ``mp_rank_00_model_states.pt``."""
    path = Path(path)
    if path.is_dir():
        inner = path / DEEPSPEED_FILE
        if inner.is_file():
            return inner
        raise SurgkitError(f"{path}: a folder, but not a DeepSpeed checkpoint (no {DEEPSPEED_FILE})")
    if not path.is_file():
        raise SurgkitError(f"{path}: checkpoint file not found")
    return path


def _torch_load(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError / RuntimeError for unsafe or broken files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SurgkitError(
            f"{path}: torch.load(weights_only=True) refused the file ({type(e).__name__}: {first}); "
            "only tensors, plain containers and argparse.Namespace are read"
        ) from None


def read_checkpoint(path: str | Path, trust_pickle: bool = False) -> CheckpointFile:
    """Read any supported checkpoint file (see the module docstring) into a :class:`CheckpointFile`."""
    path = resolve_checkpoint_path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), "pt") as f:
                state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no iterator
                meta = dict(f.metadata() or {})
        except (SafetensorError, OSError) as e:
            raise SurgkitError(f"{path}: not a readable safetensors file ({e})") from None
        return CheckpointFile(unwrap_state_dict(state, str(path)), path, "safetensors", meta=meta)
    if path.suffix not in PICKLE_SUFFIXES:
        raise SurgkitError(f"{path}: unknown checkpoint type '{path.suffix}' (expected .safetensors or .pth)")
    if not trust_pickle:
        raise SurgkitError(
            f"{path}: pickle-based checkpoint; pass --trust-pickle (trust_pickle=True) to read it with "
            "torch.load(weights_only=True), or convert it to .safetensors first"
        )
    raw = _torch_load(path)
    if not isinstance(raw, Mapping):
        raise SurgkitError(f"{path}: holds a {type(raw).__name__}, not a checkpoint dict")
    args = raw.get("args")
    args = vars(args) if isinstance(args, argparse.Namespace) else None
    if "module" in raw and ("ds_version" in raw or "buffer_names" in raw or path.name == DEEPSPEED_FILE):
        layout = "deepspeed"
    elif "model" in raw and isinstance(raw["model"], Mapping):
        layout = "official-pth"
    else:
        layout = "state-dict"
    meta = {k: raw[k] for k in ("epoch", "ds_version", "global_steps") if k in raw}
    return CheckpointFile(unwrap_state_dict(raw, str(path)), path, layout, args=args, meta=meta)


def unwrap_state_dict(raw: Mapping, where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Take ``raw['model']``/``['module']``/``['state_dict']`` when present, strip ``module.``/``encoder.``/``backbone.``."""
    for key in ("model", "module", "state_dict"):
        if key in raw and isinstance(raw[key], Mapping):
            raw = raw[key]
            break
    state: dict[str, torch.Tensor] = {}
    for k, v in raw.items():
        if not isinstance(v, torch.Tensor):
            raise SurgkitError(
                f"{where}: entry '{k}' is a {type(v).__name__}, not a tensor (unknown checkpoint layout)"
            )
        for prefix in _PREFIXES:
            if k.startswith(prefix):
                k = k[len(prefix) :]
        if k in state:
            raise SurgkitError(f"{where}: key '{k}' appears twice once prefixes are stripped")
        state[k] = v
    if not state:
        raise SurgkitError(f"{where}: empty state dict")
    return state


def load_state_dict_file(path: str | Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The flat state dict of a checkpoint file (see :func:`read_checkpoint`)."""
    return read_checkpoint(path, trust_pickle).state


def write_checkpoint(
    state: Mapping[str, torch.Tensor], out: str | Path, layout: str = "official-pth", epoch: int | None = None
) -> Path:
    """Write ``state`` (official key names) as ``official-pth`` (``{'model': sd}``), ``deepspeed``
    (``<out>/mp_rank_00_model_states.pt`` with ``{'module': sd}``) or ``safetensors``.

    Written atomically; the pickle files hold tensors and plain values only, so they load with
    ``torch.load(weights_only=True)`` (and with the official code's ``torch.load``).
    """
    from surgkit.utils.io import atomic_path, save_tensors

    sd = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    out = Path(out)
    if layout == "safetensors":
        return save_tensors(out, sd, metadata={"format": "pt", "layout": "surgvista-official"})
    if layout == "official-pth":
        payload: dict[str, Any] = {"model": sd}
    elif layout == "deepspeed":
        out = out / DEEPSPEED_FILE if out.suffix != ".pt" else out
        payload = {"module": sd, "buffer_names": [], "dp_world_size": 1, "mp_world_size": 1}
    else:
        raise SurgkitError(f"unknown checkpoint layout '{layout}' (official-pth, deepspeed or safetensors)")
    if epoch is not None:
        payload["epoch"] = int(epoch)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        torch.save(payload, str(tmp))
    return out
