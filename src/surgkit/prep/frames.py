"""``surgkit prep frames``: decode videos, resample to a target fps, transform, write frames.

Streaming: per video, the worker's main thread decodes and selects frames while a background
thread converts, transforms, encodes and writes the previous chunk (``chunk_size`` frames, by
default about 64 MiB of source frames, 8 to 256), so a worker holds at most two chunks of decoded
frames plus one chunk of output pixels, whatever the video length. Each chunk is written
atomically and recorded in the manifest, so a killed run resumes from the first unfinished chunk
(earlier frames are decoded to keep the timestamp rule exact, but not converted or written again).
Finished videos are skipped when the input file hash and settings are unchanged. See
:mod:`surgkit.prep.video` for the exact resampling rule and :mod:`surgkit.prep.transforms` for
crop/resize options.

Speed (``bench/prep.py``): per frame the work is decoding, one swscale conversion to RGB (one
context per thread, not one per frame as ``VideoFrame.to_ndarray`` builds), the transform and one
copy into the chunk buffer (array store) or one encode (JPEG/PNG). With fewer videos than workers
each video's chunks are converted/encoded by ``workers // videos`` threads. A new video's input is
hashed by a thread of its worker while it decodes, not by the main process before work starts.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from surgkit.errors import SurgkitError
from surgkit.prep.manifest import Manifest
from surgkit.prep.runner import PrepProgress, PrepResult, check_unique_ids, run_tasks
from surgkit.prep.seqstore import SequenceWriter, check_format
from surgkit.prep.shard import Shard, parse_shard, prep_locked
from surgkit.prep.transforms import PRESETS, parse_transform
from surgkit.prep.video import VideoError, decode, find_videos, parse_fps, probe, to_rgb_array, video_id_of
from surgkit.utils.io import sha256_file
from surgkit.utils.runinfo import check_resume
from surgkit.utils.workers import default_workers


@dataclasses.dataclass(frozen=True)
class FrameSettings:
    """Everything that determines the output (hashed into the manifest)."""

    fps: str | None = None  # exact rational as text; None = every source frame
    transform: str = ""
    fmt: str = "jpg"
    pattern: str = "{index:05d}"
    start_number: int = 0
    jpeg_quality: int = 95
    chunk_size: int | None = None  # None: auto (about 64 MiB of source frames, 8..256)
    strict: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


CHUNK_BYTES = 64 << 20  # auto chunk size: about 64 MiB of decoded source frames per chunk


def auto_chunk_size(width: int, height: int) -> int:
    """Frames per chunk when not given: 64 MiB of source RGB frames, between 8 and 256."""
    return int(min(256, max(8, CHUNK_BYTES // max(1, width * height * 3))))


class _BackgroundWriter:
    """Convert/encode/write chunks in one background thread so that work overlaps decoding.

    At most ``depth`` chunks wait for the thread, so memory stays bounded. ``on_written`` runs in
    the calling thread, in chunk order, once a chunk file is complete.
    """

    def __init__(self, write_chunk, on_written, depth: int = 1):
        from concurrent.futures import ThreadPoolExecutor

        self.write_chunk, self.on_written, self.depth = write_chunk, on_written, depth
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="surgkit-prep-writer")
        self.pending: list[tuple[int, Any]] = []

    def submit(self, chunk_id: int, items: Any) -> None:
        while len(self.pending) >= self.depth:
            self._pop()
        self.pending.append((chunk_id, self.pool.submit(self.write_chunk, chunk_id, items)))

    def _pop(self) -> None:
        chunk_id, fut = self.pending.pop(0)
        self.on_written(chunk_id, fut.result())

    def close(self) -> None:
        while self.pending:
            self._pop()

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True)


@dataclasses.dataclass(frozen=True)
class _Task:
    video_id: str
    path: str
    out_dir: str
    settings: FrameSettings
    input_sha256: str | None  # None: a new video; the worker hashes its input while decoding
    resume_from_chunk: int  # 0 = start over (the video folder is cleared)
    chunk_size: int  # effective frames per chunk
    threads: int = 1  # conversion/encoding threads of this worker (workers // videos at once)


def _first_gap(chunks: set[int]) -> int:
    k = 0
    while k in chunks:
        k += 1
    return k


class _ChunkEncoder:
    """Turn a chunk of decoded frames into output files (runs in the background writer thread).

    Per frame: RGB conversion (one swscale context per thread, :func:`to_rgb_array`), the
    transform, then

    * ``array``: a copy into one reused ``[chunk, H, W, 3]`` buffer (the only copy; no per-chunk
      allocation, no ``np.stack``), then one ``np.save`` of the chunk;
    * ``jpg``/``png``: encoding and an atomic write of the frame's file.

    With ``threads > 1`` the frames of a chunk are spread over that many threads (swscale, the
    OpenCV transforms/encoders and NumPy copies release the GIL). The files do not depend on the
    thread count.
    """

    def __init__(self, writer: SequenceWriter, transform, path: str, threads: int):
        from concurrent.futures import ThreadPoolExecutor

        self.writer, self.transform, self.path = writer, transform, path
        self.identity = not transform.ops
        self.threads = max(1, int(threads))
        self.pool = ThreadPoolExecutor(self.threads - 1, "surgkit-prep-encode") if self.threads > 1 else None
        self.buffer: np.ndarray | None = None
        self.shape: tuple[int, ...] | None = None  # item shape of the first frame converted

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)

    def _parallel(self, fn, n: int) -> None:
        """Run ``fn(lo, hi)`` over ``threads`` contiguous parts of range(n); the caller does the first."""
        if self.pool is None or n < 2:
            fn(0, n)
            return
        bounds = np.linspace(0, n, min(self.threads, n) + 1).astype(int)
        futures = [
            self.pool.submit(fn, int(a), int(b)) for a, b in zip(bounds[1:-1], bounds[2:], strict=True)
        ]
        fn(0, int(bounds[1]))
        for fut in futures:
            fut.result()

    def _image(self, raw: Any) -> np.ndarray:
        rgb = to_rgb_array(raw)
        return rgb if self.identity else self.transform(rgb)

    def __call__(self, chunk_id: int, raws: list[Any]) -> int:
        first = chunk_id * self.writer.chunk_size
        image = self._image(raws[0])
        if self.shape is None:
            self.shape = image.shape
        if self.writer.fmt == "array":
            return self._array(chunk_id, raws, image)
        self.writer.folder.mkdir(parents=True, exist_ok=True)
        self.writer.write_item(first, image)

        def encode(lo: int, hi: int) -> None:
            for j in range(max(lo, 1), hi):
                self.writer.write_item(first + j, self._image(raws[j]))

        self._parallel(encode, len(raws))
        return len(raws)

    def _array(self, chunk_id: int, raws: list[Any], image: np.ndarray) -> int:
        shape = self.shape
        if self.buffer is None:
            self.buffer = np.empty((self.writer.chunk_size, *shape), np.uint8)

        def fill(lo: int, hi: int) -> None:
            for j in range(lo, hi):
                item = image if j == 0 else self._image(raws[j])
                if item.shape != shape:
                    raise VideoError(
                        self.path,
                        f"transformed frame has shape {item.shape}, earlier frames {shape}; "
                        "the array store needs one size (add resize=WxH to the transform)",
                        frame=chunk_id * self.writer.chunk_size + j,
                    )
                self.buffer[j] = item

        self._parallel(fill, len(raws))
        return self.writer.write_chunk(chunk_id, self.buffer[: len(raws)])


class _BackgroundHash:
    """SHA-256 of the input file in a thread, overlapping decoding (hashlib releases the GIL)."""

    def __init__(self, path: str):
        import threading

        self.path = path
        self.value: str | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(path,), name="surgkit-prep-hash", daemon=True)
        self.thread.start()

    def _run(self, path: str) -> None:
        try:
            self.value = sha256_file(path)
        except BaseException as e:  # re-raised in the worker's thread by result()
            self.error = e

    def result(self) -> str:
        self.thread.join()
        if self.error is not None:
            raise SurgkitError(f"{self.path}: cannot read the file ({self.error})") from self.error
        assert self.value is not None
        return self.value


def extract_video(task: _Task, report) -> dict[str, Any]:
    """Worker: decode one video and write its frames chunk by chunk; returns its summary.

    The main thread decodes and selects frames (exact timestamps); a background thread converts,
    transforms, encodes and writes each chunk (:class:`_ChunkEncoder`, ``task.threads`` threads),
    so decoding and writing overlap. A new video's input hash is computed by a third thread and
    reported before its first chunk, so the manifest never records a chunk without it.
    """
    s = task.settings
    transform = parse_transform(s.transform)
    chunk = task.chunk_size
    writer = SequenceWriter(
        Path(task.out_dir) / task.video_id,
        "frames",
        s.fmt,
        chunk_size=chunk,
        pattern=s.pattern,
        start_number=s.start_number,
        jpeg_quality=s.jpeg_quality,
    )
    if task.resume_from_chunk == 0:
        writer.reset()
    hasher = _BackgroundHash(task.path) if task.input_sha256 is None else None
    digest = [task.input_sha256]
    warnings: list[str] = []
    source_index: list[int] = []
    chunk_id = task.resume_from_chunk
    pending: list[Any] = []

    def digest_now() -> str:
        if digest[0] is None:
            assert hasher is not None
            digest[0] = hasher.result()
            report(("sha256", task.video_id, digest[0]))
        return digest[0]

    def written(cid: int, n: int) -> None:
        digest_now()  # the manifest learns the input hash before any chunk of a new video
        report(("chunk", task.video_id, cid, n))
        report(("items", task.video_id, n))

    encoder = _ChunkEncoder(writer, transform, task.path, task.threads)
    background = _BackgroundWriter(encoder, written)
    try:
        frames = decode(task.path, s.fps, skip_before=chunk_id * chunk, strict=s.strict, warnings=warnings,
                        to_rgb=False)  # fmt: skip
        for frame in frames:
            source_index.append(frame.source_index)
            if frame.raw is None:
                continue
            pending.append(frame.raw)
            if len(pending) == chunk:
                background.submit(chunk_id, pending)
                chunk_id, pending = chunk_id + 1, []
        if pending:
            background.submit(chunk_id, pending)
        background.close()
    finally:
        background.shutdown()
        encoder.close()
    shape = encoder.shape
    if not source_index:
        raise VideoError(task.path, "no output frames (is the video shorter than one output period?)")
    if shape is None:  # every chunk was written by an earlier run: read the size back
        from surgkit.prep.seqstore import SequenceReader

        shape = SequenceReader.peek_shape(writer)
    info = probe(task.path)
    meta = {
        "source": str(task.path),
        "source_sha256": digest_now(),
        "source_fps": info.fps,
        "source_size": [info.width, info.height],
        "fps": float(parse_fps(s.fps)) if s.fps else info.fps,
        "fps_exact": s.fps,
        "resampling": "output k at t0 + k/fps takes the last source frame with pts <= t (sample and hold)",
        "transform": s.transform,
        "source_index": source_index,
        "warnings": warnings,
    }
    # sequence.json is written by the main process (finish_video) after it counted the files
    return {"num_items": len(source_index), "warnings": warnings,
            "shape": list(shape) if shape is not None else None, "meta": meta}  # fmt: skip


def finish_video(task: _Task, value: dict[str, Any]) -> None:
    """Main process: check that every frame file of the video exists, then write sequence.json."""
    s = task.settings
    writer = SequenceWriter(
        Path(task.out_dir) / task.video_id, "frames", s.fmt, chunk_size=task.chunk_size,
        pattern=s.pattern, start_number=s.start_number, jpeg_quality=s.jpeg_quality,
    )  # fmt: skip
    shape = tuple(value["shape"]) if value["shape"] is not None else None
    writer.finalize(value["num_items"], shape, value["meta"])


def resolve_settings(
    fps: float | str | None = None,
    transform: str | None = None,
    fmt: str | None = None,
    preset: str | None = None,
    pattern: str | None = None,
    **other: Any,
) -> FrameSettings:
    """Merge a preset with explicit options (explicit wins) and validate them."""
    base: dict[str, Any] = {}
    if preset:
        if preset not in PRESETS:
            raise SurgkitError(f"unknown preset '{preset}' (choose from {', '.join(PRESETS)})")
        base = dict(PRESETS[preset])
    fps_v = fps if fps is not None else base.get("fps")
    fps_text = None if fps_v is None else str(parse_fps(fps_v))
    settings = FrameSettings(
        fps=fps_text,
        transform=parse_transform(transform if transform is not None else base.get("transform", "")).spec,
        fmt=fmt or str(base.get("format", "jpg")),
        pattern=pattern or str(base.get("pattern", "{index:05d}")),
        **other,
    )
    check_format("frames", settings.fmt)
    return settings


@prep_locked("surgkit prep frames")
def extract(
    inputs: list[str | Path] | str | Path,
    out_dir: str | Path,
    *,
    fps: float | str | None = None,
    transform: str | None = None,
    fmt: str | None = None,
    preset: str | None = None,
    pattern: str | None = None,
    start_number: int = 0,
    jpeg_quality: int = 95,
    chunk_size: int | None = None,
    strict: bool = True,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    shard: str | Shard | None = None,
) -> PrepResult:
    """Extract frames of every video in ``inputs`` into ``out_dir/<video_id>/``.

    ``shard="i/N"`` processes only shard i's videos (:mod:`surgkit.prep.shard`).

    Returns a :class:`PrepResult`; failed videos are listed there (and in the manifest) while the
    others finish. ``fps`` uses the exact sample-and-hold rule of :mod:`surgkit.prep.video`.
    """
    settings = resolve_settings(
        fps, transform, fmt, preset, pattern,
        start_number=start_number, jpeg_quality=jpeg_quality, chunk_size=chunk_size, strict=strict,
    )  # fmt: skip
    shard = parse_shard(shard)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    videos = find_videos(inputs)
    if not videos:
        raise SurgkitError(f"no video files found in {inputs}")
    check_unique_ids([(video_id_of(p), p) for p in videos])
    expected = [video_id_of(p) for p in videos]
    videos = [p for p in videos if shard is None or shard.owns(video_id_of(p))]
    check_resume(out, settings.to_dict(), overwrite, command="surgkit prep frames")
    manifest = Manifest(out, "frames", settings.to_dict(), shard=shard, expected=expected)
    result = PrepResult(step="frames", out_dir=str(out))
    tasks: list[_Task] = []
    with PrepProgress("frames", len(videos), "frames", enabled=progress) as bar:
        for path in videos:
            vid = video_id_of(path)
            try:
                info = probe(path)
                # hash now only when an earlier run's entry must be matched; a new video's worker
                # hashes its input while decoding (no serial pass over every file before work starts)
                digest = sha256_file(path) if manifest.knows(vid) and not overwrite else None
            except (SurgkitError, OSError) as e:
                result.failed[vid] = str(e)
                manifest.video_failed(vid, str(e))
                bar.failed(str(e))
                bar.advance_video()
                continue
            action, chunks = manifest.plan(vid, str(path), digest, overwrite)
            if action == "skip":
                result.skipped.append(vid)
                bar.advance_video()
                continue
            start_chunk = _first_gap(chunks) if action == "resume" else 0
            chunk = settings.chunk_size or auto_chunk_size(info.width, info.height)
            if info.declared_frames and info.fps:
                ratio = float(parse_fps(settings.fps)) / info.fps if settings.fps else 1.0
                bar.add_items_total(max(0, round(info.declared_frames * ratio) - start_chunk * chunk))
            tasks.append(_Task(vid, str(path), str(out), settings, digest, start_chunk, chunk))
        n_workers = workers or default_workers()
        # encoding spread over the workers: with fewer videos than workers, each gets more threads
        threads = max(1, n_workers // max(1, min(n_workers, len(tasks))))
        tasks = [dataclasses.replace(t, threads=threads) for t in tasks]

        def on_message(msg: tuple) -> None:
            if msg[0] == "sha256":
                manifest.set_input_sha256(msg[1], msg[2])
            elif msg[0] == "chunk":
                manifest.chunk_done(msg[1], msg[2], msg[3])
                result.computed_items[msg[1]] = result.computed_items.get(msg[1], 0) + msg[3]
            elif msg[0] == "items":
                bar.advance_items(msg[2])

        def on_result(task: _Task, value: dict[str, Any]) -> None:
            try:
                finish_video(task, value)
            except SurgkitError as e:
                on_error(task, str(e))
                return
            manifest.video_done(task.video_id, value["num_items"])
            result.done.append(task.video_id)
            for w in value["warnings"]:
                bar.log(f"warning {task.path}: {w}", style="yellow")
            bar.advance_video()

        def on_error(task: _Task, message: str) -> None:
            manifest.video_failed(task.video_id, message)
            result.failed[task.video_id] = message
            bar.failed(message)
            bar.advance_video()

        run_tasks(
            tasks, extract_video, workers=n_workers,
            on_message=on_message, on_result=on_result, on_error=on_error,
        )  # fmt: skip
    manifest.save()
    return result
