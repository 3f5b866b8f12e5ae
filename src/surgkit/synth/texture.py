"""Procedural textures for the synthetic world: smooth noise, tissue colour fields, vessels, highlights.

Everything here runs once per video (on the world canvas), never per frame, so the per-frame
renderer only warps, blends and draws polygons.
"""

from __future__ import annotations

import cv2
import numpy as np


def smooth_noise(rng: np.random.Generator, size: tuple[int, int], octaves: int = 4) -> np.ndarray:
    """Fractal value noise in [0, 1], shape ``size`` (h, w), float32.

    Sum of bicubically up-sampled random grids (cell sizes h/4, h/8, ...), amplitude halved per octave.
    """
    h, w = size
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for k in range(octaves):
        cells = 4 * 2**k
        grid = rng.random((cells + 1, cells + 1), dtype=np.float32)
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
    out /= total
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / max(hi - lo, 1e-6)


def colour_field(base_rgb: tuple[int, int, int], noise: np.ndarray, contrast: float = 0.35) -> np.ndarray:
    """An RGB float32 field: ``base * (1 - contrast/2 + contrast * noise)`` per channel."""
    gain = (1.0 - contrast / 2.0) + contrast * noise
    return gain[..., None] * np.asarray(base_rgb, np.float32)[None, None, :]


def draw_vessels(
    rng: np.random.Generator,
    canvas: np.ndarray,
    region: np.ndarray,
    count: int,
    colour: tuple[int, int, int],
    max_width: int = 3,
) -> None:
    """Random-walk vessel branches drawn into ``canvas`` (float RGB), restricted to ``region`` (bool)."""
    h, w = region.shape
    ys, xs = np.nonzero(region)
    if len(xs) == 0:
        return
    layer = np.zeros((h, w), np.uint8)
    for _ in range(count):
        i = int(rng.integers(len(xs)))
        p = np.array([xs[i], ys[i]], np.float64)
        ang = rng.uniform(0, 2 * np.pi)
        width = int(rng.integers(1, max_width + 1))
        pts = [p.copy()]
        for _ in range(int(rng.integers(6, 14))):
            ang += rng.normal(0, 0.45)
            p = p + 9.0 * np.array([np.cos(ang), np.sin(ang)])
            pts.append(p.copy())
        cv2.polylines(layer, [np.round(pts).astype(np.int32)], False, 255, width, cv2.LINE_AA)
    alpha = (layer.astype(np.float32) / 255.0) * region
    alpha = cv2.GaussianBlur(alpha, (3, 3), 0)[..., None] * 0.7
    canvas *= 1.0 - alpha
    canvas += alpha * np.asarray(colour, np.float32)


def add_highlights(rng: np.random.Generator, canvas: np.ndarray, region: np.ndarray, count: int) -> None:
    """Specular highlights (small blurred white ellipses) on wet tissue inside ``region``."""
    h, w = region.shape
    ys, xs = np.nonzero(region)
    if len(xs) == 0:
        return
    layer = np.zeros((h, w), np.float32)
    for _ in range(count):
        i = int(rng.integers(len(xs)))
        axes = (int(rng.integers(2, 7)), int(rng.integers(1, 4)))
        cv2.ellipse(layer, (int(xs[i]), int(ys[i])), axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    layer = cv2.GaussianBlur(layer, (0, 0), 1.5) * region
    alpha = np.clip(layer * 1.6, 0, 0.95)[..., None]
    canvas *= 1.0 - alpha
    canvas += alpha * 255.0


def vignette(
    width: int, height: int, circular: bool, edge_gain: float = 0.55
) -> tuple[np.ndarray, np.ndarray]:
    """The endoscope's light falloff and field stop.

    Returns (gain float32 HxW in [0, 1], inside bool HxW). For a circular endoscope view the
    field stop is a hard circle of radius 0.5 * sqrt(w^2 + h^2) * 0.78 (corners black); inside it
    the gain falls from 1 at the centre to ``edge_gain`` at the rim. Without ``circular`` the
    whole frame is inside and the gain only darkens the corners a little (robotic stereo views).
    """
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    r = np.hypot(xx - cx, yy - cy)
    if circular:
        radius = 0.5 * float(np.hypot(width, height)) * 0.78
        inside = r <= radius
        gain = 1.0 - (1.0 - edge_gain) * (r / radius) ** 2
        gain = np.where(inside, gain, 0.0).astype(np.float32)
    else:
        radius = 0.5 * float(np.hypot(width, height))
        inside = np.ones((height, width), bool)
        gain = (1.0 - 0.25 * (r / radius) ** 2).astype(np.float32)
    return gain, inside


def smoke_texture(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A soft smoke density map in [0, 1] (float32, shape ``size``), tiled by the renderer."""
    n = smooth_noise(rng, size, octaves=3)
    return np.clip((n - 0.25) / 0.75, 0, 1).astype(np.float32)
