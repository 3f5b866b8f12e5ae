"""Streaming video decoding with PyAV, exact timestamp-based fps resampling, strict error checks.

Resampling rule (documented in docs/prep.md and tested with videos whose frames encode their own
index): with ``t0`` the presentation time of the first decoded frame and ``fps`` the target rate,
output frame ``k`` is taken at time ``t_k = t0 + k / fps`` and is the **last source frame whose
presentation time is <= t_k** (sample and hold). Times are compared as exact fractions
(``pts * time_base`` and ``k / Fraction(str(fps))``), so 30 -> 10 fps takes source frames
0, 3, 6, ... with no float drift. Outputs continue while ``t_k < t_end``, where ``t_end`` is the
display end of the last source frame (its pts plus its duration), so a video of N frames at
rate r gives ``ceil(N * fps / r)`` frames. ``fps=None`` keeps every source frame.

Strictness: FFmpeg's decoder conceals damage instead of failing. While decoding, FFmpeg's log is
captured; any message at level ERROR or worse, or fewer decoded frames than the container
declares, fails the video with :class:`VideoError` naming the file, the frame index and FFmpeg's
own words. ``strict=False`` turns these into warnings (``VideoStream.warnings``).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from surgkit.errors import SurgkitError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")


class VideoError(SurgkitError):
    """A video that cannot be decoded: names the file, the frame index and FFmpeg's reason."""

    def __init__(self, path: str | Path, reason: str, frame: int | None = None):
        self.path = Path(path)
        self.frame = frame
        self.reason = reason
        where = f"{path}: " if frame is None else f"{path}: frame {frame}: "
        super().__init__(where + reason)


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What the container says about the first video stream."""

    path: str
    codec: str
    width: int
    height: int
    fps: float  # average frame rate declared by the container
    declared_frames: int  # 0 when the container does not say
    duration_s: float | None


@dataclasses.dataclass
class Frame:
    """One output frame: its output index, time (s, from the first frame) and source frame index."""

    index: int
    time: float
    source_index: int
    image: np.ndarray | None  # H x W x 3 uint8 RGB; None for frames skipped on resume (or to_rgb=False)
    raw: Any = None  # the decoded av.VideoFrame when to_rgb=False (convert with to_rgb_array)


def _ffmpeg_reason(exc: BaseException, logs: list | None = None) -> str:
    """FFmpeg's own words: the error's strerror plus the last captured ERROR-level log line.

    PyAV's ``exc.log`` is process-global and can be stale, so only logs captured around the
    failing call are used.
    """
    import av.logging

    parts = [getattr(exc, "strerror", None) or str(exc)]
    errors = [entry for entry in (logs or []) if entry[0] is not None and entry[0] <= av.logging.ERROR]
    if errors:
        parts.append(f"[{errors[-1][1]}] {str(errors[-1][2]).strip()}")
    return "FFmpeg: " + "; ".join(p for p in parts if p)


def _open(path: Path) -> tuple[Any, Any, list]:
    """Open the container; also return FFmpeg's ERROR-level messages logged while opening."""
    import av

    if not path.exists():
        raise VideoError(path, "file not found")
    if path.is_dir():
        raise VideoError(path, "is a folder, not a video file")
    if path.stat().st_size == 0:
        raise VideoError(path, "empty file (0 bytes)")
    import av.logging

    previous_level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    av.logging.set_skip_repeated(False)  # the same reason for a second file must still be seen
    try:
        with av.logging.Capture(True) as logs:
            container = av.open(str(path), "r")
    except av.error.FFmpegError as e:
        raise VideoError(path, f"cannot open container ({_ffmpeg_reason(e, logs)})") from e
    except (OSError, ValueError) as e:
        raise VideoError(path, f"cannot open container ({e})") from e
    finally:
        av.logging.set_level(previous_level)
    if not container.streams.video:
        kinds = ", ".join(f"{s.type} stream" for s in container.streams) or "no streams at all"
        container.close()
        raise VideoError(path, f"no video stream ({kinds}); truncated file or not a video?")
    errors = [entry for entry in logs if entry[0] is not None and entry[0] <= av.logging.ERROR]
    return container, container.streams.video[0], errors


def probe(path: str | Path) -> VideoInfo:
    """Read the container header (no decoding)."""
    path = Path(path)
    container, stream, _ = _open(path)
    try:
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        duration = float(container.duration) / 1e6 if container.duration else None
        return VideoInfo(
            path=str(path),
            codec=stream.codec_context.name,
            width=int(stream.codec_context.width),
            height=int(stream.codec_context.height),
            fps=float(rate) if rate else 0.0,
            declared_frames=int(stream.frames or 0),
            duration_s=duration,
        )
    finally:
        container.close()


