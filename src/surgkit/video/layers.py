"""Building blocks of the SurgVISTA student: 3-D sin-cos table, cube embedding, pre-norm blocks.

Everything follows the official ``pretrain_SurgVISTA/utils_.py`` maths (spec surgvista.md §2):
pre-norm ViT blocks with LayerNorm eps 1e-6, one fused ``qkv`` weight whose rows are [q; k; v],
learnable ``q_bias``/``v_bias`` with a k-bias fixed at zero, scale ``head_dim^-0.5`` on q, exact
erf GELU, per-sample stochastic depth. Attention runs through
``torch.nn.functional.scaled_dot_product_attention`` (``"sdpa"``) or the explicit softmax of the
official code (``"eager"``, bit-compatible with the golden fixtures).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from surgkit.errors import SurgkitError

ATTN_IMPLEMENTATIONS = ("sdpa", "eager")


def sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    """MAE 1-D code: ``[sin(p·ω_i), cos(p·ω_i)]`` concatenated, ``ω_i = 10000^(-i/(dim/2))``.

    ``dim`` must be even; the result has shape ``(len(positions), dim)`` (float64).
    """
    if dim % 2:
        raise SurgkitError(f"1-D sin-cos code needs an even width, got {dim}")
    omega = np.arange(dim // 2, dtype=np.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    out = np.einsum("m,d->md", positions.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_3d_table(dim: int, grid_t: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """Fixed 3-D sin-cos position table of SurgVISTA (spec §2.3), shape ``1 × (T·H·W) × dim``.

    ``PE(t, h, w) = [E_{dim/4}(t), E_{3dim/8}(w), E_{3dim/8}(h)]``: temporal code first, then the
    column (w) code, then the row (h) code (the MAE ``meshgrid(w, h)`` order). Row index
    ``n = t·H·W + h·W + w``. ``dim`` must be a multiple of 8 with ``3·dim/8`` even.
    """
    dim_t = dim // 4
    dim_s = dim // 4 * 3
    if dim % 4 or dim_t % 2 or (dim_s // 2) % 2 or dim_s % 2:
        raise SurgkitError(
            f"3-D sin-cos table needs a width whose quarter and three-eighths are even "
            f"(a multiple of 16 always works), got {dim}"
        )
    ww, hh = np.meshgrid(np.arange(grid_w, dtype=np.float64), np.arange(grid_h, dtype=np.float64))
    spatial = np.concatenate([sincos_1d(dim_s // 2, ww), sincos_1d(dim_s // 2, hh)], axis=1)  # (HW, Ds)
    temporal = sincos_1d(dim_t, np.arange(grid_t, dtype=np.float64))  # (T, Dt)
    n_sp = grid_h * grid_w
    table = np.concatenate(
        [np.repeat(temporal[:, None, :], n_sp, axis=1), np.repeat(spatial[None], grid_t, axis=0)], axis=2
    )
    return torch.from_numpy(table.reshape(1, grid_t * n_sp, dim).astype(np.float32))


def sincos_1d_table(dim: int, num_tokens: int) -> torch.Tensor:
    """VideoMAE's flat 1-D table (interleaved: sin on even, cos on odd channels), ``1 × N × dim``.

    Only for loading VideoMAE-style baselines; SurgVISTA itself uses :func:`sincos_3d_table`.
    """
    pos = np.arange(num_tokens, dtype=np.float64)[:, None]
    j = np.arange(dim)
    angles = pos / np.power(10000, 2 * (j // 2) / dim)
    angles[:, 0::2] = np.sin(angles[:, 0::2])
    angles[:, 1::2] = np.cos(angles[:, 1::2])
    return torch.from_numpy(angles[None].astype(np.float32))


POSITION_TABLES = ("3d-sincos", "1d-sincos")


def position_table(kind: str, dim: int, grid: tuple[int, int, int]) -> torch.Tensor:
    """The fixed position table named ``kind`` (``3d-sincos`` for SurgVISTA, ``1d-sincos`` for VideoMAE)."""
    if kind == "3d-sincos":
        return sincos_3d_table(dim, *grid)
    if kind == "1d-sincos":
        return sincos_1d_table(dim, grid[0] * grid[1] * grid[2])
    raise SurgkitError(f"unknown position table '{kind}' (choose from {', '.join(POSITION_TABLES)})")


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth (Huang et al. 2016): drop the residual branch per sample, rescale by 1/(1-p)."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    mask = x.new_empty(shape).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class CubeEmbedding(nn.Module):
    """Conv3d with kernel = stride = (tubelet, patch, patch): ``B×C×T×H×W → B×N×D`` in (t, h, w) order."""

    def __init__(
        self, img_size: int, patch_size: int, num_frames: int, tubelet_size: int, in_chans: int, dim: int
    ):
        super().__init__()
        for name, size, step in (
            ("img_size", img_size, patch_size),
            ("num_frames", num_frames, tubelet_size),
        ):
            if size % step:
                raise SurgkitError(f"{name}={size} is not divisible by its cube size {step}")
        self.img_size, self.num_frames, self.in_chans = img_size, num_frames, in_chans
        self.grid = (num_frames // tubelet_size, img_size // patch_size, img_size // patch_size)
        k = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, dim, kernel_size=k, stride=k)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        expected = (self.in_chans, self.num_frames, self.img_size, self.img_size)
        if video.ndim != 5 or tuple(video.shape[1:]) != expected:
            raise SurgkitError(
                f"clip has shape {tuple(video.shape)}, expected B×C×T×H×W = B×{'×'.join(map(str, expected))} "
                "(channels before time; resize frames to the model's img_size)"
            )
        return self.proj(video).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` weight, learnable q/v biases and a zero k bias."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_implementation: str = "sdpa"):
        super().__init__()
        if dim % num_heads:
            raise SurgkitError(f"width {dim} is not divisible by {num_heads} heads")
        if attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise SurgkitError(
                f"attn_implementation must be one of {ATTN_IMPLEMENTATIONS}, got {attn_implementation!r}"
            )
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.attn_implementation = attn_implementation
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = self.v_bias = None
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        bias = None
        if self.q_bias is not None:
            bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if self.attn_implementation == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
            out = attn @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + DP(attn(LN(x)))`` then ``x + DP(mlp(LN(x)))``, no layer scale."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
        eps: float = 1e-6,
        attn_implementation: str = "sdpa",
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias, attn_implementation)
        self.drop_path = DropPath(drop_path_rate)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def make_blocks(
    depth: int,
    dim: int,
    num_heads: int,
    mlp_ratio: float,
    qkv_bias: bool,
    drop_path_rate: float,
    eps: float,
    impl: str,
) -> nn.ModuleList:
    """``depth`` blocks with stochastic depth rising linearly ``linspace(0, drop_path_rate, depth)``."""
    rates = np.linspace(0, drop_path_rate, depth).tolist() if depth else []
    return nn.ModuleList(Block(dim, num_heads, mlp_ratio, qkv_bias, r, eps, impl) for r in rates)


def init_official(module: nn.Module) -> None:
    """SurgVISTA init (spec §2.4): xavier-uniform on every Linear (fused qkv as one matrix), bias 0, LN 1/0."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
