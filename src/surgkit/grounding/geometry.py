"""Image preprocessing for the VLMs and its inverse for heatmaps (vlm_bench spec §4.3).

A heatmap is computed at model-input resolution (S x S). The grounding metrics need it in frame
coordinates, so every preprocessing is described by a :class:`FrameGeometry`: the frame size
(H0, W0), the intermediate resized size (Hi, Wi) and the crop window inside it. Three modes:

* ``resize`` (the ``full-frame`` protocol option): the whole frame is resized to S x S (aspect
  ratio changes; nothing is cropped, so every pixel of the frame is seen by the model).
* ``resize_crop``: SurgVLP's official transform (``surgvlp.py::_transform``), Resize((360, 640))
  then CenterCrop(S) with torchvision's offsets ``round((Hi - S) / 2)``. For a 640x360 frame and
  S = 224 the crop window is x in [208, 432), y in [68, 292): about 22 % of the frame is visible.
* ``shorter_crop``: the HF ``CLIPImageProcessor`` rule (OpenAI CLIP): the shorter side to
  ``short_side`` (``size.shortest_edge``), the longer side to ``int(short_side * long / short)``
  (truncated), then a centre crop of S with offsets ``(Hi - S) // 2`` (``crop_size``).

:func:`to_frame` inverts the geometry: the S x S map is pasted into its crop window of an
(Hi, Wi) canvas that is 0 outside (pixels the model never saw get no attention), bilinearly
resized (``align_corners=False``) to (H0, W0) and min-max normalised once, in the coordinate
system where the threshold tau is applied. Bilinear interpolation is affine-equivariant, so
normalising before or after the resize gives the same result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from surgkit.errors import SurgkitError

MODES = ("resize", "resize_crop", "shorter_crop")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclasses.dataclass(frozen=True)
class FrameGeometry:
    """Where the model input sits in the frame: frame size, resized size, crop (top, left, h, w)."""

    frame_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    crop: tuple[int, int, int, int]

    def to_dict(self) -> dict[str, list[int]]:
        return {"frame_hw": list(self.frame_hw), "resized_hw": list(self.resized_hw), "crop": list(self.crop)}

    @classmethod
    def from_dict(cls, d: dict[str, Sequence[int]]) -> FrameGeometry:
        return cls(tuple(d["frame_hw"]), tuple(d["resized_hw"]), tuple(d["crop"]))  # type: ignore[arg-type]

    def visible_fraction(self) -> float:
        """Share of the frame's area that the model sees."""
        _, _, h, w = self.crop
        return (h * w) / float(self.resized_hw[0] * self.resized_hw[1])


def _center_crop(hw: tuple[int, int], size: int, floor: bool = False) -> tuple[int, int, int, int]:
    """Crop window (top, left, size, size): torchvision rounds the offsets, HF floors them."""
    h, w = hw
    if h < size or w < size:
        raise SurgkitError(f"cannot center-crop {size}x{size} from a {h}x{w} image")
    if floor:
        return ((h - size) // 2, (w - size) // 2, size, size)
    return (int(round((h - size) / 2.0)), int(round((w - size) / 2.0)), size, size)


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """Model input transform: geometry mode, input size S, normalisation and interpolation.

    ``resize_hw`` is the fixed intermediate size of ``resize_crop`` (SurgVLP: (360, 640));
    ``short_side`` the shorter-side target of ``shorter_crop`` (default: ``size``).
    """

    mode: str = "resize"
    size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resize_hw: tuple[int, int] = (360, 640)
    interpolation: str = "bilinear"
    short_side: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise SurgkitError(f"unknown preprocessing mode '{self.mode}' (choose from {', '.join(MODES)})")
        if self.interpolation not in ("bilinear", "bicubic"):
            raise SurgkitError(f"unknown interpolation '{self.interpolation}' (bilinear or bicubic)")
        if self.short_side is not None and self.short_side < self.size:
            raise SurgkitError(f"shorter side {self.short_side} is smaller than the crop size {self.size}")

    def describe(self) -> dict[str, object]:
        """The transform as recorded in result files."""
        d: dict[str, object] = {"mode": self.mode, "size": self.size, "mean": list(self.mean),
                                "std": list(self.std), "interpolation": self.interpolation}  # fmt: skip
        if self.mode == "resize_crop":
            d["resize_hw"] = list(self.resize_hw)
        if self.mode == "shorter_crop":
            d["short_side"] = self.short_side or self.size
        return d

    def full_frame(self) -> Preprocess:
        """The same model input (size, normalisation, interpolation) with the whole frame resized."""
        return dataclasses.replace(self, mode="resize", short_side=None)

    def geometry(self, frame_hw: tuple[int, int]) -> FrameGeometry:
        """The :class:`FrameGeometry` this transform applies to a frame of size (H0, W0)."""
        h0, w0 = int(frame_hw[0]), int(frame_hw[1])
        s = self.size
        if self.mode == "resize":
            return FrameGeometry((h0, w0), (s, s), (0, 0, s, s))
        if self.mode == "resize_crop":
            hw = (int(self.resize_hw[0]), int(self.resize_hw[1]))
            return FrameGeometry((h0, w0), hw, _center_crop(hw, s))
        short = int(self.short_side or s)
        if h0 <= w0:  # HF get_resize_output_image_size: the longer side is truncated
            hw = (short, int(short * w0 / h0))
        else:
            hw = (int(short * h0 / w0), short)
        return FrameGeometry((h0, w0), hw, _center_crop(hw, s, floor=True))

    def __call__(self, frames: Sequence[np.ndarray]) -> tuple[torch.Tensor, list[FrameGeometry]]:
        """uint8 RGB frames (H, W, 3), any sizes -> normalised float batch (B, 3, S, S) and geometries."""
        batch, geoms = [], []
        mean = torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(3, 1, 1)
        for frame in frames:
            arr = np.asarray(frame)
            if arr.ndim != 3 or arr.shape[2] != 3:
                raise SurgkitError(f"expected an RGB frame of shape (H, W, 3), got {arr.shape}")
            g = self.geometry(arr.shape[:2])
            x = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).float().div_(255.0)
            if g.resized_hw != g.frame_hw:
                x = F.interpolate(
                    x[None], size=g.resized_hw, mode=self.interpolation, align_corners=False, antialias=True
                )[0].clamp_(0.0, 1.0)
            top, left, h, w = g.crop
            x = x[:, top : top + h, left : left + w]
            batch.append((x - mean) / std)
            geoms.append(g)
        return torch.stack(batch), geoms


