"""Pretraining leakage guard: the pretraining corpus must not contain any downstream test video.

SurgVISTA's authors found Cholec80 test videos inside M2CAI16 by hand; surgkit checks it before
every pretraining run with :func:`surgkit.data.leakage.check_leakage` (same id, same file, or
same content by offset-consistent perceptual frame hashes, robust to renaming, re-encoding,
resizing and resampling). Leakage raises :class:`~surgkit.errors.LeakageError` listing the pairs
unless ``allow=True`` (``--allow-leakage``); the result is recorded in the run's settings.json.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from surgkit.video.clips import ClipSource, discover_sources


def _video_set(sources: Sequence[ClipSource]) -> dict:
    from surgkit.data.model import Video

    return {str(s.path): Video(s.id, s.path, s.source_fps, s.num_source_frames) for s in sources}


def check_pretraining_leakage(
    sources: Sequence[ClipSource],
    test_paths: Sequence[str],
    allow: bool = False,
    cache_dir: str | Path | None = None,
) -> dict:
    """Run the guard; returns a record for the run's settings.json (or raises LeakageError)."""
    from surgkit.data.leakage import check_leakage
    from surgkit.utils.progress import console

    if not test_paths:
        console.print(
            "[yellow]warning:[/] no downstream test sets given (test_data / --test-data): the pretraining "
            "corpus is NOT checked for test-video leakage"
        )
        return {"checked": False}
    test = [src for p in test_paths for src in discover_sources(p)]
    train_set = {f"pretrain/{k}": v for k, v in _video_set(sources).items()}
    test_set = {f"test/{k}": v for k, v in _video_set(test).items()}
    pairs = check_leakage(train_set, test_set, allow=allow, cache_dir=cache_dir, progress=False)
    return {
        "checked": True,
        "method": "surgkit.data.leakage (id, file, perceptual content hashes)",
        "test_videos": len(test),
        "pairs": [str(p) for p in pairs],
        "allowed": allow,
    }
