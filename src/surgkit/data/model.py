"""The common data model every reader produces and every downstream module consumes.

A reader turns one dataset, as distributed, into a :class:`Dataset`: the videos (or frame folders)
plus per-task annotation records. Frame indices are always indices of the *source* media as
distributed (e.g. 25-fps frame numbers for Cholec80 videos, 0-based), together with the frame rate
they refer to, so nothing is lost by a resampling convention. Anything a reader cannot use is listed
in :attr:`Dataset.skipped` with the reason: readers never drop data silently.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from surgkit.vocab import INSTRUMENTS, TARGETS, TRIPLET_COMPONENTS, VERBS


@dataclasses.dataclass
class Video:
    """One recording: a video file or a folder of frames.

    ``num_frames`` and ``fps`` are those of the media as distributed, when the reader knows them
    (annotation files often tell; otherwise ``None`` until the media is opened).
    """

    id: str
    path: Path | None = None
    fps: float | None = None
    num_frames: int | None = None
    subject: str | None = None  # surgeon / user id when known
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def duration_s(self) -> float | None:
        if self.fps and self.num_frames is not None:
            return self.num_frames / self.fps
        return None


@dataclasses.dataclass
class Skipped:
    """An item a reader did not load, and why (e.g. a video without annotation file)."""

    item: str
    reason: str
    path: Path | None = None


@dataclasses.dataclass
class PhaseLabels:
    """Phase id per annotated frame. ``frames`` are source frame indices, ``phases`` ids into ``names``."""

    video_id: str
    frames: np.ndarray  # (N,) int64, increasing
    phases: np.ndarray  # (N,) int64
    names: tuple[str, ...]
    fps: float | None = None  # frame rate the frame indices refer to
    num_source_frames: int | None = None  # rows in the file before any subsampling


@dataclasses.dataclass
class ToolLabels:
    """Binary tool presence per annotated frame, columns in ``names`` order."""

    video_id: str
    frames: np.ndarray  # (N,) int64
    presence: np.ndarray  # (N, K) uint8
    names: tuple[str, ...]
    fps: float | None = None


@dataclasses.dataclass
class TripletLabels:
    """CholecT50-style labels per frame: 100-dim triplet multi-hot plus its components.

    The component vectors are derived from the triplets through ``surgkit.vocab.TRIPLET_COMPONENTS``
    unless the dataset ships its own component files (CholecT45 layout), in which case they are read.
    ``phases`` is -1 where unknown.
    """

    video_id: str
    frames: np.ndarray  # (N,) int64
    triplets: np.ndarray  # (N, 100) uint8
    instruments: np.ndarray  # (N, 6) uint8
    verbs: np.ndarray  # (N, 10) uint8
    targets: np.ndarray  # (N, 15) uint8
    phases: np.ndarray  # (N,) int64
    fps: float | None = 1.0

    @classmethod
    def from_triplets(
        cls, video_id: str, frames: np.ndarray, triplets: np.ndarray, phases: np.ndarray | None = None
    ) -> TripletLabels:
        """Build component multi-hots from the triplet multi-hot (a component is on if any triplet using it is)."""
        triplets = np.asarray(triplets, dtype=np.uint8)
        comp = np.asarray(TRIPLET_COMPONENTS, dtype=np.int64)
        n = len(frames)
        out = [np.zeros((n, size), dtype=np.uint8) for size in (len(INSTRUMENTS), len(VERBS), len(TARGETS))]
        rows, cols = np.nonzero(triplets)
        for k, arr in enumerate(out):
            arr[rows, comp[cols, k]] = 1
        if phases is None:
            phases = np.full(n, -1, dtype=np.int64)
        return cls(video_id, np.asarray(frames, np.int64), triplets, *out, np.asarray(phases, np.int64))

    def ids(self, row: int) -> list[int]:
        """Sorted triplet ids active in ``row``."""
        return np.flatnonzero(self.triplets[row]).tolist()


@dataclasses.dataclass
class Box:
    """One box on one frame. ``xywh`` is top-left x, y, width, height in ``unit`` ('pixel' or 'normalized')."""

    video_id: str
    frame: int
    label: str
    xywh: tuple[float, float, float, float]
    unit: str = "pixel"
    instance: int | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        x, y, w, h = self.xywh
        return (x, y, x + w, y + h)


@dataclasses.dataclass
class MaskRef:
    """A mask file for one frame: 'semantic' (class id per pixel) or 'instance'."""

    video_id: str
    frame: int
    path: Path
    kind: str = "semantic"


@dataclasses.dataclass
class Segment:
    """A labelled time interval in source frames [start, end] inclusive (e.g. a JIGSAWS gesture)."""

    video_id: str
    start: int
    end: int
    label: str


@dataclasses.dataclass
class Rating:
    """One rater's scores of one video or segment: item name -> score, and their total."""

    rater: str | None
    items: dict[str, float]
    total: float


