"""surgkit.utils.workers: a pool worker stops writing as soon as its main process is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from surgkit.utils.workers import check_parent, pid_alive, process_start_time

MAIN = """
import multiprocessing as mp, sys, time
from surgkit.utils.workers import main_identity

def work(path, ident, pdeathsig):
    from surgkit.utils import workers
    from surgkit.utils.io import write_text
    if pdeathsig:
        workers.init_worker(*ident)
    else:  # only the parent check of every atomic commit
        workers._PARENT = ident
    i = 0
    while True:
        write_text(path, str(i))
        i += 1
        time.sleep(0.02)

if __name__ == "__main__":
    ctx = mp.get_context("spawn")
    p = ctx.Process(target=work, args=(sys.argv[1], main_identity(), sys.argv[2] == "1"))
    p.start()
    print(p.pid, flush=True)
    time.sleep(60)
"""


def _run_and_kill(tmp_path, pdeathsig: bool):
    script = tmp_path / "main.py"
    script.write_text(MAIN)
    target = tmp_path / "counter.txt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    main = subprocess.Popen(
        [sys.executable, str(script), str(target), "1" if pdeathsig else "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    worker = int(main.stdout.readline())
    deadline = time.monotonic() + 30
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert target.exists()
    main.send_signal(signal.SIGKILL)
    main.wait()
    time.sleep(0.3)  # a write in flight may finish; nothing after that
    before = target.read_text()
    time.sleep(0.5)
    assert target.read_text() == before, "the worker kept writing after its main process was killed"
    deadline = time.monotonic() + 5
    while pid_alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(worker)


def test_worker_dies_with_its_main_process_pdeathsig(tmp_path):
    _run_and_kill(tmp_path, pdeathsig=True)


def test_worker_stops_at_the_next_commit_without_pdeathsig(tmp_path):
    _run_and_kill(tmp_path, pdeathsig=False)


def test_identity_helpers():
    me = os.getpid()
    assert pid_alive(me) and pid_alive(me, process_start_time(me))
    assert not pid_alive(me, "not-my-start-time") or process_start_time(me) is None
    assert not pid_alive(0) and not pid_alive(-5)
    check_parent()  # outside a worker: a no-op
