"""Per-video plans: everything about a video except its pixels.

A :class:`VideoPlan` holds small per-frame arrays (a few floats per frame and instrument):
phase, camera, smoke, blur, lighting, background state, CVS, and for each instrument *slot*
(port) its class, tip path, jaw opening and planned triplet. Rendering a frame
(:mod:`surgkit.synth.render`) needs only the plan and the frame index, so memory does not grow
with video length.

Two kinds of plan:

* ``lap``: a laparoscopic cholecystectomy (Cholec80/CholecT50/Endoscapes/VQLA layouts);
  3 slots (left = assisting grasper, right = operating instrument, assist = third port);
* ``bench``: a JIGSAWS-like dry-lab trial (Suturing, Knot_Tying, Needle_Passing); 2 slots
  (left and right needle drivers, drawn and labelled as the CholecT50 class ``grasper``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.ndimage import distance_transform_edt, gaussian_filter1d

from surgkit.synth.anatomy import BenchScene, CanvasKey, LapAnatomy
from surgkit.synth.motion import TrackBuilder, TrackStats
from surgkit.synth.skill import SkillMetrics, SkillScores, Surgeon
from surgkit.synth.workflow import (
    VERB_MOTION,
)
from surgkit.vocab import INSTRUMENTS, TARGETS, TRIPLET_COMPONENTS, VERBS

LAP_VIEW = 0.55  # view width as a fraction of the world at zoom 1
BENCH_VIEW = 0.8
VIEW_MARGIN = 0.02  # fraction of the frame width a tip must be inside the view to count as "in view"
GRASPER = INSTRUMENTS.index("grasper")


@dataclasses.dataclass
class SlotTrack:
    """One instrument port: per-frame class (-1 = not inserted), tip (world px), jaw, planned triplet."""

    name: str
    port: np.ndarray
    depth: int  # drawing order: higher is nearer the camera (drawn later, occludes)
    cls: np.ndarray
    tip: np.ndarray
    jaw: np.ndarray
    planned: np.ndarray  # triplet id being performed (-1 none); bench: -1
    stats: TrackStats


@dataclasses.dataclass
class VideoPlan:
    """The full description of one synthetic video (see the module docstring)."""

    kind: str  # "lap" | "bench"
    name: str  # e.g. "video01" or "Suturing_B001"
    index: int
    fps: float
    width: int
    height: int
    world_size: int
    view_fraction: float
    circular: bool
    surgeon: Surgeon
    trial_skill: float
    task: str | None
    trial: int | None
    scene: LapAnatomy | BenchScene
    phase: np.ndarray  # int8 (-1 for bench)
    phase_order: tuple[int, ...]
    gestures: list[tuple[int, int, str]]  # (start, end) 0-based inclusive, gesture label
    camera: np.ndarray  # (T, 3): centre x, y (world px), zoom
    smoke: np.ndarray
    blur: np.ndarray  # (T, 2): length px, angle rad
    gain: np.ndarray
    keys: list[CanvasKey]
    key_index: np.ndarray
    stage: np.ndarray
    exposure: np.ndarray  # (T, 3) visible CVS exposure in [0, 1]
    cvs: np.ndarray  # (T, 3) mean of 3 annotators, in {0, 1/3, 2/3, 1}
    slots: list[SlotTrack]
    active: np.ndarray  # (T, K) planned triplet is in contact with its target, tip in view
    in_view: np.ndarray  # (T, K) tip inside the view
    metrics: SkillMetrics
    scores: SkillScores
    events: list[dict]
    cvs_votes: np.ndarray | None = None  # (T, 3 criteria, 3 annotators) binary votes (lap only)
    suture: dict | None = None  # bench: needle holder per frame, resting point, stitch points (see bench.py)

    @property
    def frames(self) -> int:
        return len(self.phase)

    def _camera_tables(self) -> tuple[np.ndarray, np.ndarray]:
        if getattr(self, "_crops", None) is None or len(self._crops) != self.frames:
            args = (self.width, self.height, self.world_size, self.view_fraction)
            self._crops = np.array([camera_crop(c, *args) for c in self.camera], np.int64)
            self._affines = np.stack([camera_affine(c, *args) for c in self.camera])
        return self._crops, self._affines

    def affine(self, t: int) -> np.ndarray:
        """2x3 world -> screen matrix of frame ``t``."""
        return self._camera_tables()[1][t]

    def affines(self) -> np.ndarray:
        """(T, 2, 3) world -> screen matrices of all frames."""
        return self._camera_tables()[1]

    def crop(self, t: int) -> tuple[int, int, int, int]:
        """World window (x0, y0, w, h) seen in frame ``t``."""
        return tuple(int(v) for v in self._camera_tables()[0][t])

    def summary(self) -> dict:
        """JSON-able per-video summary (used by world.json)."""
        out = {
            "name": self.name,
            "kind": self.kind,
            "frames": self.frames,
            "fps": self.fps,
            "seconds": round(self.frames / self.fps, 3),
            "width": self.width,
            "height": self.height,
            "surgeon": self.surgeon.name,
            "latent_skill": self.surgeon.skill,
            "trial_skill": round(self.trial_skill, 4),
            "self_proclaimed": self.surgeon.level,
            "grs": self.scores.grs,
            "osats": self.scores.osats,
            "mgears": self.scores.mgears,
            "mgears_total": self.scores.mgears_total,
            "metrics": {
                k: round(float(v), 6) for k, v in dataclasses.asdict(self.metrics).items() if k != "kind"
            },
        }
        if self.kind == "lap":
            out["phase_order"] = list(self.phase_order)
        else:
            out["task"], out["trial"] = self.task, self.trial
            out["gestures"] = len(self.gestures)
        return out


def camera_crop(
    cam: np.ndarray, width: int, height: int, world: int, view_fraction: float
) -> tuple[int, int, int, int]:
    """The world window (x0, y0, w, h) the camera sees: centred on (cx, cy), ``view_fraction * world / zoom``
    wide, with the frame's aspect ratio, shifted to stay inside the canvas."""
    cx, cy, zoom = float(cam[0]), float(cam[1]), float(cam[2])
    cw = int(min(world, round(view_fraction * world / zoom)))
    ch = int(min(world, round(cw * height / width)))
    x0 = min(max(round(cx - cw / 2), 0), world - cw)
    y0 = min(max(round(cy - ch / 2), 0), world - ch)
    return x0, y0, cw, ch


