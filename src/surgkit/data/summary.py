"""Summaries of a loaded dataset (what ``surgkit data check`` prints): counts, classes, durations, problems."""

from __future__ import annotations

import collections
from typing import Any

import numpy as np

from surgkit.data.model import Dataset


def _class_counts(ds: Dataset) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    if ds.phases:
        names = next(iter(ds.phases.values())).names
        counts = np.bincount(np.concatenate([p.phases for p in ds.phases.values()]), minlength=len(names))
        out["phase (labelled frames)"] = {n: int(c) for n, c in zip(names, counts, strict=False)}
    if ds.tools:
        names = next(iter(ds.tools.values())).names
        counts = np.sum([t.presence.sum(axis=0) for t in ds.tools.values()], axis=0)
        out["tool (frames present)"] = {n: int(c) for n, c in zip(names, counts, strict=True)}
    if ds.triplets:
        from surgkit.vocab import TRIPLET_NAMES

        counts = np.sum([t.triplets.sum(axis=0, dtype=np.int64) for t in ds.triplets.values()], axis=0)
        top = np.argsort(-counts, kind="stable")[:10]
        out["triplet (top 10, frames)"] = {TRIPLET_NAMES[k]: int(counts[k]) for k in top if counts[k]}
        empty = sum(int((t.triplets.sum(axis=1) == 0).sum()) for t in ds.triplets.values())
        out["triplet (top 10, frames)"]["(no triplet)"] = empty
    if ds.boxes:
        out["box label"] = dict(collections.Counter(b.label for b in ds.boxes).most_common())
    if ds.vqa:
        out["answer"] = dict(collections.Counter(r.answer for r in ds.vqa).most_common())
    if ds.clips:
        out["clip class"] = {
            str(k): v for k, v in sorted(collections.Counter(c.label for c in ds.clips.values()).items())
        }
    if ds.segments:
        out["segment label"] = dict(sorted(collections.Counter(s.label for s in ds.segments).items()))
    return out


def _durations(ds: Dataset) -> dict[str, float]:
    secs = [v.duration_s for v in ds.videos.values() if v.duration_s is not None]
    if not secs and ds.phases:
        secs = [p.num_source_frames / p.fps for p in ds.phases.values() if p.num_source_frames and p.fps]
    if not secs:
        return {}
    return {
        "videos_with_duration": len(secs),
        "total_h": round(sum(secs) / 3600, 3),
        "mean_s": round(float(np.mean(secs)), 1),
        "min_s": round(min(secs), 1),
        "max_s": round(max(secs), 1),
    }


def _scores(ds: Dataset) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if ds.skill:
        scores = [s.score for s in ds.skill.values()]
        out["skill"] = {"scale": next(iter(ds.skill.values())).scale, "n": len(scores), "min": min(scores), "max": max(scores),
                        "mean": round(float(np.mean(scores)), 3)}  # fmt: skip
    if ds.cvs:
        crit = np.asarray([c.criteria for c in ds.cvs], np.float64)
        names = ds.classes.get("criteria", ("c1", "c2", "c3"))
        out["cvs_mean"] = {n: round(float(m), 4) for n, m in zip(names, crit.mean(axis=0), strict=True)}
        out["cvs_records"] = len(ds.cvs)
    return out


def summarize(ds: Dataset) -> dict[str, Any]:
    """A JSON-able summary: counts, class histograms, durations, scores, subjects, problems and notes."""
    subjects = sorted({v.subject for v in ds.videos.values() if v.subject})
    return {
        "dataset": ds.name,
        "root": str(ds.root),
        "split_scheme": ds.split_scheme,
        "counts": ds.counts(),
        "subjects": subjects,
        "classes": _class_counts(ds),
        "durations": _durations(ds),
        "scores": _scores(ds),
        "split_files": {k: len(v) for k, v in ds.split_files.items()},
        "skipped": [
            {"item": s.item, "reason": s.reason, "path": str(s.path) if s.path else None} for s in ds.skipped
        ],
        "notes": list(ds.notes),
    }


def print_summary(summary: dict[str, Any], max_skipped: int = 20) -> None:
    """Render a summary as rich tables on stdout."""
    from rich.console import Console
    from rich.table import Table

    con = Console()
    t = Table(title=f"{summary['dataset']} at {summary['root']}", show_header=True)
    t.add_column("what")
    t.add_column("value", justify="right")
    for k, v in summary["counts"].items():
        t.add_row(k, str(v))
    for k, v in summary["durations"].items():
        t.add_row(f"duration {k}", str(v))
    if summary["subjects"]:
        t.add_row("subjects", " ".join(summary["subjects"]))
    for k, v in summary["split_files"].items():
        t.add_row(f"split file {k}", str(v))
    for k, v in summary["scores"].items():
        t.add_row(k, ", ".join(f"{a} {b}" for a, b in v.items()) if isinstance(v, dict) else str(v))
    t.add_row("default split", str(summary["split_scheme"]))
    con.print(t)
    for name, counts in summary["classes"].items():
        ct = Table(title=name)
        ct.add_column("class")
        ct.add_column("count", justify="right")
        for cls, n in counts.items():
            ct.add_row(cls, str(n))
        con.print(ct)
    if summary["skipped"]:
        st = Table(title=f"problems: {len(summary['skipped'])} item(s) skipped or incomplete")
        st.add_column("item")
        st.add_column("reason")
        for s in summary["skipped"][:max_skipped]:
            st.add_row(s["item"], s["reason"])
        if len(summary["skipped"]) > max_skipped:
            st.add_row("...", f"{len(summary['skipped']) - max_skipped} more (use --json)")
        con.print(st)
    else:
        con.print("problems: none")
    for note in summary["notes"]:
        con.print(f"note: {note}", highlight=False)
