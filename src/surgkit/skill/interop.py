"""The one place where surgkit.skill meets the data, splits and metrics packages.

Labels come from :mod:`surgkit.data.jigsaws` / :mod:`surgkit.data.clinical_skill`, folds from
:mod:`surgkit.data.splits` and metrics from :mod:`surgkit.metrics.skill`; this module only converts
their records into the small :class:`SkillItem` / :class:`Fold` views the trainer uses.
"""

from __future__ import annotations

import dataclasses
import math
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from surgkit.errors import SurgkitError
from surgkit.vocab import JIGSAWS_TASKS

SCHEMES = ("LOSO", "LOUO", "4fold", "kfold", "random_kfold")
UNITS = ("video", "segment")


@dataclasses.dataclass
class SkillItem:
    """One scored unit: a JIGSAWS trial, a clinical video, or one scored segment of a clinical video.

    ``video`` is the video whose features hold the unit (default: ``id``); ``start_s`` / ``end_s``
    (seconds) cut a scored segment out of it (None: the whole video).
    """

    id: str
    task: str
    surgeon: str
    score: float
    items: dict[str, float] = dataclasses.field(default_factory=dict)
    video: str | None = None
    start_s: float | None = None
    end_s: float | None = None

    @property
    def video_id(self) -> str:
        return self.video or self.id


@dataclasses.dataclass
class SkillLabels:
    """Scored videos of one dataset plus its fixed score ranges (used for normalisation, §1.3)."""

    dataset: str  # "jigsaws" or "clinical"
    items: list[SkillItem]
    score_range: tuple[float, float]
    item_names: tuple[str, ...]
    item_range: tuple[float, float] = (1.0, 5.0)
    source: str = ""

    @property
    def tasks(self) -> list[str]:
        return sorted({it.task for it in self.items})

    def for_task(self, task: str) -> list[SkillItem]:
        return [it for it in self.items if it.task == task]


# -- labels ------------------------------------------------------------------------------------------
def load_labels(
    data_dir: str | Path, dataset: str = "auto", view: str = "capture1", unit: str = "video"
) -> SkillLabels:
    """Skill labels under ``data_dir``: a JIGSAWS root (task folders with ``meta_file_<Task>.txt``,
    read by :func:`surgkit.data.jigsaws.load`) or the generic clinical format
    (:func:`surgkit.data.clinical_skill.load`; one "task" per procedure).

    ``unit``: ``video`` (one score per video: JIGSAWS GRS, or the clinical video score = mean of its
    segment scores) or ``segment`` (clinical only: every scored segment, e.g. each suturing phase of a
    RAH video, is a unit with its own M-GEARS score, cut from the video's features by its times).
    The score range is the data's own scale: its ``score_range`` when the scale declares one, else
    items × item range (M-GEARS with 6 items: 6-30); a score outside it is an error naming the unit.
    """
    if unit not in UNITS:
        raise SurgkitError(f"unknown scoring unit '{unit}' (video or segment)")
    root = Path(data_dir)
    if not root.is_dir() and not root.is_file():
        raise SurgkitError(f"{root}: data folder not found")
    if dataset == "auto":
        dataset = (
            "jigsaws"
            if any((root / t).is_dir() for t in JIGSAWS_TASKS) or root.name in JIGSAWS_TASKS
            else "clinical"
        )
    if dataset == "jigsaws":
        if unit != "video":
            raise SurgkitError("JIGSAWS has one GRS per trial: scoring unit 'segment' is for clinical data")
        from surgkit.data import jigsaws
        from surgkit.vocab import GRS_RANGE, OSATS_ITEMS

        ds = jigsaws.load(root, capture=view)
        items = [_item(ds, vid, ds.videos[vid].extra.get("task", vid.split("_")[0])) for vid in ds.skill]
        return SkillLabels(
            "jigsaws", items, tuple(map(float, GRS_RANGE)), OSATS_ITEMS, source="surgkit.data.jigsaws"
        )
    if dataset == "clinical":
        from surgkit.data import clinical_skill

        ds = clinical_skill.load(root, require_media=False)
        scale = ds.meta.get("scale", {})
        names = tuple(scale.get("items", ds.classes.get("items", ())))
        ilo, ihi = (float(v) for v in scale.get("item_range", (1.0, 5.0)))
        lo, hi = (float(v) for v in (scale.get("score_range") or (len(names) * ilo, len(names) * ihi)))
        items = []
        for vid in ds.skill:
            task = str(ds.videos[vid].extra.get("procedure") or "clinical")
            items += [_item(ds, vid, task)] if unit == "video" else _segment_items(ds, vid, task, names)
        bad = [f"{it.id} ({it.score:g})" for it in items if not lo <= it.score <= hi]
        if bad:
            raise SurgkitError(
                f"{root}: score outside the scale's range [{lo:g}, {hi:g}] ({scale.get('name', 'M-GEARS')}, "
                f"{len(names)} items of {ilo:g}-{ihi:g}): {', '.join(bad[:5])}"
            )
        return SkillLabels(
            "clinical",
            items,
            (lo, hi),
            names,
            (ilo, ihi),
            source=f"surgkit.data.clinical_skill (unit {unit})",
        )
    raise SurgkitError(f"unknown skill dataset '{dataset}' (jigsaws, clinical or auto)")


