"""Rendering flow maps and masks as 3-channel images for RGB video backbones (spec skill.md §1.4).

Flow (from the 8-bit maps of :mod:`surgkit.prep.flow`, bound b)::

    R = x map, G = y map (both already round((clip(f, -b, b) + b) * 255 / 2b)),
    B = round(255 * min(sqrt(fx² + fy²), b) / b)          (magnitude, from the decoded maps)

so zero motion renders as (128, 128, 1): 0 px itself encodes to 127.5, stored as 128 (+0.078 px). Masks: a binary mask (2 classes) is replicated to 3 channels
(0 -> black, 1 -> white); a multi-class mask goes through the fixed PASCAL-VOC palette (class c's
colour spreads the bits of c over the high bits of R, G, B: bit 3j -> R, 3j+1 -> G, 3j+2 -> B,
at bit position 7 - j), so class 0 is black and the colours never depend on the data.
"""

from __future__ import annotations

import numpy as np

from surgkit.prep.flow import decode_flow


def voc_palette(n: int = 256) -> np.ndarray:
    """uint8 [n, 3] PASCAL-VOC colour map (0 = black, 1 = (128, 0, 0), 2 = (0, 128, 0), ...)."""
    pal = np.zeros((n, 3), np.uint8)
    for c in range(n):
        r = g = b = 0
        cid = c
        for j in range(8):
            r |= ((cid >> 0) & 1) << (7 - j)
            g |= ((cid >> 1) & 1) << (7 - j)
            b |= ((cid >> 2) & 1) << (7 - j)
            cid >>= 3
        pal[c] = (r, g, b)
    return pal


_PALETTE = voc_palette()


def render_masks(masks: np.ndarray, num_classes: int) -> np.ndarray:
    """uint8 [..., H, W] class ids -> uint8 [..., H, W, 3] images (binary: grey replicate; else VOC)."""
    if num_classes <= 2:
        grey = (masks > 0).astype(np.uint8) * 255
        return np.repeat(grey[..., None], 3, axis=-1)
    return _PALETTE[masks]


def render_flow(maps: np.ndarray, bound: float) -> np.ndarray:
    """uint8 [..., H, W, 2] encoded flow -> uint8 [..., H, W, 3] (x map, y map, magnitude)."""
    f = decode_flow(maps, bound)
    mag = np.sqrt(f[..., 0] ** 2 + f[..., 1] ** 2)
    b = np.rint(255.0 * np.minimum(mag, bound) / bound).astype(np.uint8)
    return np.concatenate([maps, b[..., None]], axis=-1)
