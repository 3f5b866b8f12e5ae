"""The shared average-precision primitive (spec §0), vectorised over many classes at once.

AP is the step-wise, non-interpolated area under the precision-recall curve, equal to
``sklearn.metrics.average_precision_score``:

    AP = Σ_k (R_k − R_{k−1}) · P_k,   thresholds θ_k = the distinct score values, descending,

where tied scores enter together. Equivalently (used here), every positive item j contributes
``P(θ(j)) / #positives`` with θ(j) the threshold of j's tie group, so one sort per column,
cumulative sums and a reverse running minimum give every class's AP without a Python loop.

The NaN rule is the toolkit's own and independent of sklearn's version: a class without any
positive has AP = NaN (sklearn returned NaN before 1.1, −0.0 in 1.1–1.5 and +0.0 from 1.6,
spec §0 and §2.3). Callers that reproduce a reference which averages such classes as 0
(SurgVISTA's clip mAP, spec §3.3b) pass ``no_positive=0.0``.
"""

from __future__ import annotations

import numpy as np

from surgkit.errors import SurgkitError

__all__ = [
    "ap_of_rows",
    "ap_of_validated",
    "average_precision",
    "check_binary_targets",
    "check_finite_scores",
    "mean_ap",
]


def check_finite_scores(scores: np.ndarray, name: str = "scores") -> None:
    """Raise :class:`SurgkitError` naming the first (row, column) whose score is NaN or infinite."""
    bad = ~np.isfinite(scores)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise SurgkitError(f"{name} contain a non-finite value ({scores[where].item()}) at index {where}")


def check_binary_targets(targets: np.ndarray, name: str = "targets") -> np.ndarray:
    """Return ``targets`` as a bool array; raise naming the first entry that is not 0 or 1."""
    t = np.asarray(targets)
    if t.dtype == bool:
        return t
    # t is 0/1 exactly when its non-zero entries are all ones (one cheap pass each; locate on failure)
    if np.count_nonzero(t) != np.count_nonzero(t == 1):
        bad = ~((t == 0) | (t == 1))
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise SurgkitError(f"{name} must be 0/1, found {t[where].item()!r} at index {where}")
    return t.astype(bool)


def average_precision(targets, scores, no_positive: float = np.nan) -> np.ndarray | float:
    """AP of every column of ``scores`` against binary ``targets`` (spec §0), sklearn-equal.

    Parameters
    ----------
    targets : (N,) or (N, C) array of 0/1 (or bool).
    scores : same shape, finite floats; higher means "more positive".
    no_positive : the value for a column without positives (default NaN, the toolkit rule).

    Returns a float for 1-D input, else a (C,) float64 array.

    Algorithm: sort each column by descending score (order inside a tie is irrelevant), let
    TP_i = positives among the first i + 1 items and e(i) the last position of i's tie group;
    AP = Σ_i y_i · TP_{e(i)} / (e(i) + 1) / #positives. Without ties e(i) = i and TP_i of the k-th
    positive is k, so only the positives' ranks are needed. Equal to sklearn up to float rounding
    (|Δ| ≲ 1e-15).
    """
    y = np.asarray(targets)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape:
        raise SurgkitError(f"targets have shape {y.shape} but scores have shape {s.shape}")
    if y.ndim not in (1, 2):
        raise SurgkitError(f"expected 1-D or 2-D arrays, got {y.ndim}-D")
    y = check_binary_targets(y)
    check_finite_scores(s)
    single = y.ndim == 1
    if single:
        y, s = y[:, None], s[:, None]
    out = ap_of_validated(y, s, no_positive)
    return float(out[0]) if single else out


_SIGN = np.uint64(1 << 63)


def _packed_sorted_rows(s_rows: np.ndarray, y_rows: np.ndarray) -> np.ndarray | None:
    """Each row's ``key << 1 | target`` in ascending order, or None when the keys leave no spare bit.

    ``key`` maps the float64 scores to unsigned integers in the same order (equal keys <=> equal
    scores), so one plain value sort (several times faster than an argsort) orders the items and
    carries their targets in the lowest bit. Only the order inside a group of equal scores can
    differ from an argsort, which AP does not see. Non-negative scores (probabilities, the common
    case) are their own keys; otherwise the sign-flip map of IEEE-754 doubles, shifted to start at 0.
    """
    keys = (s_rows + 0.0).view(np.uint64)  # a new array; + 0.0 turns -0.0 into +0.0 (they tie, as in sklearn)
    if keys.max() >= _SIGN:  # negative scores: flip to an order-preserving map, then make room
        negative = keys >= _SIGN
        np.invert(keys, out=keys, where=negative)
        np.bitwise_or(keys, _SIGN, out=keys, where=~negative)
        lo, hi = keys.min(), keys.max()
        if hi - lo >= _SIGN:
            return None
        keys -= lo
    keys <<= np.uint64(1)
    keys |= y_rows
    keys.sort(axis=1)
    return keys


