"""Shared helpers of the cross-cutting safety tests: small videos, surgkit subprocesses, tree state."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SRC = str(Path(__file__).resolve().parents[2] / "src")


def make_video(path: Path, n: int, seed: int = 0, size: int = 64, fps: int = 25) -> Path:
    """An H.264 clip of ``n`` frames of a shifting random texture (cheap to decode, not to encode)."""
    import av

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        s.options = {"preset": "ultrafast", "crf": "30"}
        for i in range(n):
            for pkt in s.encode(av.VideoFrame.from_ndarray(np.roll(base, i, axis=1), format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


def surgkit_process(*args: object) -> subprocess.Popen:
    """``surgkit ARGS`` as a child process (its own session, so its workers can be found and killed)."""
    env = {
        **os.environ,
        "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "OMP_NUM_THREADS": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "surgkit.cli", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


BOOKKEEPING = ("manifest", ".surgkit.lock", ".shard-", "surgkit-run.json")


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every output file (bookkeeping left out; sequence.json without the source path)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.name.startswith(BOOKKEEPING):
            continue
        data = p.read_bytes()
        if p.name == "sequence.json":
            meta = json.loads(data)
            meta.pop("source", None)
            data = json.dumps(meta, sort_keys=True).encode()
        out[p.relative_to(root).as_posix()] = hashlib.sha256(data).hexdigest()
    return out


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every file under ``root``: any write shows up."""
    return {
        p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> Path:
    """Folder with two 160-frame clips (a few seconds of prep work with 2 workers)."""
    root = tmp_path_factory.mktemp("safety-clips")
    for k in range(2):
        make_video(root / f"clip{k}.mp4", 160, seed=k)
    return root
