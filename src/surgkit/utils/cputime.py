"""CPU seconds of this process and everything it started, for timing reports on a shared machine.

Wall-clock seconds depend on what else runs on the machine; CPU seconds (user + system) of the
work itself do not. ``resource.getrusage(RUSAGE_CHILDREN)`` only counts children that have
exited and been waited for, so worker pools started through a ``forkserver`` (whose workers are
the fork server's children, reaped by it) would stay invisible until the fork server exits.
:func:`tree_cpu_seconds` therefore adds, for every live descendant (Linux ``/proc``), its own
CPU time and that of the children it has reaped (``utime + stime + cutime + cstime``).

A descendant that exits and is reaped between two readings moves its time from the "live" sum to
its parent's ``cutime``: the total stays right. Only a process that has exited but was not yet
reaped (a zombie, or a fork server's worker waiting to be collected) is missed until it is.
"""

from __future__ import annotations

import os
import resource
import sys


def _ticks() -> float:
    try:
        return float(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 100.0


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, utime + stime + cutime + cstime in seconds) of every visible process."""
    table: dict[int, tuple[int, float]] = {}
    tick = _ticks()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read().decode("ascii", "replace")
        except OSError:
            continue
        # field 2 (comm) may hold spaces and parentheses: split after its last ')'
        rest = stat[stat.rfind(")") + 2 :].split()
        try:
            ppid = int(rest[1])
            cpu = sum(int(v) for v in rest[11:15]) / tick  # utime stime cutime cstime
        except (IndexError, ValueError):
            continue
        table[int(name)] = (ppid, cpu)
    return table


def descendant_pids(root: int | None = None, exclude: tuple[int, ...] = ()) -> list[int]:
    """Live descendants of ``root`` (default: this process), without the subtrees of ``exclude``."""
    if not sys.platform.startswith("linux") or not os.path.isdir("/proc"):
        return []
    table = _proc_table()
    return _subtree(table, os.getpid() if root is None else root, exclude)


def _subtree(table: dict[int, tuple[int, float]], root: int, exclude: tuple[int, ...]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if pid in exclude:
            continue
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def descendants_cpu_seconds(root: int | None = None, exclude: tuple[int, ...] = ()) -> float:
    """CPU seconds of the live descendants of ``root`` (default: this process) and of their reaped children.

    The subtrees of the processes in ``exclude`` are left out (e.g. a second lane measured on its own).
    """
    if not sys.platform.startswith("linux") or not os.path.isdir("/proc"):
        return 0.0
    table = _proc_table()
    return sum(table[pid][1] for pid in _subtree(table, os.getpid() if root is None else root, exclude))


def tree_cpu_seconds(exclude: tuple[int, ...] = ()) -> float:
    """User + system CPU seconds of this process, its reaped children and its live descendants.

    Live descendants in ``exclude`` (and theirs) are left out; once reaped, a process counts in
    ``RUSAGE_CHILDREN`` whatever ``exclude`` says.
    """
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    return own + descendants_cpu_seconds(exclude=exclude)


def load_average() -> list[float] | None:
    """The 1-, 5- and 15-minute load averages (rounded), or None where the OS has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):  # pragma: no cover
        return None
