"""Train/val/test splits: the official ones per dataset, JIGSAWS LOSO/LOUO/4-fold, grouped k-fold.

Every function returns a list of :class:`Split` (one per fold; a single-split scheme returns a list of
one). Ids are the reader's video ids. Official lists are filtered to the videos present; what is
absent is stated in ``Split.notes`` (so a partial copy of a dataset still gets the official split).

No scheme here fills ``val`` from ``test``: where a reference implementation selects its checkpoint on
the test set (SurgVISTA on Cholec80/M2CAI16; Contra-Sformer/ViSA on JIGSAWS), ``val`` is left empty
and a note says so.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from surgkit.data._parse import natural_key, read_text_lines
from surgkit.data.model import Dataset
from surgkit.errors import DataFormatError, SurgkitError

TABLES = Path(__file__).with_name("tables")


@dataclasses.dataclass
class Split:
    """One fold: train/val/test video ids and the scheme that produced them."""

    scheme: str
    name: str
    train: list[str]
    val: list[str] = dataclasses.field(default_factory=list)
    test: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def check_disjoint(self) -> None:
        """Raise if a video is in two parts of the split."""
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            both = set(getattr(self, a)) & set(getattr(self, b))
            if both:
                raise SurgkitError(f"{self.scheme} {self.name}: {sorted(both)[:5]} in both {a} and {b}")


Fold = Split  # one name for both ideas

# --- official lists ----------------------------------------------------------------------------

CHOLECT50_CROSSVAL: tuple[tuple[int, ...], ...] = (
    (79, 2, 51, 6, 25, 14, 66, 23, 50, 111),
    (80, 32, 5, 15, 40, 47, 26, 48, 70, 96),
    (31, 57, 36, 18, 52, 68, 10, 8, 73, 103),
    (42, 29, 60, 27, 65, 75, 22, 49, 12, 110),
    (78, 43, 62, 35, 74, 1, 56, 4, 13, 92),
)
CHOLECT50_CHALLENGE = {"val": (5, 18, 36, 65, 74), "test": (92, 96, 103, 110, 111)}
CHOLECT50_RENDEZVOUS = {"val": (8, 12, 29, 50, 78), "test": (6, 51, 10, 73, 14, 74, 32, 80, 42, 111)}
ENDOVIS18 = {"train": (2, 3, 4, 6, 7, 9, 10, 11, 12, 14, 15), "test": (1, 5, 16)}
CHOLEC80 = {"32/8/40": ((1, 32), (33, 40), (41, 80)), "40/40": ((1, 40), (0, -1), (41, 80))}
AUTOLAPARO = ((1, 10), (11, 14), (15, 21))


def video_number(vid: str) -> int:
    """Trailing number of an id: 'video07' -> 7, 'VID111' -> 111, 'seq_5' -> 5."""
    m = re.search(r"(\d+)$", vid)
    if not m:
        raise SurgkitError(f"video id {vid!r} has no number; the official split is defined by video numbers")
    return int(m.group(1))


def _by_number(ids: Iterable[str]) -> dict[int, str]:
    out: dict[int, str] = {}
    for vid in ids:
        n = video_number(vid)
        if n in out:
            raise SurgkitError(f"two videos with number {n}: {out[n]!r} and {vid!r}")
        out[n] = vid
    return out


def _pick(numbers: Iterable[int], by_num: Mapping[int, str], missing: list[int]) -> list[str]:
    out = []
    for n in numbers:
        if n in by_num:
            out.append(by_num[n])
        else:
            missing.append(n)
    return out


def _from_numbers(
    scheme: str, name: str, ids: Sequence[str], parts: Mapping[str, Iterable[int]], rest: str | None = None
) -> Split:
    by_num = _by_number(ids)
    missing: list[int] = []
    chosen = {part: _pick(nums, by_num, missing) for part, nums in parts.items()}
    if rest is not None:
        used = {v for lst in chosen.values() for v in lst}
        chosen[rest] = sorted((v for v in ids if v not in used), key=natural_key)
    split = Split(scheme, name, chosen.get("train", []), chosen.get("val", []), chosen.get("test", []))
    if missing:
        split.notes.append(f"{len(missing)} official video(s) absent from the data: {sorted(missing)[:10]}")
    split.check_disjoint()
    return split


def _ranges(ranges: tuple[tuple[int, int], ...]) -> dict[str, range]:
    return {part: range(lo, hi + 1) for part, (lo, hi) in zip(("train", "val", "test"), ranges, strict=True)}


def cholec80(ids: Sequence[str], variant: str = "32/8/40") -> list[Split]:
    """Cholec80: '32/8/40' (train 1-32, val 33-40, test 41-80; TeCNO/Trans-SVNet) or '40/40'."""
    if variant not in CHOLEC80:
        raise SurgkitError(f"unknown Cholec80 split {variant!r} (choose from {', '.join(CHOLEC80)})")
    split = _from_numbers(f"cholec80-{variant}", "official", ids, _ranges(CHOLEC80[variant]))
    if variant == "40/40":
        split.notes.append("no validation set; SurgVISTA/Surgformer select the checkpoint on the test videos")
    return [split]


def cholect50(ids: Sequence[str], variant: str = "cholect50-challenge") -> list[Split]:
    """CholecT50/T45 splits: 'cholect50-crossval', 'cholect45-crossval', 'cholect50-challenge', 'cholect50'.

    Cross-validation: fold k tests CHOLECT50_CROSSVAL[k]; validation = the last 5 videos of the other
    folds concatenated in fold order; CholecT45 drops the last video of every fold.
    """
    if variant in ("cholect50-crossval", "cholect45-crossval"):
        folds = [f[:-1] if variant.startswith("cholect45") else f for f in CHOLECT50_CROSSVAL]
        out = []
        for k, test in enumerate(folds):
            rest = [n for j, f in enumerate(folds) if j != k for n in f]
            out.append(
                _from_numbers(
                    variant, f"fold {k + 1}", ids, {"train": rest[:-5], "val": rest[-5:], "test": test}
                )
            )
        return out
    if variant == "cholect50-challenge":
        return [_from_numbers(variant, "official", ids, CHOLECT50_CHALLENGE, rest="train")]
    if variant == "cholect50":
        return [_from_numbers(variant, "rendezvous", ids, CHOLECT50_RENDEZVOUS, rest="train")]
    raise SurgkitError(f"unknown CholecT50 split {variant!r}")


def endovis18(ids: Sequence[str]) -> list[Split]:
    """EndoVis18-VQLA: train sequences 2 3 4 6 7 9 10 11 12 14 15, test 1 5 16."""
    return [_from_numbers("endovis18-official", "official", ids, ENDOVIS18)]


def autolaparo(ids: Sequence[str]) -> list[Split]:
    """AutoLaparo: videos 1-10 train, 11-14 val, 15-21 test."""
    return [_from_numbers("autolaparo-10/4/7", "official", ids, _ranges(AUTOLAPARO))]


def from_files(ds: Dataset, scheme: str) -> list[Split]:
    """Splits shipped with the data (Endoscapes ``*_vids.txt``, M2CAI16 file names, SurgVISTA lists)."""
    if not ds.split_files:
        raise SurgkitError(f"{ds.name}: no split files found in {ds.root}")
    present = set(ds.videos)
    split = Split(scheme, "official", *(list(ds.split_files.get(p, [])) for p in ("train", "val", "test")))
    for part in ("train", "val", "test"):
        lst = getattr(split, part)
        absent = [v for v in lst if v not in present]
        if absent:
            split.notes.append(f"{len(absent)} {part} id(s) listed but without data: {absent[:5]}")
            setattr(split, part, [v for v in lst if v in present])
    if ds.name == "m2cai16":
        split.notes.append("no validation set; SurgVISTA selects the checkpoint on the test videos")
    split.check_disjoint()
    return [split]


# --- JIGSAWS -------------------------------------------------------------------------------------


def _trial_parts(trial: str) -> tuple[str, str, int]:
    m = re.fullmatch(r"(?:(.+)_)?([A-Z])(\d{3})", trial)
    if not m:
        raise SurgkitError(f"not a JIGSAWS trial id: {trial!r}")
    return m.group(1) or "", m.group(2), int(m.group(3))


def jigsaws_loso(trials: Sequence[str]) -> list[Split]:
    """Leave one super-trial out: fold i (1-5) tests every trial whose number ends in i."""
    out = []
    for i in range(1, 6):
        test = [t for t in trials if _trial_parts(t)[2] % 10 == i]
        out.append(Split("LOSO", f"{i}_Out", [t for t in trials if t not in test], [], test))
    return [s for s in out if s.test]


def jigsaws_louo(trials: Sequence[str]) -> list[Split]:
    """Leave one user out: one fold per user letter present (B..I; 7 folds for Needle Passing, no G)."""
    users = sorted({_trial_parts(t)[1] for t in trials})
    return [
        Split(
            "LOUO",
            f"user {u}",
            [t for t in trials if _trial_parts(t)[1] != u],
            [],
            [t for t in trials if _trial_parts(t)[1] == u],
        )
        for u in users
    ]


def jigsaws_4fold(trials: Sequence[str], task: str) -> list[Split]:
    """MUSDL/CoRe 4-fold lists (shipped table ``tables/jigsaws_4fold.json``): fold k = test, rest = train."""
    table = json.loads((TABLES / "jigsaws_4fold.json").read_text())["folds"]
    if task not in table:
        raise SurgkitError(f"no 4-fold table for task {task!r} (have {', '.join(table)})")
    by_suffix = {
        f"{_trial_parts(t)[1]}{_trial_parts(t)[2]:03d}": t for t in trials if _trial_parts(t)[0] in ("", task)
    }
    out = []
    for k, fold in enumerate(table[task]):
        test = [by_suffix[s] for s in fold if s in by_suffix]
        absent = [s for s in fold if s not in by_suffix]
        train = [by_suffix[s] for j, f in enumerate(table[task]) if j != k for s in f if s in by_suffix]
        split = Split("4fold", f"fold {k}", train, [], test)
        if absent:
            split.notes.append(f"{len(absent)} listed trial(s) absent: {absent}")
        out.append(split)
    listed = {s for f in table[task] for s in f}
    extra = [t for s, t in by_suffix.items() if s not in listed]
    if extra:
        out[0].notes.append(f"{len(extra)} trial(s) not in any 4-fold list (unused): {extra}")
    return out


def jigsaws_setup_folds(root: str | Path, task: str, scheme: str = "LOUO") -> list[Split]:
    """Folds from the official ``Experimental_setup/<Task>/unBalanced/GestureRecognition/<X>Out`` files.

    Test trials of fold k = the second column of ``<k>_Out/itr_1/Test.txt`` (as ViSA reads them);
    train = the second column of ``Train.txt``.
    """
    kind = {"LOUO": "UserOut", "LOSO": "SuperTrialOut"}[scheme]
    base = Path(root) / "Experimental_setup" / task / "unBalanced" / "GestureRecognition" / kind
    if not base.is_dir():
        raise DataFormatError("missing Experimental_setup folder", path=base)
    out = []
    for fold in sorted(
        (p for p in base.iterdir() if re.fullmatch(r"\d+_Out", p.name)),
        key=lambda p: int(p.name.split("_")[0]),
    ):
        parts = {}
        for part in ("Train", "Test"):
            path = fold / "itr_1" / f"{part}.txt"
            trials = []
            for i, line in enumerate(read_text_lines(path), start=1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 2 or not fields[1].endswith(".txt"):
                    raise DataFormatError("expected '<segment file>  <trial>.txt'", path=path, line=i)
                name = fields[1][: -len(".txt")]
                if name not in trials:
                    trials.append(name)
            parts[part] = trials
        out.append(Split(f"{scheme}-files", fold.name, parts["Train"], [], parts["Test"]))
    return out


# --- grouped k-fold --------------------------------------------------------------------------------


def kfold(
    ids: Sequence[str], groups: Mapping[str, str | None] | None = None, k: int = 5, seed: int = 0
) -> list[Split]:
    """Random k-fold grouped by surgeon: all videos of one surgeon land in the same test fold.

    Groups are shuffled with ``random.Random(seed)`` and then assigned, largest first, to the fold
    with the fewest videos so far (ties: lowest fold index), which balances fold sizes. A video with no
    known group forms its own group (and the notes say so).
    """
    if k < 2:
        raise SurgkitError("k-fold needs k >= 2")
    members: dict[str, list[str]] = {}
    unknown = 0
    for vid in ids:
        g = (groups or {}).get(vid)
        if g is None:
            unknown += 1
            g = f"__video__{vid}"
        members.setdefault(g, []).append(vid)
    if len(members) < k:
        raise SurgkitError(f"only {len(members)} surgeon group(s) for {k} folds")
    names = sorted(members)
    random.Random(seed).shuffle(names)
    names.sort(key=lambda g: -len(members[g]))  # stable: shuffled order among equal sizes
    folds: list[list[str]] = [[] for _ in range(k)]
    for g in names:
        target = min(range(k), key=lambda j: (len(folds[j]), j))
        folds[target].extend(members[g])
    out = []
    for j, test in enumerate(folds):
        s = Split(
            f"kfold-{k}-seed{seed}",
            f"fold {j}",
            [v for v in ids if v not in set(test)],
            [],
            sorted(test, key=natural_key),
        )
        if unknown:
            s.notes.append(f"{unknown} video(s) without a surgeon id were grouped alone")
        out.append(s)
    return out


# --- dispatcher --------------------------------------------------------------------------------------

SCHEMES = ("official", "LOSO", "LOUO", "4fold", "kfold")


def official(ds: Dataset, variant: str | None = None) -> list[Split]:
    """The official split of a loaded dataset (``variant`` picks among several, e.g. 'cholect50-crossval')."""
    ids = list(ds.videos)
    name = ds.name
    if name in ("cholec80", "cholec80_boxes"):
        return cholec80(ids, variant or "32/8/40")
    if name == "cholec80_cvs":
        splits = cholec80(ids, variant or "40/40")
        splits[0].notes.append("SurgVISTA's Cholec80-CVS lists: videos <= 40 train, the rest test")
        return splits
    if name in ("cholect50", "cholect45"):
        return cholect50(ids, variant or ds.split_scheme or f"{name}-crossval")
    if name == "endovis18_vqla":
        return endovis18(ids)
    if name == "endovis17_vqla":
        return [
            Split(
                "endovis17-test",
                "external test",
                [],
                [],
                ids,
                ["EndoVis17-VQLA is an external test set only"],
            )
        ]
    if name == "autolaparo":
        return autolaparo(ids)
    if name in ("endoscapes", "m2cai16", "surgicalactions160"):
        if name == "surgicalactions160" and not ds.split_files:
            raise SurgkitError(
                "SurgicalActions160 has no official split (and no train.txt/test.txt here); use --scheme kfold"
            )
        return from_files(ds, ds.split_scheme or f"{name}-files")
    if name == "jigsaws":
        raise SurgkitError("JIGSAWS has no single official split: use --scheme LOSO, LOUO or 4fold")
    raise SurgkitError(f"{name}: no official split; use --scheme kfold")


def make_splits(
    ds: Dataset,
    scheme: str = "official",
    task: str | None = None,
    k: int = 5,
    seed: int = 0,
    variant: str | None = None,
) -> list[Split]:
    """Splits of a loaded dataset by scheme name: official | LOSO | LOUO | 4fold | kfold."""
    key = scheme.lower()
    if key == "official":
        return official(ds, variant)
    if key == "kfold":
        return kfold(list(ds.videos), ds.subjects(), k=k, seed=seed)
    if key in ("loso", "louo", "4fold"):
        if ds.name != "jigsaws":
            raise SurgkitError(f"--scheme {scheme} is defined for JIGSAWS only (dataset is {ds.name})")
        tasks = ds.meta.get("tasks", [])
        if task is None:
            if len(tasks) != 1:
                raise SurgkitError(f"several JIGSAWS tasks loaded ({', '.join(tasks)}): pass --task")
            task = tasks[0]
        from surgkit.data.jigsaws import normalise_task

        task = normalise_task(task)
        trials = [v for v, video in ds.videos.items() if video.extra.get("task") == task]
        if not trials:
            raise SurgkitError(f"no {task} trials loaded")
        if key == "loso":
            return jigsaws_loso(trials)
        if key == "louo":
            return jigsaws_louo(trials)
        return jigsaws_4fold(trials, task)
    raise SurgkitError(f"unknown split scheme {scheme!r} (choose from {', '.join(SCHEMES)})")
