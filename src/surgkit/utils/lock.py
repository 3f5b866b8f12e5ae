"""One writer per output folder: :func:`output_lock`.

Every command that writes an output or run folder holds an exclusive lock on ``<folder>/.surgkit.lock``
for as long as it runs. A second writer on the same folder gets one line and exit 2::

    error: runs/frames is in use by pid 4242 (surgkit prep frames) since 2026-12-03 10:41:07; wait for it
    to finish or use another output folder

Mechanism: ``flock(LOCK_EX | LOCK_NB)`` on POSIX. The kernel drops the lock when the holder dies,
so a lock left by a killed process is taken over automatically; the file only records who holds
it (pid, process start time, command, host, time) for the message. Where ``flock`` is missing
the file is created with ``O_EXCL`` and a holder that no longer runs (pid gone, or a different
process start time: a reused pid) is taken over. The lock is re-entrant within one process (the
demo holds its folder while a step locks a sub-folder or the same one). Under ``accelerate launch``
only the main process (``RANK`` 0) takes it; the other ranks are its helpers.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from surgkit.errors import SurgkitError
from surgkit.utils.workers import pid_alive, process_start_time

LOCK_NAME = ".surgkit.lock"

try:
    import fcntl

    _HAVE_FLOCK = True
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
    _HAVE_FLOCK = False

_HELD: dict[str, list] = {}  # real folder path -> [count, fd or None]
_HELD_GUARD = threading.Lock()


class FolderInUseError(SurgkitError):
    """Another process writes the same output folder."""


def is_main_process() -> bool:
    """False in the non-main ranks of a distributed launch (``accelerate launch``, torchrun)."""
    for var in ("RANK", "ACCELERATE_PROCESS_INDEX"):
        value = os.environ.get(var)
        if value is not None and value.strip().isdecimal():
            return int(value) == 0
    return True


def _holder_text(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        pid = int(info["pid"])
        since = str(info.get("since", "?"))
        command = str(info.get("command", ""))
        host = str(info.get("host", ""))
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (lock holder not yet recorded)"
    where = f" on {host}" if host and host != socket.gethostname() else ""
    what = f" ({command})" if command else ""
    return f"pid {pid}{what}{where} since {since}"


def _record(command: str) -> bytes:
    pid = os.getpid()
    info = {
        "pid": pid,
        "start_time": process_start_time(pid),
        "command": command,
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    return (json.dumps(info) + "\n").encode()


def _busy(folder: Path, path: Path) -> FolderInUseError:
    return FolderInUseError(
        f"{folder} is in use by {_holder_text(path)}; wait for it to finish or use another output folder"
    )


def _acquire_flock(folder: Path, path: Path, command: str) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _busy(folder, path) from None
        except OSError as e:  # pragma: no cover - file systems without locks
            os.close(fd)
            raise SurgkitError(f"{path}: cannot lock the output folder ({e.strerror})") from None
        # The holder may have removed the file between our open and flock: then we locked an
        # orphan inode and must retry on the current file.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, _record(command), 0)
    return fd


def _acquire_exclusive_file(folder: Path, path: Path, command: str) -> None:
    for _ in range(3):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                info = json.loads(path.read_text(encoding="utf-8"))
                alive = pid_alive(int(info["pid"]), info.get("start_time"))
            except (OSError, ValueError, KeyError, TypeError):
                alive = time.time() - path.stat().st_mtime < 10  # being written right now
            if alive:
                raise _busy(folder, path) from None
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # left by a dead process: take it over
            continue
        with os.fdopen(fd, "wb") as fh:
            fh.write(_record(command))
        return
    raise _busy(folder, path)


def acquire(folder: str | Path, command: str) -> None:
    """Take the lock of ``folder`` (created if missing); see :func:`output_lock`."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise SurgkitError(f"{folder}: exists and is not a folder")
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SurgkitError(f"{folder}: cannot create the output folder ({e.strerror or e})") from None
    key = os.path.realpath(folder)
    with _HELD_GUARD:
        if key in _HELD:
            _HELD[key][0] += 1
            return
        path = folder / LOCK_NAME
        try:
            if _HAVE_FLOCK:
                fd: int | None = _acquire_flock(folder, path, command)
            else:
                _acquire_exclusive_file(folder, path, command)
                fd = None
        except BaseException:
            if created:
                _remove_if_empty(folder)
            raise
        _HELD[key] = [1, fd, path, folder if created else None]


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()  # only succeeds when empty: a command that failed early leaves no trace


def release(folder: str | Path) -> None:
    """Release one level of the lock of ``folder`` taken by this process."""
    key = os.path.realpath(folder)
    with _HELD_GUARD:
        entry = _HELD.get(key)
        if entry is None:
            return
        entry[0] -= 1
        if entry[0] > 0:
            return
        del _HELD[key]
        _, fd, path, created = entry
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        if fd is not None:
            os.close(fd)
        if created is not None:
            _remove_if_empty(created)


def holds_lock(folder: str | Path) -> bool:
    """True when this process holds the lock of ``folder``."""
    return os.path.realpath(folder) in _HELD


@contextlib.contextmanager
def output_lock(folder: str | Path, command: str, *, enabled: bool | None = None) -> Iterator[Path]:
    """Hold the exclusive writer lock of ``folder`` for the ``with`` block; yields the folder.

    ``command`` names the holder in the message a second writer sees (e.g. ``"surgkit prep
    frames"``). ``enabled=None`` locks only in the main process of a distributed launch.
    """
    folder = Path(folder)
    if enabled is None:
        enabled = is_main_process()
    if not enabled:
        yield folder
        return
    acquire(folder, command)
    try:
        yield folder
    finally:
        release(folder)


def locked(command: str, folder_arg: str = "out_dir", folder_of: Callable | None = None) -> Callable:
    """Decorator: run the function holding :func:`output_lock` on its ``folder_arg`` argument
    (or on ``folder_of(arguments)``, given the bound arguments as a dict).

    >>> @locked("surgkit prep flow")
    ... def compute(frames_dir, out_dir, *, overwrite=False): ...
    """

    def wrap(fn: Callable) -> Callable:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def run(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            folder = folder_of(bound.arguments) if folder_of else bound.arguments[folder_arg]
            with output_lock(folder, command):
                return fn(*args, **kwargs)

        return run

    return wrap
