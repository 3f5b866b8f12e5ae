"""``surgkit prep masks``: per-frame tool masks (class-index maps) aligned with extracted frames.

For every finished frame sequence (``surgkit prep frames``), one uint8 [H, W] mask per frame,
0 = background, is produced from one of three sources:

(a) ``annotations`` — mask images shipped with a dataset. ``pattern`` locates the file of a frame
    relative to ``root``; it may use ``{video}`` (the video id), ``{trial}`` (the id without a
    ``_captureN`` suffix, JIGSAWS) and ``{frame}`` (the *source* frame number, from
    ``sequence.json``'s ``source_index``, plus ``frame_offset``). Pixel values are mapped to classes
    with ``values`` (e.g. ``{255: 1}``); by default values are kept as class ids. Frames without
    a file: ``missing="error"`` (default) fails the video, ``"nearest"`` takes the annotated source
    frame nearest in time (ties: the earlier one) and counts these frames in ``sequence.json``,
    ``"empty"`` writes background.
(b) ``synth`` — the synthetic world's exact ground truth written by ``surgkit synth``
    (``masks/<trial>/<frame:06d>_class.png``: 0 background, CholecT50 instrument id + 1). It is
    (a) with that pattern; the world writes masks at 1 fps, so at higher frame rates use
    ``missing="nearest"`` (the default for this source) and read the approximation count.
(c) ``model`` — a segmentation network mapping RGB frames to class logits, batched: any
    ``torch.nn.Module`` returning [B, K, h, w] (or an object with ``.logits``), or an HF model
    folder/id loaded with ``AutoModelForSemanticSegmentation`` (SegFormer, UperNet, DPT, ...).
    Frames are resized to ``input_size``, scaled to [0, 1] and ImageNet-normalised; logits are
    upsampled bilinearly to the frame size and arg-maxed.
(d) ``sam2`` — SAM 2 video propagation (transformers ``Sam2VideoModel``) prompted per video by
    boxes/points from a JSON file, streamed chunk by chunk (:mod:`surgkit.prep.sam2`).

Masks are written chunk by chunk (PNG folders or the array store), resumable like every step.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from surgkit.errors import DataFormatError, SurgkitError
from surgkit.prep.manifest import Manifest
from surgkit.prep.runner import PrepProgress, PrepResult
from surgkit.prep.seqstore import SEQ_NAME, SequenceReader, SequenceWriter, check_format, list_sequences
from surgkit.prep.shard import Shard, parse_shard, prep_locked
from surgkit.prep.transforms import resize_labels
from surgkit.utils.io import sha256_file
from surgkit.utils.runinfo import check_resume

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SYNTH_PATTERN = "masks/{trial}/{frame:06d}_class.png"
MISSING = ("error", "nearest", "empty")


class AnnotationMasks:
    """Source (a)/(b): mask images on disk, looked up by source frame number."""

    def __init__(
        self,
        root: str | Path,
        pattern: str,
        *,
        values: dict[int, int] | None = None,
        missing: str = "error",
        frame_offset: int = 0,
    ):
        if missing not in MISSING:
            raise SurgkitError(f"unknown missing-mask policy '{missing}' (choose from {', '.join(MISSING)})")
        self.root, self.pattern, self.missing = Path(root), pattern, missing
        self.values, self.frame_offset = dict(values or {}), int(frame_offset)
        if not self.root.is_dir():
            raise SurgkitError(f"{self.root}: annotation folder not found")
        self._index: dict[str, dict[int, Path]] = {}

    def describe(self) -> dict[str, Any]:
        return {
            "source": "annotations",
            "root": str(self.root),
            "pattern": self.pattern,
            "values": {str(k): v for k, v in sorted(self.values.items())},
            "missing": self.missing,
            "frame_offset": self.frame_offset,
        }

    def _names(self, video_id: str) -> dict[str, str]:
        return {"video": video_id, "trial": re.sub(r"_capture\d+$", "", video_id)}

    def available(self, video_id: str) -> dict[int, Path]:
        """Annotated source frame numbers of a video -> file (scanned once, for ``nearest``)."""
        if video_id not in self._index:
            names = self._names(video_id)
            probe = self.pattern.format(frame=987654321, **names)
            head, _, tail = probe.partition("987654321")
            sub, _, prefix = head.rpartition("/")
            folder, suffix = self.root / sub, tail
            found: dict[int, Path] = {}
            if folder.is_dir():
                rx = re.compile(re.escape(prefix) + r"(\d+)" + re.escape(suffix) + "$")
                for p in folder.iterdir():
                    m = rx.match(p.name)
                    if m:
                        found[int(m.group(1)) - self.frame_offset] = p
            self._index[video_id] = found
        return self._index[video_id]

    def load(self, video_id: str, source_index: int, shape: tuple[int, int]) -> tuple[np.ndarray, bool]:
        """Mask for one frame at ``shape`` (H, W) and whether it was approximated."""
        import cv2

        names = self._names(video_id)
        path = self.root / self.pattern.format(frame=source_index + self.frame_offset, **names)
        approx = False
        if not path.is_file():
            if self.missing == "error":
                raise DataFormatError(f"no mask for source frame {source_index} of '{video_id}'", path=path)
            if self.missing == "empty":
                return np.zeros(shape, np.uint8), True
            avail = self.available(video_id)
            if not avail:
                raise DataFormatError(f"no mask files at all for '{video_id}'", path=path)
            nearest = min(avail, key=lambda k: (abs(k - source_index), k))
            path, approx = avail[nearest], True
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise DataFormatError("unreadable mask image", path=path)
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        if img.dtype != np.uint8:
            if img.max() > 255:
                raise DataFormatError(f"mask values up to {img.max()} do not fit 8-bit class ids", path=path)
            img = img.astype(np.uint8)
        if self.values:
            lut = np.zeros(256, np.uint8)
            for v, c in self.values.items():
                lut[int(v)] = int(c)
            img = lut[img]
        return resize_labels(img, shape[1], shape[0]), approx


class ModelMasks:
    """Source (c): a segmentation network, batched. ``model(x) -> [B, K, h, w]`` logits."""

    def __init__(
        self,
        model: Any,
        *,
        input_size: int | tuple[int, int] = 224,
        batch_size: int = 16,
        device: str = "cpu",
        name: str | None = None,
    ):
        import torch

        if isinstance(model, (str, Path)):
            from transformers import AutoModelForSemanticSegmentation

            name = name or str(model)
            model = AutoModelForSemanticSegmentation.from_pretrained(str(model))
        if not isinstance(model, torch.nn.Module) and not callable(model):
            raise SurgkitError(
                "the segmentation model must be a torch module, a callable or an HF model path"
            )
        self.model = model.eval().to(device) if isinstance(model, torch.nn.Module) else model
        self.name = name or type(model).__name__
        size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        self.input_hw = (int(size[0]), int(size[1]))
        self.batch_size, self.device = int(batch_size), device

    def describe(self) -> dict[str, Any]:
        return {
            "source": "model",
            "model": self.name,
            "input_size": list(self.input_hw),
            "batch": self.batch_size,
        }

    def predict(self, frames: np.ndarray) -> np.ndarray:
        """uint8 [n, H, W] class ids for RGB frames [n, H, W, 3]."""
        import torch
        import torch.nn.functional as F

        from surgkit.prep.transforms import resize

        out = []
        h, w = frames.shape[1:3]
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        for i in range(0, len(frames), self.batch_size):
            batch = np.stack(
                [resize(f, self.input_hw[1], self.input_hw[0]) for f in frames[i : i + self.batch_size]]
            )
            x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div(255.0)
            x = ((x - mean) / std).to(self.device)
            with torch.inference_mode():
                y = self.model(x)
                logits = getattr(y, "logits", None)
                if logits is None:
                    logits = y["out"] if isinstance(y, dict) else y
                if logits.ndim != 4:
                    raise SurgkitError(
                        f"segmentation model {self.name}: expected [B, K, h, w] logits, got {tuple(logits.shape)}"
                    )
                if logits.shape[1] > 256:
                    raise SurgkitError(
                        f"segmentation model {self.name}: {logits.shape[1]} classes do not fit uint8"
                    )
                logits = F.interpolate(logits.float(), size=(h, w), mode="bilinear", align_corners=False)
                out.append(logits.argmax(1).to(torch.uint8).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, h, w), np.uint8)


def _is_tracker_source(source: Any) -> bool:
    """Video propagation sources (SAM 2) keep state across the chunks of a video."""
    return hasattr(source, "tracker")


def synth_masks(world_root: str | Path, missing: str = "nearest") -> AnnotationMasks:
    """Source (b): the synthetic world's class masks (``masks/<trial>/<frame:06d>_class.png``)."""
    return AnnotationMasks(world_root, SYNTH_PATTERN, missing=missing)


