"""Image teachers for the SurgVISTA distillation target (spec surgvista.md §4.2, §5): a registry.

A teacher maps frames ``N×3×H×W`` (ImageNet-normalised, as the student sees them) to the
**patch tokens of its last block, before any final LayerNorm, prefix tokens dropped**:
``N × L × C`` with L = the student's spatial grid (h·w). Frames are resized (antialiased) so the
teacher's patch grid equals the student's (224 for a /16 teacher under a 224 /16 student).

:func:`load_teacher` resolves a teacher specification:

=================================  ===============================================================
``none``                           no distillation (reconstruction only)
``random``                         a random frozen :class:`ImageViT`, seeded (tests only; must be
                                   asked for by name: pretraining refuses to start without a teacher)
a surgkit teacher folder           :class:`ImageViT` (``config.json`` model_type ``surgkit-image-vit``),
                                   e.g. written by ``surgkit video teacher train`` or ``convert teacher``
an official ``.pth`` / ``.pt``     the paper's image-expert checkpoints through :mod:`~surgkit.video.teacher_io`:
or ``.safetensors`` file           the authors' converted EndoSSL ViT-L (separate q/k/v, 196 positions),
                                   timm / MAE ViTs (fused qkv, class slot, MAE decoder dropped);
                                   pickles need ``trust_pickle``
an HF folder (or cached hub id)    any HF ViT-family model (ViT, DeiT, DINOv2, ...), read through a
                                   hook on its last layer (no final ``layernorm``, no hidden-state list)
=================================  ===============================================================

Precision (``teacher_precision``): ``"auto"`` runs the teacher as the official code does — under
fp16 autocast on a GPU (``torch.cuda.amp.autocast()`` around the teacher forward), fp32 on CPU;
``"fp32"``, ``"fp16"``, ``"bf16"`` force a mode. Teachers are frozen, in eval mode, run under
``torch.no_grad``, and keep no hidden states beyond the last block.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from surgkit.errors import SurgkitError
from surgkit.utils.modeling import ModelConfig, PretrainedModel
from surgkit.video.config import IMAGENET_MEAN, IMAGENET_STD

TEACHER_PRECISIONS = ("auto", "fp32", "fp16", "bf16")


class Teacher(nn.Module):
    """Base: ``forward(frames) -> N × (grid_h·grid_w) × dim`` patch tokens of the last block."""

    dim: int
    patch_size: int

    def prepare(self, frames: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Resize frames so the teacher's patch grid equals ``grid`` (antialiased when shrinking)."""
        size = (grid[0] * self.patch_size, grid[1] * self.patch_size)
        if tuple(frames.shape[-2:]) != size:
            shrink = size[0] * size[1] < frames.shape[-2] * frames.shape[-1]
            frames = F.interpolate(frames, size=size, mode="bilinear", align_corners=False, antialias=shrink)
        return frames


# ------------------------------------------------------------------------------ surgkit image ViT


@dataclasses.dataclass
class ImageTeacherConfig(ModelConfig):
    """An image ViT in the official teacher's layout (``MaskedAutoencoderViT``, spec §5).

    ``pos_embed_class_slot=False`` is the SurgVISTA teacher (positions added to the patch tokens
    only, class token prepended without one); ``True`` is the timm/MAE ViT (positions for
    ``[cls, patches]``). Block LayerNorm eps: 1e-5 for the SurgVISTA teacher (PyTorch default),
    1e-6 for timm/MAE ViTs.
    """

    model_type: ClassVar[str] = "surgkit-image-vit"
    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    layer_norm_eps: float = 1e-5
    final_norm_eps: float = 1e-6
    pos_embed_class_slot: bool = False
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    source: str = ""  # where the weights came from (file / training run), for the record


