"""Writer protocol and shared helpers (video encoding, 1-fps sampling, splits, PNG)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from surgkit.utils.io import atomic_path, write_json, write_text

if TYPE_CHECKING:
    from surgkit.synth.plan import VideoPlan
    from surgkit.synth.render import FrameTruth
    from surgkit.synth.world import World


class LayoutWriter:
    """One dataset layout. The generator streams every video's frames through the active writers:

    ``begin(plan)``, then ``frame(t, rgb, truth)`` for every frame, then ``end(plan)``; after all
    videos ``finish()`` writes the dataset-level files and returns a summary for world.json.
    ``kinds`` says which videos a writer wants (``lap`` cholecystectomies, ``bench`` JIGSAWS trials).
    """

    name: str = ""
    kinds: frozenset[str] = frozenset({"lap"})
    description: str = ""
    # replay: the video's files already exist (resumed run); only dataset-level state is rebuilt,
    # every per-video write below is skipped.
    replay: bool = False

    def __init__(self, root: Path, world: World, splits: dict[str, list[int]]):
        self.root = Path(root)
        self.world = world
        self.splits = splits  # lap video numbers (1-based) per split
        self.count = 0  # videos written

    def begin(self, plan: VideoPlan) -> None:  # pragma: no cover - default no-op
        pass

    def frame(self, t: int, rgb: np.ndarray, truth: FrameTruth) -> None:  # pragma: no cover
        pass

    def end(self, plan: VideoPlan) -> None:  # pragma: no cover
        pass

    def abort(self) -> None:
        """Called instead of ``end`` when a video fails: drop its half-written files."""

    def finish(self) -> dict[str, Any]:
        return {}

    # -- per-video outputs (skipped while replaying) ------------------------------------------
    def put_png(self, path: Path, image: np.ndarray) -> None:
        if not self.replay:
            write_png(path, image)

    def put_jpg(self, path: Path, image: np.ndarray) -> None:
        if not self.replay:
            write_jpg(path, image)

    def put_text(self, path: Path, text: str) -> None:
        if not self.replay:
            write_text(path, text)

    def put_json(self, path: Path, obj: Any, indent: int | None = 2) -> None:
        if not self.replay:
            write_json(path, obj, indent)

    def open_video(self, path: Path, fps: float, width: int, height: int) -> Callable[[np.ndarray], None]:
        """Start encoding ``path``; returns the frame sink (a no-op while replaying)."""
        self._video = None
        if self.replay:
            return lambda rgb: None
        self._video = video_writer(path, fps, width, height)
        return self._video.__enter__()

    def close_video(self, error: BaseException | None = None) -> None:
        """Finish the video (or, given the error that stopped it, drop its temporary file)."""
        video, self._video = getattr(self, "_video", None), None
        if video is not None:
            video.__exit__(None if error is None else type(error), error, None)

    def split_of(self, number: int) -> str:
        for name, ids in self.splits.items():
            if number in ids:
                return name
        return "train"


def default_splits(n: int) -> dict[str, list[int]]:
    """Video numbers 1..n split 60/20/20 by order (at least one test video when n >= 2)."""
    ids = list(range(1, n + 1))
    if n == 1:
        return {"train": ids, "val": [], "test": []}
    n_test = max(1, round(0.2 * n))
    n_val = round(0.2 * n) if n >= 5 else 0
    n_train = n - n_test - n_val
    return {"train": ids[:n_train], "val": ids[n_train : n_train + n_val], "test": ids[n_train + n_val :]}


def sampled(t: int, fps: float, per_second: float = 1.0) -> bool:
    """True for the frames kept at ``per_second`` Hz: frame index a multiple of round(fps / per_second)."""
    return t % max(1, int(round(fps / per_second))) == 0


def _write_image(path: Path, ext: str, image: np.ndarray, params: list[int]) -> None:
    img = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, buf = cv2.imencode(ext, img, params)
    if not ok:
        raise RuntimeError(f"image encoding failed for {path}")
    # atomic rename without a per-file fsync: thousands of small frames would otherwise cost seconds
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


def write_png(path: Path, image: np.ndarray) -> None:
    """Atomically write an RGB (HxWx3) or single-channel (HxW) uint8 image as PNG."""
    _write_image(path, ".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 3])


def write_jpg(path: Path, image: np.ndarray, quality: int = 92) -> None:
    """Atomically write an RGB uint8 image as JPEG."""
    _write_image(path, ".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])


VIDEO_CODECS = {".mp4": "libx264", ".avi": "mpeg4"}


@contextlib.contextmanager
def video_writer(path: Path, fps: float, width: int, height: int) -> Iterator[Callable[[np.ndarray], None]]:
    """Encode RGB frames with PyAV: H.264 for ``.mp4``, MPEG-4 Part 2 for ``.avi``; atomic on success.

    Settings are fixed (x264 ``ultrafast``, CRF 18, 1 thread; MPEG-4 at 0.2 bit per pixel, 1 thread) so that the same frames
    always give the same bytes.
    """
    import av

    codec = VIDEO_CODECS[Path(path).suffix]
    with atomic_path(path) as tmp:
        container = av.open(str(tmp), mode="w")
        try:
            stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            if codec == "libx264":
                stream.options = {"preset": "ultrafast", "crf": "18", "threads": "1"}
            else:
                stream.bit_rate = int(0.2 * width * height * fps)
                stream.thread_count = 1

            def write(rgb: np.ndarray) -> None:
                for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                    container.mux(packet)

            yield write
            for packet in stream.encode():
                container.mux(packet)
        finally:
            container.close()
