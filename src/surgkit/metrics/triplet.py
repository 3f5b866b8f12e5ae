"""CholecT50 / CholecT45 action-triplet recognition metrics (spec §2), equal to ivtmetrics 0.1.5.

Reference: ivtmetrics ``Recognition`` (PyPI 0.1.5) run with scikit-learn < 1.6, i.e. with the
NaN rule that the published CholecT50 tables used: a class without any positive frame (in a
video for video-wise mAP, in the whole set for global mAP) has AP = NaN and is skipped by every
mean. ivtmetrics 0.1.5 with scikit-learn ≥ 1.6 silently turns those into AP = 0 (spec §2.3,
the "-0.0 string" version trap); surgkit implements the NaN rule itself, independent of sklearn.

Components (spec §2.1–2.2): ``i`` (6 instruments), ``v`` (10 verbs), ``t`` (15 targets),
``iv`` (26 instrument-verb pairs), ``it`` (59 instrument-target pairs) and ``ivt`` (100
triplets). The column k of a component is the k-th sorted distinct value of that column of
maps.txt (:func:`surgkit.vocab.triplet_map`); its value is the max over the triplet columns
mapped to it (logical OR for 0/1 targets, max for scores).

Modes (spec §2.4): ``"video"`` (ivtmetrics ``compute_video_AP``, CholecT50's recommended
protocol): AP per video and class, nanmean over videos, then nanmean over classes. ``"global"``
(``compute_global_AP``): all frames pooled, AP per class, nanmean. ``ignore_null=True`` drops
the 6 null triplets (ids 94–99) of component ``ivt`` only, after the per-class AP.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import numpy as np

from surgkit.errors import SurgkitError
from surgkit.metrics.ap import ap_of_validated, check_binary_targets, check_finite_scores, mean_ap

__all__ = [
    "COMPONENTS",
    "TripletAP",
    "component_classes",
    "evaluate",
    "extract_component",
    "top_k",
]

COMPONENTS: tuple[str, ...] = ("i", "v", "t", "iv", "it", "ivt")
_MAP_COLUMN = {"ivt": 0, "i": 1, "v": 2, "t": 3, "iv": 4, "it": 5}
NUM_CLASSES = 100
NUM_NULL_TRIPLETS = 6


def _check_component(component: str) -> None:
    if component not in _MAP_COLUMN:
        raise SurgkitError(f"unknown triplet component '{component}' (choose from {', '.join(COMPONENTS)})")


@cache
def _grouping(component: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(class ids, triplet column order grouped by class, start of each group in that order)."""
    from surgkit.vocab import triplet_map

    col = triplet_map()[:, _MAP_COLUMN[component]]
    order = np.argsort(col, kind="stable")
    ids, starts = np.unique(col[order], return_index=True)
    return ids, order, starts


def component_classes(component: str) -> np.ndarray:
    """The raw ids of the output columns of ``component`` (e.g. IV id 10·I + V), sorted."""
    _check_component(component)
    return _grouping(component)[0].copy()


def extract_component(matrix, component: str) -> np.ndarray:
    """Map (N, 100) triplet targets or scores to (N, n_classes) of ``component`` (spec §2.2).

    Column k = max over the triplet columns whose maps.txt value is the k-th sorted distinct id
    (ivtmetrics ``Disentangle.extract``); ``"ivt"`` returns the input unchanged.
    """
    _check_component(component)
    m = np.asarray(matrix)
    if m.ndim != 2 or m.shape[1] != NUM_CLASSES:
        raise SurgkitError(f"expected an (N, {NUM_CLASSES}) triplet matrix, got shape {m.shape}")
    if component == "ivt":
        return m
    _, order, starts = _grouping(component)
    if m.shape[0] == 0:
        return np.zeros((0, starts.size), dtype=m.dtype)
    return np.maximum.reduceat(m[:, order], starts, axis=1)


def _check_shape(t: np.ndarray, s: np.ndarray, name) -> None:
    if t.shape != s.shape:
        raise SurgkitError(f"video {name}: targets {t.shape} vs scores {s.shape}")
    if t.ndim != 2 or t.shape[1] != NUM_CLASSES:
        raise SurgkitError(f"video {name}: expected (frames, {NUM_CLASSES}) arrays, got {t.shape}")
    if t.shape[0] == 0:
        raise SurgkitError(f"video {name} has no frames")


def _check_values(t: np.ndarray, s: np.ndarray, name) -> tuple[np.ndarray, np.ndarray]:
    """One video's bool targets and float64 scores; errors name the video, frame and class."""
    s = np.asarray(s, dtype=np.float64)
    if not np.isfinite(s).all():
        row, col = (int(i) for i in np.argwhere(~np.isfinite(s))[0])
        raise SurgkitError(f"scores contain {s[row, col]} at frame {row} (video {name}), class {col}")
    try:
        return check_binary_targets(t), s
    except SurgkitError as e:
        raise SurgkitError(f"video {name}: {e}") from None


