"""Checkpoint conversion: official SurgVISTA → surgkit, and surgkit ↔ HF ``VideoMAE``.

Official layouts (spec surgvista.md §7-8):

* pretraining state dict: ``pos_embed``, ``patch_embed.proj.*``, ``blocks.i.*``, ``norm.*``,
  ``down_{vid,img}.*``, ``mask_token_{vid,img}``, ``pos_embed_{vid,img}``,
  ``decoder_{vid,img}.{blocks.i,norm,head}.*``;
* fine-tuned classifier: ``patch_embed.*``, ``blocks.i.*``, ``fc_norm.*``, ``head.*``;
* wrapped in ``{"model": ...}`` or ``{"module": ...}`` (DeepSpeed), optionally with an
  ``encoder.``/``module.`` key prefix.

The frozen position tables are never loaded: surgkit recomputes them and the converter checks
that the stored ones equal the 3-D sin-cos table (atol 1e-5), so a VideoMAE-style checkpoint
with a 1-D table is caught instead of silently mis-positioned. Every key is accounted for: a
key that the converter does not know raises an error that names it.

Pickle: ``.pth``/``.pt`` files are only read with ``trust_pickle=True`` and then with
``torch.load(weights_only=True)``; ``.safetensors`` files are read directly.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from surgkit.errors import SurgkitError
from surgkit.video.config import SurgVistaClassifierConfig, SurgVistaConfig, SurgVistaEncoderConfig
from surgkit.video.layers import sincos_3d_table


@dataclasses.dataclass
class ConversionReport:
    """Which source keys became which target keys, and which were dropped (and why)."""

    layout: str
    mapped: dict[str, str] = dataclasses.field(default_factory=dict)
    dropped: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def consumed(self) -> set[str]:
        return set(self.mapped) | set(self.dropped)


# ----------------------------------------------------------------------------------------- loading


def load_state_dict_file(path: str | Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat ``{name: tensor}`` dict, unwrapping ``model``/``module``.

    ``.safetensors`` is read without pickle. ``.pth``/``.pt``/``.bin`` need ``trust_pickle``
    and are then read with ``torch.load(weights_only=True)`` (no arbitrary code execution).
    """
    path = Path(path)
    if not path.is_file():
        raise SurgkitError(f"{path}: checkpoint file not found")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            raw: Mapping = load_file(str(path))
        except (SafetensorError, OSError) as e:
            raise SurgkitError(f"{path}: not a readable safetensors file ({e})") from None
    elif path.suffix in (".pth", ".pt", ".bin", ".ckpt"):
        if not trust_pickle:
            raise SurgkitError(
                f"{path}: pickle-based checkpoint; pass --trust-pickle (trust_pickle=True) to read it with "
                "torch.load(weights_only=True), or convert it to .safetensors first"
            )
        try:
            raw = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises UnpicklingError/RuntimeError for unsafe or broken files
            raise SurgkitError(
                f"{path}: torch.load(weights_only=True) refused the file ({type(e).__name__}: {e})"
            ) from None
    else:
        raise SurgkitError(f"{path}: unknown checkpoint type '{path.suffix}' (expected .safetensors or .pth)")
    return unwrap_state_dict(raw, str(path))


