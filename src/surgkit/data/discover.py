"""Find dataset roots under a folder by their signature files (used by the demo and ``data check``).

Each native layout has a file or folder that identifies it (spec metrics_formats.md §7), e.g. Cholec80
has ``phase_annotations/``, a JIGSAWS root holds ``<Task>/meta_file_<Task>.txt``. :func:`discover`
walks a folder (depth-limited) and returns {dataset name: root}; several roots of one dataset get
keys ``name``, ``name#2``, ...
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from surgkit.vocab import JIGSAWS_TASKS


def _any(folder: Path, pattern: str) -> bool:
    return any(True for _ in folder.glob(pattern))


def _csv_header_startswith(folder: Path, prefix: str) -> bool:
    for p in folder.glob("*.csv"):
        try:
            with open(p, encoding="utf-8-sig") as fh:
                if fh.readline().startswith(prefix):
                    return True
        except OSError:
            continue
    return False


SIGNATURES: tuple[tuple[str, Callable[[Path], bool]], ...] = (
    ("jigsaws", lambda d: any((d / t / f"meta_file_{t}.txt").is_file() for t in JIGSAWS_TASKS)),
    ("cholec80", lambda d: (d / "phase_annotations").is_dir()),
    ("cholect50", lambda d: (d / "labels").is_dir() and _any(d / "labels", "VID*.json")),
    ("cholect45", lambda d: (d / "triplet").is_dir() and (d / "dict").is_dir()),
    ("endoscapes", lambda d: (d / "train_vids.txt").is_file() or _any(d, "*/annotation_ds_coco.json")),
    (
        "cholec80_cvs",
        lambda d: (d / "surgeons_annotations.csv").is_file() or (d / "surgeons_annotations.xlsx").is_file(),
    ),
    ("cholec80_boxes", lambda d: _csv_header_startswith(d, "Surgery_num,")),
    ("endovis18_vqla", lambda d: _any(d, "seq_*/vqla/label")),
    ("endovis17_vqla", lambda d: (d / "vqla" / "label").is_dir() and (d / "left_frames").is_dir()),
    (
        "m2cai16",
        lambda d: (
            _any(d, "*workflow_video_*.txt")
            or (d / "train_dataset").is_dir()
            or _any(d, "phases/video_phase_*.txt")
        ),
    ),
    ("autolaparo", lambda d: (d / "labels").is_dir() and _any(d / "labels", "label_*.txt")),
    ("copesd", lambda d: _any(d, "*.json") and _copesd_like(d)),
    (
        "clinical_skill",
        lambda d: (
            (d / "skill.json").is_file() or ((d / "videos.csv").is_file() and (d / "ratings.csv").is_file())
        ),
    ),
)


def _copesd_like(folder: Path) -> bool:
    for p in folder.glob("*.json"):
        try:
            with open(p, encoding="utf-8") as fh:
                head = fh.read(400)
        except OSError:
            continue
        if head.lstrip().startswith("[") and '"conversations"' in head:
            return True
    return False


def discover(root: str | Path, max_depth: int = 3) -> dict[str, Path]:
    """{dataset name: root folder} for every recognised layout under ``root`` (``root`` included)."""
    root = Path(root)
    found: dict[str, Path] = {}
    claimed: list[Path] = []
    for dirpath, dirnames, _ in os.walk(root):
        here = Path(dirpath)
        depth = len(here.relative_to(root).parts)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if depth < max_depth else []
        if any(here.is_relative_to(c) for c in claimed):
            continue
        for name, test in SIGNATURES:
            if test(here):
                key, k = name, 2
                while key in found:
                    key, k = f"{name}#{k}", k + 1
                found[key] = here
                if name not in (
                    "cholec80_cvs",
                    "cholec80_boxes",
                ):  # table datasets may sit inside another root
                    claimed.append(here)  # a dataset root's sub-folders are not searched further
    return found