def parse_fps(fps: float | str | Fraction | None) -> Fraction | None:
    """Exact rational fps from a number or a string like '10', '29.97' or '30000/1001'."""
    if fps is None:
        return None
    try:
        value = Fraction(fps) if isinstance(fps, Fraction) else Fraction(str(fps))
    except (ValueError, ZeroDivisionError) as e:
        raise SurgkitError(f"invalid fps {fps!r}") from e
    if value <= 0:
        raise SurgkitError(f"fps must be positive, got {fps}")
    return value


class TimestampSampler:
    """Select output frames from a stream of (pts time, frame) by the sample-and-hold rule.

    Feed source frames in presentation order with :meth:`push`; it returns the output indices the
    *previous* frame covers once the next frame's time is known. :meth:`finish` flushes the last.

    Times are given in ``unit`` seconds (default 1; :func:`decode` passes the stream's time base so
    that it can push integer pts): output ``k`` lies at ``t0 + k / fps`` seconds, i.e.
    ``t0 + k / (fps * unit)`` units, and ``t_k < t`` is tested as the integer inequality
    ``k * den < (t - t0) * num`` with ``num / den = fps * unit``: exact, and no Fraction per frame.
    """

    def __init__(self, fps: Fraction | None, unit: Fraction | int = 1):
        self.fps = fps
        self.unit = Fraction(unit)
        rate = fps * self.unit if fps is not None else Fraction(1)  # output frames per time unit
        self._num, self._den = rate.numerator, rate.denominator
        self.next_k = 0
        self.t0: Fraction | int | None = None
        self.prev_time: Fraction | int | None = None

    def _before(self, k: int, time: Fraction | int) -> bool:
        """Whether output ``k``'s time ``t0 + k / fps`` is earlier than ``time``."""
        assert self.t0 is not None
        return k * self._den < (time - self.t0) * self._num

    def push(self, time: Fraction | int) -> list[int]:
        """Register a source frame at ``time``; return output indices held by the previous frame."""
        if self.t0 is None:
            self.t0 = time
        if self.prev_time is not None and time <= self.prev_time:
            raise ValueError(f"non-increasing presentation time {float(time * self.unit):.6f}s")
        out: list[int] = []
        if self.fps is None:
            if self.prev_time is not None:
                out.append(self.next_k)
                self.next_k += 1
        elif self.prev_time is not None:
            while self._before(self.next_k, time):
                out.append(self.next_k)
                self.next_k += 1
        self.prev_time = time
        return out

    def finish(self, end_time: Fraction | int) -> list[int]:
        """Indices held by the last source frame, whose display ends at ``end_time``."""
        if self.prev_time is None:
            return []
        if self.fps is None:
            self.next_k += 1
            return [self.next_k - 1]
        out = []
        while self._before(self.next_k, end_time):
            out.append(self.next_k)
            self.next_k += 1
        return out

    def time_of(self, k: int) -> float:
        return float(Fraction(k) / self.fps) if self.fps is not None else float("nan")

    def seconds_since_start(self, time: Fraction | int) -> float:
        """``time - t0`` in seconds (correctly rounded, as ``float(Fraction)``)."""
        assert self.t0 is not None
        delta = time - self.t0
        if isinstance(delta, int):
            return delta * self.unit.numerator / self.unit.denominator
        return float(delta * self.unit)


