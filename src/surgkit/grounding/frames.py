"""Benchmark frames: one image with its ground-truth instruments, regions and triplets.

:class:`GroundingFrame` is what the benchmark consumes. It is built from the readers of
:mod:`surgkit.data` (the same readers serve real and synthetic data):

* :func:`frames_from_boxes` - Cholec80-boxes and CoPESD: tool boxes per frame (instrument task);
* :func:`frames_from_triplets` - CholecT45/CholecT50: triplet labels per frame;
* :func:`join_frames` - the seed's pairing of CholecT45 triplets with Cholec80-boxes boxes on the
  (video number, frame) pairs the two share; :class:`JoinReport` says how many frames each side had
  and how many the join kept, per video.

Labels are normalised (:func:`surgkit.grounding.prompts.normalise_label`), so Cholec80's
``Grasper``/``SpecimenBag`` and CholecT50's ``grasper`` meet as ``grasper``/``specimen bag``.
Boxes are (x0, y0, x1, y1) in frame pixels or normalised [0, 1] (``unit``); a pixel (i, j) belongs
to a box when its centre (j + 0.5, i + 0.5) lies inside it.
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from surgkit.errors import SurgkitError
from surgkit.grounding.prompts import normalise_label
from surgkit.vocab import INSTRUMENTS, TARGETS, TRIPLET_COMPONENTS, VERBS

BoxXYXY = tuple[float, float, float, float]


@dataclasses.dataclass
class GroundingFrame:
    """One benchmark image. ``image`` is a file path, an RGB uint8 array or a loader returning one."""

    video: str
    frame: int
    image: Path | np.ndarray | Callable[[], np.ndarray] | None
    boxes: dict[str, list[BoxXYXY]] = dataclasses.field(default_factory=dict)
    unit: str = "pixel"  # of the boxes: "pixel" or "normalized"
    masks: dict[str, Callable[[], np.ndarray] | np.ndarray] = dataclasses.field(default_factory=dict)
    triplets: list[tuple[int, int, int]] = dataclasses.field(default_factory=list)  # vocab ids
    regions: str = "any"  # which GT regions tau-AC / tau-AA use: any, boxes or masks
    source: str = ""  # where the annotation came from (file:line) for error messages

    @property
    def key(self) -> str:
        return f"{self.video}/{self.frame}"

    @property
    def instruments(self) -> list[str]:
        """Normalised labels of the annotated instruments (boxes or masks), sorted."""
        return sorted(set(self.boxes) | set(self.masks))

    def where(self) -> str:
        return self.source or (str(self.image) if isinstance(self.image, Path) else self.key)

    def load_image(self) -> np.ndarray:
        """The frame as an RGB uint8 array (H, W, 3)."""
        img = self.image
        if callable(img) and not isinstance(img, np.ndarray):
            img = img()
        if isinstance(img, (str, Path)):
            import cv2

            arr = cv2.imread(str(img), cv2.IMREAD_COLOR)
            if arr is None:
                raise SurgkitError(f"{img}: missing or unreadable image for frame {self.key}")
            return np.ascontiguousarray(arr[:, :, ::-1])
        if img is None:
            raise SurgkitError(f"{self.where()}: frame {self.key} has no image")
        arr = np.asarray(img)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise SurgkitError(
                f"{self.where()}: frame {self.key} must be RGB uint8 (H, W, 3), got {arr.shape}"
            )
        return arr

    def region_masks(self, hw: tuple[int, int], source: str = "any") -> dict[str, np.ndarray]:
        """Per-label bool masks at frame size.

        ``source``: ``boxes`` (rasterised boxes only), ``masks`` (masks only, falling back to boxes for
        labels without a mask) or ``any`` (union of both).
        """
        if source not in ("any", "boxes", "masks"):
            raise SurgkitError(f"unknown region source '{source}' (any, boxes or masks)")
        out: dict[str, np.ndarray] = {}
        for label, boxes in self.boxes.items():
            if source == "masks" and label in self.masks:
                continue
            m = np.zeros(hw, dtype=bool)
            for box in boxes:
                m |= rasterise_box(box, hw, self.unit)
            out[label] = m
        for label, mask in self.masks.items() if source != "boxes" else ():
            arr = np.asarray(mask() if callable(mask) else mask).astype(bool)
            if arr.shape != tuple(hw):
                raise SurgkitError(f"{self.where()}: mask of '{label}' is {arr.shape}, frame is {tuple(hw)}")
            out[label] = out.get(label, np.zeros(hw, dtype=bool)) | arr
        return out


def rasterise_box(box: Sequence[float], hw: tuple[int, int], unit: str = "pixel") -> np.ndarray:
    """Bool mask of the pixels whose centres lie in [x0, x1) x [y0, y1)."""
    h, w = hw
    x0, y0, x1, y1 = (float(v) for v in box)
    if unit == "normalized":
        x0, x1, y0, y1 = x0 * w, x1 * w, y0 * h, y1 * h
    elif unit != "pixel":
        raise SurgkitError(f"unknown box unit '{unit}' (pixel or normalized)")
    cols = np.arange(w) + 0.5
    rows = np.arange(h) + 0.5
    return ((rows >= y0) & (rows < y1))[:, None] & ((cols >= x0) & (cols < x1))[None, :]


def _image_for(ds: Any, video: str, frame: int) -> Path | None:
    v = ds.videos.get(video)
    if v is None:
        return None
    files = v.extra.get("frames") if isinstance(v.extra, dict) else None
    if files and frame in files:
        return Path(files[frame])
    if v.path is not None and Path(v.path).is_dir():
        for name in (f"{frame:06d}.png", f"{frame:06d}.jpg", f"{frame}.png", f"{frame}.jpg"):
            if (Path(v.path) / name).is_file():
                return Path(v.path) / name
    return None


def frames_from_boxes(ds: Any) -> tuple[list[GroundingFrame], list[str]]:
    """Frames with tool boxes (Cholec80-boxes, CoPESD, or any reader filling ``Dataset.boxes``).

    Returns the frames (sorted by video, frame) and the label vocabulary: the dataset's ``tool``
    classes when it declares them, else the labels found. CoPESD images come from its VQA records.
    """
    images: dict[tuple[str, int], Path] = {}
    for rec in getattr(ds, "vqa", []):
        stem = str(rec.frame)
        if rec.image is not None and stem.isdigit():
            images[(rec.video_id, int(stem))] = Path(rec.image)
    grouped: dict[tuple[str, int], GroundingFrame] = {}
    for box in ds.boxes:
        key = (box.video_id, int(box.frame))
        fr = grouped.get(key)
        if fr is None:
            image = images.get(key) or _image_for(ds, *key)
            line = box.extra.get("line") if isinstance(box.extra, dict) else None
            src = f"{ds.root}:{line}" if line is not None else f"{ds.root} ({box.video_id}/{box.frame})"
            fr = grouped[key] = GroundingFrame(box.video_id, int(box.frame), image, unit=box.unit, source=src)
        if box.unit != fr.unit:
            raise SurgkitError(f"{fr.where()}: frame {fr.key} mixes pixel and normalised boxes")
        label = normalise_label(box.label)
        xyxy = tuple(float(v) for v in box.xyxy)
        if xyxy not in fr.boxes.setdefault(label, []):  # CoPESD repeats a box in several answers
            fr.boxes[label].append(xyxy)  # type: ignore[arg-type]
    frames = [grouped[k] for k in sorted(grouped, key=lambda k: (k[0], k[1]))]
    classes = getattr(ds, "classes", {}).get("tool")
    vocab = (
        [normalise_label(c) for c in classes] if classes else sorted({lb for f in frames for lb in f.boxes})
    )
    return frames, vocab


def frames_from_triplets(ds: Any, keep_empty: bool = False) -> list[GroundingFrame]:
    """Frames with CholecT45/50 triplet labels (frames without any triplet dropped unless ``keep_empty``)."""
    frames = []
    for vid, labels in ds.triplets.items():
        for row, frame in enumerate(labels.frames.tolist()):
            trip = [TRIPLET_COMPONENTS[t] for t in labels.ids(row)]
            if not trip and not keep_empty:
                continue
            frames.append(GroundingFrame(vid, int(frame), _image_for(ds, vid, int(frame)), triplets=trip,
                                         source=f"{ds.root} ({vid} frame {frame})"))  # fmt: skip
    return frames


def video_number(video: str) -> int:
    """Trailing number of a video id: ``video42``, ``VID42`` and ``42`` all give 42."""
    m = re.search(r"(\d+)$", str(video))
    if not m:
        raise SurgkitError(f"no video number in the id {video!r}")
    return int(m.group(1))


@dataclasses.dataclass
class JoinReport:
    """Frame counts of a join, per video number: (left frames, right frames, kept), and the frame
    ranges of both sides (for the error message of a join that keeps nothing)."""

    per_video: dict[int, tuple[int, int, int]]
    ranges: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)
    frame_map: str = "identity"

    @property
    def kept(self) -> int:
        return sum(v[2] for v in self.per_video.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "kept": self.kept,
            "left": sum(v[0] for v in self.per_video.values()),
            "right": sum(v[1] for v in self.per_video.values()),
            "videos_kept": sorted(k for k, v in self.per_video.items() if v[2]),
            "frame_map": self.frame_map,
            "per_video": {
                str(k): {"left": a, "right": b, "kept": c} for k, (a, b, c) in sorted(self.per_video.items())
            },
        }

    def describe(self) -> str:
        d = self.to_dict()
        return (
            f"join kept {d['kept']} frames of {d['left']} (boxes) / {d['right']} (triplets) "
            f"in {len(d['videos_kept'])} shared videos"
        )

    def explain(self) -> str:
        """Why a join kept nothing: the videos of each side, or the frame ranges of shared videos."""
        left = sorted(k for k, v in self.per_video.items() if v[0])
        right = sorted(k for k, v in self.per_video.items() if v[1])
        shared = sorted(set(left) & set(right))
        if not shared:
            return f"no shared video numbers (boxes: {_ids(left)}; triplets: {_ids(right)})"
        lo, hi = self.ranges.get("left", (0, 0))
        tlo, thi = self.ranges.get("right", (0, 0))
        return (
            f"videos {_ids(shared)} are on both sides but no frame matches after --frame-map {self.frame_map} "
            f"(box frames {lo}..{hi} map to {self.ranges.get('mapped', (lo, hi))[0]}..{self.ranges.get('mapped', (lo, hi))[1]}, "
            f"triplet frames {tlo}..{thi}); check the frame numbering"
        )


def join_frames(
    boxes: Iterable[GroundingFrame],
    triplets: Iterable[GroundingFrame],
    frame_map: Callable[[int], int] | None = None,
) -> tuple[list[GroundingFrame], JoinReport]:
    """Join box frames and triplet frames on (video number, frame).

    ``frame_map`` converts a box frame number into the triplet dataset's frame index (default:
    identity; e.g. ``lambda f: f // 25`` for 25-fps numbering). The joined frame keeps the box
    side's image (falling back to the triplet side's), boxes and masks, and the triplets.
    """
    fmap = frame_map or (lambda f: f)
    right = {(video_number(f.video), f.frame): f for f in triplets}
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    for vnum, _ in right:
        counts[vnum][1] += 1
    out, left_frames, mapped = [], [], []
    for f in boxes:
        key = (video_number(f.video), fmap(f.frame))
        left_frames.append(f.frame)
        mapped.append(key[1])
        counts[key[0]][0] += 1
        other = right.get(key)
        if other is None:
            continue
        counts[key[0]][2] += 1
        out.append(dataclasses.replace(f, triplets=list(other.triplets), image=f.image or other.image,
                                       source=f"{f.where()} + {other.where()}"))  # fmt: skip
    ranges = {name: (min(v), max(v)) for name, v in
              (("left", left_frames), ("mapped", mapped), ("right", [k[1] for k in right])) if v}  # fmt: skip
    return out, JoinReport({k: tuple(v) for k, v in counts.items()}, ranges)  # type: ignore[misc]


def _ids(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers[:10])) + (" ..." if len(numbers) > 10 else "") if numbers else "none"


def triplet_names(comp: tuple[int, int, int]) -> tuple[str, str, str]:
    """Normalised (instrument, verb, target) names of a component triple of vocab ids."""
    i, v, t = comp
    return normalise_label(INSTRUMENTS[i]), normalise_label(VERBS[v]), normalise_label(TARGETS[t])
