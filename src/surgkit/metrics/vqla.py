"""Surgical VQLA metrics (EndoVis18/17-VQLA, spec §4.2).

* Answer accuracy and macro precision / recall / F-score exactly as the reference's
  ``precision_recall_fscore_support(average='macro', zero_division=1)``: macro over the classes
  present in y_true ∪ y_pred, P = 1 for a class never predicted and R = 1 for a class never true,
  F computed per class (2TP / (2TP + FP + FN)) and then averaged.
* :func:`box_iou` / :func:`miou`: the true IoU of ``x1, y1, x2, y2`` boxes (no +1, clamped at 0).
* :func:`miou_legacy`: the Surgical-VQLA reference formula, reproduced for comparison with
  published tables and labelled legacy in every output. Its quirks: the pixel-convention "+1"
  is applied to *normalised* coordinates, the intersection is **not clamped** (disjoint boxes
  still score ≈ 0.26) and the union is floored at 1. It is not an IoU.
"""

from __future__ import annotations

import numpy as np

from surgkit.errors import SurgkitError

__all__ = [
    "VQLA_IMAGE_SIZE",
    "accuracy",
    "box_iou",
    "cxcywh_to_xyxy",
    "evaluate",
    "miou",
    "miou_legacy",
    "prf_macro",
    "vqla_gt_to_normalized",
]

VQLA_IMAGE_SIZE = (1280, 1024)  # EndoVis18 frame width, height used to normalise boxes


def _labels_pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    if t.shape != p.shape:
        raise SurgkitError(f"{t.size} true answers but {p.size} predicted answers")
    if t.size == 0:
        raise SurgkitError("no answers to evaluate")
    return t, p


def accuracy(y_true, y_pred) -> float:
    """Answer accuracy = mean(y_true == y_pred) (sklearn ``accuracy_score``)."""
    t, p = _labels_pair(y_true, y_pred)
    return float(np.mean(t == p))


def prf_macro(y_true, y_pred, zero_division: float = 1.0) -> tuple[float, float, float]:
    """Macro (precision, recall, F) over the labels in y_true ∪ y_pred, as sklearn with zero_division."""
    t, p = _labels_pair(y_true, y_pred)
    classes = np.union1d(t, p)
    tp = np.array([np.sum((t == c) & (p == c)) for c in classes], dtype=np.float64)
    n_pred = np.array([np.sum(p == c) for c in classes], dtype=np.float64)
    n_true = np.array([np.sum(t == c) for c in classes], dtype=np.float64)
    prec = np.where(n_pred > 0, tp / np.maximum(n_pred, 1), zero_division)
    rec = np.where(n_true > 0, tp / np.maximum(n_true, 1), zero_division)
    f = 2 * tp / (n_pred + n_true)  # > 0 for every class in the union
    return float(prec.mean()), float(rec.mean()), float(f.mean())


def _boxes(b, name: str) -> np.ndarray:
    a = np.asarray(b, dtype=np.float64)
    if a.shape[-1:] != (4,):
        raise SurgkitError(f"{name} must have a last dimension of 4 (x1, y1, x2, y2), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise SurgkitError(
            f"{name} contain a non-finite value at index {tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])}"
        )
    return a


def box_iou(a, b) -> np.ndarray | float:
    """True IoU of boxes ``(..., 4)`` in x1, y1, x2, y2, elementwise with numpy broadcasting.

    For all pairs of two box lists use ``box_iou(a[:, None], b[None, :])`` (as
    ``torchvision.ops.box_iou``). inter = max(0, min x2 − max x1)·max(0, min y2 − max y1);
    IoU = inter / (area_a + area_b − inter); 0 when the union is empty.
    """
    a, b = _boxes(a, "boxes a"), _boxes(b, "boxes b")
    for name, x in (("a", a), ("b", b)):
        inverted = (x[..., 2] < x[..., 0]) | (x[..., 3] < x[..., 1])
        if np.any(inverted):
            where = tuple(int(i) for i in np.argwhere(np.atleast_1d(inverted))[0]) if inverted.ndim else ()
            raise SurgkitError(f"box {name}{where} has x2 < x1 or y2 < y1")
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return float(iou) if iou.ndim == 0 else iou


def miou(pred_boxes, gt_boxes) -> float:
    """Mean true IoU over paired boxes (same convention and units for both)."""
    p, g = _boxes(pred_boxes, "predicted boxes"), _boxes(gt_boxes, "ground-truth boxes")
    if p.shape != g.shape:
        raise SurgkitError(f"{p.shape[0]} predicted boxes but {g.shape[0]} ground-truth boxes")
    return float(np.mean(box_iou(p, g)))


