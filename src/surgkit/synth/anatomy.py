"""The world canvases: a laparoscopic cholecystectomy field and a JIGSAWS-like bench-top pad.

A *world canvas* is a square image (side ``S`` world pixels) plus a label map, larger than the
camera view; the camera (see :mod:`surgkit.synth.render`) pans and zooms over it.

Laparoscopic field, label map values = CholecT50 target id + 1 (0 = unlabelled tissue):
liver on top, gallbladder under the liver edge with the cystic plate behind it, the cystic duct
and artery leaving the gallbladder neck (cystic pedicle), omentum, gut, adhesions, peritoneum,
a blood pool (fluid), vessels on the liver, the abdominal wall at the periphery, and from the
packaging phase on a specimen bag. The hepatocystic (Calot) triangle is a separate mask.

State that changes during a video is captured by a :class:`CanvasKey`: the stage (0 before
packaging, 1 with the specimen bag), the fat cover over the three CVS regions (levels 0..3,
3 = fully covered) and how many clips are on the duct/artery. Canvases are composed once per key
and cached, so a video only builds the handful of states it passes through.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import cv2
import numpy as np

from surgkit.synth.texture import add_highlights, colour_field, draw_vessels, smooth_noise
from surgkit.vocab import TARGETS

T = {name: i for i, name in enumerate(TARGETS)}

# Region colours (RGB) of the laparoscopic field.
PALETTE: dict[str, tuple[int, int, int]] = {
    "tissue": (150, 52, 45),
    "abdominal_wall_cavity": (196, 128, 118),
    "liver": (112, 34, 30),
    "cystic_plate": (205, 150, 135),
    "gallbladder": (96, 110, 70),
    "cystic_pedicle": (190, 150, 110),
    "cystic_duct": (215, 190, 150),
    "cystic_artery": (170, 40, 40),
    "omentum": (215, 175, 80),
    "gut": (200, 110, 100),
    "adhesion": (225, 200, 185),
    "peritoneum": (205, 140, 125),
    "fluid": (90, 10, 12),
    "blood_vessel": (80, 15, 45),
    "specimen_bag": (205, 210, 215),
    "fat": (225, 190, 95),
    "clip": (225, 225, 235),
}

MAX_FAT = 3  # fat cover levels 0..3


class CanvasKey(NamedTuple):
    """Everything that changes the background: stage, fat cover per CVS criterion, clips applied."""

    stage: int
    fat: tuple[int, int, int]
    clips: int


def _poly(points: np.ndarray) -> np.ndarray:
    return np.round(points).astype(np.int32).reshape(-1, 1, 2)


def _ellipse_mask(shape, centre, axes, angle) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.ellipse(m, (int(centre[0]), int(centre[1])), (int(axes[0]), int(axes[1])), angle, 0, 360, 1, -1)
    return m.astype(bool)


def _polyline_mask(shape, pts, width) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.polylines(m, [_poly(pts)], False, 1, max(int(round(width)), 1), cv2.LINE_8)
    return m.astype(bool)


def _blob_mask(rng, shape, centre, radius, lobes=7) -> np.ndarray:
    ang = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    r = radius * (1 + 0.18 * np.sin(lobes * ang + rng.uniform(0, 6.28)) + rng.normal(0, 0.04, ang.size))
    pts = np.stack([centre[0] + r * np.cos(ang), centre[1] + r * np.sin(ang)], 1)
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [_poly(pts)], 1)
    return m.astype(bool)


@dataclasses.dataclass
class LapAnatomy:
    """The laparoscopic world of one video (layout jittered by its RNG)."""

    size: int
    regions: dict[str, np.ndarray]  # bool masks per target name (base stage)
    calot: np.ndarray  # hepatocystic triangle (bool)
    fat_masks: tuple[np.ndarray, np.ndarray, np.ndarray]  # soft float masks per CVS criterion
    clip_points: list[tuple[float, float, float]]  # (x, y, angle) of clips, duct first then artery
    duct_path: np.ndarray
    artery_path: np.ndarray
    base: np.ndarray  # float32 RGB canvas of stage 0 without fat or clips
    bag_layer: tuple[np.ndarray, np.ndarray]  # (alpha HxW float, colour HxWx3 float)
    labels: tuple[np.ndarray, np.ndarray]  # uint8 label map per stage (target id + 1)
    _cache: dict = dataclasses.field(default_factory=dict)

    def label_map(self, stage: int) -> np.ndarray:
        return self.labels[min(stage, 1)]

    def canvas(self, key: CanvasKey) -> np.ndarray:
        """The uint8 RGB canvas for a state (composed on first use, then cached)."""
        if key not in self._cache:
            self._cache[key] = self._compose(key)
        return self._cache[key]

    def _compose(self, key: CanvasKey) -> np.ndarray:
        img = self.base.copy()
        fat_rgb = np.asarray(PALETTE["fat"], np.float32)
        for level, soft in zip(key.fat, self.fat_masks, strict=False):
            if level > 0:
                a = (0.92 * level / MAX_FAT) * soft[..., None]
                img = img * (1 - a) + a * fat_rgb
        for x, y, ang in self.clip_points[: key.clips]:
            c, s = np.cos(ang), np.sin(ang)
            half_l, half_w = 0.022 * self.size, 0.006 * self.size
            corners = np.array([[-half_w, -half_l], [half_w, -half_l], [half_w, half_l], [-half_w, half_l]])
            rot = corners @ np.array([[c, s], [-s, c]])
            cv2.fillConvexPoly(img, _poly(rot + [x, y]), PALETTE["clip"])
        if key.stage >= 1:
            alpha, colour = self.bag_layer
            img = img * (1 - alpha[..., None]) + alpha[..., None] * colour
        return np.clip(img, 0, 255).astype(np.uint8)

    def region(self, target: int, stage: int = 0) -> np.ndarray:
        """Bool mask of a target in the label map of ``stage``."""
        return self.label_map(stage) == target + 1


def _lap_layout(rng: np.random.Generator, s: int) -> tuple[dict[str, np.ndarray], dict]:
    """Region masks in painter's order (later ones overwrite earlier ones in the label map)."""
    shape = (s, s)
    j = lambda v: v * (1 + rng.normal(0, 0.05))  # noqa: E731 - small layout jitter
    c = s / 2
    yy, xx = np.mgrid[0:s, 0:s]
    regions: dict[str, np.ndarray] = {}
    regions["abdominal_wall_cavity"] = np.hypot(xx - c, yy - c) > 0.47 * s
    edge = j(0.36 * s) + 0.05 * s * np.sin(xx / s * 2 * np.pi * j(1.0) + rng.uniform(0, 6.28))
    regions["liver"] = (yy < edge) & ~regions["abdominal_wall_cavity"]
    gb_c = np.array([j(0.44 * s), edge[0, int(0.44 * s)] + j(0.09 * s)])
    gb_axes = (j(0.17 * s), j(0.075 * s))
    gb_ang = float(rng.uniform(10, 28))
    regions["cystic_plate"] = _ellipse_mask(
        shape, gb_c - [0, 0.03 * s], (gb_axes[0] * 1.12, gb_axes[1] * 1.25), gb_ang
    ) & (yy < gb_c[1])
    regions["omentum"] = _blob_mask(rng, shape, (j(0.26 * s), j(0.74 * s)), 0.14 * s)
    regions["gut"] = _blob_mask(rng, shape, (j(0.72 * s), j(0.76 * s)), 0.13 * s, lobes=4)
    regions["peritoneum"] = _blob_mask(rng, shape, (j(0.82 * s), j(0.5 * s)), 0.07 * s, lobes=3)
    regions["fluid"] = _ellipse_mask(shape, (j(0.52 * s), j(0.72 * s)), (0.045 * s, 0.028 * s), 10)
    rad = np.deg2rad(gb_ang)
    axis = np.array([np.cos(rad), np.sin(rad)])
    neck = gb_c + axis * gb_axes[0] * 0.95
    regions["adhesion"] = _polyline_mask(
        shape, np.stack([gb_c + [-0.05 * s, gb_axes[1]], [0.3 * s, 0.64 * s]]), 0.03 * s
    )
    regions["gallbladder"] = _ellipse_mask(shape, gb_c, gb_axes, gb_ang)
    duct_dir = np.array([0.55, 0.83])
    duct = np.stack(
        [neck + t * duct_dir * 0.2 * s + [0, 0.015 * s * np.sin(t * 3)] for t in np.linspace(0, 1, 8)]
    )
    art_dir = np.array([0.88, 0.3])
    artery = np.stack([neck + [-0.01 * s, -0.015 * s] + t * art_dir * 0.18 * s for t in np.linspace(0, 1, 8)])
    regions["cystic_duct"] = _polyline_mask(shape, duct, 0.032 * s)
    regions["cystic_artery"] = _polyline_mask(shape, artery, 0.02 * s)
    regions["cystic_pedicle"] = _ellipse_mask(shape, neck, (0.03 * s, 0.024 * s), gb_ang)
    vessels = np.zeros(shape, bool)
    for _ in range(2):
        x0 = rng.uniform(0.15, 0.8) * s
        pts = np.stack(
            [[x0 + t * rng.uniform(-0.1, 0.1) * s, 0.1 * s + t * 0.18 * s] for t in np.linspace(0, 1, 5)]
        )
        vessels |= _polyline_mask(shape, pts, 0.018 * s)
    regions["blood_vessel"] = vessels & regions["liver"]
    calot = np.zeros(shape, np.uint8)
    tri = np.stack([neck + [0.01 * s, 0.0], duct[-1], artery[-1]])
    cv2.fillConvexPoly(calot, _poly(tri), 1)
    geometry = {"gb_centre": gb_c, "neck": neck, "duct": duct, "artery": artery, "calot": calot.astype(bool)}
    return regions, geometry


