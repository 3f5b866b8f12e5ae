"""Checkpoint conversion between the official SurgVISTA layouts and surgkit models, both ways.

Official layouts (spec surgvista.md §7-8):

* pretraining state dict: ``pos_embed``, ``patch_embed.proj.*``, ``blocks.i.*``, ``norm.*``,
  ``down_{vid,img}.*``, ``mask_token_{vid,img}``, ``pos_embed_{vid,img}``,
  ``decoder_{vid,img}.{blocks.i,norm,head}.*``;
* fine-tuned classifier (``unified_base_st``): ``patch_embed.*``, ``blocks.i.*``, ``fc_norm.*``, ``head.*``;
* files: ``checkpoint-*.pth`` / DeepSpeed ``mp_rank_00_model_states.pt`` / raw (:mod:`surgkit.video.checkpoints`).

The frozen position tables are never loaded: surgkit recomputes them and checks that the stored
ones equal the 3-D sin-cos table (atol 1e-5), so a VideoMAE-style checkpoint with a 1-D table is
caught instead of silently mis-positioned. Every key is accounted for: a key the converter does
not know raises an error that names it.

**Head counts** cannot be read from weights. They come, in this order, from the caller
(``--num-heads`` ...), from the official run's ``args`` saved inside ``checkpoint-*.pth`` (builder
name and ``feat_decoder_num_heads``), or from the widths of the official builders (encoder
384/768/1024/1280 → 6/12/16/16 heads, decoders 384/512/640 → 6/8/8); any other width is refused
with a message asking for the count, never assumed.

:func:`to_official_state` / :func:`save_official` write a surgkit model back in the official
layout (pretraining: both decoders and the three fixed tables included), which the official code
loads with its own ``torch.load`` + ``load_state_dict``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from surgkit.errors import SurgkitError
from surgkit.video.checkpoints import (
    load_state_dict_file,
    read_checkpoint,
    unwrap_state_dict,
    write_checkpoint,
)
from surgkit.video.config import SurgVistaClassifierConfig, SurgVistaConfig, SurgVistaEncoderConfig
from surgkit.video.layers import sincos_3d_table

__all__ = [
    "ConversionReport",
    "convert_official",
    "infer_official_config",
    "load_official",
    "load_state_dict_file",
    "official_layout",
    "save_official",
    "save_official_conversion",
    "to_official_state",
    "unwrap_state_dict",
]

# (width, heads) of the official builders (modeling_surgery_student.py, unifiedmodel.py)
BUILDER_HEADS: dict[str, dict[str, tuple[int, int]]] = {
    "pretrain_masked_video_student_small_patch16_224": {"num_heads": (384, 6), "decoder_num_heads": (384, 6)},
    "pretrain_masked_video_student_base_patch16_224": {"num_heads": (768, 12), "decoder_num_heads": (384, 6)},
    "pretrain_masked_video_student_large_patch16_224": {
        "num_heads": (1024, 16),
        "decoder_num_heads": (512, 8),
    },
    "pretrain_masked_video_student_huge_patch16_224": {
        "num_heads": (1280, 16),
        "decoder_num_heads": (640, 8),
    },
    "unified_base": {"num_heads": (768, 12)},
    "unified_base_st": {"num_heads": (768, 12)},
}
ENCODER_WIDTH_HEADS = {384: 6, 768: 12, 1024: 16, 1280: 16}
DECODER_WIDTH_HEADS = {384: 6, 512: 8, 640: 8}


@dataclasses.dataclass
class ConversionReport:
    """Which source keys became which target keys, which were dropped (and why), where heads came from."""

    layout: str
    mapped: dict[str, str] = dataclasses.field(default_factory=dict)
    dropped: dict[str, str] = dataclasses.field(default_factory=dict)
    heads: dict[str, str] = dataclasses.field(default_factory=dict)
    file_layout: str | None = None

    @property
    def consumed(self) -> set[str]:
        return set(self.mapped) | set(self.dropped)


# ----------------------------------------------------------------------------------- config inference


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


def _heads(
    name: str, width: int, given: int | None, args: Mapping[str, Any] | None, arg_key: str | None,
    table: Mapping[int, int], key: str, report: ConversionReport | None,
) -> int:  # fmt: skip
    """Head count from the caller, the run's args / builder, or the official width table; else refuse."""
    source, heads = None, None
    builder = BUILDER_HEADS.get(str((args or {}).get("model", "")), {})
    if given is not None:
        source, heads = "given", int(given)
    elif args and arg_key and args.get(arg_key):
        source, heads = f"checkpoint args.{arg_key}", int(args[arg_key])
    elif name in builder and builder[name][0] == width:
        source, heads = f"checkpoint args.model = {args['model']}", builder[name][1]
    elif width in table:
        source, heads = "official builder width table", table[width]
    if heads is None:
        flag = "--" + name.replace("_", "-")
        raise SurgkitError(
            f"cannot infer the attention heads of '{key}' (width {width}): no run args in the checkpoint and "
            f"no official builder has this width; pass {flag}"
        )
    if width % heads:
        raise SurgkitError(f"'{key}': width {width} is not divisible by {heads} heads ({source})")
    if report is not None:
        report.heads[name] = f"{heads} ({source})"
    return heads


