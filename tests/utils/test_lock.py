"""surgkit.utils.lock.output_lock: one writer per folder, dead holders taken over, re-entrant."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

import surgkit.utils.lock as lock
from surgkit.utils.lock import LOCK_NAME, FolderInUseError, holds_lock, output_lock

HOLDER = """
import sys, time
from surgkit.utils.lock import output_lock
with output_lock(sys.argv[1], "surgkit test-holder"):
    print("locked", flush=True)
    time.sleep(60)
"""


def _start_holder(folder):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_writer_is_refused_then_takes_over_a_killed_holder(tmp_path):
    out = tmp_path / "out"
    proc = _start_holder(out)
    try:
        with pytest.raises(FolderInUseError) as e, output_lock(out, "surgkit second"):
            pytest.fail("second writer got the lock")
        text = str(e.value)
        assert text.startswith(f"{out} is in use by pid {proc.pid} (surgkit test-holder) since ")
        assert "\n" not in text
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # the lock file of the killed holder is still there, but its lock died with it
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == proc.pid
    with output_lock(out, "surgkit third"):
        info = json.loads((out / LOCK_NAME).read_text())
        assert info["pid"] == os.getpid() and info["command"] == "surgkit third"
    assert not (out / LOCK_NAME).exists()  # released: the folder is left clean


def test_reentrant_in_one_process_and_released_once(tmp_path):
    with output_lock(tmp_path, "outer"):
        with output_lock(tmp_path, "inner"):
            assert holds_lock(tmp_path)
        assert holds_lock(tmp_path) and (tmp_path / LOCK_NAME).exists()
    assert not holds_lock(tmp_path)


def test_only_the_main_rank_locks(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    with output_lock(tmp_path, "rank1"):
        assert not (tmp_path / LOCK_NAME).exists()
    monkeypatch.setenv("RANK", "0")
    with output_lock(tmp_path, "rank0"):
        assert (tmp_path / LOCK_NAME).exists()


def test_exclusive_file_fallback(tmp_path, monkeypatch):
    """Without flock: O_EXCL file with pid + start time; a live holder refuses, a dead one is taken over."""
    monkeypatch.setattr(lock, "_HAVE_FLOCK", False)
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": os.getppid(), "since": "then", "command": "other"}))
    with (
        pytest.raises(FolderInUseError, match=f"pid {os.getppid()} \\(other\\) since then"),
        output_lock(tmp_path, "me"),
    ):
        pass
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "since": "then", "command": "gone"}))
    with output_lock(tmp_path, "me"):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    # a reused pid (same number, other start time) is not the holder either
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": os.getpid(), "start_time": "1", "since": "x"}))
    with output_lock(tmp_path, "me"):
        pass
