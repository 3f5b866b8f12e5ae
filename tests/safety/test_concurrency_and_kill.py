"""One writer per folder, workers that die with the command, resume with other settings refused.

These run real ``surgkit`` processes: a second writer on a folder, ``kill -9`` of a two-worker run,
then a rerun, compared byte for byte with an uninterrupted run.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from surgkit.prep.seqstore import SequenceReader, list_sequences

from .conftest import one_error_line, surgkit_process, tree_digest, tree_state

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc to find workers")

FRAMES = ("prep", "frames", "--workers", "2", "--chunk-size", "8", "--format", "png", "-q")


@pytest.fixture(scope="module")
def reference(clips, tmp_path_factory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("reference") / "out"
    p = surgkit_process(*FRAMES, clips, "--out", out)
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    return tree_digest(out)


def _wait_for(predicate, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdecimal():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(d.name))
    found, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            found.append(c)
            todo.append(c)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def _complete(out: Path) -> None:
    """Every finished sequence holds exactly the files its sequence.json announces."""
    ids = list_sequences(out)
    assert ids
    for vid in ids:
        SequenceReader(out / vid)  # raises on a missing or extra item file


def test_second_writer_is_refused_and_the_first_finishes_intact(clips, tmp_path, reference):
    out = tmp_path / "out"
    first = surgkit_process(*FRAMES, clips, "--out", out)
    _wait_for(lambda: (out / ".surgkit.lock").exists())
    os.kill(first.pid, signal.SIGSTOP)  # the first writer is certainly still running now
    try:
        second = surgkit_process(*FRAMES, clips, "--out", out)
        _, err = second.communicate(timeout=300)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    line = one_error_line(err)
    assert second.returncode == 2
    assert f"{out} is in use by pid {first.pid} (surgkit prep frames) since " in line
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    _complete(out)
    assert tree_digest(out) == reference  # outputs complete and untouched by the refused writer
    assert not (out / ".surgkit.lock").exists()


def test_kill_9_stops_every_worker_and_a_rerun_is_identical(clips, tmp_path, reference):
    out = tmp_path / "out"
    run = surgkit_process(*FRAMES, clips, "--out", out)
    _wait_for(lambda: any(out.glob("clip*/*.png")))  # workers are writing frames
    workers = _descendants(run.pid)
    assert workers, "expected worker processes"
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    _wait_for(lambda: not any(_alive(w) for w in workers), timeout=10)
    settled = tree_state(out)
    time.sleep(1.0)
    assert tree_state(out) == settled, "files changed after the command was killed"
    assert not list_sequences(out) or all(SequenceReader(out / v) for v in list_sequences(out))
    rerun = surgkit_process(*FRAMES, clips, "--out", out)  # the dead run's lock is taken over
    _, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    _complete(out)
    assert tree_digest(out) == reference


def test_resume_with_changed_settings_is_refused_naming_the_setting(run_cli, clips, tmp_path):
    out = tmp_path / "out"
    clip = clips / "clip0.mp4"
    assert run_cli("prep", "frames", clip, "--out", out, "--fps", "5", "-q")[0] == 0
    before = tree_digest(out)
    for args, shown in [
        (["--fps", "10"], "fps='5', this run has fps='10'"),
        (["--fps", "5", "--format", "png"], "fmt='jpg', this run has fmt='png'"),
        (
            ["--fps", "5", "--transform", "resize=32x32"],
            "transform='', this run has transform='resize=32x32'",
        ),
    ]:
        code, _, err = run_cli("prep", "frames", clip, "--out", out, "-q", *args)
        assert code == 2 and shown in one_error_line(err) and "--overwrite" in err
        assert tree_digest(out) == before
    assert run_cli("prep", "frames", clip, "--out", out, "-q", "--fps", "5")[0] == 0  # same settings resume
    code, _, err = run_cli("prep", "frames", clip, "--out", out, "-q", "--fps", "10", "--overwrite")
    assert code == 0, err
    assert SequenceReader(out / "clip0").meta["fps_exact"] == "10"

    flows = tmp_path / "flow"
    assert run_cli("prep", "flow", out, "--out", flows, "-q", "--workers", "1")[0] == 0
    code, _, err = run_cli("prep", "flow", out, "--out", flows, "-q", "--workers", "1", "--bound", "5")
    assert code == 2 and "bound=20.0, this run has bound=5.0" in one_error_line(err)


def test_a_reader_refuses_a_sequence_with_missing_frames(run_cli, clips, tmp_path):
    """The symptom of two writers: sequence.json claims more frames than exist."""
    out = tmp_path / "frames"
    assert run_cli("prep", "frames", clips / "clip0.mp4", "--out", out, "--fps", "5", "-q")[0] == 0
    victim = sorted((out / "clip0").glob("*.jpg"))[3]
    victim.unlink()
    code, stdout, err = run_cli("prep", "flow", out, "--out", tmp_path / "flow", "-q", "--workers", "1")
    assert code == 1 and "incomplete sequence" in err and victim.name in err
    assert not (tmp_path / "flow" / "clip0" / "sequence.json").exists()


def test_a_killed_manifest_save_leaves_no_litter(tmp_path):
    """The main process killed mid-save leaves `.manifest.json.<random>.tmp`; the next writer of that
    manifest removes it, and never another shard's temporary file."""
    from surgkit.prep.manifest import Manifest

    mine = tmp_path / ".manifest.json.k3j2h1g0.tmp"
    other = tmp_path / ".manifest.shard-1-of-2.json.a1b2c3d4.tmp"
    for p in (mine, other):
        p.write_text("{half")
    Manifest(tmp_path, "frames", {"fps": "1"})
    assert not mine.exists() and other.exists()