def infer_official_config(
    state: Mapping[str, torch.Tensor],
    img_size: int | None = None,
    num_frames: int | None = None,
    num_heads: int | None = None,
    decoder_num_heads: int | None = None,
    distill_num_heads: int | None = None,
    num_classes: int | None = None,
    args: Mapping[str, Any] | None = None,
    report: ConversionReport | None = None,
) -> SurgVistaEncoderConfig:
    """The config an official state dict implies: widths, depths, cube and target sizes from the
    tensor shapes; frame size and clip length from the caller or the run's args (default 224/16);
    head counts as described in the module docstring (inferred or refused, never assumed)."""
    if "patch_embed.proj.weight" not in state:
        raise SurgkitError("not a SurgVISTA checkpoint: no 'patch_embed.proj.weight'")
    args = dict(args or {})
    dim, in_chans, tub, patch, _ = state["patch_embed.proj.weight"].shape
    img_size = img_size or int(args.get("input_size") or 224)
    num_frames = num_frames or int(args.get("num_frames") or 16)
    enc = dict(
        img_size=img_size, num_frames=num_frames, patch_size=patch, tubelet_size=tub, in_chans=in_chans,
        embed_dim=dim, depth=_count_blocks(state, "blocks."),
        num_heads=_heads("num_heads", dim, num_heads, args, None, ENCODER_WIDTH_HEADS,
                         "blocks.0.attn.qkv.weight", report),
        mlp_ratio=state["blocks.0.mlp.fc1.weight"].shape[0] / dim, qkv_bias="blocks.0.attn.q_bias" in state,
    )  # fmt: skip
    layout = official_layout(state)
    if layout == "pretrain":
        vd, id_ = state["down_vid.weight"].shape[0], state["down_img.weight"].shape[0]
        return SurgVistaConfig(
            **enc,
            decoder_embed_dim=vd, decoder_depth=_count_blocks(state, "decoder_vid.blocks."),
            decoder_num_heads=_heads("decoder_num_heads", vd, decoder_num_heads, args, None,
                                     DECODER_WIDTH_HEADS, "decoder_vid.blocks.0.attn.qkv.weight", report),
            distill_embed_dim=id_, distill_depth=_count_blocks(state, "decoder_img.blocks."),
            distill_num_heads=_heads("distill_num_heads", id_, distill_num_heads, args, "feat_decoder_num_heads",
                                     DECODER_WIDTH_HEADS, "decoder_img.blocks.0.attn.qkv.weight", report),
            distill_target_dim=state["decoder_img.head.weight"].shape[0],
        )  # fmt: skip
    if layout == "finetune":
        n = state["head.weight"].shape[0]
        if num_classes is not None and num_classes != n:
            raise SurgkitError(f"checkpoint head has {n} classes, --num-classes says {num_classes}")
        return SurgVistaClassifierConfig(**enc, num_classes=n)
    return SurgVistaEncoderConfig(**enc)


# ------------------------------------------------------------------------------- official → surgkit


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


_DECODER_MAP = {"down_vid.": "decoder_vid.down.", "down_img.": "decoder_img.down.",
                "decoder_vid.": "decoder_vid.", "decoder_img.": "decoder_img."}  # fmt: skip


def convert_official(
    state: Mapping[str, torch.Tensor], config: SurgVistaEncoderConfig, report: ConversionReport | None = None
) -> tuple[dict[str, torch.Tensor], ConversionReport]:
    """Rename an official SurgVISTA state dict to surgkit keys for ``config``'s model class.

    ``SurgVistaConfig`` → :class:`~surgkit.video.model.SurgVistaForPretraining` keys,
    ``SurgVistaClassifierConfig`` → classifier keys (from a fine-tuned checkpoint, or from a
    pretraining one: decoders and ``norm`` dropped, ``fc_norm``/``head`` left to their init),
    ``SurgVistaEncoderConfig`` → encoder keys. Raises on any key it cannot place. fp16 weights
    (DeepSpeed) become float32.
    """
    layout = official_layout(state)
    report = report or ConversionReport(layout=layout)
    report.layout = layout
    out: dict[str, torch.Tensor] = {}
    is_pre = isinstance(config, SurgVistaConfig)
    is_cls = isinstance(config, SurgVistaClassifierConfig)
    enc_prefix = "" if not (is_pre or is_cls) else "encoder."
    for key, value in state.items():
        if key == "pos_embed":
            report.dropped[key] = _check_table(key, value, config.embed_dim, config.grid)
        elif key in ("pos_embed_vid", "pos_embed_img"):
            dim = value.shape[-1]
            if is_pre:
                dim = config.decoder_embed_dim if key.endswith("vid") else config.distill_embed_dim
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
        elif any(key.startswith(p) for p in _DECODER_MAP):
            if is_pre:
                p = next(p for p in _DECODER_MAP if key.startswith(p))
                report.mapped[key] = _DECODER_MAP[p] + key[len(p) :]
            else:
                report.dropped[key] = "pretraining decoder, not part of this model"
        else:
            raise SurgkitError(f"unknown key '{key}' in the official checkpoint (layout '{layout}')")
    for src, dst in report.mapped.items():
        out[dst] = state[src].detach().clone().float() if state[src].is_floating_point() else state[src]
    return out, report