def _as_videos(targets, scores, video_ids) -> tuple[list[tuple[np.ndarray, np.ndarray]], list]:
    """Split the input into per-video (bool targets (F, 100), float64 scores (F, 100)) pairs.

    Accepts per-video lists, or frame arrays with one video id per frame (frames sharing an id
    form one video, in order of first appearance). Nothing is concatenated.
    """
    if isinstance(targets, (list, tuple)):
        if not isinstance(scores, (list, tuple)) or len(scores) != len(targets):
            raise SurgkitError("targets and scores given per video must be two lists of the same length")
        names = list(range(len(targets))) if video_ids is None else list(video_ids)
        if len(names) != len(targets):
            raise SurgkitError(f"{len(targets)} videos but {len(names)} video ids")
        if not targets:
            raise SurgkitError("no frames to evaluate")
        pairs = list(zip(targets, scores, strict=True))
    else:
        targets, scores = np.asarray(targets), np.asarray(scores)
        if targets.shape != scores.shape:
            raise SurgkitError(f"targets have shape {targets.shape} but scores have shape {scores.shape}")
        if targets.ndim != 2 or targets.shape[1] != NUM_CLASSES:
            raise SurgkitError(f"expected (frames, {NUM_CLASSES}) arrays, got {targets.shape}")
        if targets.shape[0] == 0:
            raise SurgkitError("no frames to evaluate")
        if video_ids is None:
            video_ids = np.zeros(len(targets), dtype=np.int64)
        video_ids = np.asarray(video_ids)
        if video_ids.shape != (len(targets),):
            raise SurgkitError(f"video_ids has shape {video_ids.shape}, expected ({len(targets)},)")
        change = np.flatnonzero(video_ids[1:] != video_ids[:-1]) + 1
        starts = np.concatenate([[0], change])
        if len(np.unique(video_ids[starts])) == len(starts):  # each video stored contiguously: views
            ends = np.concatenate([change, [len(targets)]])
            names = [video_ids[a].item() for a in starts]
            pairs = [(targets[a:b], scores[a:b]) for a, b in zip(starts, ends, strict=True)]
        else:
            uniq, first = np.unique(video_ids, return_index=True)
            names = [uniq[i].item() for i in np.argsort(first)]
            pairs = [(targets[video_ids == v], scores[video_ids == v]) for v in names]
    pairs = [(np.asarray(t), np.asarray(sc)) for t, sc in pairs]
    for (t, sc), name in zip(pairs, names, strict=True):  # every shape first, then the values
        _check_shape(t, sc, name)
    checked = _thread_map(lambda i: _check_values(*pairs[i], names[i]), list(range(len(pairs))))
    return checked, names


def _thread_map(fn, items: list) -> list:
    """``[fn(x) for x in items]`` on up to one thread per core (numpy releases the GIL while sorting)."""
    workers = min(len(items), os.cpu_count() or 1)
    if workers <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


