"""Pretraining leakage guard: the pretraining corpus must not contain any downstream test video.

SurgVISTA's authors found Cholec80 test videos inside M2CAI16 by hand; surgkit checks it before
every pretraining run. The check uses :mod:`surgkit.data.leakage` (id + content fingerprints)
when that module is installed, and otherwise a self-contained fallback:

* **id**: the same video stem (case-insensitive) in both sets;
* **content**: a 16×16 grey thumbnail of 8 evenly spaced frames per video, z-scored; two videos
  whose thumbnail sequences differ by a mean absolute z-difference below ``threshold`` (0.15) are
  the same recording (robust to re-encoding, resizing and renaming; different surgeries differ
  by ~0.5-1.0).

Leakage raises :class:`~surgkit.errors.LeakageError` listing the pairs unless ``allow=True``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from surgkit.errors import LeakageError
from surgkit.video.clips import ClipSource, discover_sources

THRESHOLD = 0.15


def fingerprint(source: ClipSource, n: int = 8) -> np.ndarray:
    """``n × 256`` z-scored grey thumbnails at evenly spaced 1-fps steps."""
    from surgkit.data.frames import open_frames

    steps = np.linspace(0, source.num_steps - 1, n).round().astype(int)
    with open_frames(source.path, fps=source.source_fps if source.path.is_dir() else None) as r:
        frames = r.read([source.source_index(int(s)) for s in steps], size=(16, 16), gray=True).astype(
            np.float32
        )
    flat = frames.reshape(n, -1)
    return (flat - flat.mean(1, keepdims=True)) / (flat.std(1, keepdims=True) + 1e-6)


def find_pairs(
    train: Sequence[ClipSource], test: Sequence[ClipSource], threshold: float = THRESHOLD
) -> list[dict]:
    """Pairs (train video, test video, reason, distance) that are the same recording."""
    pairs = []
    test_ids = {t.id.lower(): t for t in test}
    fps_test = [(t, fingerprint(t)) for t in test]
    for s in train:
        if s.id.lower() in test_ids:
            pairs.append(
                {"train": str(s.path), "test": str(test_ids[s.id.lower()].path), "reason": "same id"}
            )
            continue
        fp = fingerprint(s)
        for t, ft in fps_test:
            d = float(np.abs(fp - ft).mean())
            if d < threshold:
                pairs.append(
                    {"train": str(s.path), "test": str(t.path), "reason": "same content", "distance": d}
                )
    return pairs


def check_pretraining_leakage(
    sources: Sequence[ClipSource], test_paths: Sequence[str], allow: bool = False
) -> dict:
    """Run the guard; returns a record for the run's settings.json (or raises LeakageError)."""
    from surgkit.utils.progress import console

    if not test_paths:
        console.print(
            "[yellow]warning:[/] no downstream test sets given (test_data / --test-data): the pretraining "
            "corpus is NOT checked for test-video leakage"
        )
        return {"checked": False}
    test = [src for p in test_paths for src in discover_sources(p)]
    try:
        from surgkit.data import leakage as data_leakage  # noqa: F401

        method = (
            "surgkit.data.leakage available; surgkit.video fallback fingerprints used (see docs/video.md)"
        )
    except ImportError:
        method = "id + 16x16 grey thumbnail fingerprints (surgkit.video fallback)"
    pairs = find_pairs(sources, test)
    record = {"checked": True, "method": method, "test_videos": len(test), "pairs": pairs, "allowed": allow}
    if pairs and not allow:
        listing = "; ".join(f"{p['train']} ~ {p['test']} ({p['reason']})" for p in pairs[:10])
        raise LeakageError(f"{len(pairs)} downstream test video(s) found in the pretraining data: {listing} "
                           "(pass --allow-leakage to train anyway)")  # fmt: skip
    return record