def camera_affine(cam: np.ndarray, width: int, height: int, world: int, view_fraction: float) -> np.ndarray:
    """2x3 world -> screen matrix of the crop-and-resize camera (OpenCV pixel-centre convention):
    ``x_screen = (x_world - x0 + 0.5) * W / w - 0.5`` (same for y)."""
    x0, y0, cw, ch = camera_crop(cam, width, height, world, view_fraction)
    sx, sy = width / cw, height / ch
    return np.array([[sx, 0.0, (0.5 - x0) * sx - 0.5], [0.0, sy, (0.5 - y0) * sy - 0.5]])


def to_screen(affines: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply per-frame affines (T, 2, 3) to per-frame points (T, 2)."""
    return np.einsum("tij,tj->ti", affines[:, :, :2], pts) + affines[:, :, 2]


def view_test(screen: np.ndarray, width: int, height: int, circular: bool) -> np.ndarray:
    """Bool per point: inside the field of view (circle or frame) with a small margin."""
    m = VIEW_MARGIN * width
    x, y = screen[:, 0], screen[:, 1]
    inside = (x >= m) & (x <= width - 1 - m) & (y >= m) & (y <= height - 1 - m)
    if circular:
        radius = 0.5 * float(np.hypot(width, height)) * 0.78
        inside &= np.hypot(x - (width - 1) / 2, y - (height - 1) / 2) <= radius - m
    return inside


class _PointSampler:
    """Random points well inside a target region (distance to its border >= a margin), within reach."""

    def __init__(self, scene: LapAnatomy, reach: float):
        self.scene, self.reach = scene, reach
        self._cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, target: int, stage: int, rng: np.random.Generator) -> np.ndarray:
        key = (target, stage)
        if key not in self._cache:
            s = self.scene.size
            mask = self.scene.region(target, stage)
            yy, xx = np.mgrid[0:s, 0:s]
            near = mask & (np.hypot(xx - s * 0.47, yy - s * 0.5) < self.reach)
            dist = distance_transform_edt(near if near.sum() >= 20 else mask)
            thr = min(0.02 * s, 0.6 * float(dist.max()))
            ys, xs = np.nonzero(dist >= max(thr, 1.0))
            if len(xs) == 0:
                raise RuntimeError(f"target {TARGETS[target]} is not reachable in this layout")
            self._cache[key] = (xs, ys)
        xs, ys = self._cache[key]
        i = int(rng.integers(len(xs)))
        return np.array([xs[i], ys[i]], np.float64)


def _smooth(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    x = gaussian_filter1d(rng.normal(0, 1, n + 200), sigma, mode="nearest")[100:-100]
    return x / max(float(x.std()), 1e-9)


def _cls_array(changes: list[tuple[int, int]], frames: int) -> np.ndarray:
    out = np.full(frames, -1, np.int8)
    for (start, cls), nxt in zip(changes, [*changes[1:], (frames, 0)], strict=False):
        out[start : max(start, min(nxt[0], frames))] = cls
    return out


def _planned_array(tags: np.ndarray) -> np.ndarray:
    return np.where(tags >= 0, tags, -1).astype(np.int16)


@dataclasses.dataclass
class _Slot:
    """A slot under construction."""

    name: str
    port: np.ndarray
    builder: TrackBuilder
    changes: list[tuple[int, int]]
    cls: int = -1

    def use(self, cls: int) -> None:
        """Make ``cls`` the inserted instrument (withdrawing to the port to exchange it if needed)."""
        if cls == self.cls:
            return
        b = self.builder
        if self.cls >= 0 and np.linalg.norm(b.here - self.port) > 1.0:
            b.move_to(self.port)
            b.hold(int(0.3 * b.fps))
        self.changes.append((len(b), cls))
        self.cls = cls

    def withdraw(self) -> None:
        if self.cls >= 0:
            self.builder.move_to(self.port)
            self.changes.append((len(self.builder), -1))
            self.cls = -1


def _do_action(slot: _Slot, tid: int, goal: np.ndarray, dwell: int, world: int, wander: tuple) -> None:
    i, v, _ = TRIPLET_COMPONENTS[tid]
    slot.use(i)
    b = slot.builder
    b.move_to(goal, *wander)
    pattern, amp = VERB_MOTION[VERBS[v]]
    direction = b.here - np.array([world * 0.47, world * 0.5])
    direction = direction / max(float(np.linalg.norm(direction)), 1e-6)
    if pattern == "stroke":
        direction = np.array([-direction[1], direction[0]])
    if pattern == "close":
        b._jaw = 0.9
    b.act(dwell, tid, pattern, direction, amp * world)