@dataclasses.dataclass
class ScoredSegment:
    """A scored part of a video (e.g. one suturing phase of a vaginal-vault closure), times in seconds."""

    name: str
    start_s: float | None
    end_s: float | None
    ratings: list[Rating]

    @property
    def score(self) -> float:
        """Mean total over raters."""
        return float(np.mean([r.total for r in self.ratings]))


@dataclasses.dataclass
class SkillScore:
    """Skill assessment of one video: global score (GRS / M-GEARS total), item scores, segments.

    ``score`` is the global score (JIGSAWS GRS = sum of the 6 OSATS items, 6-30); ``items`` the item
    scores in the scale's order; ``level`` a self-proclaimed level (JIGSAWS N/I/E) if any.
    """

    video_id: str
    scale: str  # "OSATS-GRS" or "M-GEARS" ...
    score: float
    items: dict[str, float] = dataclasses.field(default_factory=dict)
    level: str | None = None
    segments: list[ScoredSegment] = dataclasses.field(default_factory=list)
    ratings: list[Rating] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class CVSLabel:
    """Critical-view-of-safety label of a frame (start == end) or an interval of source frames.

    ``criteria`` are the 3 criteria in ``surgkit.vocab.CVS_CRITERIA`` order. Endoscapes stores the mean of
    3 annotators in {0, 1/3, 2/3, 1}; Cholec80-CVS stores a 0/1/2 score per criterion.
    """

    video_id: str
    start: int
    end: int
    criteria: tuple[float, float, float]
    scale: str = "mean_of_annotators"  # or "0-2"
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ClipLabel:
    """A whole-clip class label (SurgicalActions160)."""

    video_id: str
    label: int
    name: str | None = None


@dataclasses.dataclass
class VQARecord:
    """One question-answer pair about one frame, with the answer's box when given.

    ``box_xyxy`` is as stored in the file (EndoVis-VQLA: integer pixels, 1-based inclusive;
    CoPESD: normalised). ``answer_id`` indexes the dataset's answer vocabulary when it has one.
    """

    video_id: str
    frame: str
    question: str
    answer: str
    answer_id: int | None = None
    box_xyxy: tuple[float, float, float, float] | None = None
    image: Path | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Dataset:
    """Everything a reader found in one dataset root.

    ``split_scheme`` names the official split that applies (see :mod:`surgkit.data.splits`);
    ``splits_files`` keeps any split lists shipped with the data (e.g. Endoscapes ``*_vids.txt``).
    """

    name: str
    root: Path
    videos: dict[str, Video] = dataclasses.field(default_factory=dict)
    phases: dict[str, PhaseLabels] = dataclasses.field(default_factory=dict)
    tools: dict[str, ToolLabels] = dataclasses.field(default_factory=dict)
    triplets: dict[str, TripletLabels] = dataclasses.field(default_factory=dict)
    boxes: list[Box] = dataclasses.field(default_factory=list)
    masks: list[MaskRef] = dataclasses.field(default_factory=list)
    segments: list[Segment] = dataclasses.field(default_factory=list)
    skill: dict[str, SkillScore] = dataclasses.field(default_factory=dict)
    cvs: list[CVSLabel] = dataclasses.field(default_factory=list)
    clips: dict[str, ClipLabel] = dataclasses.field(default_factory=dict)
    vqa: list[VQARecord] = dataclasses.field(default_factory=list)
    classes: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    split_scheme: str | None = None
    split_files: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    skipped: list[Skipped] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def skip(self, item: str, reason: str, path: Path | None = None) -> None:
        self.skipped.append(Skipped(item, reason, path))

    @property
    def video_ids(self) -> list[str]:
        return list(self.videos)

    def subjects(self) -> dict[str, str | None]:
        """Video id -> surgeon/subject (None where unknown)."""
        return {vid: v.subject for vid, v in self.videos.items()}

    def counts(self) -> dict[str, int]:
        """Number of records per annotation kind (for summaries)."""
        out = {"videos": len(self.videos)}
        for name in ("phases", "tools", "triplets", "skill", "clips"):
            out[name] = len(getattr(self, name))
        for name in ("boxes", "masks", "segments", "cvs", "vqa"):
            out[name] = len(getattr(self, name))
        out["labelled_frames"] = int(
            sum(len(p.frames) for p in self.phases.values())
            + sum(len(t.frames) for t in self.triplets.values())
        )
        out["skipped"] = len(self.skipped)
        return {k: v for k, v in out.items() if v or k in ("videos", "skipped")}

    def subset(self, ids: Iterable[str]) -> Dataset:
        """A shallow copy restricted to the given video ids (annotations follow their video)."""
        keep = set(ids)
        sub = dataclasses.replace(self)
        sub.videos = {k: v for k, v in self.videos.items() if k in keep}
        for name in ("phases", "tools", "triplets", "skill", "clips"):
            setattr(sub, name, {k: v for k, v in getattr(self, name).items() if k in keep})
        for name in ("boxes", "masks", "segments", "cvs", "vqa"):
            setattr(sub, name, [r for r in getattr(self, name) if r.video_id in keep])
        return sub
