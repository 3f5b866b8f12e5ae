"""Skill-assessment metrics (JIGSAWS GRS regression, spec §3.1).

* :func:`spearman` — Spearman's ρ (SCC): Pearson correlation of average ranks, equal to
  ``scipy.stats.spearmanr``; NaN (with a warning) when either vector is constant.
* :func:`mae` — mean absolute error in GRS points (de-normalise first, :func:`denormalize_grs`).
* :func:`fisher_z_mean` — ρ̄ = tanh(mean(artanh ρ_k)), |ρ_k| clipped to 1 − 1e−7 (spec §3.1; the
  references do not say how they handle |ρ| = 1, the clip is surgkit's pinned choice).
* :func:`rl2` — relative L2 distance mean(((y − ŷ)/(y_max − y_min))²); papers print it × 100.
* :func:`cross_validation_summary` — per-fold table plus the aggregate: **mean over folds**
  (MUSDL/USDL convention, default) or **pooled out-of-fold** (one ρ / MAE on the concatenated
  predictions), both always reported, the headline chosen by ``aggregate``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import rankdata

from surgkit.errors import SurgkitError

__all__ = [
    "cross_validation_summary",
    "denormalize_grs",
    "fisher_z_mean",
    "mae",
    "rl2",
    "spearman",
]

FISHER_CLIP = 1e-7


def _pair(pred, true, name: str = "") -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64).ravel()
    t = np.asarray(true, dtype=np.float64).ravel()
    where = f"{name}: " if name else ""
    if p.shape != t.shape:
        raise SurgkitError(f"{where}{p.size} predictions but {t.size} true scores")
    if p.size == 0:
        raise SurgkitError(f"{where}no samples")
    for what, x in (("prediction", p), ("true score", t)):
        bad = np.flatnonzero(~np.isfinite(x))
        if bad.size:
            raise SurgkitError(f"{where}{what} at index {int(bad[0])} is {x[bad[0]]}")
    return p, t


def spearman(pred, true) -> float:
    """Spearman's rank correlation (average ranks for ties), as ``scipy.stats.spearmanr``.

    Undefined when a vector is constant: returns NaN and warns (never silently dropped).
    """
    p, t = _pair(pred, true)
    if p.size < 2 or np.all(p == p[0]) or np.all(t == t[0]):
        warnings.warn("Spearman correlation is undefined for a constant input; returning NaN", stacklevel=2)
        return float("nan")
    rp, rt = rankdata(p) - (p.size + 1) / 2.0, rankdata(t) - (t.size + 1) / 2.0
    return float(np.clip(np.dot(rp, rt) / np.sqrt(np.dot(rp, rp) * np.dot(rt, rt)), -1.0, 1.0))


def mae(pred, true) -> float:
    """Mean absolute error mean|ŷ − y| (report on the un-normalised GRS scale, spec §3.1)."""
    p, t = _pair(pred, true)
    return float(np.mean(np.abs(p - t)))


def rl2(pred, true, y_min: float = 6.0, y_max: float = 30.0) -> float:
    """Relative L2 distance mean(((y − ŷ)/(y_max − y_min))²) (AQA papers print it × 100).

    Default range: the JIGSAWS GRS scale 6–30 (some papers use the empirical min/max instead).
    """
    if not y_max > y_min:
        raise SurgkitError(f"rl2 needs y_max > y_min, got {y_min}, {y_max}")
    p, t = _pair(pred, true)
    return float(np.mean(((t - p) / (y_max - y_min)) ** 2))


def denormalize_grs(values, scheme: str) -> np.ndarray:
    """Undo a GRS normalisation: ``"minmax"`` (x·24 + 6, from (GRS − 6)/24), ``"div30"`` (x·30), ``"none"``."""
    x = np.asarray(values, dtype=np.float64)
    if scheme == "minmax":
        return x * 24.0 + 6.0
    if scheme == "div30":
        return x * 30.0
    if scheme == "none":
        return x
    raise SurgkitError(f"unknown GRS normalisation '{scheme}' (choose minmax, div30 or none)")


def fisher_z_mean(correlations, clip: float = FISHER_CLIP) -> float:
    """Fisher-z average tanh(mean_k artanh ρ_k), with |ρ_k| clipped to 1 − ``clip`` (spec §3.1)."""
    r = np.asarray(correlations, dtype=np.float64).ravel()
    if r.size == 0:
        raise SurgkitError("fisher_z_mean needs at least one correlation")
    bad = np.flatnonzero(~np.isfinite(r) | (np.abs(r) > 1.0))
    if bad.size:
        raise SurgkitError(f"correlation at index {int(bad[0])} is {r[bad[0]]} (must be finite, |r| <= 1)")
    return float(np.tanh(np.mean(np.arctanh(np.clip(r, -1.0 + clip, 1.0 - clip)))))


def _fold_items(folds) -> list[tuple[str, np.ndarray, np.ndarray, list | None]]:
    if isinstance(folds, Mapping):
        folds = [{"name": k, **v} if isinstance(v, Mapping) else (k, *v) for k, v in folds.items()]
    items = []
    for i, f in enumerate(folds):
        if isinstance(f, Mapping):
            name, pred, true, ids = f.get("name", str(i + 1)), f["pred"], f["true"], f.get("ids")
        elif len(f) == 3 and isinstance(f[0], str):
            name, pred, true, ids = f[0], f[1], f[2], None
        elif len(f) == 2:
            name, pred, true, ids = str(i + 1), f[0], f[1], None
        else:
            raise SurgkitError(
                f"fold {i}: expected (pred, true), (name, pred, true) or a dict with pred/true"
            )
        p, t = _pair(pred, true, f"fold {name}")
        if ids is not None and len(ids) != p.size:
            raise SurgkitError(f"fold {name}: {len(ids)} ids for {p.size} predictions")
        items.append((str(name), p, t, None if ids is None else list(ids)))
    if not items:
        raise SurgkitError("cross_validation_summary needs at least one fold")
    return items


def _check_out_of_fold(items) -> None:
    seen: dict = {}
    for name, _, _, ids in items:
        for trial in ids or ():
            if trial in seen:
                raise SurgkitError(
                    f"trial {trial!r} is predicted in folds {seen[trial]} and {name}: "
                    "pooled out-of-fold metrics need every trial exactly once"
                )
            seen[trial] = name


def _mean_std(x: np.ndarray) -> tuple[float, float]:
    valid = x[~np.isnan(x)]
    if valid.size == 0:
        return float("nan"), float("nan")
    return float(valid.mean()), float(valid.std(ddof=1)) if valid.size > 1 else 0.0


def cross_validation_summary(folds, aggregate: str = "mean", y_range: Sequence[float] = (6.0, 30.0)) -> dict:
    """Per-fold and aggregated skill metrics (spec §3.1–3.2).

    ``folds``: a list of ``(pred, true)``, ``(name, pred, true)`` or dicts with ``pred``, ``true``
    and optional ``name`` / ``ids`` (trial ids; checked to be unique across folds). Returns
    ``{"per_fold": [...], "mean_over_folds": {...}, "pooled": {...}, "spearman", "mae",
    "protocol"}``; the headline ``spearman`` / ``mae`` come from ``aggregate`` (``"mean"``: the
    arithmetic mean over folds as MUSDL/USDL, default; ``"pooled"``: one value on all out-of-fold
    predictions concatenated). Std over folds uses N−1. Folds with an undefined ρ (constant input)
    are counted in ``undefined_spearman_folds`` and skipped by the mean.
    """
    if aggregate not in ("mean", "pooled"):
        raise SurgkitError(f"unknown aggregate '{aggregate}' (choose 'mean' or 'pooled')")
    items = _fold_items(folds)
    _check_out_of_fold(items)
    y_min, y_max = y_range
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for name, p, t, _ in items:
            rows.append(
                {
                    "fold": name,
                    "n": int(p.size),
                    "spearman": spearman(p, t),
                    "mae": mae(p, t),
                    "rl2": rl2(p, t, y_min, y_max),
                }
            )
        all_p = np.concatenate([p for _, p, _, _ in items])
        all_t = np.concatenate([t for _, _, t, _ in items])
        pooled = {
            "n": int(all_p.size),
            "spearman": spearman(all_p, all_t),
            "mae": mae(all_p, all_t),
            "rl2": rl2(all_p, all_t, y_min, y_max),
        }
    rho = np.array([r["spearman"] for r in rows])
    mean_over_folds: dict = {}
    for key in ("spearman", "mae", "rl2"):
        m, s = _mean_std(np.array([r[key] for r in rows]))
        mean_over_folds[key], mean_over_folds[f"{key}_std"] = m, s
    valid = rho[~np.isnan(rho)]
    mean_over_folds["spearman_fisher_z"] = fisher_z_mean(valid) if valid.size else float("nan")
    headline = mean_over_folds if aggregate == "mean" else pooled
    return {
        "spearman": headline["spearman"],
        "mae": headline["mae"],
        "per_fold": rows,
        "mean_over_folds": mean_over_folds,
        "pooled": pooled,
        "undefined_spearman_folds": [r["fold"] for r in rows if np.isnan(r["spearman"])],
        "protocol": {
            "aggregate": aggregate,
            "mean": "arithmetic mean over folds (MUSDL/USDL); std over folds with N-1",
            "pooled": "one value on all out-of-fold predictions concatenated",
            "rl2_range": [float(y_min), float(y_max)],
        },
    }
