"""Frame transforms for extraction: a chain of resize/crop operations given as a short spec string.

Spec: comma-separated operations applied left to right, e.g. ``"black_crop,resize=224x224"``.

=====================  ==========================================================================
``black_crop``         Cut the black margin of endoscopic frames (Cholec80 ``frames_cutmargin``,
                       used by TMRNet/Surgformer/SurgVISTA's ``--cut_black``): grey = BT.601 luma,
                       binary = grey > 15, median filter 19x19, crop to the bounding box of the
                       remaining foreground. A frame without foreground is kept whole. Optional
                       parameters: ``black_crop=THRESHOLD`` (default 15).
``resize=WxH``         Resize to exactly W x H (aspect not kept; SurgVISTA evaluation transform).
``resize_short=S``     Resize so the shorter side is S (aspect kept; SurgFusion-Net's "resize 256").
``resize_height=H``    Resize to height H, aspect kept (the cut-margin scripts first go to 300 high).
``center_crop=HxW``    Central crop of H rows by W columns (SurgFusion-Net: 224x300); a crop larger
                       than the image is an error.
=====================  ==========================================================================

Interpolation: area averaging when shrinking, bilinear when enlarging (OpenCV ``INTER_AREA`` /
``INTER_LINEAR``); masks use nearest neighbour (see :func:`resize_labels`).

Presets (``--preset``): ``surgvista`` = 1 fps, ``black_crop,resize=224x224``, PNG ``{index:05d}.png``;
``surgfusion`` = 10 fps, ``resize_short=256,center_crop=224x300,resize=224x224``, JPEG.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from surgkit.errors import SurgkitError

BLACK_THRESHOLD = 15
BLACK_MEDIAN = 19


def _size(text: str, op: str) -> tuple[int, int]:
    try:
        a, b = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SurgkitError(f"transform '{op}': expected AxB (e.g. 224x224), got '{text}'") from None
    if a < 1 or b < 1:
        raise SurgkitError(f"transform '{op}': sizes must be positive, got '{text}'")
    return a, b


def _interp(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> int:
    import cv2

    shrinking = dst_hw[0] * dst_hw[1] < src_hw[0] * src_hw[1]
    return cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize an RGB image to width x height (area when shrinking, bilinear when enlarging)."""
    import cv2

    if image.shape[1] == width and image.shape[0] == height:
        return image
    return cv2.resize(image, (width, height), interpolation=_interp(image.shape[:2], (height, width)))


def resize_labels(labels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize a class-index map with nearest neighbour (labels are never blended)."""
    import cv2

    if labels.shape[1] == width and labels.shape[0] == height:
        return labels
    return cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)


def black_margin_box(image: np.ndarray, threshold: int = BLACK_THRESHOLD) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the non-black area, bottom/right exclusive.

    grey > threshold, then a 19x19 median filter removes specks and text overlays.
    """
    import cv2

    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    binary = np.where(grey > threshold, 255, 0).astype(np.uint8)
    binary = cv2.medianBlur(binary, BLACK_MEDIAN)
    rows = np.flatnonzero(binary.any(axis=1))
    cols = np.flatnonzero(binary.any(axis=0))
    if rows.size == 0 or cols.size == 0:
        return 0, image.shape[0], 0, image.shape[1]
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def black_crop(image: np.ndarray, threshold: int = BLACK_THRESHOLD) -> np.ndarray:
    top, bottom, left, right = black_margin_box(image, threshold)
    return image[top:bottom, left:right]


def center_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w = image.shape[:2]
    if height > h or width > w:
        raise SurgkitError(f"center_crop={height}x{width} is larger than the {h}x{w} frame")
    top, left = (h - height) // 2, (w - width) // 2
    return image[top : top + height, left : left + width]


def _resize_short(image: np.ndarray, short: int) -> np.ndarray:
    h, w = image.shape[:2]
    if h <= w:
        return resize(image, max(1, round(w * short / h)), short)
    return resize(image, short, max(1, round(h * short / w)))


def _resize_height(image: np.ndarray, height: int) -> np.ndarray:
    h, w = image.shape[:2]
    return resize(image, max(1, round(w * height / h)), height)


@dataclasses.dataclass(frozen=True)
class FrameTransform:
    """A parsed transform chain; ``spec`` is the canonical text stored in manifests."""

    spec: str
    ops: tuple[Callable[[np.ndarray], np.ndarray], ...]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        for op in self.ops:
            image = op(image)
        return np.ascontiguousarray(image)


def parse_transform(spec: str | None) -> FrameTransform:
    """Parse a spec string such as ``"black_crop,resize=224x224"`` (empty/None = identity)."""
    ops: list[Callable[[np.ndarray], np.ndarray]] = []
    canon: list[str] = []
    for raw in (spec or "").split(","):
        item = raw.strip()
        if not item:
            continue
        name, _, arg = item.partition("=")
        name = name.strip().lower()
        arg = arg.strip()
        if name == "black_crop":
            thr = int(arg) if arg else BLACK_THRESHOLD
            ops.append(lambda im, t=thr: black_crop(im, t))
            canon.append(f"black_crop={thr}")
        elif name == "resize":
            w, h = _size(arg, name)
            ops.append(lambda im, w=w, h=h: resize(im, w, h))
            canon.append(f"resize={w}x{h}")
        elif name in ("resize_short", "resize_height"):
            try:
                n = int(arg)
            except ValueError:
                raise SurgkitError(f"transform '{name}': expected an integer, got '{arg}'") from None
            fn = _resize_short if name == "resize_short" else _resize_height
            ops.append(lambda im, n=n, fn=fn: fn(im, n))
            canon.append(f"{name}={n}")
        elif name == "center_crop":
            h, w = _size(arg, name)
            ops.append(lambda im, h=h, w=w: center_crop(im, h, w))
            canon.append(f"center_crop={h}x{w}")
        else:
            raise SurgkitError(
                f"unknown transform '{name}' in '{spec}' "
                "(choose from black_crop, resize, resize_short, resize_height, center_crop)"
            )
    return FrameTransform(spec=",".join(canon), ops=tuple(ops))


PRESETS: dict[str, dict[str, object]] = {
    "surgvista": {
        "fps": 1.0,
        "transform": "black_crop,resize=224x224",
        "format": "png",
        "pattern": "{index:05d}",
    },
    "surgfusion": {
        "fps": 10.0,
        "transform": "resize_short=256,center_crop=224x300,resize=224x224",
        "format": "jpg",
        "pattern": "{index:05d}",
    },
}
