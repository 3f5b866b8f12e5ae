"""``surgkit prep flow``: dense optical flow between consecutive sampled frames, as 8-bit x/y maps.

Input is a frames folder written by ``surgkit prep frames`` (``<frames>/<video_id>/``). N frames
give N-1 flow fields; field ``i`` is the motion from frame ``i`` to frame ``i+1`` (MAQA repeats
the last field to get N; :mod:`surgkit.prep.features` does that when it aligns modalities).

Methods (spec skill.md §1.4):

* ``farneback`` (default): ``cv2.calcOpticalFlowFarneback(prev, next, None, pyr_scale=0.5,
  levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)`` on BT.601 grey
  frames, the "tutorial" settings of the SurgFusion-Net reference.
* ``dis``: ``cv2.DISOpticalFlow_create(preset)`` (ultrafast/fast/medium), about 8x faster.

Encoding (invertible up to quantisation, bound ``b`` = 20 px by default, stored in
``sequence.json``)::

    u8 = round((clip(f, -b, b) + b) * 255 / (2 b))        f ≈ u8 * (2 b / 255) - b

so 0 px maps to 127.5 -> 128 and the step is 2b/255 ≈ 0.157 px. :func:`decode_flow` inverts it.

Parallelism: each video is cut into chunks of ``chunk_size`` pairs; chunk c reads frames
[c*C, (c+1)*C] (one frame of overlap with the next chunk) and is computed by one worker. Each pair
is computed independently from the same two frames whatever the chunking or the number of
workers, so the output is bit-identical for 1 and 2 workers (tested).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from surgkit.errors import SurgkitError
from surgkit.prep.manifest import Manifest
from surgkit.prep.runner import PrepProgress, PrepResult, run_tasks
from surgkit.prep.seqstore import SEQ_NAME, SequenceReader, SequenceWriter, check_format, list_sequences
from surgkit.prep.shard import Shard, parse_shard, prep_locked
from surgkit.utils.io import sha256_file
from surgkit.utils.runinfo import check_resume
from surgkit.utils.workers import default_workers

METHODS = ("farneback", "dis")
DIS_PRESETS = ("ultrafast", "fast", "medium")


@dataclasses.dataclass(frozen=True)
class FlowSettings:
    """Flow options (hashed into the manifest). Defaults = the seed's Farnebäck settings."""

    method: str = "farneback"
    pyr_scale: float = 0.5
    levels: int = 3
    winsize: int = 15
    iterations: int = 3
    poly_n: int = 5
    poly_sigma: float = 1.2
    dis_preset: str = "fast"
    bound: float = 20.0
    fmt: str = "array"
    chunk_size: int = 64
    size: str | None = None  # "WxH": resize grey frames before flow (None = frame size)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise SurgkitError(f"unknown flow method '{self.method}' (choose from {', '.join(METHODS)})")
        if self.dis_preset not in DIS_PRESETS:
            raise SurgkitError(
                f"unknown DIS preset '{self.dis_preset}' (choose from {', '.join(DIS_PRESETS)})"
            )
        if not self.bound > 0:
            raise SurgkitError(f"flow bound must be positive, got {self.bound}")
        if self.chunk_size < 1:
            raise SurgkitError(f"chunk_size must be >= 1, got {self.chunk_size}")
        check_format("flow", self.fmt)
        _size(self.size)


