"""Worker processes die with the command that started them.

After ``kill -9`` of the ``surgkit`` process nothing it started may write anything more: a rerun
would otherwise put a second writer on the same folder. Two mechanisms, both installed by
:func:`init_worker` in every pool worker:

1. Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (through ctypes): the kernel kills the worker as soon
   as its parent exits. With the ``forkserver`` start method the parent is the fork server, which
   itself exits when the main process goes away.
2. Everywhere: the worker remembers the main process id and start time; :func:`check_parent` (called
   by every atomic file commit in :mod:`surgkit.utils.io` and by every message sent to the main
   process) ends the worker at once (``os._exit``) when the main process is gone, before it renames
   a finished file into place.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
EXIT_ORPHANED = 70

_PARENT: tuple[int, str | None] | None = None  # (main pid, its start time) inside a worker


def process_start_time(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot (Linux ``/proc``), or None when unknown.

    Together with the pid it identifies a process even after the pid is reused.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    # field 2 (comm) may contain spaces and parentheses: split after its closing parenthesis
    rest = stat[stat.rfind(")") + 2 :].split()
    return rest[19] if len(rest) > 19 else None


def pid_alive(pid: int, start_time: str | None = None) -> bool:
    """True when process ``pid`` exists (and, when given, still has ``start_time``)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    except OSError:
        return False
    if start_time is not None:
        now = process_start_time(pid)
        if now is not None and now != start_time:
            return False
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().decode("ascii", "replace")
            if state[state.rfind(")") + 2 : state.rfind(")") + 3] in ("Z", "X"):
                return False  # a zombie is dead; only its exit status is left
    return True


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Ask the Linux kernel to send ``sig`` to this process when its parent dies."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):  # pragma: no cover - unusual libc
        return False


def init_worker(main_pid: int, main_start: str | None, expected_ppid: int | None = None) -> None:
    """Install both mechanisms in a freshly started worker (call first in the pool initializer)."""
    global _PARENT
    _PARENT = (int(main_pid), main_start)
    set_parent_death_signal()
    # The parent may have died between fork and prctl: then no signal will ever come.
    if expected_ppid is not None and os.getppid() != expected_ppid:
        os._exit(EXIT_ORPHANED)
    check_parent()


def main_identity() -> tuple[int, str | None]:
    """(pid, start time) of the calling process, to pass to :func:`init_worker`."""
    pid = os.getpid()
    return pid, process_start_time(pid)


def parent_alive() -> bool:
    """True outside a worker, or while the worker's main process lives."""
    if _PARENT is None:
        return True
    return pid_alive(*_PARENT)


def check_parent() -> None:
    """End this worker at once (no cleanup, no more writes) when its main process is gone."""
    if _PARENT is not None and not pid_alive(*_PARENT):
        os._exit(EXIT_ORPHANED)


def default_workers() -> int:
    """Two worker processes by default (the target machine has 2 cores), never more than the CPUs."""
    return max(1, min(2, os.cpu_count() or 1))


# Modules the fork server imports once, so that every worker forked from it starts with them (prep
# and synth pools share one fork server per command; whichever pool starts it first sets the list,
# so it names both). Never torch: its thread pool must not exist in a process that forks.
FORKSERVER_PRELOAD = [
    "numpy",
    "cv2",
    "av",
    "scipy.signal",
    "surgkit.prep.flow",
    "surgkit.prep.frames",
    "surgkit.synth.generate",
]


def pool_context():
    """The multiprocessing context for surgkit's worker pools: ``forkserver`` (preloaded), else ``spawn``.

    Not ``fork``: OpenCV's and torch's thread pools in the parent deadlock forked children.
    """
    import multiprocessing as mp

    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(FORKSERVER_PRELOAD)
        return ctx
    return mp.get_context("spawn")  # pragma: no cover - platforms without forkserver