def unwrap_state_dict(raw: Mapping, where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Take ``raw['model']`` or ``raw['module']`` when present, strip ``module.``/``encoder.`` prefixes."""
    for key in ("model", "module", "state_dict"):
        if key in raw and isinstance(raw[key], Mapping):
            raw = raw[key]
            break
    state = {}
    for k, v in raw.items():
        if not isinstance(v, torch.Tensor):
            raise SurgkitError(
                f"{where}: entry '{k}' is a {type(v).__name__}, not a tensor (unknown checkpoint layout)"
            )
        for prefix in ("module.", "encoder.", "backbone."):
            if k.startswith(prefix):
                k = k[len(prefix) :]
        state[k] = v
    if not state:
        raise SurgkitError(f"{where}: empty state dict")
    return state


# -------------------------------------------------------------------------------- official → surgkit


def official_layout(state: Mapping[str, torch.Tensor]) -> str:
    """``"pretrain"`` when decoder keys are present, ``"finetune"`` when a classifier head is, else ``"encoder"``."""
    if any(k.startswith(("decoder_vid.", "decoder_img.", "down_vid.", "down_img.")) for k in state):
        return "pretrain"
    if "head.weight" in state:
        return "finetune"
    return "encoder"


def _count_blocks(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    ids = {int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    if ids and ids != set(range(len(ids))):
        raise SurgkitError(f"block indices under '{prefix}' are not contiguous: {sorted(ids)}")
    return len(ids)


def infer_official_config(
    state: Mapping[str, torch.Tensor],
    img_size: int = 224,
    num_frames: int = 16,
    num_heads: int | None = None,
    decoder_num_heads: int | None = None,
    distill_num_heads: int | None = None,
    num_classes: int | None = None,
) -> SurgVistaEncoderConfig:
    """Build the config an official state dict implies (head counts default to width/64).

    Widths, depths, cube size and target sizes come from tensor shapes. Head counts cannot be
    read from weights: pass them for non-standard widths (the official builders use 64-wide heads).
    """
    if "patch_embed.proj.weight" not in state:
        raise SurgkitError("not a SurgVISTA checkpoint: no 'patch_embed.proj.weight'")
    dim, in_chans, tub, patch, _ = state["patch_embed.proj.weight"].shape
    enc = dict(
        img_size=img_size, num_frames=num_frames, patch_size=patch, tubelet_size=tub, in_chans=in_chans,
        embed_dim=dim, depth=_count_blocks(state, "blocks."), num_heads=num_heads or max(1, dim // 64),
        mlp_ratio=state["blocks.0.mlp.fc1.weight"].shape[0] / dim, qkv_bias="blocks.0.attn.q_bias" in state,
    )  # fmt: skip
    layout = official_layout(state)
    if layout == "pretrain":
        vd, id_ = state["down_vid.weight"].shape[0], state["down_img.weight"].shape[0]
        return SurgVistaConfig(
            **enc,
            decoder_embed_dim=vd, decoder_depth=_count_blocks(state, "decoder_vid.blocks."),
            decoder_num_heads=decoder_num_heads or max(1, vd // 64),
            distill_embed_dim=id_, distill_depth=_count_blocks(state, "decoder_img.blocks."),
            distill_num_heads=distill_num_heads or max(1, id_ // 64),
            distill_target_dim=state["decoder_img.head.weight"].shape[0],
        )  # fmt: skip
    if layout == "finetune":
        n = state["head.weight"].shape[0]
        if num_classes is not None and num_classes != n:
            raise SurgkitError(f"checkpoint head has {n} classes, --num-classes says {num_classes}")
        return SurgVistaClassifierConfig(**enc, num_classes=n)
    return SurgVistaEncoderConfig(**enc)


def _check_table(name: str, stored: torch.Tensor, dim: int, grid: tuple[int, int, int]) -> str:
    expected = sincos_3d_table(dim, *grid)
    if tuple(stored.shape) != tuple(expected.shape):
        raise SurgkitError(
            f"'{name}' has shape {tuple(stored.shape)} but the config implies {tuple(expected.shape)} "
            f"(check --img-size/--num-frames)"
        )
    diff = (stored.float() - expected).abs().max().item()
    if diff > 1e-5:
        raise SurgkitError(
            f"'{name}' is not the 3-D sin-cos table (max |diff| {diff:.3g}); this looks like a VideoMAE-style "
            "checkpoint with a 1-D table, not SurgVISTA"
        )
    return f"fixed 3-D sin-cos table, recomputed (max |diff| {diff:.1e})"


def convert_official(
    state: Mapping[str, torch.Tensor], config: SurgVistaEncoderConfig
) -> tuple[dict[str, torch.Tensor], ConversionReport]:
    """Rename an official SurgVISTA state dict to surgkit keys for ``config``'s model class.

    ``SurgVistaConfig`` → :class:`~surgkit.video.model.SurgVistaForPretraining` keys,
    ``SurgVistaClassifierConfig`` → classifier keys (from a fine-tuned checkpoint, or from a
    pretraining one: decoders and ``norm`` dropped, ``fc_norm``/``head`` left to their init),
    ``SurgVistaEncoderConfig`` → encoder keys. Raises on any key it cannot place.
    """
    layout = official_layout(state)
    report = ConversionReport(layout=layout)
    out: dict[str, torch.Tensor] = {}
    is_pre = isinstance(config, SurgVistaConfig)
    is_cls = isinstance(config, SurgVistaClassifierConfig)
    enc_prefix = "" if not (is_pre or is_cls) else "encoder."
    decoder_map = {"down_vid.": "decoder_vid.down.", "down_img.": "decoder_img.down.",
                   "decoder_vid.": "decoder_vid.", "decoder_img.": "decoder_img."}  # fmt: skip
    for key, value in state.items():
        if key == "pos_embed":
            report.dropped[key] = _check_table(key, value, config.embed_dim, config.grid)
        elif key in ("pos_embed_vid", "pos_embed_img"):
            dim = config.decoder_embed_dim if key.endswith("vid") and is_pre else None
            dim = dim or (config.distill_embed_dim if is_pre else value.shape[-1])
            report.dropped[key] = _check_table(key, value, dim, config.grid)
        elif key.startswith(("patch_embed.", "blocks.")):
            report.mapped[key] = enc_prefix + key
        elif key.startswith("norm."):
            if is_cls:
                report.dropped[key] = "pre-trained final norm, discarded for fine-tuning (spec §8)"
            else:
                report.mapped[key] = enc_prefix + key
        elif key.startswith(("fc_norm.", "head.")) and layout == "finetune":
            if not is_cls:
                report.dropped[key] = "classifier head, not part of this model"
            else:
                report.mapped[key] = key
        elif key in ("mask_token_vid", "mask_token_img"):
            if is_pre:
                report.mapped[key] = f"decoder_{key[-3:]}.mask_token"
            else:
                report.dropped[key] = "pretraining decoder, not part of this model"
        elif any(key.startswith(p) for p in decoder_map):
            if is_pre:
                p = next(p for p in decoder_map if key.startswith(p))
                report.mapped[key] = decoder_map[p] + key[len(p) :]
            else:
                report.dropped[key] = "pretraining decoder, not part of this model"
        else:
            raise SurgkitError(f"unknown key '{key}' in the official checkpoint (layout '{layout}')")
    for src, dst in report.mapped.items():
        out[dst] = state[src].detach().clone().float() if state[src].is_floating_point() else state[src]
    return out, report


def load_official(
    path: str | Path,
    trust_pickle: bool = False,
    target: str = "auto",
    **infer_kwargs,
):
    """Load an official checkpoint file into a surgkit model (``target``: auto|pretrain|classifier|encoder).

    Returns ``(model, report)``. The load is strict: every parameter of the model must be filled,
    except a fresh ``fc_norm``/``head`` when a pretraining checkpoint is turned into a classifier.
    """
    from surgkit.video.config import classifier_config
    from surgkit.video.model import SurgVistaEncoder, SurgVistaForClassification, SurgVistaForPretraining

    state = load_state_dict_file(path, trust_pickle)
    config = infer_official_config(state, **{k: v for k, v in infer_kwargs.items() if k != "num_classes"},
                                   num_classes=infer_kwargs.get("num_classes"))  # fmt: skip
    if target == "auto":
        target = {"pretrain": "pretrain", "finetune": "classifier", "encoder": "encoder"}[
            official_layout(state)
        ]
    if target == "classifier" and not isinstance(config, SurgVistaClassifierConfig):
        config = classifier_config(config, infer_kwargs.get("num_classes") or 7)
    elif target == "encoder":
        config = SurgVistaEncoderConfig(**config.encoder_fields())
    elif target == "pretrain" and not isinstance(config, SurgVistaConfig):
        raise SurgkitError(f"{path}: has no pretraining decoders; convert it as 'encoder' or 'classifier'")
    cls = {
        "pretrain": SurgVistaForPretraining,
        "classifier": SurgVistaForClassification,
        "encoder": SurgVistaEncoder,
    }
    if target not in cls:
        raise SurgkitError(f"unknown target '{target}' (auto, pretrain, classifier or encoder)")
    model = cls[target](config)
    converted, report = convert_official(state, config)
    missing, unexpected = model.load_state_dict(converted, strict=False)
    allowed_missing = (
        {"fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"}
        if report.layout != "finetune"
        else set()
    )
    bad_missing = sorted(set(missing) - allowed_missing)
    if bad_missing or unexpected:
        raise SurgkitError(
            f"{path}: weights do not fit the model: missing {bad_missing[:6]}, unexpected {unexpected[:6]}"
        )
    return model, report


def save_official_conversion(src: str | Path, out: str | Path, **kwargs) -> Path:
    """Convert an official checkpoint file and save it as a surgkit folder with ``conversion.json``."""
    from surgkit.utils.io import write_json

    model, report = load_official(src, **kwargs)
    out = Path(out)
    model.save_pretrained(out)
    write_json(
        out / "conversion.json",
        {"source": str(src), "layout": report.layout, "mapped": report.mapped, "dropped": report.dropped},
    )
    return out
