"""Box coordinate frames for the reasoning records and their converters.

The one internal frame (spec reasoning §1.2) is **absolute pixel xyxy, floats, 0-based, origin
top-left, x2/y2 exclusive, in the stored image**. A pixel with 0-based column ``c`` covers
``[c, c + 1)``, so a box covering columns 10..19 is ``x1 = 10, x2 = 20`` and has width 10.

Converters to and from the frames prompts and datasets use:

- ``pixel``: the internal frame itself (absolute pixels of the stored image).
- ``norm``: normalised ``[0, 1]`` xyxy (internal / (W, H)).
- ``norm1000``: Qwen2-VL style integers in ``[0, 1000)`` (round(internal / (W, H) * 1000)).
- ``input``: Qwen2.5-VL native, absolute pixels **of the resized model input** (sides multiples of 28
  within the processor's min/max pixels); needs the input size.
- VQLA legacy pixel: integer 1-based inclusive xyxy (EndoVis18/17-VQLA label files).
- VQLA legacy ``cxcywh``: what the Surgical-VQLA loader trains on: subtract 1 from all four corners,
  convert to centre/size, divide by (1280, 1024, 1280, 1024). Note that this quirk measures the width
  as ``x2 - x1`` of the *inclusive* corners (one pixel less than the true width).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from surgkit.errors import SurgkitError

Box = tuple[float, float, float, float]
FRAMES = ("pixel", "norm", "norm1000", "input")
VQLA_LEGACY_SIZE = (1280, 1024)


def as_box(values: Sequence[float]) -> Box:
    """Four finite floats, or a :class:`SurgkitError` saying what is wrong."""
    if len(values) != 4:
        raise SurgkitError(f"a box needs 4 numbers, got {len(values)}: {list(values)}")
    out = tuple(float(v) for v in values)
    if not all(math.isfinite(v) for v in out):
        raise SurgkitError(f"box has a non-finite coordinate: {list(values)}")
    return out  # type: ignore[return-value]


def is_valid(box: Box | None) -> bool:
    """True for a non-degenerate box (x2 > x1 and y2 > y1)."""
    return box is not None and box[2] > box[0] and box[3] > box[1]


def clip_box(box: Box, width: float, height: float) -> Box:
    """Clip to the image ``[0, W] x [0, H]`` (may make the box degenerate)."""
    x1, y1, x2, y2 = box
    return (
        min(max(x1, 0.0), width),
        min(max(y1, 0.0), height),
        min(max(x2, 0.0), width),
        min(max(y2, 0.0), height),
    )


def inside_image(box: Box, width: float, height: float, tol: float = 1e-6) -> bool:
    """True if the box lies within the image and is not degenerate."""
    x1, y1, x2, y2 = box
    return is_valid(box) and x1 >= -tol and y1 >= -tol and x2 <= width + tol and y2 <= height + tol


def iou(a: Box | None, b: Box | None) -> float:
    """True IoU of two boxes in the same frame (exclusive corners, no +1; 0 if either is invalid).

    IoU = |A ∩ B| / |A ∪ B| with |A ∩ B| = max(0, min(x2) - max(x1)) * max(0, min(y2) - max(y1)).
    """
    if not (is_valid(a) and is_valid(b)):
        return 0.0
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


# ---------------------------------------------------------------------------------------- frames
def to_frame(
    box: Box, frame: str, width: float, height: float, input_size: tuple[int, int] | None = None
) -> Box:
    """Internal pixel box -> ``frame`` (one of :data:`FRAMES`). ``input_size`` = (w, h) for ``input``."""
    x1, y1, x2, y2 = box
    if frame == "pixel":
        return box
    if frame == "norm":
        return (x1 / width, y1 / height, x2 / width, y2 / height)
    if frame == "norm1000":
        return tuple(
            float(round(v))
            for v in (x1 / width * 1000, y1 / height * 1000, x2 / width * 1000, y2 / height * 1000)
        )  # type: ignore[return-value]
    if frame == "input":
        iw, ih = _need_input(input_size)
        return tuple(
            float(round(v)) for v in (x1 * iw / width, y1 * ih / height, x2 * iw / width, y2 * ih / height)
        )  # type: ignore[return-value]
    raise SurgkitError(f"unknown box frame '{frame}' (choose from {', '.join(FRAMES)})")


def from_frame(
    box: Box, frame: str, width: float, height: float, input_size: tuple[int, int] | None = None
) -> Box:
    """A box given in ``frame`` -> internal pixel frame (inverse of :func:`to_frame` up to rounding)."""
    x1, y1, x2, y2 = box
    if frame == "pixel":
        return box
    if frame == "norm":
        return (x1 * width, y1 * height, x2 * width, y2 * height)
    if frame == "norm1000":
        return (x1 * width / 1000, y1 * height / 1000, x2 * width / 1000, y2 * height / 1000)
    if frame == "input":
        iw, ih = _need_input(input_size)
        return (x1 * width / iw, y1 * height / ih, x2 * width / iw, y2 * height / ih)
    raise SurgkitError(f"unknown box frame '{frame}' (choose from {', '.join(FRAMES)})")


def _need_input(input_size: tuple[int, int] | None) -> tuple[int, int]:
    if not input_size:
        raise SurgkitError("box frame 'input' needs the model-input size (width, height)")
    return int(input_size[0]), int(input_size[1])


def qwen25_input_size(
    width: int, height: int, factor: int = 28, min_pixels: int = 56 * 56, max_pixels: int = 28 * 28 * 1280
) -> tuple[int, int]:
    """Size of the resized model input of Qwen2-VL/Qwen2.5-VL's processor (``smart_resize``), as (w, h).

    Each side is rounded to a multiple of ``factor`` (patch 14 x merge 2); the area is scaled into
    ``[min_pixels, max_pixels]`` keeping the aspect ratio. Checked against the real processor in the
    tests and at run time (:func:`surgkit.reasoning.vlm.check_resize`).
    """
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return int(w_bar), int(h_bar)


# ------------------------------------------------------------------------------------ VQLA legacy
def from_vqla_pixels(box: Sequence[float]) -> Box:
    """EndoVis-VQLA label box (integer, 1-based, inclusive xyxy) -> internal pixel frame.

    Inclusive 1-based columns ``x1..x2`` are 0-based ``x1-1 .. x2-1``, i.e. exclusive ``[x1-1, x2)``.
    """
    x1, y1, x2, y2 = as_box(box)
    return (x1 - 1.0, y1 - 1.0, x2, y2)


def to_vqla_pixels(box: Box) -> tuple[int, int, int, int]:
    """Internal pixel frame -> EndoVis-VQLA 1-based inclusive integer xyxy (inverse of the above)."""
    x1, y1, x2, y2 = box
    return (int(round(x1)) + 1, int(round(y1)) + 1, int(round(x2)), int(round(y2)))


def vqla_legacy_cxcywh(box_1based: Sequence[float], size: tuple[int, int] = VQLA_LEGACY_SIZE) -> Box:
    """The Surgical-VQLA loader's target: (x-1) corners -> cx, cy, w, h / (1280, 1024, 1280, 1024)."""
    x1, y1, x2, y2 = (v - 1.0 for v in as_box(box_1based))
    w, h = size
    return ((x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h)


def vqla_legacy_cxcywh_to_norm_xyxy(box: Box) -> Box:
    """Legacy normalised cx, cy, w, h -> normalised xyxy, as the VQLA evaluation does before its mIoU."""
    cx, cy, w, h = box
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


# ------------------------------------------------------------------------------------ positions
# The one definition of image regions every position word refers to (templates, the chain parser,
# the validator and the coherence reward all use it). A region is a half-open rectangle of the
# normalised image, [x0, x1) x [y0, y1) (the last row/column is closed at 1), and a position claim
# about an object agrees with its box iff the box centre lies in the region.
#
# - the 3x3 grid (chains, Level 1): rows upper / middle / lower, columns left / centre / right;
#   cell names "upper left", "upper centre", ..., "centre" (the middle cell), "lower right";
# - the 2x2 quadrants (Surgical-VQLA location answers): "left-top", "right-top", "left-bottom",
#   "right-bottom" -- left iff x centre < W/2, top iff y centre < H/2.
GRID_ROWS = ("upper", "middle", "lower")
GRID_COLS = ("left", "centre", "right")
QUADRANTS = ("left-top", "right-top", "left-bottom", "right-bottom")


@dataclasses.dataclass(frozen=True)
class Region:
    """A named rectangle of the normalised image: ``[x0, x1) x [y0, y1)``."""

    name: str
    x0: float
    x1: float
    y0: float
    y1: float

    def contains(self, box: Box, width: float, height: float) -> bool:
        """True iff the centre of ``box`` lies in the region (half-open; 1.0 belongs to the last cell)."""
        cx = (box[0] + box[2]) / 2 / width
        cy = (box[1] + box[3]) / 2 / height
        return _inside(cx, self.x0, self.x1) and _inside(cy, self.y0, self.y1)


def _inside(v: float, lo: float, hi: float) -> bool:
    return lo <= v < hi or (hi >= 1.0 and v >= 1.0 and lo < 1.0)


def grid_region(row: int, col: int) -> Region:
    """The 3x3 grid cell (row, col) as a region."""
    return Region(grid_name(row, col), col / 3, (col + 1) / 3, row / 3, (row + 1) / 3)


def quadrant_region(name: str) -> Region:
    """A Surgical-VQLA quadrant ('left-top', ...) as a region."""
    if name not in QUADRANTS:
        raise SurgkitError(f"unknown quadrant '{name}' (choose from {', '.join(QUADRANTS)})")
    horiz, vert = name.split("-")
    x0 = 0.0 if horiz == "left" else 0.5
    y0 = 0.0 if vert == "top" else 0.5
    return Region(name, x0, x0 + 0.5, y0, y0 + 0.5)


def grid_cell(box: Box, width: float, height: float) -> tuple[int, int]:
    """(row, col) of the box centre on the 3x3 grid (0..2 each); the cell whose region contains it."""
    cx = (box[0] + box[2]) / 2 / width
    cy = (box[1] + box[3]) / 2 / height
    return min(max(int(cy * 3), 0), 2), min(max(int(cx * 3), 0), 2)


def grid_name(row: int, col: int) -> str:
    """'upper left', 'centre', 'lower right', 'middle left', 'upper centre' ... of a grid cell."""
    if row == 1 and col == 1:
        return "centre"
    return f"{GRID_ROWS[row]} {GRID_COLS[col]}"


def quadrant(box: Box, width: float, height: float) -> str:
    """VQLA location answer of a box: left/right by x centre < W/2, top/bottom by y centre < H/2."""
    for name in QUADRANTS:
        if quadrant_region(name).contains(box, width, height):
            return name
    return "right-bottom"  # a centre outside the image (not reached for valid boxes)
