"""Drawing the six CholecT50 instruments as shaft + articulated tip, with exact masks.

An instrument is a list of primitives (convex polygons, thick lines, discs) in screen pixels.
Each primitive is drawn into the frame (colour) and, unless it is a frame-only decoration lying
inside another primitive (a highlight stripe, a colour band), into the masks with the same call
and ``cv2.LINE_8`` rasterisation, so the masks are exactly the drawn pixels.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from surgkit.vocab import INSTRUMENTS

SHAFT_WIDTH = 0.032  # shaft width as a fraction of the world size (scaled by the camera)

COLOURS: dict[str, dict[str, tuple[int, int, int]]] = {
    "grasper": {"shaft": (62, 62, 68), "tip": (175, 175, 182)},
    "bipolar": {"shaft": (52, 56, 70), "tip": (160, 170, 190), "band": (40, 70, 170)},
    "hook": {"shaft": (28, 28, 30), "tip": (190, 190, 196), "neck": (45, 45, 48)},
    "scissors": {"shaft": (58, 58, 62), "tip": (190, 165, 105)},
    "clipper": {"shaft": (88, 88, 94), "tip": (185, 185, 192), "clip": (225, 205, 130)},
    "irrigator": {"shaft": (165, 165, 172), "tip": (150, 150, 158), "hole": (40, 40, 45)},
}


@dataclasses.dataclass(frozen=True)
class Prim:
    """A drawing primitive: ``poly`` (convex points), ``line`` (p0, p1, thickness) or ``disc`` (c, r)."""

    kind: str
    data: tuple
    colour: tuple[int, int, int]
    in_mask: bool = True


def _rot(v: np.ndarray, a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def _pts(*points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points, np.float64)).astype(np.int32)


def _jaws(joint, u, length, width, opening, colour, curve=0.0) -> list[Prim]:
    prims = []
    for side in (-1.0, 1.0):
        d = _rot(u, side * opening)
        p = np.array([-d[1], d[0]])
        bend = p * side * curve * width
        quad = _pts(
            joint - p * width,
            joint + p * width,
            joint + d * length * 0.7 + p * width * 0.5 + bend,
            joint + d * length + bend,
        )
        prims.append(Prim("poly", (quad,), colour))
    return prims


def instrument_prims(
    cls: int,
    tip: np.ndarray,
    port: np.ndarray,
    jaw: float,
    width: float,
    shade: float = 1.0,
    loaded: bool = False,
) -> list[Prim]:
    """Primitives of instrument class ``cls`` with its tip at ``tip`` entering from ``port`` (screen px)."""
    name = INSTRUMENTS[cls]
    col = {k: tuple(int(min(255, c * shade)) for c in v) for k, v in COLOURS[name].items()}
    tip = np.asarray(tip, np.float64)
    port = np.asarray(port, np.float64)
    d = tip - port
    u = d / max(float(np.linalg.norm(d)), 1e-6)
    n = np.array([-u[1], u[0]])
    w = max(width, 3.0)
    tip_len = 2.0 * w
    joint = tip - u * tip_len
    end = joint if name != "irrigator" else tip - u * 0.4 * w
    half = 0.5 * w if name != "irrigator" else 0.4 * w
    prims = [
        Prim("poly", (_pts(port - n * half, port + n * half, end + n * half, end - n * half),), col["shaft"])
    ]
    stripe = _pts(port + n * 0.05 * w, port + n * 0.28 * w, end + n * 0.28 * w, end + n * 0.05 * w)
    highlight = tuple(int(min(255, c + 70)) for c in col["shaft"])
    prims.append(Prim("poly", (stripe,), highlight, in_mask=False))
    open_angle = 0.08 + 0.42 * float(np.clip(jaw, 0, 1))
    if name == "grasper":
        prims.append(Prim("disc", (joint, 0.45 * w), col["tip"]))
        prims += _jaws(joint, u, tip_len, 0.2 * w, open_angle, col["tip"])
    elif name == "bipolar":
        band = _pts(
            joint - u * 1.2 * w - n * 0.3 * w,
            joint - u * 1.2 * w + n * 0.3 * w,
            joint + n * 0.3 * w,
            joint - n * 0.3 * w,
        )
        prims.append(Prim("poly", (band,), col["band"], in_mask=False))
        prims += _jaws(joint, u, tip_len * 0.9, 0.13 * w, open_angle * 0.8, col["tip"])
    elif name == "hook":
        prims.append(Prim("line", (joint - u * 0.2 * w, tip, max(2, int(round(0.3 * w)))), col["neck"]))
        hook_end = tip + n * 0.55 * w - u * 0.15 * w
        prims.append(Prim("line", (tip, hook_end, max(2, int(round(0.22 * w)))), col["tip"]))
    elif name == "scissors":
        prims.append(Prim("disc", (joint, 0.4 * w), col["tip"]))
        prims += _jaws(joint, u, tip_len, 0.18 * w, open_angle * 0.7, col["tip"], curve=0.6)
    elif name == "clipper":
        prims.append(Prim("disc", (joint, 0.5 * w), col["tip"]))
        prims += _jaws(joint, u, tip_len * 1.1, 0.28 * w, open_angle * 0.6, col["tip"])
        if loaded:
            clip = _pts(
                joint + u * 0.6 * w - n * 0.2 * w,
                joint + u * 0.6 * w + n * 0.2 * w,
                joint + u * 1.6 * w + n * 0.2 * w,
                joint + u * 1.6 * w - n * 0.2 * w,
            )
            prims.append(Prim("poly", (clip,), col["clip"]))
    elif name == "irrigator":
        prims.append(Prim("disc", (end, 0.4 * w), col["tip"]))
        for f in (1.2, 2.0):
            prims.append(Prim("disc", (end - u * f * w, max(1.0, 0.12 * w)), col["hole"], in_mask=False))
    return prims


def draw_prims(frame: np.ndarray, masks: list[tuple[np.ndarray, int]], prims: list[Prim]) -> None:
    """Draw primitives into ``frame`` (RGB uint8) and each ``(mask, value)`` with identical geometry."""
    for p in prims:
        targets = [(frame, p.colour)] + ([(m, v) for m, v in masks] if p.in_mask else [])
        for img, value in targets:
            if p.kind == "poly":
                cv2.fillConvexPoly(img, p.data[0], value, cv2.LINE_8)
            elif p.kind == "line":
                a, b, th = p.data
                cv2.line(
                    img,
                    tuple(int(round(x)) for x in a),
                    tuple(int(round(x)) for x in b),
                    value,
                    th,
                    cv2.LINE_8,
                )
            else:
                c, r = p.data
                cv2.circle(img, tuple(int(round(x)) for x in c), max(1, int(round(r))), value, -1, cv2.LINE_8)
