"""Lazy random access to the frames of a video file or a frame folder.

Nothing here holds a whole video in memory: :meth:`FrameReader.read` decodes only the requested
frames. For video files (PyAV) it seeks to the nearest keyframe before a requested frame when the
gap from the current decoding position exceeds ``seek_gap`` frames, and otherwise decodes forward;
decoded frames are scaled (and converted to grey) inside libswscale via ``frame.reformat`` so no
full-resolution RGB array is ever built. Frame folders read one image file per requested frame,
using OpenCV's reduced-resolution decoding when the requested size is at most half the image.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from surgkit.data._parse import IMAGE_EXTS, list_images
from surgkit.errors import DataFormatError


@dataclasses.dataclass
class MediaInfo:
    fps: float | None
    num_frames: int
    width: int
    height: int

    @property
    def duration_s(self) -> float | None:
        return self.num_frames / self.fps if self.fps else None


class FrameReader:
    """Common interface: ``info`` and ``read(indices, size, gray)``."""

    info: MediaInfo

    def read(
        self, indices: Sequence[int], size: tuple[int, int] | None = None, gray: bool = False
    ) -> np.ndarray:
        """Frames at the given 0-based indices (any order, repeats allowed).

        Returns uint8 (T, H, W, 3) RGB or (T, H, W) grey; ``size`` is (width, height).
        Indices past the end are clamped to the last frame.
        """
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - trivial
        pass

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_frames(
    path: str | Path, fps: float | None = None, seek_gap: int | None = None, skip_nonref: bool = False
) -> FrameReader:
    """A reader for a video file or a folder of frame images (``fps`` is needed for folders' timing).

    ``skip_nonref`` (video files): while decoding towards a requested frame more than a few frames
    ahead, let the codec skip non-reference frames (B-frames); the returned frame may then be up to a
    few frames after the requested one. For approximate uses only (fingerprints), never for training.
    """
    path = Path(path)
    if path.is_dir():
        return FolderReader(path, fps=fps)
    if path.is_file():
        return VideoFileReader(path, seek_gap=seek_gap, skip_nonref=skip_nonref)
    raise DataFormatError("missing video file or frame folder", path=path)


def probe(path: str | Path, fps: float | None = None) -> MediaInfo:
    """Frame rate, frame count and size, from the container header (no decoding) or the folder listing."""
    with open_frames(path, fps=fps) as reader:
        return reader.info


class FolderReader(FrameReader):
    """Frames of a folder in natural file order, or of an explicit list of image ``files``."""

    def __init__(self, folder: Path | None, fps: float | None = None, files: Sequence[Path] | None = None):
        self.folder = folder
        self.files = list(files) if files is not None else list_images(folder)
        if not self.files:
            raise DataFormatError(f"no frame images ({', '.join(IMAGE_EXTS)}) in folder", path=folder)
        first = self._imread(self.files[0], None, False)
        self.info = MediaInfo(fps, len(self.files), int(first.shape[1]), int(first.shape[0]))

    def _imread(self, path: Path, size: tuple[int, int] | None, gray: bool) -> np.ndarray:
        import cv2

        flag = cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR
        info = getattr(self, "info", None)
        if size is not None and info is not None:
            factor = min(info.width / size[0], info.height / size[1])
            for f, (c, g) in ((8, (cv2.IMREAD_REDUCED_COLOR_8, cv2.IMREAD_REDUCED_GRAYSCALE_8)),
                              (4, (cv2.IMREAD_REDUCED_COLOR_4, cv2.IMREAD_REDUCED_GRAYSCALE_4)),
                              (2, (cv2.IMREAD_REDUCED_COLOR_2, cv2.IMREAD_REDUCED_GRAYSCALE_2))):  # fmt: skip
                if factor >= f:
                    flag = g if gray else c
                    break
        img = cv2.imread(str(path), flag)
        if img is None:
            raise DataFormatError("unreadable image", path=path)
        if size is not None and (img.shape[1], img.shape[0]) != tuple(size):
            img = cv2.resize(img, tuple(size), interpolation=cv2.INTER_AREA)
        return img if gray else img[:, :, ::-1]

    def read(self, indices, size=None, gray=False):
        n = len(self.files)
        frames = [self._imread(self.files[min(max(int(i), 0), n - 1)], size, gray) for i in indices]
        return np.ascontiguousarray(np.stack(frames)) if frames else np.zeros((0,), np.uint8)


class VideoFileReader(FrameReader):
    NONREF_MARGIN = 8  # decode every frame this close to a target (frame threads lag the setting)

    def __init__(self, path: Path, seek_gap: int | None = None, skip_nonref: bool = False):
        import av

        self.path = path
        try:
            self.container = av.open(str(path))
        except av.error.FFmpegError as e:
            raise DataFormatError(f"cannot open video: {e}", path=path) from None
        if not self.container.streams.video:
            self.container.close()
            raise DataFormatError("no video stream", path=path)
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.skip_nonref = skip_nonref
        rate = self.stream.average_rate or self.stream.guessed_rate
        fps = float(rate) if rate else None
        num = int(self.stream.frames or 0)
        if num <= 0 and fps and self.stream.duration is not None and self.stream.time_base is not None:
            num = int(round(float(self.stream.duration * self.stream.time_base) * fps))
        elif num <= 0 and fps and self.container.duration:
            num = int(round(self.container.duration / 1e6 * fps))
        self.info = MediaInfo(fps, num, self.stream.codec_context.width, self.stream.codec_context.height)
        self.seek_gap = seek_gap if seek_gap is not None else int(2 * (fps or 25))
        self._tb = float(self.stream.time_base) if self.stream.time_base else 0.0
        self._start = self.stream.start_time * self._tb if self.stream.start_time else 0.0
        from av.video.reformatter import VideoReformatter

        self._reformatter = VideoReformatter()  # keeps its scaler between calls (frame.reformat rebuilds it)
        self._iter = None
        self._pos = -1  # index of the last decoded frame
        self.decoded = 0  # frames the codec has output so far (for benchmarks)
        self._gop = 0  # lower bound of the keyframe interval, learnt from where seeks land
        self._after_seek = None  # target of the last seek, until its first frame is decoded

    def close(self) -> None:
        self.container.close()

    def _index(self, frame) -> int | None:
        if frame.pts is None or self.info.fps is None:
            return None
        return int(round((frame.pts * self._tb - self._start) * self.info.fps))

    def _seek(self, index: int) -> None:
        fps = self.info.fps or 25.0
        target = int((index / fps + self._start) / self.stream.time_base)
        self.container.seek(target, stream=self.stream, backward=True, any_frame=False)
        self._iter = self.container.decode(self.stream)
        self._pos = -1
        self._sequential = 0
        self._after_seek = index

    def _restart(self) -> None:
        self.container.seek(0)
        self._iter = self.container.decode(self.stream)
        self._pos = -1
        self._sequential = 0

    def _next(self):
        frame = next(self._iter)
        self.decoded += 1
        idx = self._index(frame)
        if idx is None:  # no timestamps: count frames from the (re)start
            self._sequential += 1
            idx = self._sequential - 1 if self._pos < 0 else self._pos + 1
        if self._after_seek is not None:  # landed on a keyframe this far before the target
            self._gop = max(self._gop, self._after_seek - idx)
            self._after_seek = None
        self._pos = idx
        return frame

    def _decode_to(self, target: int):
        """Decode forward until the frame index reaches ``target``; (frame, overshoot)."""
        frame, first, overshoot = None, True, False
        ctx = self.stream.codec_context
        try:
            while self._pos < target:
                if self.skip_nonref:
                    ctx.skip_frame = "NONREF" if target - self._pos > self.NONREF_MARGIN else "DEFAULT"
                frame = self._next()
                if first:
                    overshoot = self._pos > target
                    first = False
        except StopIteration:
            pass
        except Exception as e:  # av.error.* while decoding a damaged file
            raise DataFormatError(f"decoding failed near frame {target}: {e}", path=self.path) from None
        return frame, overshoot

    def read(self, indices, size=None, gray=False):
        fmt = "gray" if gray else "rgb24"
        width, height = size if size is not None else (None, None)
        last = max(self.info.num_frames - 1, 0)
        wanted = sorted({min(max(int(i), 0), last) for i in indices})
        got: dict[int, np.ndarray] = {}
        previous = None
        for target in wanted:
            # seek only when the gap is larger than both seek_gap and the keyframe spacing seen so far:
            # otherwise the seek would land before the current position and decode more, not less
            seeked = (
                self._iter is None
                or target <= self._pos
                or target - self._pos > max(self.seek_gap, self._gop)
            )
            if seeked:
                self._seek(target) if target > 0 else self._restart()
            frame, overshoot = self._decode_to(target)
            if seeked and target > 0 and (frame is None or overshoot):
                # the seek landed past the target (unreliable timestamps): decode from the start
                self._restart()
                frame, _ = self._decode_to(target)
            frame = frame if frame is not None else previous  # past the real end: clamp
            if frame is None:
                raise DataFormatError(f"could not decode frame {target}", path=self.path)
            previous = frame
            small = self._reformatter.reformat(
                frame, width=width, height=height, format=fmt, interpolation="AREA"
            )
            got[target] = small.to_ndarray()
        out = [got[min(max(int(i), 0), last)] for i in indices]
        return np.ascontiguousarray(np.stack(out)) if out else np.zeros((0,), np.uint8)


def probe_video(video, notes: list[str] | None = None) -> None:
    """Fill ``video.num_frames`` (and check ``video.fps``) from its media header; no decoding.

    A frame-rate disagreement with the annotation convention is appended to ``notes`` and the media
    rate kept in ``video.extra['media_fps']``. Unreadable media raise :class:`DataFormatError`.
    """
    if video.path is None:
        return
    info = probe(video.path, fps=video.fps)
    video.num_frames = info.num_frames
    if info.fps and video.fps and abs(info.fps - video.fps) > 0.01:
        video.extra["media_fps"] = info.fps
        if notes is not None:
            notes.append(f"{video.id}: media is {info.fps:g} fps, the annotation assumes {video.fps:g}")
    elif video.fps is None:
        video.fps = info.fps
