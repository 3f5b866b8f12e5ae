"""Train/test leakage guard: overlap by id and by *content* (perceptual video fingerprints).

The same surgery can sit in two datasets under two names (SurgVISTA's authors found five Cholec80
test videos inside M2CAI16 by hand), re-encoded, resized, at another frame rate. A name check cannot
see that; this module compares what the videos show.

**Fingerprint** (:func:`fingerprint`). Sample frames every ``interval`` seconds, widened so that at
most ``max_frames`` = 128 are taken (every 14 s for a 30-min video: further apart than the usual
keyframe interval, so seeking skips decoding) and narrowed so that a short clip still gets
``min_frames``. Decode each one once at low resolution (PyAV seeks to the nearest keyframe and
scales inside libswscale; no full-resolution RGB frame is built), convert to 64x64 grey,
subtract half of the video's mean sampled frame (``demean=0.5``: damps what every frame shares, the
endoscope vignette, black borders, overlays, while short or static clips keep enough content to hash
stably after re-encoding), and hash each frame with a DCT perceptual hash: 2-D DCT-II of the 32x32
area-downsampled frame, the 8x8 lowest frequencies without the DC term (63 coefficients), one bit per
coefficient above their median (pHash, Zauner 2010). Near-uniform frames (std < ``min_std`` grey
levels, e.g. blacked-out out-of-body frames) get no hash.

**Similarity** (:func:`similarity`) of videos A and B. Frame pairs match when their Hamming distance is
<= ``max_bits`` (default 8 of 63). Matches are then grouped by their time offset t_B - t_A in units of
the larger sampling interval; the similarity is the number of frames matched within the best window
of two adjacent offset bins (a copy's offsets spread over at most one interval) divided by the valid
frames of the shorter video (counted on both sides, so it lies in [0, 1]). Requiring one consistent
offset makes chance matches between different surgeries (which look alike at 64x64) scatter over
offsets and score low, while a trimmed, re-encoded, resized or resampled copy scores near 1. Videos
are flagged at similarity >= ``threshold`` (default 0.5).

Calibration (synthetic world, tiny preset, 16 videos incl. same-scene JIGSAWS-style trials): copies
re-encoded at 0.75x size, 10 fps, CRF 35 score 0.94-1.0; distinct videos at most 0.34.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from surgkit.data._parse import IMAGE_EXTS, VIDEO_EXTS, natural_key
from surgkit.data.model import Dataset, Video
from surgkit.errors import DataFormatError, LeakageError

HASH_SIZE = 8  # 8x8 DCT block -> 63 bits without DC
GRID = 64  # grey frame side used for the mean subtraction
DCT_SIDE = 32


@dataclasses.dataclass
class Fingerprint:
    """Per-video perceptual fingerprint: sample times (s), 64-bit hashes, validity of each hash."""

    key: str
    source: str
    times: np.ndarray  # (K,) float64 seconds
    hashes: np.ndarray  # (K,) uint64
    valid: np.ndarray  # (K,) bool
    interval: float
    duration: float
    frames_hashed: int
    frames_decoded: int | None = None  # frames the codec output (video files), of duration * fps

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "source": self.source,
            "times": self.times.tolist(),
            "hashes": [f"{int(h):016x}" for h in self.hashes],
            "valid": self.valid.astype(int).tolist(),
            "interval": self.interval,
            "duration": self.duration,
            "frames_hashed": self.frames_hashed,
            "frames_decoded": self.frames_decoded,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Fingerprint:
        return cls(
            d["key"],
            d["source"],
            np.asarray(d["times"], np.float64),
            np.asarray([int(h, 16) for h in d["hashes"]], np.uint64),
            np.asarray(d["valid"], bool),
            float(d["interval"]),
            float(d["duration"]),
            int(d["frames_hashed"]),
            d.get("frames_decoded"),
        )


@dataclasses.dataclass
class LeakPair:
    """Two videos that overlap: by 'id' (same dataset and id), 'file' (same media file) or 'content'."""

    a: str
    b: str
    similarity: float
    kind: str
    offset_s: float | None = None

    def __str__(self) -> str:
        off = f", offset {self.offset_s:+.1f} s" if self.offset_s is not None else ""
        return f"{self.a} <-> {self.b} ({self.kind}, similarity {self.similarity:.2f}{off})"


# --- hashing -----------------------------------------------------------------------------------------


def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix C with C @ x = DCT(x)."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    c = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    c[0] /= np.sqrt(2.0)
    return c


_DCT = _dct_matrix(DCT_SIDE)


def phash(frames: np.ndarray) -> np.ndarray:
    """DCT perceptual hashes of grey frames (T, 64, 64) float -> (T,) uint64 (63 bits used)."""
    t = frames.shape[0]
    small = frames.reshape(t, DCT_SIDE, GRID // DCT_SIDE, DCT_SIDE, GRID // DCT_SIDE).mean(axis=(2, 4))
    coeff = _DCT @ small @ _DCT.T  # (T, 32, 32)
    low = coeff[:, :HASH_SIZE, :HASH_SIZE].reshape(t, -1)[:, 1:]  # drop DC
    bits = low > np.median(low, axis=1, keepdims=True)
    weights = np.left_shift(np.uint64(1), np.arange(bits.shape[1], dtype=np.uint64))
    return (bits.astype(np.uint64) * weights).sum(axis=1).astype(np.uint64)


def sample_times(
    duration: float, interval: float, max_frames: int, min_frames: int = 32
) -> tuple[np.ndarray, float]:
    """Sample times every ``interval`` s, widened to fit ``max_frames`` and narrowed so that a short
    video still gets ``min_frames``; centred in their slots."""
    step = max(interval, duration / max_frames) if duration > 0 else interval
    if duration > 0:
        step = min(step, duration / min_frames)
    n = max(1, int(duration // step))
    return (np.arange(n) + 0.5) * step, step


Media = Path | tuple[Path, ...]  # a video file, a frame folder, or an explicit list of frame images


def media_of(video: Video) -> Media | None:
    """What to fingerprint for a reader's video: its listed frame images (sparse sets such as
    Endoscapes or EndoVis keyframes, in frame order) or else its file/folder."""
    frames = video.extra.get("frames")
    if frames:
        return tuple(frames[k] for k in sorted(frames))
    return video.path


def _exists(media: Media | None) -> bool:
    if media is None:
        return False
    if isinstance(media, tuple):
        return bool(media) and all(p.is_file() for p in media)
    return Path(media).exists()


def fingerprint(
    path: str | Path | tuple[Path, ...],
    key: str | None = None,
    fps: float | None = None,
    interval: float = 2.0,
    max_frames: int = 128,
    min_frames: int = 32,
    min_std: float = 2.0,
    demean: float = 0.5,
) -> Fingerprint:
    """Fingerprint one video file, frame folder or tuple of frame images (``fps`` for frames; default 1).

    ``demean`` is the fraction of the video's mean sampled frame subtracted before hashing (module
    docstring): 1 removes shared structure best but leaves short, static clips noise-dominated; 0 is
    the plain pHash; 0.5 is the default trade-off.
    """
    from surgkit.data.frames import FolderReader, open_frames

    if isinstance(path, tuple):
        reader = FolderReader(None, fps=fps, files=path)
        name, path = f"{path[0].parent.name}:{len(path)} frames", path[0].parent
    else:
        path = Path(path)
        reader = open_frames(path, fps=fps, skip_nonref=True)
        name = path.stem
    with reader:
        rate = reader.info.fps or fps or 1.0
        duration = reader.info.num_frames / rate
        times, step = sample_times(duration, interval, max_frames, min_frames)
        idx = np.minimum(np.round(times * rate).astype(np.int64), max(reader.info.num_frames - 1, 0))
        grey = reader.read(idx.tolist(), size=(GRID, GRID), gray=True).astype(np.float64)
        decoded = getattr(reader, "decoded", None)
    valid = grey.reshape(len(grey), -1).std(axis=1) >= min_std
    centred = grey - demean * (grey[valid].mean(axis=0) if valid.any() else 0.0)
    hashes = phash(centred)
    return Fingerprint(key or name, str(path), times, hashes, valid, step, duration, len(idx), decoded)


# --- comparing ----------------------------------------------------------------------------------------


def similarity(a: Fingerprint, b: Fingerprint, max_bits: int = 8) -> tuple[float, float | None]:
    """Offset-consistent fraction of matching frames (see the module docstring) and the offset (s)."""
    ha, hb = a.hashes[a.valid], b.hashes[b.valid]
    if len(ha) == 0 or len(hb) == 0:
        return 0.0, None
    dist = np.bitwise_count(ha[:, None] ^ hb[None, :])
    ia, ib = np.nonzero(dist <= max_bits)
    if len(ia) == 0:
        return 0.0, None
    ta, tb = a.times[a.valid][ia], b.times[b.valid][ib]
    width = max(a.interval, b.interval)
    # offsets in units of the sampling interval; a true copy's offsets fall within one interval, i.e.
    # into two adjacent half-open bins [c, c + 1) and [c + 1, c + 2)
    pos = (tb - ta) / width
    bins = np.floor(pos).astype(np.int64)
    best, best_bin = (0, 0), 0
    for start in np.unique(bins):
        near = (bins == start) | (bins == start + 1)
        count = min(len(np.unique(ia[near])), len(np.unique(ib[near])))
        key = (count, int(near.sum()))
        if key > best:
            best, best_bin = key, float(np.median(pos[near]))
    return best[0] / min(len(ha), len(hb)), round(best_bin * width, 3)


def collect_media(root: str | Path) -> dict[str, Path]:
    """Video files and frame folders under ``root``, keyed by their path relative to ``root``."""
    root = Path(root)
    if root.is_file():
        return {root.name: root}
    if not root.is_dir():
        raise DataFormatError("folder does not exist", path=root)
    out: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        images = [f for f in filenames if Path(f).suffix.lower() in IMAGE_EXTS]
        if len(images) >= 8 and here != root:
            out[str(here.relative_to(root))] = here
        for f in filenames:
            if Path(f).suffix.lower() in VIDEO_EXTS and not f.startswith("."):
                out[str((here / f).relative_to(root))] = here / f
    return dict(sorted(out.items(), key=lambda kv: natural_key(kv[0])))


VideoSet = Dataset | Mapping[str, "str | Path | Video"] | Iterable[Video]


def media_items(videos: VideoSet, label: str = "set") -> dict[str, tuple[Media | None, float | None]]:
    """Normalise a video set to {key: (media, fps)} with keys '<dataset>:<id>' ('<label>:<id>' for
    mappings and plain video lists)."""
    if isinstance(videos, Dataset):
        return {f"{videos.name}:{v.id}": (media_of(v), v.fps) for v in videos.videos.values()}
    if isinstance(videos, Mapping):
        out = {}
        for k, v in videos.items():
            out[f"{label}:{k}"] = (media_of(v), v.fps) if isinstance(v, Video) else (Path(v), None)
        return out
    return {f"{label}:{v.id}": (media_of(v), v.fps) for v in videos}


def _cache_file(cache_dir: Path, media: Media, params: dict) -> Path:
    files = media if isinstance(media, tuple) else (media,)
    parts = []
    for f in files:
        st = f.stat()
        parts.append(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}")
    ident = "\n".join(parts) + f"|{sorted(params.items())}"
    return cache_dir / f"{hashlib.sha256(ident.encode()).hexdigest()[:24]}.json"


def _fingerprint_job(job: tuple) -> Fingerprint | None:
    """Worker side of :func:`fingerprint_set`: one fingerprint, or None when it failed (the main process
    then recomputes it to raise the real error with its own type and message)."""
    path, key, fps, params = job
    try:
        return fingerprint(path, key=key, fps=fps, **params)
    except Exception:
        return None


def _init_fingerprint_worker(main_pid: int, main_start: str | None) -> None:
    from surgkit.utils.workers import init_worker

    init_worker(main_pid, main_start)


def _computed(jobs: list[tuple], workers: int) -> Iterable[Fingerprint]:
    """Fingerprints of ``jobs`` in order: in this process, or in ``workers`` worker processes."""
    if workers <= 1 or len(jobs) < 2:
        for path, key, fps, params in jobs:
            yield fingerprint(path, key=key, fps=fps, **params)
        return
    from concurrent.futures import ProcessPoolExecutor

    from surgkit.utils.workers import main_identity, pool_context

    with ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)),
        mp_context=pool_context(),
        initializer=_init_fingerprint_worker,
        initargs=main_identity(),
    ) as pool:
        for job, fp in zip(jobs, pool.map(_fingerprint_job, jobs), strict=True):
            if fp is None:  # raise the worker's error here, from the same call
                path, key, fps, params = job
                fp = fingerprint(path, key=key, fps=fps, **params)
            yield fp


def fingerprint_set(
    items: Mapping[str, tuple[Media | None, float | None]],
    cache_dir: str | Path | None = None,
    progress: bool = True,
    workers: int = 1,
    **params: Any,
) -> tuple[dict[str, Fingerprint], list[str]]:
    """Fingerprints of every item with media; returns (fingerprints, keys without media).

    Cached fingerprints are read in this process; the others are computed by ``workers`` processes
    (decoding is nearly all of the time; the fingerprints do not depend on ``workers``) and cached
    by this process.
    """
    import json

    from surgkit.utils.io import write_json
    from surgkit.utils.progress import track

    missing = [k for k, (p, _) in items.items() if not _exists(p)]
    todo = [(k, p if isinstance(p, tuple) else Path(p), f) for k, (p, f) in items.items() if k not in missing]
    found: dict[str, Fingerprint] = {}
    jobs: list[tuple] = []
    caches: dict[str, Path | None] = {}
    for key, path, fps in todo:
        cache = _cache_file(Path(cache_dir), path, {**params, "fps": fps}) if cache_dir else None
        caches[key] = cache
        if cache is not None and cache.is_file():
            fp = Fingerprint.from_json(json.loads(cache.read_text()))
            fp.key = key
            found[key] = fp
        else:
            jobs.append((path, key, fps, params))
    computed = track(_computed(jobs, workers), "fingerprinting", total=len(jobs), unit="videos",
                     disable=not progress or not jobs)  # fmt: skip
    for fp in computed:
        cache = caches[fp.key]
        if cache is not None:
            write_json(cache, fp.to_json())
        found[fp.key] = fp
    return {key: found[key] for key, _, _ in todo}, missing


def compare_sets(
    a: Mapping[str, Fingerprint],
    b: Mapping[str, Fingerprint],
    threshold: float = 0.5,
    max_bits: int = 8,
    same_set: bool = False,
) -> list[LeakPair]:
    """Content pairs with similarity >= threshold (within one set when ``same_set``: each pair once)."""
    out = []
    keys_b = list(b)
    for i, ka in enumerate(a):
        for kb in keys_b[i + 1 :] if same_set else keys_b:
            s, off = similarity(a[ka], b[kb], max_bits)
            if s >= threshold:
                out.append(LeakPair(ka, kb, round(s, 4), "content", off))
    return sorted(out, key=lambda p: -p.similarity)


def find_leaks(
    train: VideoSet,
    test: VideoSet,
    by_content: bool = True,
    threshold: float = 0.5,
    max_bits: int = 8,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    workers: int = 1,
    **params: Any,
) -> tuple[list[LeakPair], list[str]]:
    """All train/test overlaps (id, same file, content) and the keys that had no media to compare.

    ``workers`` processes compute the fingerprints (:func:`fingerprint_set`)."""
    tr = media_items(train, "train")
    te = media_items(test, "test")
    pairs = [LeakPair(k, k, 1.0, "id") for k in tr if k in te]

    def files(items) -> dict[Path, str]:
        return {Path(p).resolve(): k for k, (p, _) in items.items() if isinstance(p, Path) and p.exists()}

    files_tr = files(tr)
    for path, k in files(te).items():
        if path in files_tr and files_tr[path] != k:
            pairs.append(LeakPair(files_tr[path], k, 1.0, "file"))
    unchecked: list[str] = []
    if by_content:
        fa, ma = fingerprint_set(tr, cache_dir, progress, workers, **params)
        fb, mb = fingerprint_set(te, cache_dir, progress, workers, **params)
        unchecked = ma + mb
        seen = {(p.a, p.b) for p in pairs}
        pairs += [p for p in compare_sets(fa, fb, threshold, max_bits) if (p.a, p.b) not in seen]
    return pairs, unchecked


def check_leakage(train: VideoSet, test: VideoSet, allow: bool = False, **kwargs: Any) -> list[LeakPair]:
    """Refuse train/test overlap: raise :class:`LeakageError` listing the pairs unless ``allow``.

    Training commands call this (through :func:`guard_split`) before they start; ``--allow-leakage``
    maps to ``allow=True``, which returns the pairs instead of raising.
    """
    pairs, _ = find_leaks(train, test, **kwargs)
    if pairs and not allow:
        shown = "; ".join(str(p) for p in pairs[:10])
        more = f" (+{len(pairs) - 10} more)" if len(pairs) > 10 else ""
        raise LeakageError(
            f"{len(pairs)} train/test overlap(s): {shown}{more}. Pass --allow-leakage to proceed anyway."
        )
    return pairs


def guard_split(
    ds: Dataset, split, extra_train: Iterable[VideoSet] = (), allow: bool = False, **kwargs: Any
) -> list[LeakPair]:
    """Check one :class:`~surgkit.data.splits.Split` of ``ds`` before training.

    Train = the split's train (and val) videos plus any ``extra_train`` corpora (e.g. a pretraining
    set); test = its test videos. Raises :class:`LeakageError` unless ``allow``.
    """
    train_sets: list[Any] = [ds.subset(list(split.train) + list(split.val))]
    train_sets += list(extra_train)
    test = ds.subset(split.test)
    pairs: list[LeakPair] = []
    for tr in train_sets:
        pairs += check_leakage(tr, test, allow=True, **kwargs)
    if pairs and not allow:
        raise LeakageError(
            f"{len(pairs)} train/test overlap(s): "
            + "; ".join(str(p) for p in pairs[:10])
            + ". Pass --allow-leakage to proceed anyway."
        )
    return pairs


def compare_roots(
    roots: list[str | Path],
    within: bool = False,
    threshold: float = 0.5,
    max_bits: int = 8,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    workers: int = 1,
    **params: Any,
) -> tuple[list[LeakPair], dict[str, int]]:
    """Content overlap between the media of several folders (every pair of roots; inside each root too
    when ``within``). Keys are '<root name>:<relative path>'. Returns the pairs and the media count per root.
    ``workers`` processes compute the fingerprints."""
    prints: list[dict[str, Fingerprint]] = []
    counts: dict[str, int] = {}
    names = [Path(r).name or str(r) for r in roots]
    for root in roots:
        label = Path(root).name or str(root)
        if names.count(label) > 1:  # e.g. two 'videos' folders: keep the parent to tell them apart
            label = f"{Path(root).resolve().parent.name}/{label}"
        media = collect_media(root)
        counts[str(root)] = len(media)
        fps, _ = fingerprint_set(
            {f"{label}:{k}": (p, None) for k, p in media.items()}, cache_dir, progress, workers, **params
        )
        prints.append(fps)
    pairs: list[LeakPair] = []
    for i in range(len(prints)):
        if within:
            pairs += compare_sets(prints[i], prints[i], threshold, max_bits, same_set=True)
        for j in range(i + 1, len(prints)):
            pairs += compare_sets(prints[i], prints[j], threshold, max_bits)
    return sorted(pairs, key=lambda p: -p.similarity), counts
