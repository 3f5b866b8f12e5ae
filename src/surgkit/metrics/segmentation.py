"""Segmentation overlap: per-class Dice over a set of label maps (tool masks).

For class c with predicted set P_c and true set T_c pooled over all given maps,
``Dice_c = 2 |P_c ∩ T_c| / (|P_c| + |T_c|)``; a class absent from both is ``nan`` (no evidence)
and is left out of the mean. ``mean_dice`` averages the foreground classes (1..K-1), the
convention of the EndoVis instrument-segmentation reports (background excluded). Pooling over
frames (not averaging per frame) keeps frames without tools from counting as perfect scores.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def confusion(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """[K, K] pixel counts, rows = true class, columns = predicted class."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} != truth shape {truth.shape}")
    if pred.size and (
        pred.max() >= num_classes or truth.max() >= num_classes or min(pred.min(), truth.min()) < 0
    ):
        raise ValueError(f"labels must be in [0, {num_classes})")
    idx = truth.astype(np.int64).ravel() * num_classes + pred.astype(np.int64).ravel()
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def dice_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Per-class Dice from a confusion matrix (nan where the class is in neither map)."""
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(0) + cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), np.nan)


def dice_scores(pairs: Iterable[tuple[np.ndarray, np.ndarray]], num_classes: int) -> dict[str, object]:
    """Dice of (prediction, truth) label maps pooled over all pairs.

    Returns ``{"per_class": [K floats or nan], "mean_dice": mean over foreground classes present,
    "binary_dice": Dice of tool (any class > 0) vs background, "pixels": N}``."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    fg = np.zeros((2, 2), np.int64)
    for pred, truth in pairs:
        cm += confusion(pred, truth, num_classes)
        fg += confusion(np.asarray(pred) > 0, np.asarray(truth) > 0, 2)
    per = dice_from_confusion(cm)
    fore = per[1:][~np.isnan(per[1:])]
    return {
        "per_class": [None if np.isnan(v) else float(v) for v in per],
        "mean_dice": float(fore.mean()) if fore.size else float("nan"),
        "binary_dice": float(dice_from_confusion(fg)[1]),
        "pixels": int(cm.sum()),
        "protocol": "Dice = 2|P∩T|/(|P|+|T|) per class, pixels pooled over all frames; mean over foreground classes present",
    }
