"""Clip-level action recognition and CVS metrics (spec §3.3, §4.1): two families, never mixed.

**SurgVISTA clip classification** (``engine_for_clip.merge``, spec §3.3b / §4.1):
:func:`merge_views` softmaxes every test view (crop/clip sample) and averages the softmax over
the views of the same clip; :func:`clip_metrics` then reports top-1/top-k accuracy over clips and
mAP = arithmetic mean over classes of one-vs-rest AP, where a class absent from the test set
contributes AP = 0 (sklearn ≥ 1.1 behaviour the reference ran with; ``absent_class="nan"`` skips
it instead).

**Endoscapes-CVS201 official benchmark** (SurgLatentGraph ``CVSMetric``, spec §3.3a):
:func:`cvs_metrics` rounds the 3-annotator mean labels to {0, 1} (round-half-even), computes the
per-criterion AP over all frames pooled and mAP = nanmean of the 3 APs; Brier = MSE between the
probabilities and the *unrounded* labels, per criterion then mean; F1 at ``p > 0.5`` (torchmetrics'
strict threshold) against the rounded labels, per criterion then nanmean.

Both use the one AP primitive :func:`surgkit.metrics.ap.average_precision` (sklearn-equal).
"""

from __future__ import annotations

import numpy as np

from surgkit.errors import SurgkitError
from surgkit.metrics.ap import average_precision, check_finite_scores, mean_ap

__all__ = ["accuracy", "clip_metrics", "cvs_metrics", "merge_views", "softmax", "topk_accuracy"]


def softmax(logits, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax."""
    x = np.asarray(logits, dtype=np.float64)
    z = np.exp(x - x.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


def _labels(labels, n: int, num_classes: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (n,):
        raise SurgkitError(f"expected {n} labels, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise SurgkitError(f"labels must be integer class ids, got dtype {y.dtype}")
    bad = np.flatnonzero((y < 0) | (y >= num_classes))
    if bad.size:
        raise SurgkitError(f"label {y[bad[0]]} at index {int(bad[0])} outside 0..{num_classes - 1}")
    return y


def topk_accuracy(scores, labels, k: int = 1) -> float:
    """Fraction of samples whose label is among the k highest scores (ties: stable argsort order)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise SurgkitError(f"scores must be (N, C), got shape {s.shape}")
    check_finite_scores(s)
    y = _labels(labels, s.shape[0], s.shape[1])
    if not k >= 1:
        raise SurgkitError(f"k must be >= 1, got {k}")
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == y[:, None], axis=1)))


def accuracy(scores, labels) -> float:
    """Top-1 accuracy = accuracy_score(labels, argmax(scores))."""
    return topk_accuracy(scores, labels, 1)


def merge_views(view_scores, view_labels, clip_ids, from_logits: bool = True):
    """Average per-view softmax over the views of each clip (SurgVISTA merge, spec §3.3b).

    Returns ``(clip_names, clip_scores (n_clips, C), clip_labels)``; clips keep the order of first
    appearance. All views of a clip must carry the same label (else an error naming the clip).
    """
    s = np.asarray(view_scores, dtype=np.float64)
    if s.ndim != 2:
        raise SurgkitError(f"view scores must be (views, C), got shape {s.shape}")
    check_finite_scores(s, "view scores")
    y = _labels(view_labels, s.shape[0], s.shape[1])
    ids = np.asarray(clip_ids)
    if ids.shape != (s.shape[0],):
        raise SurgkitError(f"expected {s.shape[0]} clip ids, got shape {ids.shape}")
    probs = softmax(s) if from_logits else s
    names, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    clip = rank[inverse]
    n = order.size
    sums = np.zeros((n, s.shape[1]))
    np.add.at(sums, clip, probs)
    counts = np.bincount(clip, minlength=n)
    labels = y[first[order]]
    mismatch = np.flatnonzero(y != labels[clip])
    if mismatch.size:
        v = int(mismatch[0])
        raise SurgkitError(
            f"clip {ids[v].item()!r}: views disagree on the label ({y[v]} vs {labels[clip[v]]})"
        )
    return [names[i].item() for i in order], sums / counts[:, None], labels


