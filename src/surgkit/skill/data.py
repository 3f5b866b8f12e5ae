"""Scored videos with their per-segment features, label normalisation and batching (spec §1.3–1.4).

Features are read only through :class:`surgkit.prep.store.FeatureStore`; every problem (missing
modality file, modalities disagreeing on T, a score outside the fixed range) raises one
:class:`~surgkit.errors.SurgkitError` that names the video.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from surgkit.errors import SurgkitError
from surgkit.prep.store import FeatureStore
from surgkit.skill.interop import SkillItem, SkillLabels


@dataclasses.dataclass
class ScoredVideo:
    """Features of one video (modality → float32 [T, D]) with its normalised target(s)."""

    id: str
    store_id: str
    surgeon: str
    features: dict[str, np.ndarray]
    score: float  # raw global score (GRS points)
    target: np.ndarray  # normalised to [0, 1]: [1] (score) or [n_items]
    items: dict[str, float]

    @property
    def length(self) -> int:
        return next(iter(self.features.values())).shape[0]


@dataclasses.dataclass(frozen=True)
class LabelScale:
    """Fixed score ranges used to map labels to [0, 1] and back (§1.3: y = (GRS − 6) / 24)."""

    score_range: tuple[float, float]
    item_names: tuple[str, ...] = ()
    item_range: tuple[float, float] = (1.0, 5.0)
    target: str = "score"  # "score" or "items"

    @property
    def num_outputs(self) -> int:
        return len(self.item_names) if self.target == "items" else 1

    def normalise(self, item: SkillItem) -> np.ndarray:
        lo, hi = self.score_range
        if not lo <= item.score <= hi:
            raise SurgkitError(
                f"video '{item.id}': score {item.score:g} outside the score range [{lo:g}, {hi:g}]"
            )
        if self.target == "score":
            return np.array([(item.score - lo) / (hi - lo)], dtype=np.float32)
        ilo, ihi = self.item_range
        missing = [n for n in self.item_names if n not in item.items]
        if missing:
            raise SurgkitError(f"video '{item.id}': target=items but item scores {missing} are missing")
        vals = np.array([item.items[n] for n in self.item_names], dtype=np.float32)
        bad = [(n, v) for n, v in zip(self.item_names, vals, strict=True) if not ilo <= v <= ihi]
        if bad:
            raise SurgkitError(f"video '{item.id}': item scores outside [{ilo:g}, {ihi:g}]: {bad}")
        return (vals - ilo) / (ihi - ilo)

    def to_score(self, pred: np.ndarray) -> np.ndarray:
        """Model outputs [n, num_outputs] in [0, 1] → global score in points (items are summed)."""
        pred = np.asarray(pred, dtype=np.float64).reshape(len(pred), -1)
        if self.target == "score":
            lo, hi = self.score_range
            return lo + pred[:, 0] * (hi - lo)
        return self.to_items(pred).sum(axis=1)

    def to_items(self, pred: np.ndarray) -> np.ndarray:
        ilo, ihi = self.item_range
        return ilo + np.asarray(pred, dtype=np.float64).reshape(len(pred), -1) * (ihi - ilo)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_labels(cls, labels: SkillLabels, target: str = "score") -> LabelScale:
        return cls(tuple(labels.score_range), tuple(labels.item_names), tuple(labels.item_range), target)


def resolve_store_id(store: FeatureStore, video_id: str, view: str = "capture1") -> str:
    """The feature-store id of a scored video: ``<id>`` or ``<id>_<view>`` (JIGSAWS camera)."""
    known = set(store.video_ids)
    for candidate in (video_id, f"{video_id}_{view}"):
        if candidate in known:
            return candidate
    raise SurgkitError(
        f"video '{video_id}': no features in {store.root} (looked for '{video_id}' and '{video_id}_{view}')"
    )


def load_video(
    store: FeatureStore,
    item: SkillItem,
    modalities: Sequence[str],
    scale: LabelScale,
    view: str = "capture1",
    drop_partial_tail: bool = True,
) -> ScoredVideo:
    """Load and validate one scored video (all modalities must exist and share T)."""
    target = scale.normalise(item)
    sid = resolve_store_id(store, item.video_id, view)
    have = store.info(sid).get("modalities", [])
    missing = [m for m in modalities if m not in have]
    if missing:
        raise SurgkitError(
            f"video '{item.id}': missing modality {', '.join(missing)} in {store.root} (has {', '.join(have) or 'none'})"
        )
    feats = store.load_all(sid, modalities)
    if drop_partial_tail:
        valid = store.load_valid(sid, modalities[0])
        keep = int(valid.sum()) if not valid.all() and valid.any() else len(valid)
        feats = {m: a[:keep] for m, a in feats.items()}
    if item.start_s is not None or item.end_s is not None:
        keep = segments_in(store, len(next(iter(feats.values()))), item.start_s, item.end_s)
        if not keep.any():
            raise SurgkitError(
                f"unit '{item.id}': no feature segment of '{sid}' lies in {item.start_s}-{item.end_s} s"
            )
        feats = {m: a[keep] for m, a in feats.items()}
    return ScoredVideo(item.id, sid, item.surgeon, feats, item.score, target, dict(item.items))


def segments_in(store: FeatureStore, count: int, start_s: float | None, end_s: float | None) -> np.ndarray:
    """Bool [count]: feature segments whose centre time lies in [start_s, end_s) (a scored segment)."""
    centre = (np.arange(count) * store.stride_frames + store.segment_frames / 2) / store.fps
    lo = -np.inf if start_s is None else start_s
    hi = np.inf if end_s is None else end_s
    return (centre >= lo) & (centre < hi)


def load_videos(
    store: FeatureStore,
    items: Sequence[SkillItem],
    modalities: Sequence[str],
    scale: LabelScale,
    view: str = "capture1",
    drop_partial_tail: bool = True,
) -> dict[str, ScoredVideo]:
    """Load every item; errors name the video. Returns id → ScoredVideo."""
    return {it.id: load_video(store, it, modalities, scale, view, drop_partial_tail) for it in items}


# -- batching ----------------------------------------------------------------------------------------
def resample(x: np.ndarray, length: int) -> np.ndarray:
    """Linear interpolation of [T, D] to [length, D] along T."""
    t = x.shape[0]
    if t == length:
        return x
    pos = np.linspace(0, t - 1, length)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, t - 1)
    w = (pos - lo)[:, None].astype(np.float32)
    return x[lo] * (1 - w) + x[hi] * w


def fit_length(
    feats: dict[str, np.ndarray], policy: str, length: int, rng: np.random.Generator | None
) -> dict[str, np.ndarray]:
    """Bring one video to ``length`` segments: zero-pad (pad), random window + pad (crop), or resample.

    The same window is used for every modality (MAQA crops all modalities with one start).
    """
    t = next(iter(feats.values())).shape[0]
    if policy == "resample":
        return {m: resample(a, length) for m, a in feats.items()}
    start = 0
    if policy == "crop" and t > length:
        start = int(rng.integers(0, t - length + 1)) if rng is not None else (t - length) // 2
    out = {}
    for m, a in feats.items():
        a = a[start : start + length]
        if a.shape[0] < length:
            a = np.concatenate([a, np.zeros((length - a.shape[0], a.shape[1]), a.dtype)])
        out[m] = a
    return out


def edge_pad(feats: dict[str, np.ndarray], min_length: int) -> dict[str, np.ndarray]:
    """Repeat the last segment of a video shorter than ``min_length`` (what the model does at test time)."""
    t = next(iter(feats.values())).shape[0]
    if t >= min_length or t == 0:
        return feats
    return {m: np.concatenate([a, np.repeat(a[-1:], min_length - t, axis=0)]) for m, a in feats.items()}


def collate(
    videos: Sequence[ScoredVideo],
    policy: str,
    length: int,
    rng: np.random.Generator | None = None,
    device: torch.device | str = "cpu",
    min_length: int = 1,
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Training batch: modality → [B, max(length, min_length), D], targets [B, n_outputs] and the number
    of valid (unpadded) segments per video [B], which the model uses to mask the zero padding.

    Videos shorter than ``min_length`` are edge-padded to it first, as the model does for one video."""
    length = max(length, min_length)
    raw = [edge_pad(v.features, min_length) for v in videos]
    fitted = [fit_length(f, policy, length, rng) for f in raw]
    valid = [length if policy == "resample" else min(next(iter(f.values())).shape[0], length) for f in raw]
    mods = list(fitted[0])
    x = {m: torch.from_numpy(np.stack([f[m] for f in fitted])).to(device) for m in mods}
    y = torch.from_numpy(np.stack([v.target for v in videos])).to(device)
    return x, y, torch.tensor(valid, dtype=torch.long, device=device)


def eval_input(
    video: ScoredVideo, policy: str, length: int, device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor]:
    """Evaluation input for one video (batch 1): full length, or resampled for ``resample``."""
    feats = fit_length(video.features, "resample", length, None) if policy == "resample" else video.features
    return {m: torch.from_numpy(np.ascontiguousarray(a)).unsqueeze(0).to(device) for m, a in feats.items()}


def balanced_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle ``n`` indices into ⌈n / batch_size⌉ batches of near-equal size (never a lone sample
    when n ≥ 2, which BatchNorm cannot train on)."""
    order = rng.permutation(n)
    count = max(1, -(-n // batch_size))
    if n >= 2 and count > 1 and n // count < 2:
        count = n // 2
    return [b for b in np.array_split(order, count) if len(b)]