def _size(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SurgkitError(f"flow size must be WxH (e.g. 224x224), got '{text}'") from None
    return w, h


def encode_flow(flow: np.ndarray, bound: float) -> np.ndarray:
    """float [.., 2] pixels -> uint8 maps: round((clip(f, -b, b) + b) * 255 / (2b))."""
    scaled = (np.clip(flow, -bound, bound) + bound) * (255.0 / (2.0 * bound))
    return np.rint(scaled).astype(np.uint8)


def decode_flow(maps: np.ndarray, bound: float) -> np.ndarray:
    """uint8 maps -> float32 pixels: u8 * 2b/255 - b (the inverse of :func:`encode_flow`)."""
    return (maps.astype(np.float32) * np.float32(2.0 * bound / 255.0) - np.float32(bound)).astype(np.float32)


def to_grey(frames: np.ndarray, size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """RGB uint8 frames -> BT.601 grey (optionally resized with area averaging)."""
    import cv2

    out = []
    for f in frames:
        g = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)
        if size is not None and (g.shape[1], g.shape[0]) != size:
            g = cv2.resize(g, size, interpolation=cv2.INTER_AREA)
        out.append(g)
    return out


def make_flow_fn(settings: FlowSettings):
    """A function (prev_grey, next_grey) -> float32 [H, W, 2] flow for the chosen method."""
    import cv2

    if settings.method == "dis":
        preset = {
            "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
            "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
            "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
        }[settings.dis_preset]
        dis = cv2.DISOpticalFlow_create(preset)
        return lambda a, b: dis.calc(a, b, None)
    s = settings
    return lambda a, b: cv2.calcOpticalFlowFarneback(
        a, b, None, s.pyr_scale, s.levels, s.winsize, s.iterations, s.poly_n, s.poly_sigma, 0
    )


def flow_pairs(frames: np.ndarray, settings: FlowSettings) -> np.ndarray:
    """Encoded flow maps uint8 [n-1, H, W, 2] between consecutive RGB frames [n, H, W, 3]."""
    grey = to_grey(frames, _size(settings.size))
    fn = make_flow_fn(settings)
    maps = [encode_flow(fn(grey[i], grey[i + 1]), settings.bound) for i in range(len(grey) - 1)]
    if not maps:
        h, w = grey[0].shape if grey else (0, 0)
        return np.zeros((0, h, w, 2), np.uint8)
    return np.stack(maps)


@dataclasses.dataclass(frozen=True)
class _ChunkTask:
    video_id: str
    frames_dir: str
    out_dir: str
    chunk_id: int
    start: int  # first pair index
    stop: int  # last pair index + 1
    settings: FlowSettings


def flow_chunk(task: _ChunkTask, report) -> int:
    """Worker: compute pairs [start, stop) of one video from frames [start, stop] and write them."""
    reader = SequenceReader(Path(task.frames_dir) / task.video_id, kind="frames")
    frames = reader.read(task.start, task.stop + 1)
    maps = flow_pairs(frames, task.settings)
    s = task.settings
    writer = SequenceWriter(Path(task.out_dir) / task.video_id, "flow", s.fmt, chunk_size=s.chunk_size)
    return writer.write_chunk(task.chunk_id, maps)


@prep_locked("surgkit prep flow")
def compute(
    frames_dir: str | Path,
    out_dir: str | Path,
    *,
    videos: list[str] | None = None,
    method: str = "farneback",
    bound: float = 20.0,
    fmt: str = "array",
    chunk_size: int = 64,
    size: str | None = None,
    dis_preset: str = "fast",
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    shard: str | Shard | None = None,
    **farneback: Any,
) -> PrepResult:
    """Optical flow for every finished frame sequence under ``frames_dir`` into ``out_dir``.

    ``farneback`` keyword overrides: pyr_scale, levels, winsize, iterations, poly_n, poly_sigma.
    """
    settings = FlowSettings(
        method=method, bound=float(bound), fmt=fmt, chunk_size=int(chunk_size), size=size,
        dis_preset=dis_preset, **farneback,
    )  # fmt: skip
    shard = parse_shard(shard)
    frames_root, out = Path(frames_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ids = videos if videos is not None else list_sequences(frames_root)
    if not ids:
        raise SurgkitError(f"{frames_root}: no finished frame sequences (run `surgkit prep frames` first)")
    expected, ids = list(ids), [v for v in ids if shard is None or shard.owns(v)]
    check_resume(out, dataclasses.asdict(settings), overwrite, command="surgkit prep flow")
    manifest = Manifest(out, "flow", dataclasses.asdict(settings), shard=shard, expected=expected)
    result = PrepResult(step="flow", out_dir=str(out))
    tasks: list[_ChunkTask] = []
    remaining: dict[str, int] = {}
    meta: dict[str, dict[str, Any]] = {}
    with PrepProgress("flow", len(ids), "pairs", enabled=progress) as bar:
        for vid in ids:
            try:
                reader = SequenceReader(frames_root / vid, kind="frames")
                digest = sha256_file(frames_root / vid / SEQ_NAME)
            except SurgkitError as e:
                result.failed[vid] = str(e)
                manifest.video_failed(vid, str(e))
                bar.failed(str(e))
                bar.advance_video()
                continue
            action, done_chunks = manifest.plan(vid, str(frames_root / vid), digest, overwrite)
            if action == "skip":
                result.skipped.append(vid)
                bar.advance_video()
                continue
            writer = SequenceWriter(out / vid, "flow", fmt, chunk_size=settings.chunk_size)
            if action == "start":
                writer.reset()
            n_pairs = max(reader.num_items - 1, 0)
            meta[vid] = {"n_pairs": n_pairs, "frames": reader.meta}
            todo = [
                _ChunkTask(vid, str(frames_root), str(out), c, c * chunk_size,
                           min((c + 1) * chunk_size, n_pairs), settings)
                for c in range((n_pairs + chunk_size - 1) // chunk_size)
                if c not in done_chunks
            ]  # fmt: skip
            remaining[vid] = len(todo)
            tasks.extend(todo)
            bar.add_items_total(sum(t.stop - t.start for t in todo))
            if not todo:
                _finish_video(vid, out, settings, meta[vid], manifest, result)
                bar.advance_video()

        def on_result(task: _ChunkTask, n: int) -> None:
            manifest.chunk_done(task.video_id, task.chunk_id, n)
            result.computed_items[task.video_id] = result.computed_items.get(task.video_id, 0) + n
            bar.advance_items(n)
            remaining[task.video_id] -= 1
            if remaining[task.video_id] == 0 and task.video_id not in result.failed:
                _finish_video(task.video_id, out, settings, meta[task.video_id], manifest, result)
                bar.advance_video()

        def on_error(task: _ChunkTask, message: str) -> None:
            remaining[task.video_id] -= 1
            if task.video_id not in result.failed:
                msg = f"{task.video_id}: pairs {task.start}-{task.stop - 1}: {message}"
                result.failed[task.video_id] = msg
                manifest.video_failed(task.video_id, msg)
                bar.failed(msg)
                bar.advance_video()

        run_tasks(
            tasks, flow_chunk, workers=workers or default_workers(),
            on_message=lambda m: None, on_result=on_result, on_error=on_error,
        )  # fmt: skip
    manifest.save()
    return result


def _finish_video(
    vid: str, out: Path, s: FlowSettings, info: dict[str, Any], manifest: Manifest, result
) -> None:
    frames_meta = info["frames"]
    shape = frames_meta.get("item_shape")
    size = _size(s.size)
    item_shape = None
    if size is not None:
        item_shape = (size[1], size[0], 2)
    elif shape:
        item_shape = (shape[0], shape[1], 2)
    SequenceWriter(out / vid, "flow", s.fmt, chunk_size=s.chunk_size).finalize(
        info["n_pairs"],
        item_shape,
        {
            "source": str(frames_meta.get("source", "")),
            "frames_sha256": manifest.videos[vid]["input_sha256"],
            "fps": frames_meta.get("fps"),
            "method": s.method,
            "settings": dataclasses.asdict(s),
            "bound": s.bound,
            "encoding": "u8 = round((clip(f, -bound, bound) + bound) * 255 / (2 * bound)); "
            "f = u8 * 2 * bound / 255 - bound; channel 0 = x (right +), channel 1 = y (down +)",
            "pairs": "field i = flow from frame i to frame i+1 (N frames -> N-1 fields)",
        },
    )
    manifest.video_done(vid, info["n_pairs"])
    result.done.append(vid)
