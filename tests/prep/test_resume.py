"""Resume: SIGKILL mid-run then re-run gives identical outputs; finished videos are not recomputed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from surgkit.prep.frames import extract
from surgkit.utils.io import write_json

from .conftest import index_image, make_video


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def _videos(root: Path, count: int, frames: int) -> Path:
    for v in range(count):
        make_video(root / f"vid{v}.avi", frames, 30, "mpeg4", size=(256, 192),
                   image_fn=lambda i, v=v: np.roll(index_image(i + 7 * v, 256, 192), v, axis=1))  # fmt: skip
    return root


# Frames per video: the manifest is saved at most every 0.25 s during a video (Manifest.save throttle), so a
# video must take longer than that for the kill to find one half done (with 150 frames the idle machine
# sometimes finished every video between two saves and the test could not kill the run mid-video).
FRAMES = 400


def test_sigkill_then_rerun_is_identical_and_skips_finished(tmp_path):
    src = _videos(tmp_path / "in", 5, FRAMES)
    args = ["prep", "frames", str(src), "-o", str(tmp_path / "out"), "--format", "png", "--chunk-size", "10",
            "--workers", "1", "-q"]  # fmt: skip
    code = f"from surgkit.cli import main; main({args!r})"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    manifest_path = tmp_path / "out" / "manifest.json"
    state: dict = {}
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if manifest_path.exists():
            state = json.loads(manifest_path.read_text())["videos"]
            done = [v for v, e in state.items() if e["status"] == "done"]
            if (
                done
                and len(done) < 5
                and any(e["chunks_done"] for e in state.values() if e["status"] != "done")
            ):
                os.kill(proc.pid, signal.SIGKILL)
                break
        time.sleep(0.002)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed; make it longer"
    finished = sorted(v for v, e in state.items() if e["status"] == "done")
    middle = f"{FRAMES // 2:05d}.png"
    stamps = {v: (tmp_path / "out" / v / middle).stat().st_mtime_ns for v in finished}

    resumed = extract(src, tmp_path / "out", fmt="png", chunk_size=10, workers=1, progress=False)
    assert resumed.ok and sorted(resumed.skipped) == finished
    assert not set(resumed.computed_items) & set(finished)  # no frame of a finished video recomputed
    partial = [v for v, e in state.items() if e["status"] != "done" and e["chunks_done"]]
    for v in partial:  # resumed from its checkpoint, not from frame 0
        assert resumed.computed_items.get(v, 0) <= FRAMES - 10 * len(state[v]["chunks_done"])
    manifest = json.loads(manifest_path.read_text())["videos"]
    for v, e in manifest.items():
        assert e["status"] == "done" and e["num_items"] == FRAMES
        assert e["computed_items"] == FRAMES, f"{v}: {e['computed_items']} frames computed for {FRAMES}"
    for v in finished:
        assert manifest[v]["runs"] == 1
        assert (tmp_path / "out" / v / middle).stat().st_mtime_ns == stamps[v]

    clean = extract(src, tmp_path / "clean", fmt="png", chunk_size=10, workers=1, progress=False)
    assert clean.ok
    assert _tree(tmp_path / "out") == _tree(tmp_path / "clean")
    seq = [json.loads((tmp_path / d / "vid0" / "sequence.json").read_text()) for d in ("out", "clean")]
    assert seq[0]["source_index"] == seq[1]["source_index"] == list(range(FRAMES))


def test_chunk_checkpoint_resume_decodes_but_does_not_rewrite(tmp_path):
    src = make_video(tmp_path / "v.mp4", 60, 30, "libx264", size=(64, 48))
    out = tmp_path / "out"
    assert extract(src, out, fps=10, fmt="array", chunk_size=4, progress=False).ok
    reference = {p.name: p.read_bytes() for p in (out / "v").iterdir()}
    # simulate a crash after 3 of 5 chunks: drop the later chunks, sequence.json and the done flag
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["videos"]["v"].update(status="partial", chunks_done=[0, 1, 2], computed_items=12, num_items=None)
    write_json(out / "manifest.json", manifest)
    for name in ("chunk-000003.npy", "chunk-000004.npy", "sequence.json"):
        (out / "v" / name).unlink()
    kept = (out / "v" / "chunk-000001.npy").stat().st_mtime_ns
    again = extract(src, out, fps=10, fmt="array", chunk_size=4, progress=False)
    assert again.computed_items == {"v": 8}  # frames 12..19 only
    assert (out / "v" / "chunk-000001.npy").stat().st_mtime_ns == kept
    assert {p.name: p.read_bytes() for p in (out / "v").iterdir()} == reference
    assert json.loads((out / "manifest.json").read_text())["videos"]["v"]["computed_items"] == 20