def minmax_normalise(maps: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Per-map min-max to [0, 1] over the last two dims; a map with max - min < eps becomes all zeros."""
    flat = maps.flatten(-2)
    lo = flat.min(-1).values[..., None, None]
    hi = flat.max(-1).values[..., None, None]
    rng = hi - lo
    out = (maps - lo) / rng.clamp_min(eps)
    return torch.where(rng < eps, torch.zeros_like(maps), out)


def to_frame(
    heatmap: torch.Tensor | np.ndarray, geometry: FrameGeometry, normalise: bool = True
) -> np.ndarray:
    """Map an S x S heatmap back to frame pixels (H0, W0) as float32 in [0, 1].

    The map is bilinearly resized to the crop size, pasted into a zero canvas of the resized
    size, resized to the frame (``align_corners=False``) and min-max normalised (if ``normalise``).
    """
    m = torch.as_tensor(np.asarray(heatmap, dtype=np.float32) if isinstance(heatmap, np.ndarray) else heatmap)
    m = m.detach().float().cpu()
    if m.ndim != 2:
        raise SurgkitError(f"expected a 2-D heatmap, got shape {tuple(m.shape)}")
    top, left, h, w = geometry.crop
    if tuple(m.shape) != (h, w):
        m = F.interpolate(m[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    canvas = torch.zeros(geometry.resized_hw, dtype=torch.float32)
    canvas[top : top + h, left : left + w] = m
    if geometry.resized_hw != geometry.frame_hw:
        canvas = F.interpolate(
            canvas[None, None], size=geometry.frame_hw, mode="bilinear", align_corners=False
        )[0, 0]
    if normalise:
        canvas = minmax_normalise(canvas)
    return canvas.numpy()


def box_to_input(box: Sequence[float], geometry: FrameGeometry) -> tuple[float, float, float, float]:
    """A frame box (x0, y0, x1, y1) in pixel-edge coordinates -> model-input coordinates."""
    sy = geometry.resized_hw[0] / geometry.frame_hw[0]
    sx = geometry.resized_hw[1] / geometry.frame_hw[1]
    top, left, _, _ = geometry.crop
    x0, y0, x1, y1 = box
    return (x0 * sx - left, y0 * sy - top, x1 * sx - left, y1 * sy - top)


def box_to_frame(box: Sequence[float], geometry: FrameGeometry) -> tuple[float, float, float, float]:
    """Inverse of :func:`box_to_input`."""
    sy = geometry.resized_hw[0] / geometry.frame_hw[0]
    sx = geometry.resized_hw[1] / geometry.frame_hw[1]
    top, left, _, _ = geometry.crop
    x0, y0, x1, y1 = box
    return ((x0 + left) / sx, (y0 + top) / sy, (x1 + left) / sx, (y1 + top) / sy)