def load_official(path: str | Path, trust_pickle: bool = False, target: str = "auto", **infer_kwargs):
    """Load an official checkpoint file into a surgkit model (``target``: auto|pretrain|classifier|encoder).

    Returns ``(model, report)``. The load is strict: every parameter of the model must be filled,
    except a fresh ``fc_norm``/``head`` when a pretraining checkpoint is turned into a classifier
    (``num_classes`` then required).
    """
    from surgkit.video.config import classifier_config
    from surgkit.video.model import SurgVistaEncoder, SurgVistaForClassification, SurgVistaForPretraining

    ckpt = read_checkpoint(path, trust_pickle)
    state = ckpt.state
    report = ConversionReport(layout=official_layout(state), file_layout=ckpt.layout)
    num_classes = infer_kwargs.pop("num_classes", None)
    config = infer_official_config(
        state, num_classes=num_classes, args=ckpt.args, report=report, **infer_kwargs
    )
    if target == "auto":
        target = {"pretrain": "pretrain", "finetune": "classifier", "encoder": "encoder"}[report.layout]
    classes = {"pretrain": SurgVistaForPretraining, "classifier": SurgVistaForClassification,
               "encoder": SurgVistaEncoder}  # fmt: skip
    if target not in classes:
        raise SurgkitError(f"unknown target '{target}' (auto, pretrain, classifier or encoder)")
    if target == "classifier" and not isinstance(config, SurgVistaClassifierConfig):
        if num_classes is None:
            raise SurgkitError(f"{path}: has no classifier head; pass --num-classes for the new head")
        config = classifier_config(config, num_classes)
    elif target == "encoder":
        config = SurgVistaEncoderConfig(**config.encoder_fields())
    elif target == "pretrain" and not isinstance(config, SurgVistaConfig):
        raise SurgkitError(f"{path}: has no pretraining decoders; convert it as 'encoder' or 'classifier'")
    model = classes[target](config)
    converted, report = convert_official(state, config, report)
    missing, unexpected = model.load_state_dict(converted, strict=False)
    allowed = (
        {"fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"}
        if report.layout != "finetune"
        else set()
    )
    bad_missing = sorted(set(missing) - allowed)
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
    write_json(out / "conversion.json", {"source": str(src), "file_layout": report.file_layout,
                                         "layout": report.layout, "heads": report.heads,
                                         "mapped": report.mapped, "dropped": report.dropped})  # fmt: skip
    return out


# ------------------------------------------------------------------------------- surgkit → official


def to_official_state(model) -> dict[str, torch.Tensor]:
    """A surgkit model's weights under the official key names (inverse of :func:`convert_official`).

    Pretraining model → the full ``PretrainMaskedVideoStudent`` state dict (encoder, ``norm``,
    both decoders, mask tokens and the three fixed tables); classifier → ``unified_base_st``
    (``patch_embed``, ``blocks``, ``fc_norm``, ``head``); encoder → encoder keys + ``pos_embed``.
    """
    from surgkit.video.model import SurgVistaEncoder, SurgVistaForClassification, SurgVistaForPretraining

    if isinstance(model, SurgVistaForPretraining):
        enc = model.encoder
        out = {"pos_embed": enc.pos_embed.clone()}
        out.update({k: v for k, v in enc.state_dict().items()})
        for tag, dec in (("vid", model.decoder_vid), ("img", model.decoder_img)):
            out[f"mask_token_{tag}"] = dec.mask_token.detach()
            out[f"pos_embed_{tag}"] = dec.pos_embed.clone()
            for k, v in dec.state_dict().items():
                out[f"down_{tag}.{k[5:]}" if k.startswith("down.") else f"decoder_{tag}.{k}"] = v
            out.pop(f"decoder_{tag}.mask_token")
    elif isinstance(model, SurgVistaForClassification):
        out = {k.removeprefix("encoder."): v for k, v in model.state_dict().items()}
    elif isinstance(model, SurgVistaEncoder):
        out = {"pos_embed": model.pos_embed.clone(), **model.state_dict()}
    else:
        raise SurgkitError(f"not a surgkit SurgVISTA model: {type(model).__name__}")
    return {k: v.detach().cpu().contiguous() for k, v in out.items()}


def save_official(model, out: str | Path, layout: str = "official-pth", epoch: int | None = None) -> Path:
    """Write ``model`` in the official layout: ``official-pth`` (``{'model': sd}``, what
    ``run_pretraining``/``init_`` read), ``deepspeed`` (``<out>/mp_rank_00_model_states.pt``) or
    ``safetensors``."""
    return write_checkpoint(to_official_state(model), out, layout=layout, epoch=epoch)