def _ap_sorted_descending(s_sorted: np.ndarray, y_sorted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sum of precision at each positive, #positives) per row of rows sorted by descending score.

    The precision of an item is taken at the last position of its tie group (tied items enter
    together).
    """
    c, n = s_sorted.shape
    ties_end = s_sorted[:, :-1] != s_sorted[:, 1:]
    tp = np.cumsum(y_sorted, axis=1, dtype=np.int64)
    end = np.empty((c, n), dtype=np.int64)
    end[:, -1] = n - 1
    end[:, :-1] = np.where(ties_end, np.arange(n - 1), n)
    end = np.minimum.accumulate(end[:, ::-1], axis=1)[:, ::-1]
    precision = np.take_along_axis(tp, end, axis=1) / (end + 1.0)
    return np.where(y_sorted, precision, 0.0).sum(axis=1), tp[:, -1]


def ap_of_validated(y: np.ndarray, s: np.ndarray, no_positive: float = np.nan) -> np.ndarray:
    """:func:`average_precision` of (N, C) bool targets and finite float64 scores, no checks.

    For callers that validated their whole input once (e.g. triplet mAP over many videos).
    """
    # Work on (C, N) rows: sorting along the contiguous last axis is much faster (the rows are
    # made contiguous by the float32 rounding, or by the float64 path for the rows it redoes).
    return ap_of_rows(y.T, s.T, no_positive)


def ap_of_rows(y_rows: np.ndarray, s_rows: np.ndarray, no_positive: float = np.nan) -> np.ndarray:
    """AP of every *row* of (C, N) bool targets and finite float64 scores (one class per row), no checks.

    The layout the sort wants; callers holding class-major data skip a transpose. The order inside
    a tie group is irrelevant (tied items enter together), so an unstable sort is fine.

    Rows are first ordered by their scores rounded to float32 (half the bytes to sort). Rounding is
    monotone, so two items with different float32 values are in the right float64 order; only a row
    where a positive shares its float32 value with another item is ambiguous, and those rows (rare
    with real-valued scores) are redone with the float64 keys.
    """
    c, n = s_rows.shape
    out = np.full(c, float(no_positive))
    if n == 0:
        return out
    fast = _ap_rows_float32(y_rows, s_rows)
    if fast is None:
        total, n_pos = _ap_rows_float64(y_rows, s_rows)
    else:
        total, n_pos, unsure = fast
        if unsure.any():
            total[unsure], n_pos[unsure] = _ap_rows_float64(y_rows[unsure], s_rows[unsure])
    has_pos = n_pos > 0
    out[has_pos] = total[has_pos] / n_pos[has_pos]
    return out


def _ap_rows_float32(y_rows: np.ndarray, s_rows: np.ndarray):
    """(precision sums, #positives, rows to redo) from float32-rounded keys; None for negative scores."""
    with np.errstate(over="ignore"):  # scores beyond float32's range round to inf, still in order
        rounded = s_rows.astype(np.float32, order="C")  # also makes a transposed view row-major
    rounded += np.float32(0.0)  # -0.0 becomes +0.0 (they tie, as in sklearn)
    keys = rounded.view(np.uint32)
    if keys.max() >= np.uint32(1 << 31):  # a negative score: no spare bit for the target
        return None
    keys <<= np.uint32(1)
    keys |= y_rows
    keys.sort(axis=1)
    tied = (keys[:, 1:] ^ keys[:, :-1]) <= 1  # equal float32 value, whatever the targets
    if tied.any():
        with_positive = (keys[:, 1:] | keys[:, :-1]) & np.uint32(1)
        unsure = (tied & with_positive.astype(bool)).any(axis=1)
    else:
        unsure = np.zeros(len(keys), dtype=bool)
    total, n_pos = _ap_untied_packed(keys)
    return total, n_pos, unsure


def _ap_rows_float64(y_rows: np.ndarray, s_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(precision sums, #positives) per row, exact for any finite float64 scores and ties."""
    s_rows, y_rows = np.ascontiguousarray(s_rows), np.ascontiguousarray(y_rows)
    packed = _packed_sorted_rows(s_rows, y_rows)
    if packed is None:  # scores spanning the whole double range: argsort
        order = np.argsort(s_rows, axis=1)[:, ::-1]
        return _ap_sorted_descending(
            np.take_along_axis(s_rows, order, axis=1), np.take_along_axis(y_rows, order, axis=1)
        )
    if ((packed[:, 1:] ^ packed[:, :-1]) > 1).all():
        return _ap_untied_packed(packed)
    desc = packed[:, ::-1]
    return _ap_sorted_descending(desc >> np.uint64(1), (desc & np.uint64(1)).astype(bool))


def _ap_untied_packed(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(precision sums, #positives) of ascending ``key << 1 | target`` rows where no positive is tied.

    The i-th positive from the top, at descending rank r, has precision i / r (ties among negatives
    do not move it).
    """
    c, n = packed.shape
    flat = np.flatnonzero(packed & packed.dtype.type(1))  # row-major: ascending score within each row
    rows, cols = np.divmod(flat, n)
    n_pos = np.bincount(rows, minlength=c)
    first = np.cumsum(n_pos) - n_pos
    from_top = n_pos[rows] - (np.arange(rows.size) - first[rows])
    return np.bincount(rows, weights=from_top / (n - cols), minlength=c), n_pos


def mean_ap(ap: np.ndarray) -> float:
    """nanmean of per-class AP values; NaN (not a warning) when every class is NaN."""
    ap = np.asarray(ap, dtype=np.float64)
    valid = ~np.isnan(ap)
    return float(ap[valid].mean()) if valid.any() else float("nan")
