"""The one place where surgkit.skill meets the data, splits and metrics packages.

Labels come from :mod:`surgkit.data.jigsaws` (or the generic clinical-skill reader), folds from
:mod:`surgkit.data.splits` and metrics from :mod:`surgkit.metrics.skill`. While one of them is not
available, a minimal interim implementation below is used instead and :func:`backends` says so
(it is recorded in every results.json), so a run always states where its labels, folds and metrics
came from.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from surgkit.errors import DataFormatError, SurgkitError
from surgkit.vocab import GRS_RANGE, JIGSAWS_TASKS, MGEARS_ITEMS, MGEARS_RANGE, OSATS_ITEMS

SCHEMES = ("LOSO", "LOUO", "4fold", "kfold")
_TRIAL_RE = re.compile(r"^(?P<task>[A-Za-z_]+)_(?P<user>[A-Z])(?P<num>\d{3})$")


@dataclasses.dataclass
class SkillItem:
    """One scored video: a JIGSAWS trial or a clinical video/segment."""

    id: str
    task: str
    surgeon: str
    score: float
    items: dict[str, float] = dataclasses.field(default_factory=dict)
    supertrial: str | None = None


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
def load_labels(data_dir: str | Path, dataset: str = "auto") -> SkillLabels:
    """Skill labels under ``data_dir``: a JIGSAWS root (task folders with ``meta_file_<Task>.txt``)
    or a clinical skill table (``skill.csv``: video, surgeon, task, score[, M-GEARS items])."""
    root = Path(data_dir)
    if not root.is_dir():
        raise SurgkitError(f"{root}: data folder not found")
    if dataset == "auto":
        dataset = "jigsaws" if any((root / t).is_dir() for t in JIGSAWS_TASKS) else "clinical"
    if dataset == "jigsaws":
        return _load_jigsaws(root)
    if dataset == "clinical":
        return _load_clinical(root)
    raise SurgkitError(f"unknown skill dataset '{dataset}' (jigsaws, clinical or auto)")


def _load_jigsaws(root: Path) -> SkillLabels:
    try:
        from surgkit.data import jigsaws as reader  # type: ignore[attr-defined]
    except ImportError:
        reader = None
    if reader is not None and hasattr(reader, "load"):
        return _from_data_reader(reader.load(root), "jigsaws")
    items: list[SkillItem] = []
    for task in JIGSAWS_TASKS:
        meta = root / task / f"meta_file_{task}.txt"
        if meta.is_file():
            items.extend(_parse_meta_file(meta, task))
    if not items:
        raise SurgkitError(f"{root}: no JIGSAWS meta_file_<Task>.txt found under {', '.join(JIGSAWS_TASKS)}")
    return SkillLabels("jigsaws", items, GRS_RANGE, OSATS_ITEMS, source="interim meta_file parser")


def _parse_meta_file(path: Path, task: str) -> list[SkillItem]:
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 9:
            raise DataFormatError(
                f"expected 9 fields (trial, level, GRS, 6 items), got {len(fields)}", path=path, line=lineno
            )
        m = _TRIAL_RE.match(fields[0])
        if not m:
            raise DataFormatError(f"bad trial id '{fields[0]}'", path=path, line=lineno)
        try:
            grs, scores = float(fields[2]), [float(v) for v in fields[3:]]
        except ValueError:
            raise DataFormatError("GRS and item scores must be numbers", path=path, line=lineno) from None
        out.append(
            SkillItem(
                id=fields[0],
                task=task,
                surgeon=m["user"],
                score=grs,
                items=dict(zip(OSATS_ITEMS, scores, strict=True)),
                supertrial=m["num"][-1],
            )
        )
    return out


def _load_clinical(root: Path) -> SkillLabels:
    path = root / "skill.csv"
    if not path.is_file():
        raise SurgkitError(f"{root}: neither a JIGSAWS root nor a clinical table ({path.name} missing)")
    import csv

    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    items = []
    for lineno, row in enumerate(rows, start=2):
        try:
            item_scores = {k: float(row[k]) for k in MGEARS_ITEMS if row.get(k) not in (None, "")}
            items.append(
                SkillItem(
                    id=row["video"],
                    task=row.get("task") or "clinical",
                    surgeon=row["surgeon"],
                    score=float(row["score"]),
                    items=item_scores,
                )
            )
        except (KeyError, ValueError) as e:
            raise DataFormatError(
                f"bad row ({e}); need video, surgeon, score", path=path, line=lineno
            ) from None
    return SkillLabels("clinical", items, MGEARS_RANGE, MGEARS_ITEMS, source="interim skill.csv reader")


def _from_data_reader(ds: Any, dataset: str) -> SkillLabels:
    items = []
    for vid, rec in ds.skill.items():
        video = ds.videos.get(vid)
        surgeon = getattr(video, "subject", None) or ""
        extra = getattr(video, "extra", {}) or {}
        task = extra.get("task") or vid.split("_")[0]
        trial = extra.get("trial", vid)
        items.append(
            SkillItem(
                id=trial,
                task=task,
                surgeon=str(surgeon),
                score=float(rec.score),
                items=dict(rec.items),
                supertrial=extra.get("supertrial", trial[-1] if trial[-1:].isdigit() else None),
            )
        )
    return SkillLabels(dataset, items, GRS_RANGE, OSATS_ITEMS, source="surgkit.data reader")


# -- folds -------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Fold:
    name: str
    train: list[str]
    test: list[str]


def make_folds(items: list[SkillItem], scheme: str, k: int = 4, seed: int = 0) -> list[Fold]:
    """Cross-validation folds over ``items`` of one task (§1.2): LOSO, LOUO, 4fold or kfold (by surgeon)."""
    if scheme not in SCHEMES:
        raise SurgkitError(f"unknown scheme '{scheme}' (choose from {', '.join(SCHEMES)})")
    ids = [it.id for it in items]
    if scheme == "LOSO":
        groups = {it.id: it.supertrial for it in items}
        if any(g is None for g in groups.values()):
            raise SurgkitError("LOSO needs JIGSAWS super-trial ids (trial ids ending in a digit)")
        return _leave_group_out(ids, groups, "supertrial")
    if scheme == "LOUO":
        return _leave_group_out(ids, {it.id: it.surgeon for it in items}, "user")
    if scheme == "4fold":
        return _four_fold(items)
    return _grouped_kfold(items, k, seed)


def _leave_group_out(ids: list[str], groups: dict[str, str | None], label: str) -> list[Fold]:
    folds = []
    for g in sorted({str(v) for v in groups.values()}):
        test = [i for i in ids if str(groups[i]) == g]
        folds.append(Fold(f"{label}_{g}", [i for i in ids if str(groups[i]) != g], test))
    return folds


def _four_fold(items: list[SkillItem]) -> list[Fold]:
    try:
        from surgkit.data import splits  # type: ignore[attr-defined]

        table = splits.JIGSAWS_FOUR_FOLD  # type: ignore[attr-defined]
    except (ImportError, AttributeError):
        raise SurgkitError(
            "the JIGSAWS 4-fold lists come from surgkit.data.splits, which is not available"
        ) from None
    task = items[0].task
    ids = [it.id for it in items]
    folds = []
    for i, members in enumerate(table[task]):
        test = [x for x in ids if x.split("_")[-1] in members or x in members]
        folds.append(Fold(f"fold_{i}", [x for x in ids if x not in test], test))
    return folds


def _grouped_kfold(items: list[SkillItem], k: int, seed: int) -> list[Fold]:
    surgeons = sorted({it.surgeon for it in items})
    if len(surgeons) < k:
        raise SurgkitError(f"k-fold by surgeon needs at least k={k} surgeons, found {len(surgeons)}")
    order = np.random.default_rng(seed).permutation(len(surgeons))
    assign = {surgeons[j]: n % k for n, j in enumerate(order)}
    return [
        Fold(
            f"fold_{f}",
            [it.id for it in items if assign[it.surgeon] != f],
            [it.id for it in items if assign[it.surgeon] == f],
        )
        for f in range(k)
    ]


# -- metrics -----------------------------------------------------------------------------------------
def spearman(pred: np.ndarray, true: np.ndarray) -> float:
    """Spearman ρ (scipy.stats.spearmanr); NaN when either side is constant."""
    try:
        from surgkit.metrics.skill import spearman as real  # type: ignore[import-not-found]

        return float(real(pred, true))
    except ImportError:
        pass
    pred, true = np.asarray(pred, float), np.asarray(true, float)
    if len(pred) < 2 or np.ptp(pred) == 0 or np.ptp(true) == 0:
        return float("nan")
    from scipy.stats import spearmanr

    return float(spearmanr(pred, true).statistic)


def mae(pred: np.ndarray, true: np.ndarray) -> float:
    try:
        from surgkit.metrics.skill import mae as real  # type: ignore[import-not-found]

        return float(real(pred, true))
    except ImportError:
        return float(np.mean(np.abs(np.asarray(pred, float) - np.asarray(true, float))))


def fisher_z_mean(correlations: list[float]) -> float:
    """ρ̄ = tanh(mean(atanh(clip(ρ, ±(1 − 1e-7))))) over the finite ρ."""
    try:
        from surgkit.metrics.skill import fisher_z_mean as real  # type: ignore[import-not-found]

        return float(real(correlations))
    except ImportError:
        pass
    r = np.asarray([c for c in correlations if c is not None and math.isfinite(c)], float)
    if r.size == 0:
        return float("nan")
    return float(np.tanh(np.mean(np.arctanh(np.clip(r, -1 + 1e-7, 1 - 1e-7)))))


def backends() -> dict[str, str]:
    """Which implementation serves labels, folds and metrics (recorded in results.json)."""
    out = {}
    for name, module in (
        ("labels", "surgkit.data.jigsaws"),
        ("splits", "surgkit.data.splits"),
        ("metrics", "surgkit.metrics.skill"),
    ):
        try:
            __import__(module)
            out[name] = module
        except ImportError:
            out[name] = "surgkit.skill.interop (interim)"
    return out
