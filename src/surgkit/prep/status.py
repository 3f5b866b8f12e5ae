"""``surgkit prep status OUT``: done / failed / partial / missing per video, across all shards.

Reads every manifest of the folder (``manifest.json`` and ``manifest.shard-i-of-N.json``). A video's
state is its best entry (done > partial > failed) over the manifests; a video some manifest expects
(it was in that run's input) but that no manifest has started is ``missing``. The per-video report
does not depend on how the work was split, so 3 shards and one unsharded run report the same bytes;
the shards themselves are listed separately (``--by-shard``), with the shards that never ran.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from surgkit.errors import SurgkitError
from surgkit.prep.manifest import MANIFEST_GLOB, read_manifest

STATES = ("done", "failed", "partial", "missing")
_RANK = {"failed": 0, "partial": 1, "done": 2}


def _manifests(out: Path) -> list[tuple[Path, dict[str, Any]]]:
    found = [(p, read_manifest(p)) for p in sorted(out.glob(MANIFEST_GLOB)) if p.is_file()]
    if not found:
        raise SurgkitError(
            f"{out}: no prep manifest (manifest*.json); is this a `surgkit prep` output folder?"
        )
    steps = sorted({m["step"] for _, m in found})
    if len(steps) > 1:
        raise SurgkitError(
            f"{out}: manifests of several steps ({', '.join(steps)}); one folder holds one step"
        )
    return found


def prep_status(out: str | Path) -> dict[str, Any]:
    """The merged state of a prep output folder (see module doc); JSON-serialisable."""
    out = Path(out)
    found = _manifests(out)
    expected: set[str] = set()
    best: dict[str, dict[str, Any]] = {}
    settings = sorted({m.get("settings_sha256", "") for _, m in found})
    for _, m in found:
        expected.update(m.get("expected") or [])
        for vid, entry in m.get("videos", {}).items():
            state = entry.get("status", "partial")
            old = best.get(vid)
            if old is None or _RANK.get(state, 1) > _RANK.get(old.get("status", "partial"), 1):
                best[vid] = entry
    videos: dict[str, dict[str, Any]] = {}
    for vid in sorted(expected | set(best)):
        entry = best.get(vid)
        if entry is None:
            videos[vid] = {"status": "missing"}
            continue
        state = entry.get("status", "partial")
        record: dict[str, Any] = {"status": state if state in _RANK else "partial"}
        if state == "done":
            record["items"] = entry.get("num_items")
        else:
            record["chunks_done"] = len(entry.get("chunks_done", []))
            if entry.get("error"):
                record["error"] = entry["error"]
        videos[vid] = record
    counts = {s: sum(v["status"] == s for v in videos.values()) for s in STATES}
    report: dict[str, Any] = {"step": found[0][1]["step"], "counts": counts, "videos": videos}
    if len(settings) > 1:
        report["warning"] = (
            f"{len(settings)} different settings among the manifests: some videos were made with other "
            "settings (re-run with the same options, or --overwrite)"
        )
    return report


def shard_report(out: str | Path) -> dict[str, Any]:
    """Which shards ran (manifest, counts) and which shard counts N are present, with the absent shards."""
    from surgkit.prep.shard import shard_of

    rows: dict[str, Any] = {}
    counts_n: set[int] = set()
    expected: set[str] = set()
    for path, m in _manifests(Path(out)):
        label = m.get("shard") or "unsharded"
        if m.get("shard"):
            counts_n.add(int(str(m["shard"]).split("/")[1]))
        expected.update(m.get("expected") or [])
        states = [e.get("status", "partial") for e in m.get("videos", {}).values()]
        rows[label] = {"manifest": path.name, **{s: states.count(s) for s in ("done", "failed", "partial")}}
    absent = {}
    for n in sorted(counts_n):
        for i in range(n):
            if f"{i}/{n}" not in rows:
                absent[f"{i}/{n}"] = sorted(v for v in expected if shard_of(v, n) == i)
    return {"shards": rows, "not_run": absent}


def render(report: dict[str, Any], by_shard: dict[str, Any] | None = None) -> str:
    """Plain-text status: one line per video that is not done, then the totals."""
    lines = []
    for vid, v in report["videos"].items():
        if v["status"] != "done":
            detail = f": {v['error']}" if v.get("error") else ""
            lines.append(f"{v['status'].upper():8s} {vid}{detail}")
    c = report["counts"]
    lines.append(
        f"prep {report['step']}: {c['done']} done, {c['failed']} failed, {c['partial']} partial, "
        f"{c['missing']} missing ({len(report['videos'])} videos)"
    )
    if report.get("warning"):
        lines.append(f"WARNING: {report['warning']}")
    if by_shard is not None:
        for label, row in by_shard["shards"].items():
            lines.append(f"shard {label}: {row['done']} done, {row['failed']} failed, {row['partial']} partial "
                         f"({row['manifest']})")  # fmt: skip
        for label, vids in by_shard["not_run"].items():
            lines.append(f"shard {label}: NOT RUN ({len(vids)} videos)")
    return "\n".join(lines)
