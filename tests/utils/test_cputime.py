"""CPU seconds of a process tree: forkserver workers are counted while they live, reaped ones once."""

from __future__ import annotations

import multiprocessing as mp
import resource
import subprocess
import sys
import time

import pytest

from surgkit.utils.cputime import load_average, tree_cpu_seconds

SPIN = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}: pass\nprint(time.process_time())"


def _spin(seconds: float) -> float:
    """Burn ``seconds`` of CPU; return this worker's own CPU seconds (the oracle)."""
    t = time.process_time()
    while time.process_time() - t < seconds:
        pass
    return time.process_time()


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_live_forkserver_workers_are_counted():
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=mp.get_context("forkserver")) as pool:
        pool.submit(int).result()  # worker started (its start-up CPU happens before the reading)
        before, kids_before = tree_cpu_seconds(), _children_cpu()
        worker_cpu_before = pool.submit(time.process_time).result()
        worker_cpu = pool.submit(_spin, 0.4).result() - worker_cpu_before
        delta = tree_cpu_seconds() - before
        kids = _children_cpu() - kids_before
    assert worker_cpu >= 0.4
    assert delta >= 0.9 * worker_cpu - 0.02  # clock ticks are 10 ms
    assert kids < 0.5 * worker_cpu  # what getrusage alone would have reported


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_reaped_child_is_counted_once():
    before = tree_cpu_seconds()
    out = subprocess.run(
        [sys.executable, "-c", SPIN.format(s=0.4)], capture_output=True, text=True, check=True
    )
    child_cpu = float(out.stdout.strip())
    delta = tree_cpu_seconds() - before
    assert child_cpu >= 0.4
    assert 0.95 * child_cpu - 0.02 <= delta <= 1.1 * child_cpu + 0.15  # interpreter start-up is extra


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_excluded_live_child_is_left_out_until_reaped():
    """The demo's second lane is measured on its own: the main lane's step CPU must leave it out."""
    child = subprocess.Popen([sys.executable, "-c", SPIN.format(s=0.6)], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)  # the child spins meanwhile (its start-up included)
        with_child, without = tree_cpu_seconds(), tree_cpu_seconds(exclude=(child.pid,))
    finally:
        child_cpu = float(child.communicate()[0].strip())
    assert with_child - without >= 0.2  # about what the child burnt in 0.5 s
    assert without <= with_child
    assert child_cpu >= 0.6


def test_load_average_shape():
    load = load_average()
    assert load is None or (len(load) == 3 and all(x >= 0 for x in load))
