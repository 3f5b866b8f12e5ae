"""Reading published checkpoints (``.safetensors`` or pickle-based ``.pth``) into a flat state dict.

Pickle-based files are read only when the caller says it trusts them (``trust_pickle=True``,
``--trust-pickle`` on the CLI) and then with ``torch.load(weights_only=True)``, which refuses
anything but tensors and plain containers. Key names are kept as published (no prefix is
stripped): each backbone maps them itself, so a layout mistake cannot be hidden by a generic rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from surgkit.errors import SurgkitError

PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".pkl")
WRAPPERS = ("state_dict", "model", "module")


def read_checkpoint(path: str | Path, trust_pickle: bool = False) -> dict[str, Any]:
    """``{name: tensor}`` of a checkpoint file; a ``state_dict``/``model``/``module`` wrapper is opened
    (MMAction2 files keep the weights under ``checkpoint['state_dict']`` beside ``meta``)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise SurgkitError(f"{path}: checkpoint file not found")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            raw: Mapping[str, Any] = load_file(str(path))
        except (SafetensorError, OSError) as e:
            raise SurgkitError(f"{path}: not a readable safetensors file ({e})") from None
    elif path.suffix in PICKLE_SUFFIXES:
        if not trust_pickle:
            raise SurgkitError(
                f"{path}: pickle-based checkpoint; pass --trust-pickle (trust_pickle=True) to read it with "
                "torch.load(weights_only=True), or convert it to .safetensors first"
            )
        try:
            raw = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # UnpicklingError / RuntimeError for unsafe or broken files
            raise SurgkitError(
                f"{path}: torch.load(weights_only=True) refused the file ({type(e).__name__}: {e})"
            ) from None
    else:
        raise SurgkitError(f"{path}: unknown checkpoint type '{path.suffix}' (expected .safetensors or .pth)")
    if not isinstance(raw, Mapping):
        raise SurgkitError(f"{path}: a checkpoint must hold a dict of tensors, found {type(raw).__name__}")
    for key in WRAPPERS:
        if isinstance(raw.get(key), Mapping):
            raw = raw[key]
            break
    state = {}
    for k, v in raw.items():
        if not isinstance(v, torch.Tensor):
            raise SurgkitError(
                f"{path}: entry '{k}' is a {type(v).__name__}, not a tensor (unknown checkpoint layout)"
            )
        state[str(k)] = v
    if not state:
        raise SurgkitError(f"{path}: no tensors in the checkpoint")
    return state


def load_strict(
    model: Any, state: Mapping[str, Any], source: str, optional: tuple[str, ...] = (), assign: bool = False
) -> None:
    """``model.load_state_dict(state)`` that fails with one line naming every missing, unexpected or
    mis-shaped key. Keys ending in one of ``optional`` may be absent from ``state`` (e.g.
    ``num_batches_tracked``, which checkpoints written before PyTorch 0.4.1 lack; they are then
    set to 0). ``assign=True`` takes the tensors themselves, as float32 (for a model built on the
    meta device: no random initialisation of weights that are overwritten anyway)."""
    import torch

    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith(optional)]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        for name, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
            if items:
                parts.append(
                    f"{name} ({len(items)}): {', '.join(items[:4])}{' ...' if len(items) > 4 else ''}"
                )
        raise SurgkitError(f"{source}: does not match {type(model).__name__}: " + "; ".join(parts))
    if not assign:
        model.load_state_dict(dict(state), strict=False)
        return
    full = {k: (v.float() if v.is_floating_point() else v.clone()) for k, v in state.items()}
    for k in own:
        if k not in full:  # an optional counter
            full[k] = torch.zeros(own[k].shape, dtype=own[k].dtype)
    model.load_state_dict(full, strict=True, assign=True)
