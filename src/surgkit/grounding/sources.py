"""Benchmark data sources: which reader(s) of :mod:`surgkit.data` feed which task.

* instrument task: any dataset with tool boxes - ``cholec80_boxes``, ``copesd`` (and ``cholect50``
  when its JSON carries boxes);
* triplet task: ``cholect45``/``cholect50`` triplet labels joined with a box dataset
  (``--boxes-root``, Cholec80-Boxes by default) on (video number, frame), as in the seed, which
  kept the two videos (42, 43) the datasets share; without ``--boxes-root`` the triplet dataset's
  own boxes are used;

The join, checked against the published layouts:

* video numbers are the same across CAMMA's datasets ("The video IDs (e.g. 1, 2, 5, 80, etc.) are
  consistent across these datasets", CholecT50 ``docs/README-Splits.md``); CholecT45 is the 45
  Cholec80 videos of CholecT50, whose 5 other videos come from Cholec120 (CholecT50 ``README.md``);
* CholecT45/50 frames are images extracted at 1 fps, named by their 0-based index
  (``000023.png`` == 23; CholecT50 ``docs/README-Format.md``);
* Cholec80-Boxes labels frames at 1 Hz and names them ``Video_SS_fffff.png`` with fffff "the frame
  number" (Data 2025, 10(1):7, §2-3); Cholec80 videos are 25 fps (EndoNet, IEEE TMI 2016), whose
  tool labels use 25-fps frame numbers (0, 25, 50, ...). Whether fffff counts 25-fps frames or
  seconds is not stated, so ``--frame-map auto`` (default) reads it from the numbers
  (:func:`infer_frame_map`): multiples of 25 -> ``div25`` (frame // 25 is the 1-fps index
  [inferred: frame k of a 1-fps extraction is frame 25 k]), consecutive numbers -> ``identity``,
  anything else is refused with a request for an explicit ``--frame-map``.
* ``synth``: a synthetic world root written by ``surgkit synth``; its Cholec80-boxes and CholecT50
  layouts are read by the same readers.

This is the one place that knows the readers' layouts; everything else sees
:class:`~surgkit.grounding.frames.GroundingFrame`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from surgkit.errors import SurgkitError
from surgkit.grounding.frames import (
    GroundingFrame,
    frames_from_boxes,
    frames_from_triplets,
    join_frames,
    video_number,
)
from surgkit.utils.inputs import as_dict, read_json
from surgkit.vocab import CHOLEC80_TOOLS, INSTRUMENTS

BOX_DATASETS = ("cholec80_boxes", "copesd", "cholect50")
TRIPLET_DATASETS = ("cholect45", "cholect50")
# Sub-folders of a synthetic world root (written by surgkit.synth).
SYNTH_LAYOUT = {"boxes": "cholec80_boxes", "triplets": "cholect50"}
SYNTH_FPS = 25  # the world's Cholec80 videos (and Cholec80-boxes frame numbers) are 25 fps


@dataclasses.dataclass
class FrameSource:
    """Frames ready for the benchmark, the instrument vocabulary and what happened on the way."""

    frames: list[GroundingFrame]
    vocabulary: list[str]
    notes: list[str]
    join: dict[str, Any] | None = None


def _load(name: str, root: str | Path, **kwargs: Any) -> Any:
    from surgkit.data import load

    return load(name, root, **kwargs)


def frame_mapper(spec: str | None) -> Callable[[int], int] | None:
    """``None``/``identity``, or ``divN`` (box frame number // N, e.g. div25 for 25-fps numbering)."""
    if spec in (None, "", "identity"):
        return None
    if spec.startswith("div") and spec[3:].isdigit() and int(spec[3:]) > 0:
        n = int(spec[3:])
        return lambda f: f // n
    raise SurgkitError(f"unknown frame map '{spec}' (auto, identity or divN, e.g. div25)")


CHOLEC80_FPS = 25


def infer_frame_map(frames: list[GroundingFrame]) -> tuple[str, str]:
    """The frame map of box frames sampled at 1 Hz, read from their numbers, and why.

    25-fps numbering (every number a multiple of 25, e.g. 0, 25, 50) -> ``div25``; 1-fps indices
    (consecutive numbers within a video) -> ``identity``; anything else raises.
    """
    import math

    per_video: dict[str, list[int]] = {}
    for f in frames:
        per_video.setdefault(f.video, []).append(int(f.frame))
    numbers = sorted({n for ns in per_video.values() for n in ns})
    steps = [int(d) for ns in per_video.values() for d in np.diff(sorted(set(ns)))]
    g = math.gcd(*numbers, *steps) if numbers else 0
    shown = ", ".join(map(str, numbers[:5]))
    if steps and g and g % CHOLEC80_FPS == 0:
        return (
            f"div{CHOLEC80_FPS}",
            f"box frame numbers are multiples of {g} ({shown}, ...): 25-fps numbering",
        )
    if steps and min(steps) == 1:
        return "identity", f"box frame numbers are consecutive ({shown}, ...): 1-fps indices"
    raise SurgkitError(
        f"cannot tell the numbering of the box frames ({shown}, ...; greatest common step {g}): "
        "pass --frame-map identity (1-fps indices) or div25 (25-fps frame numbers)"
    )


def _synth_roots(root: Path) -> tuple[Path, Path]:
    boxes, trips = root / SYNTH_LAYOUT["boxes"], root / SYNTH_LAYOUT["triplets"]
    for path in (boxes, trips):
        if not path.exists():
            raise SurgkitError(f"{root}: no {path.name}/ folder (write the world with `surgkit synth`)")
    return boxes, trips


def _attach_1fps_images(frames: list[GroundingFrame], trip_root: Path, fps: int) -> list[GroundingFrame]:
    """Synthetic Cholec80-boxes rows name 25-fps frames of the mp4; the lossless 1-fps PNGs of the
    CholecT50 layout hold the same pixels (frame // fps)."""
    out = []
    for f in frames:
        png = trip_root / "videos" / f"VID{video_number(f.video):02d}" / f"{f.frame // fps:06d}.png"
        out.append(dataclasses.replace(f, image=png) if f.image is None and png.is_file() else f)
    return out


def _attach_synth_masks(frames: list[GroundingFrame], world: Path, fps: int) -> list[GroundingFrame]:
    """Instrument class masks of the world's ``masks`` layout (``<video>/<25-fps frame>_class.png``,
    value = CholecT50 instrument id + 1) as the GT regions of tau-AC / tau-AA."""
    from surgkit.grounding.prompts import normalise_label

    out = []
    for f in frames:
        png = world / "masks" / f"video{video_number(f.video):02d}" / f"{f.frame:06d}_class.png"
        if not png.is_file():
            raise SurgkitError(f"{png}: missing class mask (write the world with the 'masks' layout)")
        masks = {}
        for k, name in enumerate(INSTRUMENTS):
            label = normalise_label(name)
            if label in f.boxes:
                masks[label] = _mask_loader(png, k + 1)
        out.append(dataclasses.replace(f, masks=masks, regions="masks"))
    return out


def _mask_loader(path: Path, value: int) -> Callable[[], Any]:
    def load() -> Any:
        import cv2

        arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if arr is None:
            raise SurgkitError(f"{path}: unreadable mask")
        return arr == value

    return load


def world_splits(root: str | Path) -> dict[str, list[str]]:
    """The laparoscopic video splits of a synthetic world (``world.json``), e.g. {"train": [...], "test": [...]}."""

    path = Path(root) / "world.json"
    if not path.is_file():
        raise SurgkitError(f"{path}: not found (is {root} a world written by `surgkit synth`?)")
    splits = as_dict(read_json(path), path, "top level").get("splits", {})
    return {k: [str(v) for v in vids] for k, vids in splits.get("lap", splits).items()}


def load_frames(
    dataset: str,
    root: str | Path,
    task: str,
    boxes_root: str | Path | None = None,
    boxes_dataset: str = "cholec80_boxes",
    frame_map: str | None = "auto",
    regions: str = "boxes",
) -> FrameSource:
    """Frames of ``dataset`` at ``root`` for ``task`` (instrument or triplet).

    ``regions="masks"`` (synthetic world only) scores tau-AC / tau-AA on the exact instrument masks of
    the world's ``masks`` layout instead of the boxes; ARS always uses the boxes.
    """
    if regions not in ("boxes", "masks"):
        raise SurgkitError(f"unknown regions '{regions}' (boxes or masks)")
    if regions == "masks" and dataset.strip().lower() != "synth":
        raise SurgkitError("--regions masks is available for the synthetic world only")
    name = dataset.strip().lower().replace("-", "_")
    root = Path(root)
    notes: list[str] = []
    if name == "synth":
        box_root, trip_root = _synth_roots(root)
        fps = SYNTH_FPS
        if task == "instrument":
            src = load_frames("cholec80_boxes", box_root, task)
            src.frames = _attach_1fps_images(src.frames, trip_root, fps)
            if regions == "masks":
                src.frames = _attach_synth_masks(src.frames, root, fps)
                src.notes.append(
                    "tau-AC / tau-AA regions: exact instrument masks (masks/<video>/<frame>_class.png)"
                )
            src.notes.append(
                f"synthetic world: box frame numbers are 25-fps; images = CholecT50 1-fps PNG (frame // {fps})"
            )
            return src
        return load_frames(
            "cholect50",
            trip_root,
            task,
            boxes_root=box_root,
            boxes_dataset="cholec80_boxes",
            frame_map=frame_map,
        )
    if task == "instrument":
        if name not in BOX_DATASETS:
            raise SurgkitError(
                f"the instrument task needs boxes: dataset must be one of {', '.join(BOX_DATASETS)}"
            )
        ds = _load(name, root, require_media=False) if name == "cholect50" else _load(name, root)
        frames, vocab = frames_from_boxes(ds)
        if name == "cholect50":
            vocab = list(INSTRUMENTS)
        notes += list(ds.notes) + [f"skipped by reader: {s.item}: {s.reason}" for s in ds.skipped]
        return FrameSource(frames, vocab, notes)
    if task != "triplet":
        raise SurgkitError(f"unknown task '{task}' (instrument or triplet)")
    if name not in TRIPLET_DATASETS:
        raise SurgkitError(
            f"the triplet task needs triplet labels: dataset must be one of {', '.join(TRIPLET_DATASETS)}"
        )
    ds = _load(name, root, require_media=False)
    notes += list(ds.notes)
    trip_frames = frames_from_triplets(ds)
    if boxes_root is None:
        box_frames, _ = frames_from_boxes(ds)
        notes.append(f"boxes from {name}'s own label files")
    else:
        bds = _load(boxes_dataset, boxes_root)
        box_frames, _ = frames_from_boxes(bds)
        notes += list(bds.notes)
    if not box_frames:
        raise SurgkitError(f"{boxes_root or root}: no box annotations to join with the triplet labels")
    how = f"--frame-map {frame_map}"
    if frame_map in (None, "auto"):
        frame_map, why = infer_frame_map(box_frames)
        how = f"--frame-map auto: {why}"
    joined, report = join_frames(box_frames, trip_frames, frame_mapper(frame_map))
    report.frame_map = str(frame_map)
    notes.append(f"{report.describe()} ({how})")
    if not joined:
        raise SurgkitError(
            f"{root}: the join found no frame with both triplet labels and boxes: {report.explain()}"
        )
    return FrameSource(joined, list(INSTRUMENTS), notes, report.to_dict())


def cholec80_tool_vocabulary() -> list[str]:
    return list(CHOLEC80_TOOLS)
