"""Configurations of the SurgVISTA encoder, pretraining student and video classifier.

Sizes follow the official builders (spec surgvista.md §2.1): ``small`` 384/12/6, ``base``
768/12/12, ``large`` 1024/24/16 (decoder 512 wide, 8 heads). ``tiny`` is a surgkit preset for
tests and the CPU demo. ``small`` keeps the student class's decoder defaults (384 wide, 6 heads),
as the official ``pretrain_masked_video_student_small_patch16_224`` builder does.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from surgkit.errors import SurgkitError
from surgkit.utils.modeling import ModelConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass
class SurgVistaEncoderConfig(ModelConfig):
    """The video encoder: cube embedding + fixed 3-D sin-cos table + pre-norm ViT blocks."""

    model_type: ClassVar[str] = "surgvista-encoder"

    img_size: int = 224
    patch_size: int = 16
    num_frames: int = 16
    tubelet_size: int = 2
    in_chans: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    layer_norm_eps: float = 1e-6
    drop_path_rate: float = 0.1
    attn_implementation: str = "sdpa"
    position_table: str = "3d-sincos"  # "1d-sincos" only for VideoMAE-style baselines
    final_norm: bool = True  # pretraining encoder: LayerNorm on the visible tokens
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def grid(self) -> tuple[int, int, int]:
        return (
            self.num_frames // self.tubelet_size,
            self.img_size // self.patch_size,
            self.img_size // self.patch_size,
        )

    @property
    def num_tokens(self) -> int:
        t, h, w = self.grid
        return t * h * w

    def encoder_fields(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(SurgVistaEncoderConfig)}


@dataclasses.dataclass
class SurgVistaConfig(SurgVistaEncoderConfig):
    """Pretraining student: encoder + reconstruction decoder + image-distillation decoder + losses."""

    model_type: ClassVar[str] = "surgvista"

    decoder_embed_dim: int = 384
    decoder_depth: int = 4
    decoder_num_heads: int = 6
    distill_embed_dim: int = 384
    distill_depth: int = 2
    distill_num_heads: int = 6
    distill_target_dim: int = 1024
    mask_ratio: float = 0.85
    normalize_pixel_target: bool = True
    distill_loss: str = "smooth_l1"  # smooth_l1 | l1 | l2
    norm_teacher_features: bool = False
    recon_loss_weight: float = 1.0
    distill_loss_weight: float = 0.05

    @property
    def pixels_per_token(self) -> int:
        return self.tubelet_size * self.patch_size * self.patch_size * self.in_chans


@dataclasses.dataclass
class SurgVistaClassifierConfig(SurgVistaEncoderConfig):
    """Fine-tuning model: mean-pooled tokens → fc_norm → dropout → zero-initialised head."""

    model_type: ClassVar[str] = "surgvista-classifier"

    final_norm: bool = False  # the pre-trained ``norm`` is dropped (spec §8)
    num_classes: int = 7
    fc_drop_rate: float = 0.5
    fc_norm_eps: float = 1e-6  # official 1e-6; HF VideoMAE hard-codes 1e-5
    head_init_scale: float = 0.0
    multi_label: bool = False
    label_names: tuple[str, ...] = ()


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        img_size=64, patch_size=8, num_frames=16, embed_dim=64, depth=2, num_heads=4,
        decoder_embed_dim=32, decoder_depth=2, decoder_num_heads=2,
        distill_embed_dim=32, distill_depth=1, distill_num_heads=2, distill_target_dim=64,
    ),
    "small": dict(embed_dim=384, depth=12, num_heads=6),  # official builder: decoders keep the 384/6 defaults
    "base": dict(),
    "large": dict(embed_dim=1024, depth=24, num_heads=16, decoder_embed_dim=512, decoder_num_heads=8,
                  distill_embed_dim=512, distill_num_heads=8),
}  # fmt: skip


def preset(name: str, **overrides: Any) -> SurgVistaConfig:
    """A :class:`SurgVistaConfig` for ``tiny``/``small``/``base``/``large`` with field overrides."""
    if name not in PRESETS:
        raise SurgkitError(f"unknown SurgVISTA size '{name}' (choose from {', '.join(PRESETS)})")
    check_fields(SurgVistaConfig, overrides, "model_overrides")
    return SurgVistaConfig(**{**PRESETS[name], **overrides})


def check_fields(config_class: type, fields: dict[str, Any], what: str) -> None:
    """Refuse names that are not fields of ``config_class`` with one line naming them (not a TypeError)."""
    names = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(fields) - names)
    if unknown:
        raise SurgkitError(f"{what}: unknown {config_class.__name__} field(s) {', '.join(unknown)} "
                           f"(known: {', '.join(sorted(names))})")  # fmt: skip


def classifier_config(
    encoder: SurgVistaEncoderConfig, num_classes: int, **overrides: Any
) -> SurgVistaClassifierConfig:
    """Classifier config sharing ``encoder``'s encoder fields (final norm dropped)."""
    fields = encoder.encoder_fields()
    fields["final_norm"] = False
    check_fields(SurgVistaClassifierConfig, overrides, "model_overrides")
    return SurgVistaClassifierConfig(**{**fields, "num_classes": num_classes, **overrides})
