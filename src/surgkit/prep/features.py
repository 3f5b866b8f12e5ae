"""``surgkit prep features``: per-segment features of RGB, flow and mask sequences from a frozen backbone.

Segmenting (spec skill.md §1.4): a video of N frames is cut into segments of ``segment_frames``
(S, default 32) starting every ``stride_frames`` (default S: non-overlapping). With
``tail="pad"`` (default) the last segment is completed with zeros (in the normalised input, i.e.
the ImageNet mean colour), so T = ceil(N / S) for non-overlapping segments, and ``valid[t]`` is
False for a padded segment; ``tail="drop"`` keeps full segments only, T = floor(N / S), as in
SurgFusion-Net's T = ⌊frames/32⌋. All modalities of a video share N and T:

* ``rgb``: the extracted frames;
* ``flow``: N-1 fields, the last repeated so the count equals N (MAQA); for a 2-channel backbone
  (I3D flow, as SurgFusion-Net) the x/y maps themselves, otherwise rendered as (x map, y map,
  magnitude) 3-channel images (:mod:`surgkit.prep.render`);
* ``mask``: N masks rendered as 3-channel images (binary replicate / fixed VOC palette).

Each modality may have its own backbone (``backbones={"rgb": swin, "flow": i3d, "mask": swin}``,
the paper's choice; one backbone object is loaded once and shared). Each frame is resized to the
backbone's input size (area when shrinking, bilinear when enlarging; nearest for masks) and
normalised as the backbone asks (``input_norm``): ``imagenet`` = (x/255 - mean)/std, or
``minus_one_one`` = x/127.5 - 1 (I3D: RGB in [-1, 1]; flow maps u = round((clip(f, ±b) + b)·255/2b)
give f/b, the flow clipped to ±b and scaled to [-1, 1]). A segment of S frames feeds a backbone taking F
frames by ``temporal="split"`` (default when F divides S: S/F consecutive clips, features
averaged, so every frame is seen, like the spatio-temporal average pooling of Video Swin over the
segment) or ``"subsample"`` (frames floor((i + 0.5) S / F), i < F). Features go to a
:class:`~surgkit.prep.store.FeatureStoreWriter` (format ``surgkit-features/1``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from surgkit.backbones.registry import (
    INPUT_NORMS,
    VideoBackbone,
    describe_backbone,
    input_channels,
    input_norm,
    load_backbone,
)
from surgkit.errors import SurgkitError
from surgkit.prep.manifest import Manifest
from surgkit.prep.masks import IMAGENET_MEAN, IMAGENET_STD
from surgkit.prep.render import render_flow, render_masks
from surgkit.prep.runner import PrepProgress, PrepResult
from surgkit.prep.seqstore import SEQ_NAME, SequenceReader, list_sequences
from surgkit.prep.shard import Shard, parse_shard, prep_locked
from surgkit.prep.store import INDEX_NAME, FeatureStoreWriter
from surgkit.prep.transforms import resize, resize_labels
from surgkit.utils.io import sha256_file, sha256_json

MODALITIES = ("rgb", "flow", "mask")
_KIND = {"rgb": "frames", "flow": "flow", "mask": "masks"}


def segment_starts(num_frames: int, segment: int, stride: int, tail: str) -> list[int]:
    """Start frames of the segments (see module docstring for the pad/drop rule)."""
    if tail not in ("pad", "drop"):
        raise SurgkitError(f"unknown tail policy '{tail}' (choose pad or drop)")
    if tail == "drop":
        return list(range(0, num_frames - segment + 1, stride)) if num_frames >= segment else []
    if num_frames == 0:
        return []
    last = math.ceil(max(num_frames - segment, 0) / stride)
    return [t * stride for t in range(last + 1)]


def temporal_index(segment: int, num_frames: int, mode: str) -> list[list[int]]:
    """Frame indices (within a segment) of each backbone clip."""
    if mode == "split" and segment % num_frames == 0:
        return [list(range(c, c + num_frames)) for c in range(0, segment, num_frames)]
    if mode in ("split", "subsample"):
        return [[int((i + 0.5) * segment / num_frames) for i in range(num_frames)]]
    raise SurgkitError(f"unknown temporal mode '{mode}' (choose split or subsample)")


class _ModalityReader:
    """Items 0..N-1 of one modality as uint8 images: RGB, rendered masks, rendered flow (3 channels)
    or, with ``channels=2``, the raw flow x/y maps."""

    def __init__(self, modality: str, folder: Path, channels: int = 3):
        if channels == 2 and modality != "flow":
            raise SurgkitError(f"a 2-channel backbone takes flow x/y maps, not the '{modality}' modality")
        self.modality, self.channels = modality, channels
        self.reader = SequenceReader(folder, kind=_KIND[modality])
        if modality == "flow" and self.reader.num_items == 0:
            raise SurgkitError(f"{folder}: no flow fields (a video needs at least 2 frames for flow)")
        self.count = self.reader.num_items + (1 if modality == "flow" else 0)
        self.bound = float(self.reader.meta.get("bound", 20.0))
        self.num_classes = int(self.reader.meta.get("num_classes", 2))

    def read(self, start: int, stop: int) -> np.ndarray:
        n = self.reader.num_items
        if self.modality == "flow":  # MAQA: repeat the last field so there are N fields
            lo, hi = min(start, n - 1), min(stop, n)
            items = self.reader.read(lo, hi)
            need = min(stop, self.count) - start
            if len(items) < need:
                items = np.concatenate([items, np.repeat(items[-1:], need - len(items), axis=0)])
            return items if self.channels == 2 else render_flow(items, self.bound)
        items = self.reader.read(start, stop)
        return render_masks(items, self.num_classes) if self.modality == "mask" else items


def _to_tensor(images: np.ndarray, size: tuple[int, int], labels: bool, norm: str = "imagenet") -> Any:
    """uint8 [n, h, w, C] -> float [n, C, H, W], resized and normalised (see module docstring)."""
    import torch

    h, w = size
    resized = np.stack([resize_labels(im, w, h) if labels else resize(im, w, h) for im in images])
    if resized.ndim == 3:  # cv2 drops a trailing singleton channel
        resized = resized[..., None]
    x = torch.from_numpy(resized).permute(0, 3, 1, 2).float()
    if norm == "minus_one_one":
        return x.div_(127.5).sub_(1.0)
    if norm != "imagenet":
        raise SurgkitError(f"unknown backbone input_norm '{norm}' (choose {', '.join(INPUT_NORMS)})")
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x.div_(255.0) - mean) / std


def segment_features(
    source: _ModalityReader,
    backbone: VideoBackbone,
    starts: list[int],
    segment: int,
    temporal: str,
    batch_size: int,
) -> Iterator[np.ndarray]:
    """Yield one float32 [D] feature per segment start, batching backbone clips."""
    import torch

    clips_of = temporal_index(segment, backbone.num_frames, temporal)
    pending: list[Any] = []  # clips waiting for the backbone
    owners: list[int] = []  # segment position of each pending clip
    done: dict[int, list[Any]] = {}
    next_out = 0

    def run() -> None:
        feats = backbone.encode(torch.stack(pending))
        for owner, f in zip(owners, feats, strict=True):
            done.setdefault(owner, []).append(f)
        pending.clear()
        owners.clear()

    for pos, s in enumerate(starts):
        images = source.read(s, s + segment)
        x = _to_tensor(images, backbone.image_size, source.modality == "mask", input_norm(backbone))
        if len(x) < segment:  # zero-pad the tail in normalised space
            x = torch.cat([x, x.new_zeros((segment - len(x), *x.shape[1:]))])
        for idx in clips_of:
            pending.append(x[idx])
            owners.append(pos)
        if len(pending) >= batch_size:
            run()
        while next_out in done and len(done[next_out]) == len(clips_of):
            yield torch.stack(done.pop(next_out)).mean(0).numpy().astype(np.float32)
            next_out += 1
    if pending:
        run()
    while next_out < len(starts):
        yield torch.stack(done.pop(next_out)).mean(0).numpy().astype(np.float32)
        next_out += 1


@prep_locked("surgkit prep features")
def extract(
    out_dir: str | Path,
    backbone: str | Path | VideoBackbone | None = None,
    *,
    backbones: dict[str, str | Path | VideoBackbone] | None = None,
    frames_dir: str | Path | None = None,
    flow_dir: str | Path | None = None,
    masks_dir: str | Path | None = None,
    videos: list[str] | None = None,
    segment_frames: int = 32,
    stride_frames: int | None = None,
    tail: str = "pad",
    temporal: str = "split",
    batch_size: int = 4,
    device: str = "cpu",
    trust_pickle: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    shard: str | Shard | None = None,
) -> PrepResult:
    """Per-segment features for each given modality folder, written to a feature store ``out_dir``.

    ``backbone`` serves every modality; ``backbones`` ({modality: backbone}) overrides it per
    modality (e.g. ``{"rgb": swin_b, "mask": swin_b, "flow": i3d_flow}``). A backbone is a model
    folder, a published Video Swin / I3D checkpoint (``.pth`` needs ``trust_pickle``), an HF id or
    an adapter object; equal paths are loaded once.
    """
    shard = parse_shard(shard)
    dirs = {"rgb": frames_dir, "flow": flow_dir, "mask": masks_dir}
    dirs = {m: Path(d) for m, d in dirs.items() if d is not None}
    if not dirs:
        raise SurgkitError("give at least one of frames_dir, flow_dir, masks_dir")
    stride = int(stride_frames or segment_frames)
    if segment_frames < 1 or stride < 1:
        raise SurgkitError("segment_frames and stride_frames must be >= 1")
    models = resolve_backbones(backbone, backbones, list(dirs), device, trust_pickle)
    ids = videos if videos is not None else sorted(set().union(*(list_sequences(d) for d in dirs.values())))
    if not ids:
        raise SurgkitError(f"no finished sequences in {', '.join(map(str, dirs.values()))}")
    described = {m: describe_backbone(b) for m, b in models.items()}
    settings = {
        "backbones": described,
        "segment_frames": int(segment_frames),
        "stride_frames": stride,
        "tail": tail,
        "temporal": temporal,
        "modalities": list(dirs),
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    expected, ids = list(ids), [v for v in ids if shard is None or shard.owns(v)]
    if overwrite and shard is None and (out / INDEX_NAME).is_file():  # a shard keeps the others' entries
        (out / INDEX_NAME).unlink()
    manifest = Manifest(out, "features", settings, shard=shard, expected=expected)
    result = PrepResult(step="features", out_dir=str(out))
    writer = FeatureStoreWriter(
        out, backbones=described, fps=_first_fps(dirs, expected), segment_frames=int(segment_frames),
        stride_frames=stride,
        extra={"tail": tail, "temporal": temporal,
               "inputs": {m: modality_input(m, models[m]) for m in dirs}},
    )  # fmt: skip
    with PrepProgress("features", len(ids), "segments", enabled=progress) as bar:
        for vid in ids:
            try:
                readers = {m: _ModalityReader(m, d / vid, input_channels(models[m])) for m, d in dirs.items()}
                counts = {m: r.count for m, r in readers.items()}
                if len(set(counts.values())) > 1:
                    detail = ", ".join(f"{m}: {c} ({dirs[m] / vid})" for m, c in counts.items())
                    raise SurgkitError(f"{vid}: modalities disagree on the number of frames ({detail})")
                n = next(iter(counts.values()))
                digest = sha256_json({m: sha256_file(dirs[m] / vid / SEQ_NAME) for m in dirs})
                action, done = manifest.plan(vid, str(next(iter(dirs.values())) / vid), digest, overwrite)
                if action == "skip" and all(writer.has(vid, m) for m in dirs):
                    result.skipped.append(vid)
                    bar.advance_video()
                    continue
                if action == "skip":
                    action, done = "start", set()
                starts = segment_starts(n, int(segment_frames), stride, tail)
                if not starts:
                    raise SurgkitError(f"{vid}: {n} frames, shorter than one {segment_frames}-frame segment")
                valid = np.array([s + segment_frames <= n for s in starts])
                for mi, (m, reader) in enumerate(readers.items()):
                    if mi in done and writer.has(vid, m):
                        continue
                    bar.add_items_total(len(starts))
                    feats = []
                    for f in segment_features(
                        reader, models[m], starts, int(segment_frames), temporal, batch_size
                    ):
                        feats.append(f)
                        bar.advance_items(1)
                    src = str(reader.reader.meta.get("source", ""))
                    writer.write(vid, m, np.stack(feats), num_frames=n, source=src, valid=valid)
                    manifest.chunk_done(vid, mi, len(feats))
                    result.computed_items[vid] = result.computed_items.get(vid, 0) + len(feats)
                manifest.video_done(vid, len(starts))
                result.done.append(vid)
            except SurgkitError as e:
                result.failed[vid] = str(e)
                manifest.video_failed(vid, str(e))
                bar.failed(str(e))
            bar.advance_video()
        writer.close()
    manifest.save()
    return result


def modality_input(modality: str, backbone: VideoBackbone) -> str:
    """One line saying how a modality is turned into backbone input (written into the store)."""
    size = "x".join(str(v) for v in backbone.image_size)
    norm = {"imagenet": "ImageNet mean/std", "minus_one_one": "scaled to [-1, 1]"}[input_norm(backbone)]
    what = {
        "rgb": "RGB frames",
        "mask": "masks rendered as 3-channel images (binary: replicated; multi-class: PASCAL-VOC palette)",
        "flow": "flow x/y maps (2 channels, clipped to +-bound)"
        if input_channels(backbone) == 2
        else "flow rendered as (x map, y map, magnitude) images",
    }[modality]
    return f"{what}, resized to {size}, {norm}"


def resolve_backbones(
    backbone: Any,
    backbones: dict[str, Any] | None,
    modalities: list[str],
    device: str,
    trust_pickle: bool = False,
) -> dict[str, VideoBackbone]:
    """{modality: adapter}; a backbone given by the same path (or object) is loaded once."""
    chosen = {m: (backbones or {}).get(m, backbone) for m in modalities}
    unknown = sorted(set(backbones or {}) - set(MODALITIES))
    if unknown:
        raise SurgkitError(
            f"unknown modality in backbones: {', '.join(unknown)} (choose {', '.join(MODALITIES)})"
        )
    missing = [m for m, b in chosen.items() if b is None]
    if missing:
        raise SurgkitError(f"no backbone for modality {', '.join(missing)} (give backbone= or backbones[m])")
    loaded: dict[Any, VideoBackbone] = {}
    out = {}
    for m, b in chosen.items():
        key = (
            (str(Path(b).resolve()) if Path(b).exists() else str(b)) if isinstance(b, (str, Path)) else id(b)
        )
        if key not in loaded:
            loaded[key] = load_backbone(b, device, trust_pickle=trust_pickle)
        out[m] = loaded[key]
        input_norm(out[m])
    return out


def _first_fps(dirs: dict[str, Path], ids: list[str]) -> float:
    """The frame rate stated by the first readable sequence (all videos share the frames settings)."""
    for vid in ids:
        for d in dirs.values():
            try:
                return float(SequenceReader(d / vid).meta.get("fps") or 0.0)
            except SurgkitError:
                continue
    return 0.0
