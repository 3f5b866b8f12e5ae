"""Videos written by worker processes: a failing video stops the run cleanly; kill -9 then resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from surgkit.synth import generate_world

CHILD = """
import sys
from surgkit.synth import generate_world
if __name__ == "__main__":
    generate_world(sys.argv[1], preset="tiny", seed=0, progress=False, workers=2)
"""


def _files(root):
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def _temporaries(root):
    return [p.name for p in root.rglob("*") if ".tmp" in p.name]


def test_a_failing_video_in_a_worker_stops_the_run_and_leaves_no_temporaries(tmp_path):
    out = tmp_path / "w"
    (out / "cholec80" / "videos" / "video02.mp4").mkdir(parents=True)  # the worker cannot rename into it
    with pytest.raises(OSError):
        generate_world(
            out, preset="tiny", layouts="cholec80,truth", progress=False, workers=2, overwrite=True
        )
    assert (out / ".synth" / "done" / "video01.done").is_file()
    assert not (out / ".synth" / "done" / "video02.done").exists()
    assert _temporaries(out) == []
    assert not (out / "world.json").exists()
    snapshot = {rel: p.stat().st_mtime_ns for rel, p in _files(out).items()}
    time.sleep(0.5)  # no worker writes after generate_world returned
    assert {rel: p.stat().st_mtime_ns for rel, p in _files(out).items()} == snapshot


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers die with their parent on Linux")
def test_kill_during_parallel_generation_then_resume_equals_an_uninterrupted_run(tiny_world, tmp_path):
    root, _ = tiny_world
    out = tmp_path / "w"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(out)], env=env)
    done = out / ".synth" / "done"
    deadline = time.monotonic() + 300
    while not (done.is_dir() and any(done.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "world.json").exists(), "killed too late: the run had finished"
    time.sleep(1.0)  # the workers got SIGKILL with their parent
    generate_world(out, preset="tiny", seed=0, progress=False, resume=True, workers=2)
    a, b = _files(root), {k: v for k, v in _files(out).items() if not k.startswith(".synth/")}
    a = {k: v for k, v in a.items() if not k.startswith(".synth/")}
    assert sorted(a) == sorted(b)
    for rel, path in a.items():
        assert path.read_bytes() == b[rel].read_bytes(), rel