class TeacherAttention(nn.Module):
    """Separate ``q``/``k``/``v`` Linears, all with bias (the official teacher; timm's fused qkv is split)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise SurgkitError(f"teacher width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.q, self.k, self.v = (nn.Linear(dim, dim) for _ in range(3))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = (
            lin(x).reshape(b, n, self.num_heads, -1).transpose(1, 2) for lin in (self.q, self.k, self.v)
        )
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class TeacherBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, eps: float):
        from surgkit.video.layers import Mlp

        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = TeacherAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed2d(nn.Module):
    def __init__(self, patch: int, in_chans: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch, patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class ImageViT(PretrainedModel, Teacher):
    """Image ViT whose state dict uses the official teacher's key names (spec §5).

    ``forward(frames)`` returns the last block's patch tokens (class token dropped, final ``norm``
    present but never applied, as the official ``forward_encoder``). ``features(frames)`` adds the
    final norm (for image-level uses, e.g. a linear probe).
    """

    config_class = ImageTeacherConfig

    def __init__(self, config: ImageTeacherConfig):
        super().__init__(config)
        c = config
        self.dim, self.patch_size = c.embed_dim, c.patch_size
        self.patch_embed = PatchEmbed2d(c.patch_size, c.in_chans, c.embed_dim)
        n = (c.img_size // c.patch_size) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.embed_dim))
        self.pos_embed = nn.Parameter(torch.randn(1, n + int(c.pos_embed_class_slot), c.embed_dim) * 0.02)
        self.blocks = nn.ModuleList(
            TeacherBlock(c.embed_dim, c.num_heads, c.mlp_ratio, c.layer_norm_eps) for _ in range(c.depth)
        )
        self.norm = nn.LayerNorm(c.embed_dim, eps=c.final_norm_eps)  # present, never applied in forward
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def tokens(self, frames: torch.Tensor) -> torch.Tensor:
        """``[cls, patches]`` after the last block, ``N × (1 + L) × C``."""
        x = self.patch_embed(frames)
        n_pos = self.pos_embed.shape[1] - int(self.config.pos_embed_class_slot)
        if x.shape[1] != n_pos:
            raise SurgkitError(
                f"teacher expects {self.config.img_size}px frames ({n_pos} patches), got {tuple(frames.shape[-2:])}"
            )
        cls = self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype)
        pos = self.pos_embed.to(x.dtype)
        if self.config.pos_embed_class_slot:
            x = torch.cat([cls, x], dim=1) + pos
        else:
            x = torch.cat([cls, x + pos], dim=1)
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.tokens(frames)[:, 1:]

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """Mean of the normalised patch tokens, ``N × C`` (not used by distillation)."""
        return self.norm(self.tokens(frames)[:, 1:]).mean(dim=1)


TEACHER_SIZES = {
    "tiny": dict(embed_dim=64, depth=2, num_heads=4),
    "small": dict(embed_dim=384, depth=12, num_heads=6),
    "base": dict(embed_dim=768, depth=12, num_heads=12),
    "large": dict(embed_dim=1024, depth=24, num_heads=16),  # the paper's ViT-L/16 teacher
}


def teacher_config(size: str, **overrides) -> ImageTeacherConfig:
    if size not in TEACHER_SIZES:
        raise SurgkitError(f"unknown teacher size '{size}' (choose from {', '.join(TEACHER_SIZES)})")
    return ImageTeacherConfig(**{**TEACHER_SIZES[size], **overrides})


# ------------------------------------------------------------------------------------ HF teacher


class HFTeacher(Teacher):
    """An HF transformers ViT-family model: the output of its last layer, prefix tokens dropped.

    A forward hook on the last encoder layer captures that output, so no list of hidden states is
    kept and the final ``layernorm`` is not applied to the target.
    """

    def __init__(self, name_or_path: str, local_files_only: bool = True):
        super().__init__()
        from transformers import AutoModel

        try:
            self.model = AutoModel.from_pretrained(name_or_path, local_files_only=local_files_only)
        except (OSError, ValueError) as e:
            raise SurgkitError(f"cannot load teacher '{name_or_path}' as an HF model: {e}") from None
        cfg = self.model.config
        cfg = getattr(cfg, "vision_config", None) or cfg
        patch = getattr(cfg, "patch_size", None)
        self.dim = getattr(cfg, "hidden_size", None)
        if patch is None or self.dim is None:
            raise SurgkitError(
                f"teacher '{name_or_path}' is not a ViT-family model (no patch_size/hidden_size)"
            )
        self.patch_size = patch[0] if isinstance(patch, list | tuple) else int(patch)
        self.last_layer = _last_layer(self.model, name_or_path)
        self.model.eval().requires_grad_(False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        h, w = frames.shape[-2] // self.patch_size, frames.shape[-1] // self.patch_size
        kwargs = (
            {"interpolate_pos_encoding": True}
            if "interpolate_pos_encoding" in _forward_args(self.model)
            else {}
        )
        captured: list[torch.Tensor] = []

        def hook(_module, _inputs, output):
            captured.append(output[0] if isinstance(output, tuple | list) else output)

        handle = self.last_layer.register_forward_hook(hook)
        try:
            self.model(pixel_values=frames, **kwargs)
        finally:
            handle.remove()
        tokens = captured[-1]
        return tokens[:, tokens.shape[1] - h * w :]


def _last_layer(model: nn.Module, name: str) -> nn.Module:
    """The last transformer layer of an HF vision model (``layers``, ``encoder.layer(s)``, ``vision_model...``)."""
    for root in (model, getattr(model, "vision_model", None)):
        for owner in (root, getattr(root, "encoder", None)):
            for attr in ("layers", "layer"):
                layers = getattr(owner, attr, None) if owner is not None else None
                if isinstance(layers, nn.ModuleList) and len(layers):
                    return layers[-1]
    raise SurgkitError(f"teacher '{name}': cannot find its transformer layers (layers / encoder.layer)")


def _forward_args(model: nn.Module) -> set[str]:
    import inspect

    return set(inspect.signature(model.forward).parameters)


# ------------------------------------------------------------------------------------- registry


def load_teacher(
    spec: str | None, seed: int = 0, trust_pickle: bool = False, num_heads: int | None = None, **random_kwargs
) -> Teacher | None:
    """Resolve a teacher specification (see the module docstring); ``None``/``"none"`` → no teacher.

    ``random_kwargs`` size the random teacher (``img_size``, ``patch_size``, ...); ``num_heads``
    is needed for official files whose width is not that of a standard ViT.
    """
    from surgkit.video.teacher_io import load_teacher_file

    if spec is None or spec == "none":
        return None
    if spec in ("random", "random-vit"):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            teacher: Teacher = ImageViT(teacher_config("tiny", **random_kwargs))
    elif (path := Path(spec)).is_dir() and _model_type(path) == ImageTeacherConfig.model_type:
        teacher = ImageViT.from_pretrained(path)
    elif path.is_file() or (path.is_dir() and not (path / "config.json").is_file()):
        teacher = load_teacher_file(path, trust_pickle=trust_pickle, num_heads=num_heads)[0]
    else:
        if not path.exists() and (path.suffix or spec.startswith((".", "/"))):
            raise SurgkitError(f"{spec}: teacher file or folder not found")
        teacher = HFTeacher(spec)
    return teacher.eval().requires_grad_(False)


def _model_type(folder: Path) -> str | None:
    try:
        return json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, json.JSONDecodeError):
        return None


def autocast_for(precision: str, device: torch.device | str):
    """The autocast context of a teacher precision (spec §4.3: fp16 autocast on GPU by default)."""
    if precision not in TEACHER_PRECISIONS:
        raise SurgkitError(
            f"unknown teacher precision '{precision}' (choose from {', '.join(TEACHER_PRECISIONS)})"
        )
    device_type = torch.device(device).type
    if precision == "auto":
        precision = "fp16" if device_type == "cuda" else "fp32"
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=torch.float16 if precision == "fp16" else torch.bfloat16)


@torch.no_grad()
def teacher_tokens(
    teacher: Teacher, video: torch.Tensor, tubelet: int, grid_hw: tuple[int, int], precision: str = "auto"
) -> torch.Tensor:
    """Distillation targets for a batch: frame ``tubelet·t`` of each tubelet → ``B × (T'·L) × C`` float32."""
    from surgkit.video.targets import arrange_teacher_tokens, teacher_frames

    frames = teacher.prepare(teacher_frames(video, tubelet), grid_hw)
    with autocast_for(precision, frames.device):
        tokens = teacher(frames)
    if tokens.shape[1] != grid_hw[0] * grid_hw[1]:
        raise SurgkitError(
            f"teacher gave {tokens.shape[1]} patch tokens per frame, student grid is {grid_hw}"
        )
    return arrange_teacher_tokens(tokens.float(), video.shape[0])