def decode(
    path: str | Path,
    fps: float | str | Fraction | None = None,
    *,
    skip_before: int = 0,
    strict: bool = True,
    warnings: list[str] | None = None,
    to_rgb: bool = True,
) -> Iterator[Frame]:
    """Yield the output frames of ``path`` resampled to ``fps`` (None = every source frame).

    Frames with output index < ``skip_before`` are selected but not converted to pixels (used to
    resume after a checkpoint: decoding is cheap, conversion and writing are not); they are
    yielded with ``image=None`` so their source indices stay known. ``to_rgb=False`` yields the
    decoded ``av.VideoFrame`` in ``raw`` instead of pixels, so the caller can convert it in another
    thread (FFmpeg's colour conversion releases the GIL). Without a consumer holding frames,
    memory holds at most two decoded frames, whatever the video length.
    """
    import av
    import av.logging

    path = Path(path)
    target = parse_fps(fps)
    container, stream, open_errors = _open(path)
    if open_errors:
        level, name, message = open_errors[0]
        text = f"FFmpeg [{name}] {str(message).strip()}"
        if strict:
            container.close()
            raise VideoError(path, f"corrupt container ({text})")
        if warnings is not None:
            warnings.append(f"container: {text}")
    # Single-threaded decoding: FFmpeg's frame threads would log outside this thread's capture
    # (and a global capture deadlocks PyAV); parallelism comes from processes instead.
    stream.thread_count = 1
    time_base = stream.time_base
    rate = stream.average_rate or stream.guessed_rate
    # times are integer pts (units of time_base): exact, and no Fraction per frame
    default_duration = 1 / (Fraction(rate) * time_base) if rate else None
    sampler = TimestampSampler(target, time_base)
    source_count = 0
    prev = None  # (source index, av frame, pts)
    last_duration = default_duration
    previous_level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)

    def emit(indices: list[int], held) -> Iterator[Frame]:
        src_index, vframe, pts = held
        image = None
        for k in indices:
            if k < skip_before:  # selected, but already written by an earlier run
                yield Frame(index=k, time=sampler.time_of(k), source_index=src_index, image=None)
                continue
            t = sampler.time_of(k) if target is not None else sampler.seconds_since_start(pts)
            if not to_rgb:
                yield Frame(index=k, time=t, source_index=src_index, image=None, raw=vframe)
                continue
            if image is None:
                image = to_rgb_array(vframe)
            yield Frame(index=k, time=t, source_index=src_index, image=image)

    try:
        with av.logging.Capture(True) as logs:
            demux = container.decode(stream)
            while True:
                try:
                    vframe = next(demux)
                except StopIteration:
                    break
                except av.error.FFmpegError as e:
                    reason = _ffmpeg_reason(e, logs)
                    raise VideoError(path, f"decoding failed ({reason})", frame=source_count) from e
                if logs:
                    _check_logs(path, logs, source_count, strict, warnings)
                pts = vframe.pts
                if pts is None:
                    raise VideoError(path, "frame without a timestamp", frame=source_count)
                if vframe.duration:
                    last_duration = vframe.duration
                try:
                    indices = sampler.push(pts)
                except ValueError as e:
                    raise VideoError(path, str(e), frame=source_count) from e
                if prev is not None and indices:
                    yield from emit(indices, prev)
                prev = (source_count, vframe, pts)
                source_count += 1
            _check_logs(path, logs, source_count, strict, warnings)
        if prev is None:
            raise VideoError(path, "the video stream contains no decodable frames", frame=0)
        declared = int(stream.frames or 0)
        if declared and source_count < declared:
            msg = f"truncated: the container declares {declared} frames, only {source_count} decoded"
            if strict:
                raise VideoError(path, msg, frame=source_count)
            if warnings is not None:
                warnings.append(msg)
        end = prev[2] + (last_duration or 0)
        yield from emit(sampler.finish(end), prev)
    finally:
        av.logging.set_level(previous_level)
        container.close()


def _check_logs(path: Path, logs: list, frame: int, strict: bool, warnings: list[str] | None) -> None:
    """Fail (strict) or record the first FFmpeg message at level ERROR or worse."""
    import av.logging

    while logs:
        level, name, message = logs.pop(0)
        if level is not None and level <= av.logging.ERROR:
            text = f"FFmpeg [{name}] {str(message).strip()}"
            if strict:
                raise VideoError(path, f"corrupt stream ({text})", frame=frame)
            if warnings is not None:
                warnings.append(f"source frame {frame}: {text}")


def find_videos(inputs: list[str | Path] | str | Path) -> list[Path]:
    """Video files from files and folders (folders are searched for known extensions, sorted).

    A file given explicitly is kept whatever its extension, so a mislabelled file fails with a
    clear decoding message instead of being silently skipped.
    """
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found.extend(
                sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in VIDEO_EXTENSIONS)
            )
        elif p.exists():
            found.append(p)
        else:
            raise SurgkitError(f"{p}: no such file or folder")
    return found


def video_id_of(path: str | Path) -> str:
    """The id of a video: its file name without extension (JIGSAWS 'Suturing_B001_capture1').

    The id names the video's output folder, so it must be a safe name (``..mp4`` has the id
    ``.``, the output folder itself): see :func:`surgkit.utils.ids.safe_id`.
    """
    from surgkit.utils.ids import safe_id

    return safe_id(Path(path).stem, path, what="video id")


_LOCAL = threading.local()


def to_rgb_array(raw: Any) -> np.ndarray:
    """RGB uint8 [H, W, 3] pixels of a decoded frame (``Frame.raw``).

    The same pixels as ``raw.to_ndarray(format="rgb24")`` (same swscale conversion and flags), but
    through one swscale context per thread: ``to_ndarray`` builds a new context (and its thread
    pool) for every frame, which costs more than decoding a small frame. The array is a view of
    the converted frame's buffer (no copy).
    """
    reformatter = getattr(_LOCAL, "reformatter", None)
    if reformatter is None:
        from av.video.reformatter import VideoReformatter

        reformatter = _LOCAL.reformatter = VideoReformatter()
    return reformatter.reformat(raw, format="rgb24", threads=1).to_ndarray()
