"""Clip sampling for SurgVISTA: 16 frames at an interval of 4 steps of a 1-fps timeline.

This module is the single place where surgkit.video turns videos into clips. Frame access goes
through :func:`surgkit.data.frames.open_frames` (lazy: only the requested frames are decoded, from
a video file or a frame folder); this module adds the SurgVISTA sampling rules and transforms:

* **Timeline.** Every video is seen at ``step_fps`` (1 fps, as all SurgVISTA data): step ``s``
  is source frame ``round(s · source_fps / step_fps)``. Frame folders are taken to be at 1 fps
  unless told otherwise (the official layout; CholecT50 ``videos/VIDxx/*.png``).
* **Online clip** (spec §6.1, §14): the clip ends at the anchor and walks back with stride
  ``interval``; a step below 0 is not taken, so the earliest reachable frame repeats. Sorted
  ascending. A clip is therefore never shorter than ``num_frames``: padding = repetition.
* **Even clip** (clip tasks, spec §8): ``num_frames`` steps spread evenly over a short clip;
  a clip shorter than ``num_frames`` repeats its last frame.
* **Augmentation** (spec §6.1): ``GroupMultiScaleCrop`` scales (1, .875, .75, .66),
  ``max_distort`` 1, 13 fixed offsets, one crop for the whole clip, bilinear resize; no flip or
  colour jitter. Evaluation: resize straight to ``img_size × img_size``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from surgkit.errors import SurgkitError

VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")
CROP_SCALES = (1.0, 0.875, 0.75, 0.66)


@dataclasses.dataclass
class ClipSource:
    """One video on a ``step_fps`` timeline: ``num_steps`` steps, mapped to source frames."""

    id: str
    path: Path
    source_fps: float
    num_source_frames: int
    step_fps: float = 1.0
    dataset: str = ""

    @property
    def num_steps(self) -> int:
        return max(1, int(np.floor((self.num_source_frames - 1) * self.step_fps / self.source_fps)) + 1)

    def source_index(self, step: int) -> int:
        return min(int(round(step * self.source_fps / self.step_fps)), self.num_source_frames - 1)


def online_clip_steps(anchor: int, num_frames: int = 16, interval: int = 4) -> list[int]:
    """Steps of the clip ending at ``anchor`` (ascending); below 0 the earliest step repeats."""
    if anchor < 0:
        raise SurgkitError(f"anchor must be >= 0, got {anchor}")
    steps, cur = [anchor], anchor
    for _ in range(num_frames - 1):
        if cur - interval >= 0:
            cur -= interval
        steps.append(cur)
    return sorted(steps)


def even_clip_steps(length: int, num_frames: int = 16) -> list[int]:
    """``num_frames`` steps evenly over ``[0, length)``; shorter clips repeat their last frame."""
    if length <= 0:
        raise SurgkitError("empty clip")
    if length < num_frames:
        return list(range(length)) + [length - 1] * (num_frames - length)
    return np.linspace(0, length - 1, num_frames).round().astype(int).tolist()


def open_source(
    path: str | Path, frame_fps: float = 1.0, step_fps: float = 1.0, dataset: str = ""
) -> ClipSource:
    """Probe a video file or frame folder into a :class:`ClipSource` (folders are at ``frame_fps``)."""
    from surgkit.data.frames import probe

    path = Path(path)
    info = probe(path, fps=frame_fps if path.is_dir() else None)
    fps = info.fps or frame_fps
    if info.num_frames <= 0:
        raise SurgkitError(f"{path}: no frames")
    return ClipSource(
        path.stem if path.is_file() else path.name, path, float(fps), info.num_frames, step_fps, dataset
    )


def discover_sources(root: str | Path, frame_fps: float = 1.0, step_fps: float = 1.0) -> list[ClipSource]:
    """Every video file and every frame folder (a folder holding images) under ``root``, sorted."""
    root = Path(root)
    if not root.exists():
        raise SurgkitError(f"{root}: data folder not found")
    if root.is_file():
        return [open_source(root, frame_fps, step_fps, dataset=root.parent.name)]
    found: list[Path] = []
    for p in sorted(root.rglob("*")):
        if (
            p.is_file()
            and p.suffix.lower() in VIDEO_EXTS
            or p.is_dir()
            and any(c.suffix.lower() in IMAGE_EXTS for c in p.iterdir())
        ):
            found.append(p)
    if not found:
        raise SurgkitError(f"{root}: no video files ({', '.join(VIDEO_EXTS)}) or frame folders found")
    from surgkit.utils.progress import console

    sources = []
    for p in found:
        try:
            sources.append(open_source(p, frame_fps, step_fps, dataset=root.name))
        except SurgkitError as e:  # one unreadable video must not stop the others
            console.print(f"[yellow]warning:[/] skipped {e}")
    if not sources:
        raise SurgkitError(f"{root}: none of the {len(found)} videos / frame folders could be opened")
    return sources


def multiscale_crop_box(
    width: int, height: int, out: int, rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """Official ``GroupMultiScaleCrop`` box ``(x, y, w, h)``: scale pair with ``|i−j| ≤ 1``, 13 offsets."""
    base = min(width, height)
    sizes = [int(base * s) for s in CROP_SCALES]
    sizes = [out if abs(s - out) < 3 else s for s in sizes]
    pairs = [(w, h) for i, h in enumerate(sizes) for j, w in enumerate(sizes) if abs(i - j) <= 1]
    cw, ch = pairs[rng.integers(len(pairs))]
    sx, sy = (width - cw) // 4, (height - ch) // 4
    offsets = [(0, 0), (4 * sx, 0), (0, 4 * sy), (4 * sx, 4 * sy), (2 * sx, 2 * sy), (0, 2 * sy), (4 * sx, 2 * sy),
               (2 * sx, 4 * sy), (2 * sx, 0), (sx, sy), (3 * sx, sy), (sx, 3 * sy), (3 * sx, 3 * sy)]  # fmt: skip
    x, y = offsets[rng.integers(len(offsets))]
    return int(x), int(y), int(cw), int(ch)


def frames_to_clip(
    frames: np.ndarray,
    img_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    crop: tuple[int, int, int, int] | None = None,
) -> torch.Tensor:
    """uint8 ``T×H×W×3`` RGB → float ``3×T×S×S``: optional crop, resize, /255, mean/std.

    The resize is antialiased when shrinking (area averaging, like the official PIL bilinear resize
    of a larger crop) and bilinear when enlarging (:func:`surgkit.prep.transforms.resize`).
    """
    from surgkit.prep.transforms import resize

    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise SurgkitError(f"expected RGB frames T×H×W×3, got shape {frames.shape}")
    out = np.empty((frames.shape[0], img_size, img_size, 3), dtype=np.float32)
    for i, f in enumerate(frames):
        if crop is not None:
            x, y, w, h = crop
            f = f[y : y + h, x : x + w]
        out[i] = resize(np.ascontiguousarray(f), img_size, img_size)
    x = torch.from_numpy(out).div_(255.0)
    x = (x - torch.tensor(mean)) / torch.tensor(std)
    return x.permute(3, 0, 1, 2).contiguous()


class ClipReader:
    """Reads clips from :class:`ClipSource` objects, keeping a few readers open (per process)."""

    def __init__(self, img_size: int, mean: Sequence[float], std: Sequence[float], max_open: int = 8):
        self.img_size, self.mean, self.std, self.max_open = img_size, tuple(mean), tuple(std), max_open
        self._open: dict[Path, object] = {}

    def _reader(self, source: ClipSource):
        from surgkit.data.frames import open_frames

        r = self._open.pop(source.path, None)
        if r is None:
            fps = source.source_fps if source.path.is_dir() else None
            r = open_frames(source.path, fps=fps)
        self._open[source.path] = r  # most recent last
        while len(self._open) > self.max_open:
            old = next(iter(self._open))
            self._open.pop(old).close()
        return r

    def read_frames(self, source: ClipSource, steps: Sequence[int], work_size: tuple[int, int] | None = None):
        """uint8 frames of ``steps`` (``work_size`` = (w, h) to decode at, or native)."""
        return self._reader(source).read([source.source_index(s) for s in steps], size=work_size)

    def work_size(self, source: ClipSource) -> tuple[int, int]:
        """Decode size: short side ``img_size · 320/224`` (official 512×320 frames), aspect kept, never upscaled."""
        info = self._reader(source).info
        short = min(cache_short_side(self.img_size), min(info.width, info.height))
        scale = short / min(info.width, info.height)
        return max(short, int(round(info.width * scale))), max(short, int(round(info.height * scale)))

    def clip(
        self, source: ClipSource, steps: Sequence[int], rng: np.random.Generator | None = None
    ) -> torch.Tensor:
        """A normalised ``3×T×S×S`` clip; ``rng`` given → official multi-scale crop, else plain resize."""
        size = self.work_size(source)
        frames = self.read_frames(source, steps, size)
        crop = (
            multiscale_crop_box(frames.shape[2], frames.shape[1], self.img_size, rng)
            if rng is not None
            else None
        )
        return frames_to_clip(frames, self.img_size, self.mean, self.std, crop)

    def close(self) -> None:
        for r in self._open.values():
            r.close()
        self._open.clear()


# ------------------------------------------------------------------------------------ frame cache
# Video files are served from frames extracted once by surgkit.prep.frames (random clip access into
# compressed video decodes whole GOPs per frame). prep's ``sequence.json`` is the single source of
# truth: it marks a folder as finished and records, per output frame k, the source frame it holds.


def cache_short_side(img_size: int) -> int:
    """Short side of cached / decoded frames: ``img_size · 320/224`` (the official 512×320 frames for 224)."""
    return max(img_size, round(img_size * 320 / 224))


def frame_cache_dir(
    frame_cache: str | None, run_dir: str | Path, img_size: int, fmt: str = "png", cut_black: bool = False
) -> Path:
    """``<frame_cache or run_dir/frames_1fps>/<short>px-<fmt>[-cutmargin]``: one folder per frame variant."""
    root = Path(run_dir) / "frames_1fps" if frame_cache in (None, "auto") else Path(frame_cache)
    return root / f"{cache_short_side(img_size)}px-{fmt}{'-cutmargin' if cut_black else ''}"


def build_frame_cache(
    videos: Sequence[str | Path], cache: Path, fps: float, img_size: int, workers: int = 1, fmt: str = "png",
    cut_black: bool = False,
) -> dict[str, str]:  # fmt: skip
    """Extract ``videos`` at ``fps`` into ``cache/<video_id>/`` (short side :func:`cache_short_side`).

    ``cut_black`` first cuts the black margin as the Cholec80 ``frames_cutmargin`` preprocessing
    (height 300, then prep's ``black_crop``; spec §9).

    When every folder is already finished nothing is written (no lock taken): runs sharing a cache
    read it concurrently. Otherwise one writer extracts (prep's folder lock), resumably through
    prep's manifest: finished videos are skipped, a video whose extraction
    stopped part-way is resumed. A folder the manifest calls done but whose ``sequence.json`` is
    gone is extracted again. Returns ``{video_id: reason}`` for the videos that failed.
    """
    from surgkit.prep.frames import extract
    from surgkit.prep.video import video_id_of

    if all(cached_frames(cache / video_id_of(v)) is not None for v in videos):
        return {}  # every folder finished: read-only, so concurrent runs sharing the cache need no lock
    transform = f"resize_short={cache_short_side(img_size)}"
    if cut_black:
        transform = "resize_height=300,black_crop," + transform
    kw = dict(fps=fps, transform=transform, fmt=fmt, workers=max(1, workers), progress=False)
    failed = dict(extract(list(videos), cache, **kw).failed)
    stale = [
        v for v in videos if video_id_of(v) not in failed and cached_frames(cache / video_id_of(v)) is None
    ]
    if stale:
        failed.update(extract(stale, cache, overwrite=True, **kw).failed)
    return failed


def cached_frames(folder: Path) -> tuple[list[int], list[Path]] | None:
    """(source frame of each output frame, image files) of a finished prep frame folder, else None.

    A folder without ``sequence.json`` (extraction failed or was killed part-way) is unfinished.
    """
    from surgkit.prep.seqstore import SEQ_NAME, SequenceReader, SequenceWriter

    if not (folder / SEQ_NAME).is_file():
        return None
    reader = SequenceReader(folder, kind="frames")
    meta = reader.meta
    if reader.layout == "array":
        raise SurgkitError(f"{folder}: frame cache in the array layout; expected an image folder")
    names = SequenceWriter(folder, "frames", reader.layout, chunk_size=reader.chunk_size,
                           pattern=meta["pattern"], start_number=int(meta["start_number"]))  # fmt: skip
    index = [int(i) for i in meta.get("source_index", [])]
    if len(index) != reader.num_items:
        raise SurgkitError(
            f"{folder / SEQ_NAME}: source_index has {len(index)} entries for {reader.num_items} frames"
        )
    files = [folder / names.file_names(k)[0] for k in range(reader.num_items)]
    return index, files