def _segment_items(ds: Any, vid: str, task: str, names: tuple[str, ...]) -> list[SkillItem]:
    """One unit per scored segment of a clinical video: id ``<video>@<segment>``, score = mean over raters."""
    rec, subject = ds.skill[vid], ds.videos[vid].subject
    surgeon = str(subject) if subject is not None else f"?{vid}"
    out = []
    for seg in rec.segments:
        items = {k: float(np.mean([r.items[k] for r in seg.ratings])) for k in names}
        unit = SkillItem(
            f"{vid}@{seg.name}", task, surgeon, float(seg.score), items, vid, seg.start_s, seg.end_s
        )
        out.append(unit)
    return out


def _item(ds: Any, vid: str, task: str) -> SkillItem:
    rec = ds.skill[vid]
    subject = ds.videos[vid].subject
    return SkillItem(
        vid, task, str(subject) if subject is not None else f"?{vid}", float(rec.score), dict(rec.items)
    )


# -- folds -------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Fold:
    name: str  # file-system safe
    train: list[str]
    test: list[str]


def make_folds(items: list[SkillItem], scheme: str, k: int = 4, seed: int = 0) -> list[Fold]:
    """Folds over the items of one task from :mod:`surgkit.data.splits` (§1.2): LOSO, LOUO and the
    MUSDL 4-fold lists for JIGSAWS; random k-fold grouped by surgeon (``kfold``) for any dataset; random
    k-fold grouped by video (``random_kfold``: the paper's random 4-fold on RAH-/RARP-skill; the scored
    segments of one video stay on one side, a surgeon may be on both)."""
    from surgkit.data import splits

    if scheme not in SCHEMES:
        raise SurgkitError(f"unknown scheme '{scheme}' (choose from {', '.join(SCHEMES)})")
    ids = [it.id for it in items]
    if scheme == "LOSO":
        found = splits.jigsaws_loso(ids)
    elif scheme == "LOUO":
        found = splits.jigsaws_louo(ids)
    elif scheme == "4fold":
        found = splits.jigsaws_4fold(ids, items[0].task)
    elif scheme == "kfold":
        found = splits.kfold(ids, {it.id: it.surgeon for it in items}, k=k, seed=seed)
    else:
        found = splits.kfold(ids, {it.id: it.video_id for it in items}, k=k, seed=seed)
    return [
        Fold(re.sub(r"[^A-Za-z0-9_.-]+", "_", s.name), list(s.train), list(s.test)) for s in found if s.test
    ]


# -- metrics -----------------------------------------------------------------------------------------
def spearman(pred: np.ndarray, true: np.ndarray) -> float:
    """Spearman ρ (:func:`surgkit.metrics.skill.spearman`); NaN, without a warning, when a side is constant."""
    from surgkit.metrics.skill import spearman as _spearman

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float(_spearman(pred, true))


def mae(pred: np.ndarray, true: np.ndarray) -> float:
    from surgkit.metrics.skill import mae as _mae

    return float(_mae(pred, true))


def fisher_z_mean(correlations: list[float]) -> float:
    """Fisher-z mean of the finite correlations (:func:`surgkit.metrics.skill.fisher_z_mean`); NaN if none."""
    from surgkit.metrics.skill import fisher_z_mean as _fz

    r = [c for c in correlations if c is not None and math.isfinite(c)]
    return float(_fz(r)) if r else float("nan")


def cv_summary(folds: list[dict[str, Any]], score_range: tuple[float, float]) -> dict[str, Any]:
    """:func:`surgkit.metrics.skill.cross_validation_summary` over dicts with name, pred, true, ids."""
    from surgkit.metrics.skill import cross_validation_summary

    return cross_validation_summary(folds, aggregate="mean", y_range=score_range)
