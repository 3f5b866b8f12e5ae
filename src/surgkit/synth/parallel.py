"""Writing a world's videos in worker processes, with the same files as one process.

Each video (a cholecystectomy or a JIGSAWS trial) is independent once planned: its plan depends
only on (seed, preset, index) and every per-video file is written by the writers' ``begin`` /
``frame`` / ``end``. A worker therefore plans, renders and encodes one video with *fresh* writers
and returns what those writers added to their dataset-level state
(:meth:`~surgkit.synth.writers.base.LayoutWriter.video_state`); the main process merges these
states in the one-process video order (:meth:`~surgkit.synth.writers.base.LayoutWriter.merge_state`)
and writes the dataset-level files in ``finish()`` as before. Rendering and encoding, nearly all
of the time, run on every core; the output does not depend on the number of workers (tested).

Workers start from the shared fork server (:func:`surgkit.utils.workers.pool_context`) and die
with the command (:func:`surgkit.utils.workers.init_worker`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from surgkit.synth.world import World


@dataclasses.dataclass(frozen=True)
class VideoJob:
    """One video to write: ``kind`` "lap" (index = video index) or "bench" (index into ``world.trials()``)."""

    kind: str
    index: int
    name: str
    replay: bool = False  # written by an earlier run: rebuild its dataset-level state only


@dataclasses.dataclass(frozen=True)
class WorldSpec:
    """What a worker needs to rebuild the world and the writers (small, picklable)."""

    out: str
    seed: int
    preset: str
    videos: int | None
    layouts: tuple[str, ...]
    splits: dict[str, list[int]]


def plan_of(world: World, job: VideoJob):
    if job.kind == "corpus":  # a pretraining surgery: none of the world's videos (surgkit.synth.corpus)
        from surgkit.synth.corpus import corpus_plan, corpus_surgeons

        return corpus_plan(world, job.index, corpus_surgeons(world))
    return world.lap_plan(job.index) if job.kind == "lap" else world.bench_plan(world.trials()[job.index])


def _frames(world: World, plan, keyframes_only: bool):
    """(t, rgb, truth) of every frame, or of the corpus keyframes only (rendered directly, no video)."""
    if not keyframes_only:
        yield from ((t, *item) for t, item in enumerate(world.render(plan)))
        return
    from surgkit.synth.corpus import keyframes

    renderer = world.render(plan)
    for t in keyframes(plan):
        yield (t, *renderer.render(t))


def write_video(
    world: World, writers: Sequence[Any], plan, on_frames: Callable[[int], None] | None = None,
    keyframes_only: bool = False,
) -> None:  # fmt: skip
    """Stream one video through ``writers`` (begin, every frame, end); drop their partial files on failure.

    ``keyframes_only``: a corpus surgery, whose writers receive its keyframes only."""
    started = []
    try:
        for w in writers:
            w.begin(plan)
            started.append(w)
        for t, rgb, truth in _frames(world, plan, keyframes_only):
            for w in writers:
                w.frame(t, rgb, truth)
            if on_frames is not None and t % 50 == 49:
                on_frames(50)
    except BaseException:
        for w in started:  # close encoders and remove their temporary files
            w.abort()
        raise
    for w in writers:
        w.end(plan)
    if on_frames is not None:
        on_frames(plan.frames % 50)


_STATE: dict[str, Any] = {}  # per worker process: the progress queue and the world of the last spec


def _init(queue: Any, main_pid: int, main_start: str | None) -> None:
    from surgkit.utils.workers import init_worker

    init_worker(main_pid, main_start)
    import cv2

    cv2.setNumThreads(1)  # one core per worker; the pool provides the parallelism
    _STATE["queue"] = queue


def _world(spec: WorldSpec) -> World:
    key = (spec.seed, spec.preset, spec.videos)
    if _STATE.get("world_key") != key:
        _STATE["world"], _STATE["world_key"] = (
            World(seed=spec.seed, preset=spec.preset, videos=spec.videos),
            key,
        )
    return _STATE["world"]


def run_job(spec: WorldSpec, job: VideoJob) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Worker: write one video with fresh writers; return its summary and the writers' states."""
    from surgkit.synth.generate import writer_classes
    from surgkit.utils.workers import check_parent

    world = _world(spec)
    classes = writer_classes()
    writers = [classes[n](Path(spec.out), world, spec.splits) for n in spec.layouts]
    writers = [w for w in writers if job.kind in w.kinds]
    for w in writers:
        w.replay = job.replay
    plan = plan_of(world, job)
    queue = _STATE.get("queue")

    def progress(n: int) -> None:
        check_parent()
        if queue is not None:
            queue.put(n)

    write_video(world, writers, plan, progress, keyframes_only=job.kind == "corpus")
    return plan.summary(), [w.video_state() for w in writers]


def run_parallel(
    spec: WorldSpec, jobs: Sequence[VideoJob], workers: int, on_frames: Callable[[int], None]
) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Yield ``run_job`` results in job order while ``workers`` processes write the videos.

    On a failure the videos not yet started are cancelled, the running ones finish (so no worker
    writes into the folder after this returns) and the error is raised.
    """
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from surgkit.utils.workers import main_identity, pool_context

    ctx = pool_context()
    queue = ctx.Queue()

    def drain() -> None:
        while True:
            try:
                n = queue.get_nowait()
            except Exception:  # queue.Empty
                return
            on_frames(n)

    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)),
        mp_context=ctx,
        initializer=_init,
        initargs=(queue, *main_identity()),
    )
    try:
        futures = [pool.submit(run_job, spec, job) for job in jobs]
        for fut in futures:
            while not fut.done():
                wait([fut], timeout=0.2, return_when=FIRST_COMPLETED)
                drain()
            yield fut.result()
        drain()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        queue.close()
