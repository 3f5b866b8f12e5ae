"""Video Swin Transformer (Liu et al., CVPR 2022) in plain PyTorch, in the published key layout.

The module tree gives exactly the state-dict keys of the released MMAction2 / official Kinetics
checkpoints (``backbone.<key>``, ``cls_head.fc_cls.{weight,bias}``), so a published
``checkpoint['state_dict']`` loads with ``strict=True`` (:func:`load_videoswin_checkpoint`).

Forward (reference ``SwinTransformer3D``, eval mode), for x ∈ R^{B×C×T×H×W}:

* patch embedding: zero-pad T, H, W at the end to multiples of the patch (2, 4, 4), Conv3d with
  kernel = stride = patch, LayerNorm over channels;
* stage i (dim C·2^i): blocks alternate W-MSA and SW-MSA. Per stage the window w and shift
  s = w // 2 are clamped where the feature size is <= w (w := size, s := 0). A block computes
  x + MSA(LN1(x)), then x + MLP(LN2(x)) (GELU, ratio 4). MSA zero-pads LN1(x) at the end to
  multiples of w, rolls by -s (shifted blocks), splits windows of N = Wd·Wh·Ww tokens and
  attends with softmax(q kᵀ / sqrt(d_h) + B_rel + M). B_rel is gathered from the table by the
  first N rows/columns of the index of the *configured* window (the reference does not rebuild it
  for a clamped window); M is -100 between tokens of different shift regions (shifted blocks only);
* patch merging after stages 0..2: pad H, W to even, concatenate (even h, even w), (odd h, even w),
  (even h, odd w), (odd h, odd w), LayerNorm(4C), bias-free Linear 4C → 2C. Time is not merged;
* final LayerNorm; the feature of a clip is its mean over (T', H', W') (the I3DHead average pool);
  the head is a Linear on that feature.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from surgkit.errors import SurgkitError
from surgkit.utils.modeling import ModelConfig, PretrainedModel


@dataclasses.dataclass
class VideoSwinConfig(ModelConfig):
    """Constructor arguments of the reference ``SwinTransformer3D`` plus the classification head.

    ``num_frames`` / ``image_size`` are the clip the feature adapter feeds (32 frames, 224²),
    not architectural limits: any size runs.
    """

    model_type: ClassVar[str] = "videoswin"
    patch_size: tuple[int, int, int] = (2, 4, 4)
    in_chans: int = 3
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: tuple[int, int, int] = (8, 7, 7)
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    qk_scale: float | None = None
    patch_norm: bool = True
    layer_norm_eps: float = 1e-5
    num_classes: int = 400
    num_frames: int = 32
    image_size: int = 224
    checkpoint: str = ""

    def __post_init__(self) -> None:
        if len(self.depths) != len(self.num_heads):
            raise SurgkitError(f"depths {self.depths} and num_heads {self.num_heads} differ in length")
        for i, h in enumerate(self.num_heads):
            if (self.embed_dim * 2**i) % h:
                raise SurgkitError(f"stage {i}: width {self.embed_dim * 2**i} not divisible by {h} heads")

    @property
    def num_features(self) -> int:
        return self.embed_dim * 2 ** (len(self.depths) - 1)


# the public Kinetics models (MMAction2 configs of the official repository)
PRESETS: dict[str, dict[str, Any]] = {
    "swin-t": {"embed_dim": 96, "depths": (2, 2, 6, 2), "num_heads": (3, 6, 12, 24)},
    "swin-s": {"embed_dim": 96, "depths": (2, 2, 18, 2), "num_heads": (3, 6, 12, 24)},
    "swin-b": {"embed_dim": 128, "depths": (2, 2, 18, 2), "num_heads": (4, 8, 16, 32)},
}


def preset(name: str, **overrides: Any) -> VideoSwinConfig:
    """Config of a public size (swin-t, swin-s, swin-b; Kinetics-400 head) with overrides."""
    if name not in PRESETS:
        raise SurgkitError(f"unknown Video Swin size '{name}' (choose {', '.join(PRESETS)})")
    return VideoSwinConfig(**{**PRESETS[name], **overrides})


def effective_window(size: tuple[int, ...], window: tuple[int, ...], shift: tuple[int, ...]):
    """Window and shift clamped to the feature size (w := size, s := 0 where size <= w)."""
    w = tuple(n if n <= k else k for n, k in zip(size, window, strict=True))
    s = tuple(0 if n <= k else sh for n, k, sh in zip(size, window, shift, strict=True))
    return w, s


def relative_position_index(window: tuple[int, int, int]) -> torch.Tensor:
    """[N, N] index into the (2Wd-1)(2Wh-1)(2Ww-1)-row bias table (row-major over d, h, w)."""
    wd, wh, ww = window
    grid = torch.stack(torch.meshgrid(torch.arange(wd), torch.arange(wh), torch.arange(ww), indexing="ij"))
    flat = grid.flatten(1)
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0)
    rel = rel + torch.tensor([wd - 1, wh - 1, ww - 1])
    return rel[..., 0] * (2 * wh - 1) * (2 * ww - 1) + rel[..., 1] * (2 * ww - 1) + rel[..., 2]


def window_partition(x: torch.Tensor, w: tuple[int, int, int]) -> torch.Tensor:
    """[B, D, H, W, C] -> [B · nW, Wd·Wh·Ww, C], windows in (d, h, w) row-major order."""
    b, d, h, ww_, c = x.shape
    x = x.view(b, d // w[0], w[0], h // w[1], w[1], ww_ // w[2], w[2], c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, w[0] * w[1] * w[2], c)


def window_reverse(
    windows: torch.Tensor, w: tuple[int, int, int], b: int, d: int, h: int, wd: int
) -> torch.Tensor:
    x = windows.view(b, d // w[0], h // w[1], wd // w[2], w[0], w[1], w[2], -1)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, d, h, wd, -1)


def shift_mask(
    padded: tuple[int, int, int], w: tuple[int, int, int], s: tuple[int, int, int], device
) -> torch.Tensor:
    """[nW, N, N] additive mask: -100 between tokens from different regions of the rolled map.

    Per axis the regions are [0, P-w), [P-w, P-s), [P-s, P) (one region when s = 0)."""
    labels = torch.zeros(padded, dtype=torch.long, device=device)
    for axis, (p, wk, sk) in enumerate(zip(padded, w, s, strict=True)):
        pos = torch.arange(p, device=device)
        region = (
            torch.zeros(p, dtype=torch.long, device=device)
            if sk == 0
            else (pos >= p - wk).long() + (pos >= p - sk).long()
        )
        shape = [1, 1, 1]
        shape[axis] = p
        labels = labels * 3 + region.view(shape)
    win = window_partition(labels[None, ..., None].float(), w).squeeze(-1)
    diff = win[:, None, :] - win[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class WindowAttention3D(nn.Module):
    """Multi-head self-attention inside windows with a learned relative position bias."""

    def __init__(
        self, dim: int, window: tuple[int, int, int], heads: int, qkv_bias: bool, qk_scale: float | None
    ):
        super().__init__()
        self.heads = heads
        self.scale = qk_scale or (dim // heads) ** -0.5
        rows = (2 * window[0] - 1) * (2 * window[1] - 1) * (2 * window[2] - 1)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(rows, heads))
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self._bias_cache: tuple[tuple, torch.Tensor] | None = None

    def position_bias(self, n: int) -> torch.Tensor:
        """[heads, N, N] = table[index[:N, :N]] (cached while the weights are unchanged and no grad)."""
        table = self.relative_position_bias_table
        cacheable = not (torch.is_grad_enabled() and table.requires_grad)
        key = (n, table._version, table.data_ptr(), table.device, torch.is_inference_mode_enabled())
        if cacheable and self._bias_cache is not None and self._bias_cache[0] == key:
            return self._bias_cache[1]
        idx = self.relative_position_index[:n, :n].reshape(-1)
        bias = table[idx].view(n, n, -1).permute(2, 0, 1).contiguous()
        if cacheable:
            self._bias_cache = (key, bias)
        return bias

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, batch: int) -> torch.Tensor:
        bw, n, c = x.shape
        qkv = self.qkv(x).view(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        bias = self.position_bias(n).to(q.dtype)
        if mask is None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias[None], scale=self.scale)
        else:  # one call per clip: the window masks broadcast over heads, the bias over windows
            full = bias[None] + mask[:, None].to(q.dtype)
            nw = mask.shape[0]
            out = torch.cat(
                [
                    F.scaled_dot_product_attention(
                        q[i * nw : (i + 1) * nw],
                        k[i * nw : (i + 1) * nw],
                        v[i * nw : (i + 1) * nw],
                        attn_mask=full,
                        scale=self.scale,
                    )
                    for i in range(batch)
                ]
            )
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))


class SwinBlock3D(nn.Module):
    def __init__(self, dim: int, heads: int, window, cfg: VideoSwinConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=cfg.layer_norm_eps)
        self.attn = WindowAttention3D(dim, window, heads, cfg.qkv_bias, cfg.qk_scale)
        self.norm2 = nn.LayerNorm(dim, eps=cfg.layer_norm_eps)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))

    def forward(self, x: torch.Tensor, w, s, mask: torch.Tensor | None) -> torch.Tensor:
        b, d, h, wd, c = x.shape
        y = self.norm1(x)
        pads = [(k - n % k) % k for n, k in zip((d, h, wd), w, strict=True)]
        y = F.pad(y, (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))
        dp, hp, wp = d + pads[0], h + pads[1], wd + pads[2]
        shifted = any(s)
        if shifted:
            y = torch.roll(y, shifts=(-s[0], -s[1], -s[2]), dims=(1, 2, 3))
        y = self.attn(window_partition(y, w), mask if shifted else None, b)
        y = window_reverse(y, w, b, dp, hp, wp)
        if shifted:
            y = torch.roll(y, shifts=s, dims=(1, 2, 3))
        if any(pads):
            y = y[:, :d, :h, :wd]
        x = x + y
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2], x.shape[3]
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        parts = [x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]]
        return self.reduction(self.norm(torch.cat(parts, -1)))


class SwinStage(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, cfg: VideoSwinConfig, downsample: bool):
        super().__init__()
        self.window = tuple(cfg.window_size)
        self.shift = tuple(k // 2 for k in self.window)
        self.blocks = nn.ModuleList(SwinBlock3D(dim, heads, self.window, cfg) for _ in range(depth))
        self.downsample = PatchMerging(dim, cfg.layer_norm_eps) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, D, H, W, C] channels last
        size = tuple(x.shape[1:4])
        w, s = effective_window(size, self.window, self.shift)
        padded = tuple(math.ceil(n / k) * k for n, k in zip(size, w, strict=True))
        mask = shift_mask(padded, w, s, x.device) if any(s) else None
        for i, blk in enumerate(self.blocks):
            x = blk(x, w, s if i % 2 else (0, 0, 0), mask)
        return self.downsample(x) if self.downsample is not None else x


class PatchEmbed3D(nn.Module):
    def __init__(self, cfg: VideoSwinConfig):
        super().__init__()
        self.patch = tuple(cfg.patch_size)
        self.proj = nn.Conv3d(cfg.in_chans, cfg.embed_dim, kernel_size=self.patch, stride=self.patch)
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.layer_norm_eps) if cfg.patch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, T, H, W] -> [B, D, H', W', C]
        t, h, w = x.shape[2:]
        pt, ph, pw = ((p - n % p) % p for n, p in zip((t, h, w), self.patch, strict=True))
        if pt or ph or pw:
            x = F.pad(x, (0, pw, 0, ph, 0, pt))
        x = self.proj(x).permute(0, 2, 3, 4, 1)
        return self.norm(x) if self.norm is not None else x


class SwinTransformer3D(nn.Module):
    """The backbone: ``forward`` returns the normalised feature map [B, C, D', H', W']."""

    def __init__(self, cfg: VideoSwinConfig):
        super().__init__()
        self.patch_embed = PatchEmbed3D(cfg)
        n = len(cfg.depths)
        self.layers = nn.ModuleList(
            SwinStage(cfg.embed_dim * 2**i, cfg.depths[i], cfg.num_heads[i], cfg, downsample=i < n - 1)
            for i in range(n)
        )
        self.norm = nn.LayerNorm(cfg.num_features, eps=cfg.layer_norm_eps)

    def forward_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_channels_last(x).permute(0, 4, 1, 2, 3)


class ClsHead(nn.Module):
    """MMAction2 ``I3DHead`` at inference: average pool (done by the caller), dropout (identity), fc."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.fc_cls = nn.Linear(dim, num_classes)


class VideoSwinModel(PretrainedModel):
    """Backbone (+ Kinetics head when ``num_classes`` > 0), keys as in the published checkpoints."""

    config_class = VideoSwinConfig

    def __init__(self, config: VideoSwinConfig):
        super().__init__(config)
        self.backbone = SwinTransformer3D(config)
        self.cls_head = ClsHead(config.num_features, config.num_classes) if config.num_classes > 0 else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, T, H, W] -> [B, num_features]: the final map averaged over (T', H', W')."""
        return self.backbone.forward_channels_last(x).mean(dim=(1, 2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Kinetics logits [B, num_classes]."""
        if self.cls_head is None:
            raise SurgkitError(
                "this Video Swin has no classification head (num_classes = 0); use .features()"
            )
        return self.cls_head.fc_cls(self.features(x))
