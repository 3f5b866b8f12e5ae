"""Run per-video (or per-chunk) work in a process pool with one progress bar and per-video failures.

Work functions are top-level functions ``fn(task, report) -> result``. ``report(message)`` sends a
tuple to the main process: ``("items", video_id, n)`` advances the frame counter and
``("chunk", video_id, chunk_id, n)`` records a finished chunk in the manifest. Exceptions are
caught per task and returned as messages, so one bad video never stops the others. With
``workers=1`` everything runs in-process (same code path, easier debugging).
"""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from surgkit.errors import SurgkitError
from surgkit.utils.workers import check_parent, init_worker, main_identity, pool_context

_QUEUE: Any = None


@dataclasses.dataclass
class PrepResult:
    """Outcome of a prep command: finished, skipped and failed videos, and items computed now."""

    step: str
    out_dir: str
    done: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)
    computed_items: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        n = sum(self.computed_items.values())
        text = (
            f"prep {self.step}: {len(self.done)} done, {len(self.skipped)} skipped (already finished), "
            f"{len(self.failed)} failed; {n} items computed -> {self.out_dir}"
        )
        for vid, msg in sorted(self.failed.items()):
            text += f"\n  FAILED {vid}: {msg}"
        return text


def _worker_init(queue: Any, main_pid: int, main_start: str | None) -> None:
    """Pool initializer: die with the main process (see :mod:`surgkit.utils.workers`), quiet cv2."""
    init_worker(main_pid, main_start)
    global _QUEUE
    _QUEUE = queue
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover
        pass


def _send(message: tuple) -> None:
    check_parent()  # no progress, no manifest message from a worker whose command was killed
    _QUEUE.put(message)


def _call(fn: Callable[[Any, Callable[[tuple], None]], Any], task: Any, report=None) -> tuple[str, Any]:
    """Run one task; return ("ok", result) or ("error", one-line message)."""
    try:
        return "ok", fn(task, report or _send)
    except SurgkitError as e:
        return "error", str(e)
    except MemoryError:
        return "error", "out of memory"
    except Exception as e:  # a bug or an unexpected library error: still only this task fails
        tb = traceback.extract_tb(e.__traceback__)
        where = f" (at {tb[-1].filename}:{tb[-1].lineno})" if tb else ""
        return "error", f"{type(e).__name__}: {e}{where}"


def run_tasks(
    tasks: Sequence[Any],
    fn: Callable[[Any, Callable[[tuple], None]], Any],
    *,
    workers: int,
    on_message: Callable[[tuple], None],
    on_result: Callable[[Any, Any], None],
    on_error: Callable[[Any, str], None],
) -> None:
    """Run ``fn`` over ``tasks``; route messages, results and errors to the callbacks (main process)."""
    if not tasks:
        return
    if workers <= 1 or len(tasks) == 1:
        for task in tasks:
            status, value = _call(fn, task, report=on_message)
            (on_result if status == "ok" else on_error)(task, value)
        return
    ctx = pool_context()  # forkserver with preloaded modules (not "fork": thread pools deadlock)
    queue = ctx.Queue()

    def drain() -> None:
        while True:
            try:
                message = queue.get_nowait()
            except Exception:  # queue.Empty
                return
            on_message(message)

    with ProcessPoolExecutor(
        max_workers=min(workers, len(tasks)),
        mp_context=ctx,
        initializer=_worker_init,
        initargs=(queue, *main_identity()),
    ) as pool:
        pending = {pool.submit(_call, fn, task): task for task in tasks}
        while pending:
            done, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            drain()
            for fut in done:
                task = pending.pop(fut)
                try:
                    status, value = fut.result()
                except BrokenProcessPool:
                    status, value = "error", "a worker process died (killed or out of memory)"
                (on_result if status == "ok" else on_error)(task, value)
        drain()
    queue.close()


def check_unique_ids(pairs: Sequence[tuple[str, Any]]) -> None:
    """Refuse two inputs with the same video id (they would overwrite each other's outputs)."""
    seen: dict[str, Any] = {}
    for vid, src in pairs:
        if vid in seen:
            raise SurgkitError(f"two inputs share the video id '{vid}': {seen[vid]} and {src}; rename one")
        seen[vid] = src


class PrepProgress:
    """One rich progress display: a bar over videos and a bar over items with items/s."""

    def __init__(self, step: str, num_videos: int, unit: str = "frames", enabled: bool = True):
        from surgkit.utils.progress import make_progress

        self.progress = make_progress(disable=not enabled)
        self.videos = self.progress.add_task(f"{step}: videos", total=num_videos, unit="videos")
        self.items = self.progress.add_task(f"{step}: {unit}", total=None, unit=unit)

    def __enter__(self) -> PrepProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish_items()
        self.progress.stop()

    def add_items_total(self, n: int) -> None:
        task = self.progress.tasks[self.items]
        self.progress.update(self.items, total=(task.total or 0) + n)

    def advance_items(self, n: int) -> None:
        self.progress.advance(self.items, n)

    def advance_video(self) -> None:
        self.progress.advance(self.videos, 1)

    def log(self, text: str, style: str = "") -> None:
        """Print a plain line above the bars (no markup interpretation of FFmpeg's text)."""
        from rich.text import Text

        self.progress.console.print(Text(text, style=style), highlight=False, soft_wrap=True)

    def failed(self, message: str) -> None:
        self.log(f"FAILED {message}", style="red")

    def finish_items(self) -> None:
        """Set the frame total to what was actually done (totals are estimates from headers)."""
        task = self.progress.tasks[self.items]
        self.progress.update(self.items, total=task.completed)
