"""Per-segment feature store: one safetensors file per (video, modality) plus a JSON index.

Layout (format ``surgkit-features/1``)::

    <root>/index.json
    <root>/<modality>/<video_id>.safetensors    # tensor "features" float32 [T, D]
                                                 # optional "valid" uint8 [T] (0 = zero-padded tail)

``index.json``::

    {"format": "surgkit-features/1", "backbone": str, "backbone_sha256": str | null,
     "backbones": {modality: {"name": str, "sha256": str | null, ...}},   # optional
     "fps": float, "segment_frames": int, "stride_frames": int,
     "modalities": [...], "feature_dim": {modality: D},
     "videos": {video_id: {"num_frames": int, "num_segments": int, "source": str,
                           "modalities": [...]}}}

``backbones`` records the backbone of each modality (SurgFusion-Net: Video Swin for RGB and masks,
I3D for flow); ``backbone`` is then the common name, or ``"rgb=<name>; flow=<name>; ..."`` when
they differ, and ``backbone_sha256`` the common fingerprint or a SHA-256 over the per-modality ones.
Stores written before ``backbones`` existed (one backbone) read the same.

T is the number of segments of the video (SurgFusion-Net: non-overlapping 32-frame segments, so
``T = ceil(frames / 32)`` with a zero-padded tail, or ``floor`` when the tail is dropped); all
modalities of a video share T, and :meth:`FeatureStore.load_all` checks it. Nothing is pickled:
the replacement for MAQA's ``np.load(..., allow_pickle=True)`` dicts (spec skill.md §1.4).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from surgkit.errors import DataFormatError, SurgkitError
from surgkit.utils.io import save_tensors, sha256_json, write_json

FORMAT = "surgkit-features/1"
INDEX_NAME = "index.json"
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+\-]*$")


def check_name(name: str, what: str = "video id") -> str:
    """Refuse ids that are not a plain file name (no separators, no leading dot)."""
    if not isinstance(name, str) or not _SAFE_ID.match(name):
        raise SurgkitError(f"invalid {what} {name!r}: use letters, digits, '.', '_', '-', '+'")
    return name


def feature_path(root: str | Path, video_id: str, modality: str) -> Path:
    """Where the features of ``video_id`` for ``modality`` live under ``root``."""
    return Path(root) / check_name(modality, "modality") / f"{check_name(video_id)}.safetensors"


def read_index(root: str | Path) -> dict[str, Any]:
    """Read and validate ``<root>/index.json``."""
    path = Path(root) / INDEX_NAME
    if not path.is_file():
        raise SurgkitError(f"{path}: no feature index (run `surgkit prep features` first)")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataFormatError(f"invalid JSON ({e.msg})", path=path, line=e.lineno) from e
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        found = index.get("format") if isinstance(index, dict) else type(index).__name__
        raise DataFormatError(f"not a {FORMAT} index (format={found!r})", path=path)
    for key in ("backbone", "fps", "segment_frames", "stride_frames", "modalities", "feature_dim", "videos"):
        if key not in index:
            raise DataFormatError(f"missing key '{key}'", path=path)
    return index


class FeatureStore:
    """Read-only view of a feature store folder.

    >>> store = FeatureStore("features/")                         # doctest: +SKIP
    >>> store.load_all("Suturing_B001", ["rgb", "flow", "mask"])   # doctest: +SKIP
    {'rgb': array[T, D], 'flow': array[T, D], 'mask': array[T, D]}
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.index = read_index(self.root)

    # -- metadata -----------------------------------------------------------------------------
    @property
    def video_ids(self) -> list[str]:
        return sorted(self.index["videos"])

    @property
    def modalities(self) -> list[str]:
        return list(self.index["modalities"])

    @property
    def backbone(self) -> str:
        return str(self.index["backbone"])

    def backbone_of(self, modality: str) -> dict[str, Any]:
        """What the store records about the backbone of ``modality`` (at least ``name``, ``sha256``)."""
        per = self.index.get("backbones") or {}
        if modality in per:
            return dict(per[modality])
        return {"name": self.backbone, "sha256": self.index.get("backbone_sha256")}

    @property
    def fps(self) -> float:
        return float(self.index["fps"])

    @property
    def segment_frames(self) -> int:
        return int(self.index["segment_frames"])

    @property
    def stride_frames(self) -> int:
        return int(self.index["stride_frames"])

    def feature_dim(self, modality: str) -> int:
        return int(self.index["feature_dim"][modality])

    def info(self, video_id: str) -> dict[str, Any]:
        """The index entry of one video (num_frames, num_segments, source, modalities)."""
        try:
            return dict(self.index["videos"][video_id])
        except KeyError:
            raise SurgkitError(
                f"{self.root / INDEX_NAME}: unknown video '{video_id}' ({len(self.index['videos'])} videos)"
            ) from None

    def path(self, video_id: str, modality: str) -> Path:
        return feature_path(self.root, video_id, modality)

    # -- tensors ------------------------------------------------------------------------------
    def _read(self, video_id: str, modality: str) -> dict[str, np.ndarray]:
        info = self.info(video_id)
        if modality not in info.get("modalities", []):
            raise SurgkitError(
                f"{self.root / INDEX_NAME}: video '{video_id}' has no '{modality}' features "
                f"(has {', '.join(info.get('modalities', [])) or 'none'})"
            )
        path = self.path(video_id, modality)
        if not path.is_file():
            raise DataFormatError("feature file listed in index.json is missing", path=path)
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise DataFormatError(f"unreadable safetensors file ({e})", path=path) from e
        if "features" not in tensors:
            raise DataFormatError(f"no 'features' tensor (has {sorted(tensors)})", path=path)
        feats = tensors["features"]
        if feats.ndim != 2:
            raise DataFormatError(f"'features' must be [T, D], got shape {feats.shape}", path=path)
        want_d = self.index["feature_dim"].get(modality)
        if want_d is not None and feats.shape[1] != int(want_d):
            raise DataFormatError(f"feature dim {feats.shape[1]} != index feature_dim {want_d}", path=path)
        want_t = info.get("num_segments")
        if want_t is not None and feats.shape[0] != int(want_t):
            raise DataFormatError(
                f"video '{video_id}': {feats.shape[0]} segments in file, index says {want_t}", path=path
            )
        valid = tensors.get("valid")
        if valid is not None and valid.shape != (feats.shape[0],):
            raise DataFormatError(f"'valid' has shape {valid.shape}, expected ({feats.shape[0]},)", path=path)
        return tensors

    def load(self, video_id: str, modality: str) -> np.ndarray:
        """Features of one video and modality, float32 [T, D]."""
        return self._read(video_id, modality)["features"].astype(np.float32, copy=False)

    def load_valid(self, video_id: str, modality: str) -> np.ndarray:
        """Bool [T]: False where a segment is (partly) zero padding; all True if not stored."""
        tensors = self._read(video_id, modality)
        valid = tensors.get("valid")
        if valid is None:
            return np.ones(tensors["features"].shape[0], dtype=bool)
        return valid.astype(bool)

    def load_all(self, video_id: str, modalities: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Features of several modalities of one video; all must share T (else DataFormatError)."""
        mods = list(self.modalities if modalities is None else modalities)
        out = {m: self.load(video_id, m) for m in mods}
        lengths = {m: a.shape[0] for m, a in out.items()}
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{m}={t} ({self.path(video_id, m)})" for m, t in lengths.items())
            raise DataFormatError(
                f"video '{video_id}': modalities disagree on the number of segments T: {detail}",
                path=self.path(video_id, mods[0]),
            )
        return out


def _per_modality(index: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{modality: backbone record} of an index (one shared record for single-backbone stores)."""
    if index.get("backbones"):
        return {m: dict(v) for m, v in index["backbones"].items()}
    return {
        m: {"name": index["backbone"], "sha256": index.get("backbone_sha256")} for m in index["modalities"]
    }


def _records_differ(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Two backbone records disagree on a field both have (old stores record only name and sha256)."""
    return any(a[k] != b[k] for k in set(a) & set(b))


def summarise_backbones(backbones: Mapping[str, Mapping[str, Any]]) -> tuple[str, str | None]:
    """(``backbone``, ``backbone_sha256``) of an index with per-modality backbones."""
    names = {m: str(b["name"]) for m, b in backbones.items()}
    shas = {m: b.get("sha256") for m, b in backbones.items()}
    if len(set(names.values())) == 1 and len(set(shas.values())) == 1:
        return next(iter(names.values())), next(iter(shas.values()))
    name = "; ".join(f"{m}={n}" for m, n in sorted(names.items()))
    sha = None if None in shas.values() else sha256_json(dict(sorted(shas.items())))
    return name, sha


@contextlib.contextmanager
def _index_lock(root: Path) -> Iterator[None]:
    """Blocking exclusive lock for the read-merge-write of index.json (no-op without fcntl)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: shards of one store must not run at once
        yield
        return
    root.mkdir(parents=True, exist_ok=True)
    with open(root / (INDEX_NAME + ".lock"), "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class FeatureStoreWriter:
    """Write features into a store; each tensor file and the index are written atomically.

    Re-opening an existing store merges with its index (resume), provided the settings agree
    (backbone, fps, segment and stride length); otherwise :class:`SurgkitError` is raised so
    features from different settings never mix. The index is rewritten after every
    :meth:`write`, so a killed job leaves an index that lists exactly the finished files.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        backbone: str | None = None,
        fps: float,
        segment_frames: int,
        stride_frames: int | None = None,
        backbone_sha256: str | None = None,
        backbones: Mapping[str, Mapping[str, Any]] | None = None,
        extra: Mapping[str, Any] | None = None,
    ):
        self.root = Path(root)
        if backbones:
            backbone, backbone_sha256 = summarise_backbones(backbones)
        elif backbone is None:
            raise SurgkitError("FeatureStoreWriter needs backbone= or backbones=")
        stride = int(segment_frames if stride_frames is None else stride_frames)
        if segment_frames < 1 or stride < 1:
            raise SurgkitError(
                f"segment_frames and stride_frames must be >= 1 (got {segment_frames}, {stride})"
            )
        settings = {
            "backbone": str(backbone),
            "backbone_sha256": backbone_sha256,
            "fps": float(fps),
            "segment_frames": int(segment_frames),
            "stride_frames": stride,
        }
        if backbones:
            settings["backbones"] = {m: dict(v) for m, v in sorted(backbones.items())}
        self.index: dict[str, Any] = {"format": FORMAT, **settings, "modalities": [], "feature_dim": {}}
        if extra:
            self.index["extra"] = dict(extra)
        self.index["videos"] = {}
        self._written: set[str] = set()
        if (self.root / INDEX_NAME).is_file():
            old = read_index(self.root)
            mine = {k: v for k, v in settings.items() if not (backbones and k.startswith("backbone"))}
            clash = [k for k, v in mine.items() if old.get(k) != v]
            detail = "; ".join(f"{k}: store has {old.get(k)!r}, now {settings[k]!r}" for k in clash)
            if backbones:  # per modality: a modality already in the store keeps its backbone
                before = _per_modality(old)
                differ = [m for m in backbones if m in before and _records_differ(before[m], backbones[m])]
                clash += [f"{m} backbone" for m in differ]
                parts = [detail] if detail else []
                parts += [
                    f"{m} backbone: store has {before[m]!r}, now {dict(backbones[m])!r}" for m in differ
                ]
                detail = "; ".join(parts)
                merged = {**before, **{m: dict(v) for m, v in backbones.items()}}
                self.index["backbones"] = dict(sorted(merged.items()))
                self.index["backbone"], self.index["backbone_sha256"] = summarise_backbones(merged)
            if clash:
                raise SurgkitError(
                    f"{self.root / INDEX_NAME}: existing store was made with other settings ({detail}); "
                    "use a new output folder or --overwrite"
                )
            self.index["modalities"] = list(old["modalities"])
            self.index["feature_dim"] = dict(old["feature_dim"])
            self.index["videos"] = dict(old["videos"])
            if "extra" in old and "extra" not in self.index:
                self.index["extra"] = old["extra"]

    def has(self, video_id: str, modality: str) -> bool:
        """True when the index lists this (video, modality) and its file exists."""
        entry = self.index["videos"].get(video_id)
        return (
            bool(entry)
            and modality in entry["modalities"]
            and feature_path(self.root, video_id, modality).is_file()
        )

    def write(
        self,
        video_id: str,
        modality: str,
        features: Any,
        *,
        num_frames: int,
        source: str = "",
        valid: Any = None,
    ) -> Path:
        """Atomically write float32 [T, D] ``features`` (and optional bool [T] ``valid``)."""
        feats = np.asarray(features.detach().cpu() if hasattr(features, "detach") else features)
        feats = np.ascontiguousarray(feats, dtype=np.float32)
        path = feature_path(self.root, video_id, modality)
        if feats.ndim != 2:
            raise SurgkitError(f"{path}: features must be [T, D], got shape {feats.shape}")
        dim = self.index["feature_dim"].get(modality)
        if dim is not None and int(dim) != feats.shape[1]:
            raise SurgkitError(
                f"{path}: feature dim {feats.shape[1]} != {dim} already in the store for '{modality}'"
            )
        entry = self.index["videos"].get(video_id)
        if entry and entry["modalities"] and int(entry["num_segments"]) != feats.shape[0]:
            raise SurgkitError(
                f"{path}: {feats.shape[0]} segments, but video '{video_id}' has {entry['num_segments']} "
                f"in its other modalities ({', '.join(entry['modalities'])})"
            )
        tensors = {"features": feats}
        if valid is not None:
            v = np.asarray(valid).astype(np.uint8).reshape(-1)
            if v.shape != (feats.shape[0],):
                raise SurgkitError(f"{path}: valid has shape {v.shape}, expected ({feats.shape[0]},)")
            tensors["valid"] = v
        save_tensors(path, tensors, metadata={"video_id": video_id, "modality": modality, "format": FORMAT})
        if modality not in self.index["modalities"]:
            self.index["modalities"].append(modality)
        self.index["feature_dim"][modality] = int(feats.shape[1])
        mods = list(entry["modalities"]) if entry else []
        if modality not in mods:
            mods.append(modality)
        self._written.add(video_id)
        self.index["videos"][video_id] = {
            "num_frames": int(num_frames),
            "num_segments": int(feats.shape[0]),
            "source": str(source or (entry or {}).get("source", "")),
            "modalities": mods,
        }
        self.flush()
        return path

    def flush(self) -> Path:
        """Atomically (re)write index.json, merged with what other writers (shards) put there.

        Under a short exclusive lock (``index.json.lock``), the index on disk is re-read and only the
        videos this writer wrote replace their entries, so shards of one store never drop each
        other's videos. Videos are sorted, so the index does not depend on the order of writing.
        """
        with _index_lock(self.root):
            disk = read_index(self.root) if (self.root / INDEX_NAME).is_file() else None
            if disk is not None:
                videos = dict(disk["videos"])
                videos.update({v: self.index["videos"][v] for v in self._written})
                self.index["videos"] = videos
                for m in disk["modalities"]:
                    if m not in self.index["modalities"]:
                        self.index["modalities"].append(m)
                self.index["feature_dim"] = {**disk["feature_dim"], **self.index["feature_dim"]}
            self.index["videos"] = dict(sorted(self.index["videos"].items()))
            return write_json(self.root / INDEX_NAME, self.index)

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> FeatureStoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