def build_lap_anatomy(rng: np.random.Generator, size: int) -> LapAnatomy:
    """Lay out and texture the laparoscopic field for one video."""
    regions, geo = _lap_layout(rng, size)
    shape = (size, size)
    noise = smooth_noise(rng, shape)
    fine = smooth_noise(rng, shape, octaves=2)
    img = colour_field(PALETTE["tissue"], noise)
    labels0 = np.zeros(shape, np.uint8)
    for name, mask in regions.items():
        contrast = 0.5 if name in ("omentum", "gut", "liver") else 0.3
        field = colour_field(PALETTE[name], fine if name in ("omentum", "adhesion") else noise, contrast)
        img[mask] = field[mask]
        labels0[mask] = T[name] + 1
    tissue = (labels0 == 0) | (labels0 == T["liver"] + 1) | (labels0 == T["gut"] + 1)
    draw_vessels(rng, img, tissue, count=max(4, size // 40), colour=(95, 15, 30))
    draw_vessels(rng, img, regions["gallbladder"], count=3, colour=(70, 40, 70), max_width=1)
    wet = regions["liver"] | regions["gallbladder"] | regions["gut"] | regions["fluid"]
    add_highlights(rng, img, wet, count=max(6, size // 25))

    def soft(mask: np.ndarray, grow: float) -> np.ndarray:
        k = max(3, int(grow * size) | 1)
        m = cv2.dilate(mask.astype(np.uint8), np.ones((k, k), np.uint8)).astype(np.float32)
        return cv2.GaussianBlur(m, (0, 0), max(1.0, 0.006 * size)) * (0.75 + 0.25 * fine)

    fat_c1 = soft(regions["cystic_duct"] | regions["cystic_artery"], 0.03)
    fat_c2 = soft(regions["cystic_plate"] & ~regions["gallbladder"], 0.01)
    fat_c3 = soft(geo["calot"], 0.01)
    clip_points = []
    for path in (geo["duct"], geo["artery"]):
        for frac in (0.3, 0.5):
            i = int(frac * (len(path) - 1))
            d = path[i + 1] - path[i]
            clip_points.append((float(path[i][0]), float(path[i][1]), float(np.arctan2(d[1], d[0]))))
    bag_centre = geo["gb_centre"] + [-0.1 * size, 0.15 * size]
    bag = _ellipse_mask(shape, bag_centre, (0.12 * size, 0.08 * size), 15)
    bag_alpha = cv2.GaussianBlur(bag.astype(np.float32), (0, 0), 1.0) * 0.85
    bag_colour = colour_field(PALETTE["specimen_bag"], fine, 0.2)
    labels1 = labels0.copy()
    labels1[bag] = T["specimen_bag"] + 1
    return LapAnatomy(
        size=size,
        regions=regions,
        calot=geo["calot"],
        fat_masks=(fat_c1, fat_c2, fat_c3),
        clip_points=clip_points,
        duct_path=geo["duct"],
        artery_path=geo["artery"],
        base=img,
        bag_layer=(bag_alpha, bag_colour),
        labels=(labels0, labels1),
    )


# ---------------------------------------------------------------------------------------------
# Bench-top pad (JIGSAWS-like dry lab): label map values are BENCH_LABELS indices.
BENCH_LABELS: tuple[str, ...] = ("background", "pad", "incision", "target_mark", "ring")


STAIN_RGB = (125, 28, 38)  # tissue damage (slips, tears) left on a bench pad


@dataclasses.dataclass
class BenchScene:
    """A suturing pad on a table: a vertical incision with entry/exit marks (and rings for needle passing).

    ``stains`` (n, 4): frame, x, y, radius (world px) of the damage a trial leaves on the pad, in frame
    order; the canvas of key stage n shows the first n (the plan's ``key_index`` counts them per frame).
    """

    size: int
    image: np.ndarray  # uint8 RGB canvas
    labels: np.ndarray  # uint8, BENCH_LABELS index
    marks: np.ndarray  # (n, 2, 2): per stitch, (left, right) mark positions in world px
    stains: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 4), np.float32))
    _drawn: tuple[int, np.ndarray] | None = dataclasses.field(default=None, init=False, repr=False)

    def canvas(self, key: CanvasKey | None = None) -> np.ndarray:
        """The pad with the first ``key.stage`` stains (drawn incrementally; frames come in order)."""
        n = 0 if key is None else min(int(key.stage), len(self.stains))
        if n == 0:
            return self.image
        done, img = self._drawn if self._drawn is not None and self._drawn[0] <= n else (0, self.image)
        if done < n:
            img = img.copy()
            for _, x, y, r in self.stains[done:n]:
                cv2.circle(
                    img, (int(round(x)), int(round(y))), max(1, int(round(r))), STAIN_RGB, -1, cv2.LINE_AA
                )
            self._drawn = (n, img)
        return img

    def label_map(self, stage: int = 0) -> np.ndarray:
        return self.labels


def build_bench_scene(rng: np.random.Generator, size: int, task: str, stitches: int = 4) -> BenchScene:
    """Texture a bench-top scene for one JIGSAWS task ('Suturing', 'Knot_Tying', 'Needle_Passing')."""
    shape = (size, size)
    noise = smooth_noise(rng, shape, octaves=3)
    img = colour_field((70, 75, 80), noise, 0.2)
    labels = np.zeros(shape, np.uint8)
    c = size / 2
    pad = np.zeros(shape, np.uint8)
    half_w, half_h = 0.3 * size, 0.22 * size
    cv2.rectangle(pad, (int(c - half_w), int(c - half_h)), (int(c + half_w), int(c + half_h)), 1, -1)
    padm = pad.astype(bool)
    img[padm] = colour_field((222, 160, 150), smooth_noise(rng, shape, 2), 0.15)[padm]
    labels[padm] = 1
    cut = np.zeros(shape, np.uint8)
    cv2.line(cut, (int(c), int(c - half_h * 0.8)), (int(c), int(c + half_h * 0.8)), 1, max(1, size // 150))
    img[cut.astype(bool)] = (120, 50, 50)
    labels[cut.astype(bool)] = 2
    ys = np.linspace(c - half_h * 0.6, c + half_h * 0.6, stitches)
    gap = 0.06 * size
    marks = np.stack([[[c - gap, y], [c + gap, y]] for y in ys]).astype(np.float32)
    mark_layer = np.zeros(shape, np.uint8)
    for left, right in marks:
        for p in (left, right):
            cv2.circle(mark_layer, (int(p[0]), int(p[1])), max(2, size // 110), 1, -1)
    if task == "Needle_Passing":
        for left, _ in marks:
            cv2.circle(mark_layer, (int(left[0] + gap), int(left[1])), int(gap * 0.8), 4, max(1, size // 160))
    img[mark_layer == 1] = (40, 40, 40)
    img[mark_layer == 4] = (190, 190, 200)
    labels[mark_layer == 1] = 3
    labels[mark_layer == 4] = 4
    add_highlights(rng, img, padm, count=4)
    return BenchScene(size, np.clip(img, 0, 255).astype(np.uint8), labels, marks)
