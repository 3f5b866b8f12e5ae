"""Image teachers for the SurgVISTA distillation target (spec surgvista.md §4.2, §5).

A teacher maps frames ``N×3×H×W`` (ImageNet-normalised, as the student sees them) to the
**patch tokens of its last block, before any final LayerNorm, prefix tokens dropped**:
``N × L × C`` with L = the student's spatial grid (h·w). Frames are resized so the teacher's
patch grid equals the student's (e.g. 224 for a /16 teacher under a 224 /16 student).

* :class:`HFTeacher`: any HF ViT-family model (ViT, DeiT, DINOv2, ...) by local folder or hub id,
  read through ``output_hidden_states`` (the last entry is the last block's output, before the
  final ``layernorm``); class and register tokens are dropped. The paper's teacher is EndoSSL's
  ViT-L/16 (MSN), whose blocks use LN eps 1e-5.
* :class:`SurgkitImageTeacher`: surgkit's own small ViT image encoder (a :class:`PretrainedModel`),
  for runs without any downloadable weights (tests, the demo's random frozen teacher).

Teachers are frozen, in eval mode and run under ``torch.no_grad``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from surgkit.errors import SurgkitError
from surgkit.utils.modeling import ModelConfig, PretrainedModel
from surgkit.video.layers import make_blocks


class Teacher(nn.Module):
    """Base: ``forward(frames) -> N × (grid_h·grid_w) × dim`` patch tokens."""

    dim: int
    patch_size: int

    def prepare(self, frames: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        size = (grid[0] * self.patch_size, grid[1] * self.patch_size)
        if tuple(frames.shape[-2:]) != size:
            frames = F.interpolate(frames, size=size, mode="bilinear", align_corners=False)
        return frames


@dataclasses.dataclass
class ImageTeacherConfig(ModelConfig):
    """surgkit's small ViT image encoder (class token, learned positions, LN eps 1e-5 like EndoSSL)."""

    model_type: ClassVar[str] = "surgkit-image-vit"
    img_size: int = 64
    patch_size: int = 8
    embed_dim: int = 64
    depth: int = 2
    num_heads: int = 4
    mlp_ratio: float = 4.0
    layer_norm_eps: float = 1e-5


class SurgkitImageTeacher(PretrainedModel, Teacher):
    """A small ViT; its last block's patch tokens (no final norm) are the distillation target."""

    config_class = ImageTeacherConfig

    def __init__(self, config: ImageTeacherConfig):
        super().__init__(config)
        c = config
        self.dim, self.patch_size = c.embed_dim, c.patch_size
        self.patch_embed = nn.Conv2d(3, c.embed_dim, c.patch_size, c.patch_size)
        n = (c.img_size // c.patch_size) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.embed_dim))
        self.pos_embed = nn.Parameter(torch.randn(1, n, c.embed_dim) * 0.02)
        self.blocks = make_blocks(
            c.depth, c.embed_dim, c.num_heads, c.mlp_ratio, True, 0.0, c.layer_norm_eps, "sdpa"
        )
        self.norm = nn.LayerNorm(c.embed_dim, eps=c.layer_norm_eps)  # present (as in EndoSSL), never applied

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(frames).flatten(2).transpose(1, 2)
        if x.shape[1] != self.pos_embed.shape[1]:
            raise SurgkitError(
                f"teacher expects {self.config.img_size}px frames, got {tuple(frames.shape[-2:])}"
            )
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x + self.pos_embed], dim=1)
        for block in self.blocks:
            x = block(x)
        return x[:, 1:]


class HFTeacher(Teacher):
    """An HF transformers ViT-family model; ``hidden_states[-1]`` minus prefix tokens."""

    def __init__(self, name_or_path: str, local_files_only: bool = True):
        super().__init__()
        from transformers import AutoModel

        try:
            self.model = AutoModel.from_pretrained(name_or_path, local_files_only=local_files_only)
        except (OSError, ValueError) as e:
            raise SurgkitError(f"cannot load teacher '{name_or_path}': {e}") from None
        cfg = self.model.config
        cfg = getattr(cfg, "vision_config", None) or cfg
        patch = getattr(cfg, "patch_size", None)
        self.dim = getattr(cfg, "hidden_size", None)
        if patch is None or self.dim is None:
            raise SurgkitError(
                f"teacher '{name_or_path}' is not a ViT-family model (no patch_size/hidden_size)"
            )
        self.patch_size = patch[0] if isinstance(patch, list | tuple) else int(patch)
        self.model.eval().requires_grad_(False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        h, w = frames.shape[-2] // self.patch_size, frames.shape[-1] // self.patch_size
        kwargs = (
            {"interpolate_pos_encoding": True}
            if "interpolate_pos_encoding" in _forward_args(self.model)
            else {}
        )
        out = self.model(pixel_values=frames, output_hidden_states=True, **kwargs)
        tokens = out.hidden_states[-1]
        return tokens[:, tokens.shape[1] - h * w :]


def _forward_args(model: nn.Module) -> set[str]:
    import inspect

    return set(inspect.signature(model.forward).parameters)


def load_teacher(spec: str | None, seed: int = 0, **small_kwargs) -> Teacher | None:
    """``None``/``"none"`` → no distillation; ``"random-vit"`` → a random frozen surgkit ViT (seeded);
    a surgkit teacher folder; otherwise an HF model folder or hub id."""
    if spec is None or spec == "none":
        return None
    if spec == "random-vit":
        g = torch.random.fork_rng()
        with g:
            torch.manual_seed(seed)
            teacher = SurgkitImageTeacher(ImageTeacherConfig(**small_kwargs))
    elif (Path(spec) / "config.json").is_file() and '"surgkit-image-vit"' in (
        Path(spec) / "config.json"
    ).read_text():
        teacher = SurgkitImageTeacher.from_pretrained(spec)
    else:
        teacher = HFTeacher(spec)
    return teacher.eval().requires_grad_(False)


@torch.no_grad()
def teacher_tokens(
    teacher: Teacher, video: torch.Tensor, tubelet: int, grid_hw: tuple[int, int]
) -> torch.Tensor:
    """Distillation targets for a batch: frame ``tubelet·t`` of each tubelet → ``B × (T'·L) × C``."""
    from surgkit.video.targets import arrange_teacher_tokens, teacher_frames

    frames = teacher.prepare(teacher_frames(video, tubelet), grid_hw)
    tokens = teacher(frames)
    if tokens.shape[1] != grid_hw[0] * grid_hw[1]:
        raise SurgkitError(
            f"teacher gave {tokens.shape[1]} patch tokens per frame, student grid is {grid_hw}"
        )
    return arrange_teacher_tokens(tokens.float(), video.shape[0])