@prep_locked("surgkit prep masks")
def compute(
    frames_dir: str | Path,
    out_dir: str | Path,
    source: Any,
    *,
    videos: list[str] | None = None,
    fmt: str = "png",
    chunk_size: int = 64,
    num_classes: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    shard: str | Shard | None = None,
) -> PrepResult:
    """Masks for every finished frame sequence under ``frames_dir`` into ``out_dir/<video_id>/``.

    ``num_classes`` (including background) is stored for rendering; if None it is taken as
    max label + 1 over the video (2 = binary tool mask).
    """
    check_format("masks", fmt)
    shard = parse_shard(shard)
    frames_root, out = Path(frames_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ids = videos if videos is not None else list_sequences(frames_root)
    if not ids:
        raise SurgkitError(f"{frames_root}: no finished frame sequences (run `surgkit prep frames` first)")
    settings = {
        "source": source.describe(),
        "fmt": fmt,
        "chunk_size": int(chunk_size),
        "num_classes": num_classes,
    }
    expected, ids = list(ids), [v for v in ids if shard is None or shard.owns(v)]
    check_resume(out, settings, overwrite, command="surgkit prep masks")
    manifest = Manifest(out, "masks", settings, shard=shard, expected=expected)
    result = PrepResult(step="masks", out_dir=str(out))
    with PrepProgress("masks", len(ids), "frames", enabled=progress) as bar:
        for vid in ids:
            try:
                reader = SequenceReader(frames_root / vid, kind="frames")
                digest = sha256_file(frames_root / vid / SEQ_NAME)
                action, done = manifest.plan(vid, str(frames_root / vid), digest, overwrite)
                if action == "skip":
                    result.skipped.append(vid)
                else:
                    _video_masks(vid, reader, out, source, fmt, int(chunk_size), num_classes, action, done,
                                 manifest, result, bar)  # fmt: skip
                    result.done.append(vid)
            except SurgkitError as e:
                result.failed[vid] = str(e)
                manifest.video_failed(vid, str(e))
                bar.failed(str(e))
            bar.advance_video()
    manifest.save()
    return result


def _video_masks(vid, reader, out, source, fmt, chunk_size, num_classes, action, done, manifest, result, bar):
    writer = SequenceWriter(out / vid, "masks", fmt, chunk_size=chunk_size)
    tracker = None
    if _is_tracker_source(source):  # SAM 2 memory is not saved: a partial video starts over
        if done:
            action, done = "start", set()
            manifest.videos[vid]["chunks_done"] = []
        shape = tuple(reader.meta.get("item_shape") or (0, 0))[:2]
        tracker = source.tracker(vid, int(shape[0]), int(shape[1]), reader.num_items)
    if action == "start":
        writer.reset()
    n = reader.num_items
    src_index = reader.meta.get("source_index") or list(range(n))
    bar.add_items_total(n - len(done) * chunk_size)
    state = manifest.videos[vid]
    approx = int(state.get("approximated", 0))
    max_label = int(state.get("max_label", 0))
    shape = None
    for c in range((n + chunk_size - 1) // chunk_size):
        if c in done:
            continue
        frames = reader.read(c * chunk_size, (c + 1) * chunk_size)
        shape = frames.shape[1:3]
        if tracker is not None:
            masks = tracker.predict(frames)
        elif isinstance(source, ModelMasks):
            masks = source.predict(frames)
        else:
            masks_l = []
            for k, frame in enumerate(frames):
                m, was_approx = source.load(vid, int(src_index[c * chunk_size + k]), frame.shape[:2])
                masks_l.append(m)
                approx += int(was_approx)
            masks = np.stack(masks_l)
        max_label = max(max_label, int(masks.max(initial=0)))
        state["approximated"], state["max_label"] = approx, max_label
        writer.write_chunk(c, masks)
        manifest.chunk_done(vid, c, len(masks))
        result.computed_items[vid] = result.computed_items.get(vid, 0) + len(masks)
        bar.advance_items(len(masks))
    if shape is None:
        shape = tuple(reader.meta.get("item_shape") or (0, 0))[:2]
    classes = int(num_classes) if num_classes else max(2, max_label + 1)
    writer.finalize(
        n,
        (int(shape[0]), int(shape[1])),
        {
            "source": reader.meta.get("source", ""),
            "frames_sha256": state["input_sha256"],
            "fps": reader.meta.get("fps"),
            "mask_source": source.describe(),
            "num_classes": classes,
            "approximated_frames": approx,
            "labels": "uint8 class id per pixel, 0 = background",
        },
    )
    manifest.video_done(vid, n, approximated=approx)
    if approx:
        bar.log(f"note {vid}: {approx} of {n} masks taken from another frame ({source.describe().get('missing')})",
                style="yellow")  # fmt: skip


def parse_values(text: str | None) -> dict[int, int]:
    """'255:1,128:2' -> {255: 1, 128: 2} (annotation pixel value -> class id)."""
    out: dict[int, int] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        try:
            v, c = (int(x) for x in item.split(":"))
        except ValueError:
            raise SurgkitError(f"invalid value map '{item}' (use VALUE:CLASS, e.g. 255:1)") from None
        out[v] = c
    return out


def evaluate(
    pred_dir: str | Path,
    frames_dir: str | Path,
    truth: AnnotationMasks,
    *,
    num_classes: int,
    videos: list[str] | None = None,
) -> dict[str, Any]:
    """Dice of predicted masks against annotation masks, on the annotated frames only.

    A predicted frame is compared when its source frame (``source_index`` of the frame sequence)
    has an annotation file; frames that a ``missing="nearest"`` source would approximate are
    skipped, so the score is against exact ground truth. Pixels are pooled over all compared
    frames (:func:`surgkit.metrics.segmentation.dice_scores`); the result also lists per-video Dice.
    """
    from surgkit.metrics.segmentation import dice_scores

    pred_root, frames_root = Path(pred_dir), Path(frames_dir)
    ids = videos if videos is not None else list_sequences(pred_root)
    pairs_all: list[tuple[np.ndarray, np.ndarray]] = []
    per_video: dict[str, float] = {}
    for vid in ids:
        pred = SequenceReader(pred_root / vid, kind="masks")
        src_index = SequenceReader(frames_root / vid, kind="frames").meta.get("source_index") or list(
            range(pred.num_items)
        )
        annotated = truth.available(vid)
        pairs = []
        for k, s in enumerate(src_index[: pred.num_items]):
            if int(s) in annotated:
                p = pred.read(k, k + 1)[0]
                t, _ = truth.load(vid, int(s), p.shape)
                pairs.append((p, t))
        if pairs:
            per_video[vid] = dice_scores(pairs, num_classes)["mean_dice"]
            pairs_all += pairs
    if not pairs_all:
        raise SurgkitError(f"{pred_root}: no predicted frame has an annotation to compare with")
    out = dice_scores(pairs_all, num_classes)
    out.update(frames=len(pairs_all), videos=len(per_video), per_video=per_video)
    return out
