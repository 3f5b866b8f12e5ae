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
    # Dataset-level state: attributes that grow while videos are written and that finish() uses
    # (ints are counters, lists grow by appending, dicts map keys to such values). Everything a
    # writer keeps across videos must be listed here: with several worker processes each video is
    # written by fresh writers in a worker and the main process merges every video's state, in
    # video order, with merge_state (so the files equal a one-process run byte for byte).
    shared_state: tuple[str, ...] = ("count",)
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

    # -- parallel generation: one video's state, merged in the main process ----------------------
    def video_state(self) -> dict[str, Any]:
        """What this (fresh) writer added to its ``shared_state`` while writing one video."""
        fresh = type(self)(self.root, self.world, self.splits)
        return {key: _delta(getattr(self, key), getattr(fresh, key)) for key in self.shared_state}

    def merge_state(self, state: dict[str, Any]) -> None:
        """Add one video's :meth:`video_state` (videos merged in the one-process order)."""
        for key, delta in state.items():
            setattr(self, key, _merged(getattr(self, key), delta))

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


def _delta(value: Any, initial: Any) -> Any:
    """``value`` minus ``initial``: the count added, the items appended, per key for dicts."""
    if isinstance(value, bool) or not isinstance(value, (int, list, dict)):
        raise TypeError(f"shared writer state must be int, list or dict, not {type(value).__name__}")
    if isinstance(value, int):
        return value - initial
    if isinstance(value, list):
        if value[: len(initial)] != initial:
            raise ValueError("shared writer state lists may only grow at the end")
        return value[len(initial) :]
    return {k: _delta(v, initial[k]) if k in initial else v for k, v in value.items()}


def _merged(value: Any, delta: Any) -> Any:
    if isinstance(value, int):
        return value + delta
    if isinstance(value, list):
        value.extend(delta)
        return value
    for k, d in delta.items():
        value[k] = _merged(value[k], d) if k in value else d
    return value


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


_ENCODED: list[tuple[str, tuple[int, ...], np.ndarray, bytes]] = []  # recent (ext, params, pixels, bytes)
_ENCODED_KEEP = 4


def _encode(ext: str, image: np.ndarray, params: list[int]) -> bytes:
    """Encoded bytes of ``image``; the same pixels with the same settings are encoded once.

    Several layouts store the same 1-fps frame as PNG (CholecT50, Cholec80-Boxes, VQLA, VLM): the
    last few encodings are kept with a copy of their pixels and reused when the pixels are equal.
    """
    key = (ext, tuple(params))
    for e, p, pixels, data in _ENCODED:
        if (e, p) == key and pixels.shape == image.shape and np.array_equal(pixels, image):
            return data
    img = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, buf = cv2.imencode(ext, img, params)
    if not ok:
        raise RuntimeError(f"image encoding failed ({ext}, {image.shape})")
    data = buf.tobytes()
    _ENCODED.insert(0, (ext, key[1], image.copy(), data))
    del _ENCODED[_ENCODED_KEEP:]
    return data


def _write_image(path: Path, ext: str, image: np.ndarray, params: list[int]) -> None:
    data = _encode(ext, image, params)
    # atomic rename without a per-file fsync: thousands of small frames would otherwise cost seconds
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


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
                # from_numpy_buffer wraps the pixels (from_ndarray copies them); the encoder converts
                # to yuv420p through its own reused context either way, so the bytes are the same
                frame = av.VideoFrame.from_numpy_buffer(np.ascontiguousarray(rgb), format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)

            yield write
            for packet in stream.encode():
                container.mux(packet)
        finally:
            container.close()