def legacy_iou(pred_boxes, gt_boxes) -> np.ndarray | float:
    """Per-pair Surgical-VQLA reference score (legacy, NOT an IoU), normalised xyxy boxes.

    inter = (min x2 − max x1 + 1)(min y2 − max y1 + 1) without clamping; area = (x2 − x1 + 1)(y2 − y1 + 1);
    score = inter / max(area_p + area_g − inter, 1).
    """
    p, g = _boxes(pred_boxes, "predicted boxes"), _boxes(gt_boxes, "ground-truth boxes")
    inter = (np.minimum(p[..., 2], g[..., 2]) - np.maximum(p[..., 0], g[..., 0]) + 1) * (
        np.minimum(p[..., 3], g[..., 3]) - np.maximum(p[..., 1], g[..., 1]) + 1
    )
    area_p = (p[..., 2] - p[..., 0] + 1) * (p[..., 3] - p[..., 1] + 1)
    area_g = (g[..., 2] - g[..., 0] + 1) * (g[..., 3] - g[..., 1] + 1)
    score = inter / np.maximum(area_p + area_g - inter, 1.0)
    return float(score) if np.ndim(score) == 0 else score


def miou_legacy(pred_boxes, gt_boxes) -> float:
    """Surgical-VQLA reference "mIoU" (legacy quirk reproduced, spec §4.2): mean of :func:`legacy_iou`.

    Inputs are *normalised* x1, y1, x2, y2 boxes as the reference evaluates them (GT via
    :func:`vqla_gt_to_normalized`, predictions via :func:`cxcywh_to_xyxy`). Inflated: two disjoint
    boxes score ≈ 0.26, random pairs ≈ 0.48. Use only to compare with published numbers.
    """
    p, g = np.asarray(pred_boxes, dtype=np.float64), np.asarray(gt_boxes, dtype=np.float64)
    if p.shape != g.shape:
        raise SurgkitError(f"{p.shape[0]} predicted boxes but {g.shape[0]} ground-truth boxes")
    return float(np.mean(legacy_iou(p, g)))


def cxcywh_to_xyxy(boxes) -> np.ndarray:
    """(cx, cy, w, h) → (x1, y1, x2, y2) = (cx − w/2, cy − h/2, cx + w/2, cy + h/2)."""
    b = _boxes(boxes, "boxes")
    half = b[..., 2:] / 2.0
    return np.concatenate([b[..., :2] - half, b[..., :2] + half], axis=-1)


def vqla_gt_to_normalized(pixel_boxes, image_size: tuple[int, int] = VQLA_IMAGE_SIZE) -> np.ndarray:
    """GT label boxes (1-based inclusive pixel x1, y1, x2, y2) → normalised xyxy as the reference.

    The reference subtracts 1, converts to cx, cy, w, h, divides by (W, H, W, H) and converts back.
    """
    b = _boxes(pixel_boxes, "ground-truth pixel boxes") - 1.0
    w, h = image_size
    cxcywh = np.concatenate([(b[..., :2] + b[..., 2:]) / 2.0, b[..., 2:] - b[..., :2]], axis=-1)
    return cxcywh_to_xyxy(cxcywh / np.array([w, h, w, h], dtype=np.float64))


def evaluate(y_true, y_pred, pred_boxes=None, gt_boxes=None) -> dict:
    """All VQLA metrics: accuracy, macro P/R/F (zero_division=1), true mIoU and the legacy mIoU.

    Boxes (optional): normalised x1, y1, x2, y2 for both. Returns fractions and a ``protocol``
    entry naming the legacy score.
    """
    t, p = _labels_pair(y_true, y_pred)
    prec, rec, f = prf_macro(t, p)
    out: dict = {
        "accuracy": accuracy(t, p),
        "precision": prec,
        "recall": rec,
        "fscore": f,
        "num_pairs": t.size,
    }
    protocol = {
        "name": "surgical-vqla",
        "prf": "sklearn precision_recall_fscore_support(average='macro', zero_division=1)",
        "units": "fraction",
    }
    if (pred_boxes is None) != (gt_boxes is None):
        raise SurgkitError("give both pred_boxes and gt_boxes, or neither")
    if pred_boxes is not None:
        pb, gb = _boxes(pred_boxes, "predicted boxes"), _boxes(gt_boxes, "ground-truth boxes")
        if pb.shape != (t.size, 4) or gb.shape != (t.size, 4):
            raise SurgkitError(f"expected ({t.size}, 4) boxes, got {pb.shape} and {gb.shape}")
        out["miou"] = float(np.mean(box_iou(pb, gb))) if _valid(pb) else _loose_miou(pb, gb)
        out["miou_legacy"] = miou_legacy(pb, gb)
        protocol["miou"] = "true IoU (no +1, clamped at 0), normalised xyxy"
        protocol["miou_legacy"] = (
            "LEGACY Surgical-VQLA reference: +1 on normalised coordinates, no clamp, union floored at 1 "
            "(inflated; not an IoU)"
        )
    out["protocol"] = protocol
    return out


def _valid(b: np.ndarray) -> bool:
    return bool(np.all(b[:, 2] >= b[:, 0]) and np.all(b[:, 3] >= b[:, 1]))


def _loose_miou(pred: np.ndarray, gt: np.ndarray) -> float:
    """True mIoU when a predicted box is inverted (x2 < x1): the inverted box has zero area."""
    fixed = pred.copy()
    fixed[:, 2] = np.maximum(fixed[:, 2], fixed[:, 0])
    fixed[:, 3] = np.maximum(fixed[:, 3], fixed[:, 1])
    return float(np.mean(box_iou(fixed, gt)))
