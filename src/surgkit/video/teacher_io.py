"""Image-expert teacher checkpoints → :class:`~surgkit.video.teacher.ImageViT` (spec surgvista.md §5).

Two published key layouts are read, wrapped in ``{'model'|'module'|'state_dict': ...}`` or raw,
with ``module.``/``backbone.`` prefixes stripped (the official loader strips ``backbone.``):

* **SurgVISTA teacher** (``MaskedAutoencoderViT`` of ``modeling_surgery_teacher.py``, the authors'
  converted EndoSSL ViT-L ``vit_large_patch16_224_surgery.pth``): ``cls_token``, ``pos_embed``
  (``1×196×C``, no class slot), ``patch_embed.proj.*``, ``blocks.i.{norm1,norm2}.*``,
  ``blocks.i.attn.{q,k,v,proj}.*``, ``blocks.i.mlp.fc{1,2}.*``, ``norm.*``. Block LayerNorm eps
  1e-5 (the builder's eps-1e-6 norm reaches only the unused final ``norm``).
* **timm / MAE ViT** (EndoViT, EndoSSL as released for timm, MAE pretraining checkpoints):
  fused ``blocks.i.attn.qkv.{weight,bias}`` (rows [q; k; v], split here), ``pos_embed``
  ``1×(1+L)×C`` with a class slot; LayerNorm eps 1e-6 (timm/MAE ``partial(nn.LayerNorm, eps=1e-6)``).

Dropped and reported: ``head.*``/``fc_norm.*`` (classification heads, as the official loader drops
``head``) and an MAE checkpoint's decoder (``decoder_*``, ``mask_token``). Any other unknown key is
an error naming it. Head counts come from the caller or from the standard ViT widths
(192/384/768/1024/1280 → 3/6/12/16/16), otherwise the file is refused.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch

from surgkit.errors import SurgkitError
from surgkit.video.checkpoints import read_checkpoint
from surgkit.video.teacher import ImageTeacherConfig, ImageViT

VIT_WIDTH_HEADS = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16}
_DROP = (("head.", "classification head"), ("fc_norm.", "classification head norm"),
         ("decoder_", "MAE decoder"), ("mask_token", "MAE decoder"))  # fmt: skip


def convert_teacher_state(
    state: dict[str, torch.Tensor], num_heads: int | None = None, layer_norm_eps: float | None = None,
    source: str = "",
) -> tuple[ImageTeacherConfig, dict[str, torch.Tensor], dict[str, dict[str, str]]]:  # fmt: skip
    """(config, ImageViT state dict, report) for a teacher state dict in either published layout."""
    if "patch_embed.proj.weight" not in state or "pos_embed" not in state:
        raise SurgkitError(
            f"{source or 'teacher'}: not a ViT checkpoint (no patch_embed.proj.weight / pos_embed)"
        )
    report: dict[str, dict[str, str]] = {"mapped": {}, "dropped": {}}
    fused = any(k.endswith(".attn.qkv.weight") for k in state)
    dim, in_chans, patch, _ = state["patch_embed.proj.weight"].shape
    n_pos = state["pos_embed"].shape[1]
    grid = math.isqrt(n_pos)
    class_slot = grid * grid != n_pos
    if class_slot:
        grid = math.isqrt(n_pos - 1)
        if grid * grid != n_pos - 1:
            raise SurgkitError(f"{source}: pos_embed has {n_pos} positions, not a square grid (+1)")
    depth = len({int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
    if num_heads is None:
        if dim not in VIT_WIDTH_HEADS:
            raise SurgkitError(
                f"{source}: cannot infer the attention heads of a width-{dim} ViT; pass --teacher-num-heads"
            )
        num_heads = VIT_WIDTH_HEADS[dim]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        drop = next((why for p, why in _DROP if key.startswith(p)), None)
        if drop is not None:
            report["dropped"][key] = drop
            continue
        m = re.match(r"blocks\.(\d+)\.attn\.(qkv|q_bias|v_bias)(\.weight|\.bias)?$", key)
        if m and m.group(2) == "qkv":
            for name, part in zip("qkv", value.split(dim, dim=0), strict=True):
                out[f"blocks.{m.group(1)}.attn.{name}{m.group(3)}"] = part.clone()
            report["mapped"][key] = f"blocks.{m.group(1)}.attn.{{q,k,v}}{m.group(3)} (split)"
            continue
        if m:  # BEiT-style q_bias / v_bias with a zero k bias
            name = m.group(2)[0]
            out[f"blocks.{m.group(1)}.attn.{name}.bias"] = value
            out.setdefault(f"blocks.{m.group(1)}.attn.k.bias", torch.zeros_like(value))
            report["mapped"][key] = f"blocks.{m.group(1)}.attn.{name}.bias"
            continue
        if not (
            key in ("cls_token", "pos_embed") or key.startswith(("patch_embed.proj.", "blocks.", "norm."))
        ):
            raise SurgkitError(f"{source}: unknown key '{key}' in the teacher checkpoint")
        out[key] = value
        report["mapped"][key] = key
    config = ImageTeacherConfig(
        img_size=grid * patch, patch_size=patch, in_chans=in_chans, embed_dim=dim, depth=depth,
        num_heads=num_heads, mlp_ratio=state["blocks.0.mlp.fc1.weight"].shape[0] / dim,
        layer_norm_eps=layer_norm_eps if layer_norm_eps is not None else (1e-6 if fused else 1e-5),
        final_norm_eps=1e-6, pos_embed_class_slot=class_slot, source=source,
    )  # fmt: skip
    if "norm.weight" not in out:  # a checkpoint without the (unused) final norm: keep the identity init
        out["norm.weight"], out["norm.bias"] = torch.ones(dim), torch.zeros(dim)
        report["dropped"]["norm.*"] = "absent in the file; identity init (never applied to the target)"
    return config, {k: v.float() for k, v in out.items()}, report


def load_teacher_file(
    path: str | Path,
    trust_pickle: bool = False,
    num_heads: int | None = None,
    layer_norm_eps: float | None = None,
) -> tuple[ImageViT, dict[str, dict[str, str]]]:
    """An :class:`ImageViT` from an official / timm / MAE teacher file (strict load, every key placed)."""
    ckpt = read_checkpoint(path, trust_pickle)
    config, state, report = convert_teacher_state(ckpt.state, num_heads, layer_norm_eps, str(path))
    model = ImageViT(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SurgkitError(
            f"{path}: teacher weights do not fit: missing {missing[:6]}, unexpected {unexpected[:6]}"
        )
    return model.eval(), report


def save_teacher_conversion(src: str | Path, out: str | Path, **kwargs) -> Path:
    """Convert a teacher file to a surgkit teacher folder (safetensors) with ``conversion.json``."""
    from surgkit.utils.io import write_json

    model, report = load_teacher_file(src, **kwargs)
    out = Path(out)
    model.save_pretrained(out)
    write_json(out / "conversion.json", {"source": str(src), **report})
    return out