def _video_aps(videos: list[tuple[np.ndarray, np.ndarray]], comps: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Per-video, per-class AP of each component: {component: (videos, classes)}."""

    def one(video: tuple[np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
        y, s = video
        return {c: ap_of_validated(extract_component(y, c), extract_component(s, c)) for c in comps}

    per_video = _thread_map(one, videos)
    return {c: np.stack([v[c] for v in per_video]) for c in comps}


def _per_class_ap(videos: list[tuple[np.ndarray, np.ndarray]], comps: tuple[str, ...], mode: str):
    """{component: per-class AP}: global (frames pooled) or video-wise (nanmean over videos)."""
    if mode == "global" and len(videos) > 1:
        y = np.concatenate([v[0] for v in videos])
        s = np.concatenate([v[1] for v in videos])
        videos = [(y, s)]
    aps = _video_aps(videos, comps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a class absent from every video stays NaN
        return {c: np.nanmean(a, axis=0) for c, a in aps.items()}


def evaluate(
    targets,
    scores,
    video_ids=None,
    mode: str = "video",
    ignore_null: bool = False,
    components: tuple[str, ...] = COMPONENTS,
    topk: tuple[int, ...] = (),
) -> dict:
    """Triplet recognition mAP of each component (spec §2.4), ivtmetrics-0.1.5-equal.

    Parameters
    ----------
    targets : (N, 100) 0/1 array, or a list of per-video (F_v, 100) arrays.
    scores : same shape, finite floats (e.g. sigmoid of logits).
    video_ids : (N,) ids; frames sharing an id form one video (as SurgVISTA groups them). With
        per-video lists, optional names of the videos.
    mode : ``"video"`` (per-video AP, nanmean over videos; CholecT50 recommended) or ``"global"``.
    ignore_null : drop the null triplets 94–99 from ``ivt`` (CholecTriplet2021 challenge used True).
    topk : optional k values for :func:`top_k` (pooled over all frames, spec §2.4).

    Returns ``{component: mAP, "per_class": {component: AP array}, "topk": {...}, "protocol": ...}``
    with NaN for classes that have no positive (excluded from every mean).
    """
    if mode not in ("video", "global"):
        raise SurgkitError(f"unknown triplet mode '{mode}' (choose 'video' or 'global')")
    for comp in components:
        _check_component(comp)
    videos, names = _as_videos(targets, scores, video_ids)
    per_class = _per_class_ap(videos, tuple(components), mode)
    out: dict = {"per_class": {}, "class_ids": {}}
    for comp in components:
        ap = per_class[comp]
        if ignore_null and comp == "ivt":
            ap = ap[:-NUM_NULL_TRIPLETS]
        out[comp] = mean_ap(ap)
        out["per_class"][comp] = ap
        ids = component_classes(comp)
        out["class_ids"][comp] = ids[:-NUM_NULL_TRIPLETS] if ignore_null and comp == "ivt" else ids
    if topk:
        y = np.concatenate([v[0] for v in videos])
        s = np.concatenate([v[1] for v in videos])
        out["topk"] = {f"{comp}@{k}": top_k(y, s, k, comp) for comp in components for k in topk}
    out["num_videos"] = len(names)
    out["num_frames"] = sum(len(v[0]) for v in videos)
    out["protocol"] = {
        "name": f"ivtmetrics-{mode}",
        "reference": "ivtmetrics 0.1.5 Recognition.compute_"
        + ("video_AP" if mode == "video" else "global_AP")
        + " with scikit-learn < 1.6",
        "mode": mode,
        "ignore_null": bool(ignore_null),
        "nan_rule": "class without positives -> AP NaN, skipped by nanmean (sklearn<1.6 semantics)",
        "units": "fraction",
    }
    return out


def top_k(targets, scores, k: int = 5, component: str = "ivt") -> float:
    """ivtmetrics ``topK``: Σ|GT positives ∩ k top-scored classes| / Σ|GT positives| over all frames.

    Pooled over every frame; a zero denominator becomes 1 (as the reference). Ties are broken by
    ``argsort`` of the negated scores, the reference's order.
    """
    if k < 1:
        raise SurgkitError(f"k must be >= 1, got {k}")
    y = extract_component(np.asarray(targets), component).astype(bool)
    s = extract_component(np.asarray(scores, dtype=np.float64), component)
    top = np.argsort(-s, axis=1)[:, :k]
    hits = np.take_along_axis(y, top, axis=1).sum()
    total = int(y.sum())
    return float(hits) / float(total if total else 1)


class TripletAP:
    """Streaming form of :func:`evaluate` for evaluation loops (ivtmetrics ``Recognition`` API).

    ``update(targets, scores)`` appends frames to the open video, ``video_end()`` closes it,
    ``compute(mode, ignore_null)`` evaluates everything seen. Unlike ivtmetrics, ``compute`` never
    mutates the state: an open (unclosed) video is included exactly once, so repeated calls give
    identical results (ivtmetrics' double-append bug, spec §2.5, is not reproduced).
    """

    def __init__(self, num_classes: int = NUM_CLASSES):
        if num_classes != NUM_CLASSES:
            raise SurgkitError(f"TripletAP supports the {NUM_CLASSES} CholecT50 triplets, got {num_classes}")
        self.num_classes = num_classes
        self.reset()

    def reset(self) -> None:
        """Forget every video (ivtmetrics ``reset_global``)."""
        self._videos: list[tuple[np.ndarray, np.ndarray]] = []
        self._open_t: list[np.ndarray] = []
        self._open_s: list[np.ndarray] = []

    def update(self, targets, scores) -> None:
        """Append (F, 100) targets and scores of the open video."""
        t = np.atleast_2d(np.asarray(targets))
        s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
        if t.shape != s.shape or t.shape[1] != self.num_classes:
            raise SurgkitError(f"update expects two (F, {self.num_classes}) arrays, got {t.shape}, {s.shape}")
        check_finite_scores(s)
        self._open_t.append(check_binary_targets(t))
        self._open_s.append(s)

    def video_end(self) -> None:
        """Close the open video; closing an empty video is an error (it has no frames)."""
        if not self._open_t:
            raise SurgkitError(f"video_end() called but video {len(self._videos)} received no frames")
        self._videos.append((np.concatenate(self._open_t), np.concatenate(self._open_s)))
        self._open_t, self._open_s = [], []

    @property
    def num_videos(self) -> int:
        return len(self._videos) + (1 if self._open_t else 0)

    def compute(self, mode: str = "video", ignore_null: bool = False, **kwargs) -> dict:
        """:func:`evaluate` over all closed videos plus the open one (if any), without side effects."""
        videos = list(self._videos)
        if self._open_t:
            videos.append((np.concatenate(self._open_t), np.concatenate(self._open_s)))
        if not videos:
            raise SurgkitError("TripletAP.compute() called before any update()")
        return evaluate(
            [v[0] for v in videos], [v[1] for v in videos], mode=mode, ignore_null=ignore_null, **kwargs
        )
