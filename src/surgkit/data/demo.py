"""Demo step: read the synthetic world through the native readers, show splits, run the leakage guard."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from surgkit.demo import DemoContext, DemoSection
from surgkit.errors import LeakageError, SurgkitError


def reencode_copy(src: Path, dst: Path, scale: float = 0.75, fps: float = 10.0, crf: int = 35) -> Path:
    """Write a renamed copy of ``src``: resized by ``scale``, resampled to ``fps``, lower quality (H.264).

    Frames are picked by nearest timestamp, so the copy covers the same time span at another rate.
    """
    import av

    from surgkit.data.frames import open_frames
    from surgkit.utils.io import atomic_path

    with open_frames(src) as reader:
        info = reader.info
        w = max(16, int(info.width * scale) // 2 * 2)
        h = max(16, int(info.height * scale) // 2 * 2)
        n_out = max(1, int(info.num_frames / (info.fps or 25.0) * fps))
        idx = np.minimum(
            np.round(np.arange(n_out) * (info.fps or 25.0) / fps).astype(int), info.num_frames - 1
        )
        with atomic_path(dst) as tmp, av.open(str(tmp), "w") as out:
            stream = out.add_stream("libx264", rate=int(fps))
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.options = {"crf": str(crf), "preset": "veryfast"}
            for start in range(0, len(idx), 64):  # a chunk at a time: never the whole video in memory
                for img in reader.read(idx[start : start + 64].tolist(), size=(w, h)):
                    for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                        out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
    return dst


def _read_all(world: Path):
    from surgkit.data import load
    from surgkit.data.discover import discover
    from surgkit.data.summary import summarize

    loaded, rows, problems = {}, [], []
    for key, root in discover(world).items():
        name = key.split("#")[0]
        try:
            ds = load(name, root)
        except SurgkitError as e:
            problems.append(f"{key}: {e}")
            rows.append([key, str(root.relative_to(world)), "error", "", "", "", ""])
            continue
        loaded[key] = ds
        s = summarize(ds)
        c = s["counts"]
        records = {k: v for k, v in c.items() if k not in ("videos", "skipped", "labelled_frames")}
        rows.append([key, str(root.relative_to(world)), c["videos"], c.get("labelled_frames", 0),
                     ", ".join(f"{k} {v}" for k, v in records.items()), c["skipped"], s["split_scheme"]])  # fmt: skip
    return loaded, rows, problems


def _louo_table(loaded: dict) -> tuple[list[list], list[str]]:
    from surgkit.data.splits import make_splits

    rows, notes = [], []
    for key, ds in loaded.items():
        if ds.name != "jigsaws":
            continue
        for task in ds.meta["tasks"]:
            folds = make_splits(ds, "LOUO", task=task)
            for f in folds:
                users = sorted({ds.videos[t].subject for t in f.test})
                rows.append([f"{key} {task}", f.name, len(f.train), len(f.test), " ".join(users)])
            both = [
                f.name
                for f in folds
                if {ds.videos[t].subject for t in f.train} & {ds.videos[t].subject for t in f.test}
            ]
            notes.append(f"{task}: {len(folds)} LOUO folds; folds with a surgeon on both sides: {len(both)}")
    return rows, notes


def _media_of(loaded: dict) -> dict:
    from surgkit.data.leakage import media_items

    items, seen = {}, set()
    for ds in loaded.values():
        for key, (media, fps) in media_items(ds).items():
            ident = media if isinstance(media, tuple) else (media.resolve() if media is not None else None)
            if media is not None and ident not in seen:
                seen.add(ident)
                items[key] = (media, fps)
    return items


def _leakage(ctx: DemoContext, loaded: dict) -> tuple[dict, list[list], list[str]]:
    from surgkit.data.leakage import check_leakage, compare_sets, fingerprint_set
    from surgkit.utils.workers import default_workers

    items = _media_of(loaded)
    videos = {k: v for k, v in items.items() if isinstance(v[0], Path) and v[0].is_file()}
    if not videos:
        raise SurgkitError("the synthetic world has no video files to fingerprint")
    source_key = max(videos, key=lambda k: videos[k][0].stat().st_size)  # the longest-looking video
    copy = reencode_copy(videos[source_key][0], ctx.workdir / "data_demo" / "renamed_case_0193.mp4")
    cache = ctx.workdir / "data_demo" / "fp_cache"
    t0 = time.perf_counter()
    workers = default_workers()  # decoding for the fingerprints, spread over the cores
    prints, _ = fingerprint_set(items, cache_dir=cache, progress=False, workers=workers)
    copy_fp, _ = fingerprint_set(
        {"external:renamed_case_0193": (copy, None)}, cache_dir=cache, progress=False
    )
    seconds = time.perf_counter() - t0
    from surgkit.data.leakage import similarity

    everything = compare_sets(prints, prints, threshold=0.0, same_set=True)
    # distinct videos = different ids of one dataset; the synthetic world may write one rendered video
    # into several layouts (e.g. Cholec80 video and CholecT50 frames), so cross-dataset pairs can be true copies
    pairs = [p for p in everything if p.a.split(":")[0] == p.b.split(":")[0]]
    cross = [p for p in everything if p.a.split(":")[0] != p.b.split(":")[0] and p.similarity >= 0.5]
    distinct = [p.similarity for p in pairs]
    flagged = [p for p in pairs if p.similarity >= 0.5]
    copy_sim, offset = similarity(prints[source_key], copy_fp["external:renamed_case_0193"])
    refused = ""
    # the readers' Video objects keep each video's fps, so check_leakage hits the fingerprint cache
    # written above (a bare path would be fingerprinted again with fps=None: every video decoded twice)
    by_key = {f"{ds.name}:{v.id}": v for ds in loaded.values() for v in ds.videos.values()}
    train = {k: by_key.get(k, v[0]) for k, v in videos.items()}
    try:
        check_leakage(train, {"renamed_case_0193": copy}, progress=False, cache_dir=cache)
    except LeakageError as e:
        refused = str(e)
    n = len(prints)
    metrics = {
        "videos_fingerprinted": n + 1,
        "distinct_pairs_compared": len(pairs),
        "cross_dataset_matches": len(cross),
        "false_positive_pairs": len(flagged),
        "max_distinct_similarity": round(max(distinct), 4) if distinct else 0.0,
        "copy_similarity": round(copy_sim, 4),
        "copy_refused": bool(refused),
        "fingerprint_seconds": round(seconds, 2),
    }
    rows = [[p.a, p.b, p.similarity] for p in sorted(pairs, key=lambda p: -p.similarity)[:5]]
    rows.insert(0, [source_key, "external:renamed_case_0193 (re-encoded copy)", round(copy_sim, 4)])
    notes = [
        f"copy of {source_key}: resized x0.75, 10 fps, CRF 35, renamed; similarity {copy_sim:.3f} (offset {offset} s)",
        f"check_leakage refused training: {refused[:300]}"
        if refused
        else "check_leakage did NOT refuse the copy",
    ]
    notes += [f"false positive: {p}" for p in flagged]
    notes += [f"cross-dataset match (same synthetic source written in two layouts?): {p}" for p in cross[:10]]
    return metrics, rows, notes


def demo_step(ctx: DemoContext) -> DemoSection:
    """Read the synthetic world (``ctx.artifacts['world']``) with the native readers; splits; leakage."""
    world = ctx.artifacts.get("world")
    if world is None:
        raise SurgkitError("the data step needs the synthetic world (run the synth step first)")
    world = Path(world)
    loaded, rows, problems = _read_all(world)
    if not loaded:
        raise SurgkitError(f"no dataset layout recognised under {world}")
    ctx.artifacts["datasets"] = {k: ds.root for k, ds in loaded.items()}
    louo_rows, louo_notes = _louo_table(loaded)
    leak_metrics, leak_rows, leak_notes = _leakage(ctx, loaded)
    skipped = sum(len(ds.skipped) for ds in loaded.values())
    metrics = {"datasets_read": len(loaded), "videos": sum(len(ds.videos) for ds in loaded.values()),
               "skipped_items": skipped, "reader_errors": len(problems), **leak_metrics}  # fmt: skip
    tables = [
        (
            "Datasets read from the synthetic world",
            ["dataset", "folder", "videos", "labelled frames", "records", "skipped", "default split"],
            rows,
        )
    ]
    if louo_rows:
        tables.append(
            ("JIGSAWS leave-one-user-out folds", ["task", "fold", "train", "test", "test users"], louo_rows)
        )
    tables.append(
        (
            "Leakage: re-encoded copy and the most similar distinct pairs",
            ["video A", "video B", "similarity"],
            leak_rows,
        )
    )
    notes = problems + louo_notes + leak_notes
    notes.append(
        "leakage: 63-bit DCT hashes of 64x64 grey frames (half the video mean subtracted) sampled every 2 s (at least 32 per video); frames match at <= 8 differing bits; a pair is flagged at offset-consistent similarity >= 0.5"
    )
    summary = (
        f"Read {len(loaded)} native layouts ({metrics['videos']} videos) through surgkit.data; "
        f"{leak_metrics['false_positive_pairs']} false-positive pair(s) among {leak_metrics['distinct_pairs_compared']} distinct pairs; "
        f"the renamed re-encoded copy scored {leak_metrics['copy_similarity']:.2f} and was "
        f"{'refused' if leak_metrics['copy_refused'] else 'NOT refused'}."
    )
    status = "ok" if leak_metrics["copy_refused"] and not problems else "failed"
    return DemoSection(
        "data", "Datasets, splits and leakage guard", summary, metrics, tables, [], notes, status=status
    )