def clip_metrics(
    view_scores,
    view_labels,
    clip_ids=None,
    from_logits: bool = True,
    topk: tuple[int, ...] = (1, 5),
    absent_class: str = "zero",
) -> dict:
    """SurgVISTA clip accuracy / top-k / mAP after merging views (spec §3.3b, §4.1).

    ``clip_ids=None`` treats every row as its own clip. mAP = np.mean over all classes of the
    one-vs-rest AP on the averaged softmax; ``absent_class="zero"`` (reference) counts a class
    absent from the test set as AP 0, ``"nan"`` excludes it.
    """
    if absent_class not in ("zero", "nan"):
        raise SurgkitError(f"absent_class must be 'zero' or 'nan', got {absent_class!r}")
    s = np.asarray(view_scores, dtype=np.float64)
    ids = np.arange(len(s)) if clip_ids is None else clip_ids
    _, probs, labels = merge_views(s, view_labels, ids, from_logits)
    onehot = labels[:, None] == np.arange(probs.shape[1])[None, :]
    ap = average_precision(onehot, probs, no_positive=0.0 if absent_class == "zero" else np.nan)
    out = {f"top{k}_accuracy": topk_accuracy(probs, labels, k) for k in topk if k <= probs.shape[1]}
    out["accuracy"] = topk_accuracy(probs, labels, 1)
    out["map"] = float(np.mean(ap)) if absent_class == "zero" else mean_ap(ap)
    out["ap_per_class"] = ap
    out["num_clips"] = int(probs.shape[0])
    out["protocol"] = {
        "name": "surgvista-clip-merge",
        "reference": "SurgVISTA engine_for_clip.merge",
        "merge": "softmax per view, mean over views of a clip, argmax",
        "map": "mean over classes of one-vs-rest AP; absent class -> "
        + ("AP 0 (reference)" if absent_class == "zero" else "NaN, excluded"),
        "units": "fraction",
    }
    return out


def _f1_binary(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    tp = np.sum(pred & true, axis=0)
    fp = np.sum(pred & ~true, axis=0)
    fn = np.sum(~pred & true, axis=0)
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)


def cvs_metrics(probs, labels, video_ids=None, agg: str = "pooled", threshold: float = 0.5) -> dict:
    """Endoscapes-CVS201 official metrics (spec §3.3a): mAP, Brier, F1 over the 3 criteria.

    ``probs``: (N, 3) sigmoid probabilities; ``labels``: (N, 3) annotator means in [0, 1].
    ``agg="pooled"`` (official) pools all frames; ``"per_video"`` computes AP per video, then
    nanmean over videos (needs ``video_ids``). A criterion without positives has AP NaN.
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if p.shape != y.shape or p.ndim != 2:
        raise SurgkitError(f"probs {p.shape} and labels {y.shape} must be equal (N, criteria) arrays")
    check_finite_scores(p, "probabilities")
    bad = np.argwhere(~np.isfinite(y) | (y < 0) | (y > 1))
    if bad.size:
        raise SurgkitError(
            f"CVS label {y[tuple(bad[0])]} at index {tuple(int(i) for i in bad[0])} not in [0, 1]"
        )
    bad = np.argwhere((p < 0) | (p > 1))
    if bad.size:
        raise SurgkitError(
            f"probability {p[tuple(bad[0])]} at index {tuple(int(i) for i in bad[0])} not in [0, 1]"
        )
    hard = np.round(y) >= 1  # round-half-even, as torch.round / np.round
    if agg == "pooled":
        ap = average_precision(hard, p)
    elif agg == "per_video":
        if video_ids is None:
            raise SurgkitError("agg='per_video' needs video_ids")
        vids = np.asarray(video_ids)
        if vids.shape != (p.shape[0],):
            raise SurgkitError(f"expected {p.shape[0]} video ids, got shape {vids.shape}")
        per_video = np.array([average_precision(hard[vids == v], p[vids == v]) for v in np.unique(vids)])
        with np.errstate(all="ignore"):
            ap = np.array([mean_ap(col) for col in per_video.T])
    else:
        raise SurgkitError(f"unknown agg '{agg}' (choose 'pooled' or 'per_video')")
    brier = np.mean((p - y) ** 2, axis=0)
    f1 = _f1_binary(p > threshold, hard)
    return {
        "map": mean_ap(ap),
        "ap_per_criterion": ap,
        "brier": float(np.mean(brier)),
        "brier_per_criterion": brier,
        "f1": mean_ap(f1),
        "f1_per_criterion": f1,
        "protocol": {
            "name": "endoscapes-cvs201",
            "reference": "SurgLatentGraph evaluator/CVSMetric.py (Endoscapes official)",
            "gt": "annotator mean rounded half-even to {0,1} for AP and F1; unrounded for Brier",
            "agg": agg,
            "f1_threshold": f"p > {threshold}",
            "nan_rule": "criterion without positives -> AP NaN, nanmean",
            "units": "fraction",
        },
    }
