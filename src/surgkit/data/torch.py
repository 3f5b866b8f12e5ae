"""torch ``Dataset`` wrappers serving clips and labels, decoded lazily (never a whole video in memory).

:class:`ClipDataset` builds one sample per labelled frame (phase, tool, triplet, cvs tasks) or per video
(clip, skill tasks) from a reader's :class:`~surgkit.data.model.Dataset`.

**Online clips** (``sampling="online"``, the default for per-frame tasks; SurgVISTA §6.1/§9): the clip
has ``num_frames`` frames and *ends at the labelled frame* (the anchor). It walks backwards from the
anchor in steps of ``stride`` frames of a ``fps``-Hz timeline (e.g. 16 frames, stride 4, at 1 fps =
61 s); a step that would go before the first frame is not taken, so the earliest reached frame repeats
(padding at the video start). Steps are converted to source frames with the video's frame rate
(``round(t * source_fps)``). The sample's ``padded`` flag says whether a frame repeats.

**Uniform clips** (``sampling="uniform"``, default for clip/skill tasks): ``num_frames`` frames spread
evenly over the whole video (centres of equal slots), as MUSDL/ViSA sample JIGSAWS trials.

Each item is a dict: ``video`` float tensor (T, C, H, W) (or (C, T, H, W) with ``layout="CTHW"``),
scaled to [0, 1] and normalised with ``mean``/``std`` when given; ``label``; ``video_id``; ``frame``
(anchor source frame, -1 for whole-video samples); ``indices`` (source frames read); ``padded``.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from surgkit.data.frames import FolderReader, FrameReader, open_frames
from surgkit.data.model import Dataset, Video
from surgkit.errors import SurgkitError

TASKS = ("phase", "tool", "triplet", "cvs", "clip", "skill")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_INHERITED: list = []  # decoders inherited through fork; never touched (see ClipDataset._reader)


def online_indices(anchor: int, num_frames: int, step: int) -> tuple[list[int], bool]:
    """Source frame indices of a clip ending at ``anchor``, walking back by ``step`` (>= 1).

    Steps below frame 0 are not taken: the earliest reached frame repeats (SurgVISTA's padding).

    >>> online_indices(5, 4, 4)
    ([1, 1, 1, 5], True)
    """
    out = [anchor]
    for _ in range(num_frames - 1):
        nxt = out[-1] - step
        out.append(nxt if nxt >= 0 else out[-1])
    out.reverse()
    return out, len(set(out)) < len(out)


def uniform_indices(num_source: int, num_frames: int) -> list[int]:
    """``num_frames`` indices at the centres of equal slots over ``num_source`` frames."""
    if num_source <= 0:
        return [0] * num_frames
    return [min(int((k + 0.5) * num_source / num_frames), num_source - 1) for k in range(num_frames)]


class _SparseReader(FolderReader):
    """Frames listed as {frame number: image path} (Endoscapes, Cholec80-Boxes); index = position."""

    def __init__(self, files: dict):
        self.keys = sorted(files)
        super().__init__(None, None, [files[k] for k in self.keys])


class ClipDataset(torch.utils.data.Dataset):
    """Clips with per-frame or per-clip labels from a :class:`Dataset` (see the module docstring).

    ``video_ids`` restricts to a split's ids; ``size`` is (width, height) of the served frames;
    ``transform`` (optional) maps the (T, C, H, W) float tensor to another tensor (augmentation).
    """

    def __init__(
        self,
        dataset: Dataset,
        task: str = "phase",
        video_ids: Sequence[str] | None = None,
        num_frames: int = 16,
        stride: int = 4,
        fps: float = 1.0,
        sampling: str | None = None,
        size: tuple[int, int] = (224, 224),
        mean: Sequence[float] | None = IMAGENET_MEAN,
        std: Sequence[float] | None = IMAGENET_STD,
        layout: str = "TCHW",
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        max_open: int = 4,
    ):
        if task not in TASKS:
            raise SurgkitError(f"unknown task {task!r} (choose from {', '.join(TASKS)})")
        if layout not in ("TCHW", "CTHW"):
            raise SurgkitError("layout must be 'TCHW' or 'CTHW'")
        self.ds, self.task, self.num_frames, self.stride, self.fps = dataset, task, num_frames, stride, fps
        self.sampling = sampling or ("uniform" if task in ("clip", "skill") else "online")
        self.size, self.layout, self.transform = tuple(size), layout, transform
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = None if std is None else torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.max_open = max_open
        self._readers: collections.OrderedDict[str, FrameReader] = collections.OrderedDict()
        self._pid = os.getpid()
        keep = set(dataset.videos if video_ids is None else video_ids)
        self.skipped: list[tuple[str, str]] = []
        self.samples: list[tuple[str, int, Any]] = []
        for vid in (v for v in dataset.videos if v in keep):
            video = dataset.videos[vid]
            if video.path is None and not video.extra.get("frames"):
                self.skipped.append((vid, "no media"))
                continue
            self.samples.extend(self._samples_of(video))
        if not self.samples:
            raise SurgkitError(f"no {task} samples in {dataset.name} for the requested videos")

    # -- sample lists ---------------------------------------------------------------------------
    def _samples_of(self, video: Video) -> list[tuple[str, int, Any]]:
        vid, ds, t = video.id, self.ds, self.task
        if t == "phase" and vid in ds.phases:
            p = ds.phases[vid]
            return [(vid, int(f), int(y)) for f, y in zip(p.frames, p.phases, strict=True)]
        if t == "tool" and vid in ds.tools:
            tl = ds.tools[vid]
            return [(vid, int(f), tl.presence[i].astype(np.float32)) for i, f in enumerate(tl.frames)]
        if t == "triplet" and vid in ds.triplets:
            tr = ds.triplets[vid]
            return [(vid, int(f), tr.triplets[i].astype(np.float32)) for i, f in enumerate(tr.frames)]
        if t == "cvs":
            return [(vid, c.end, np.asarray(c.criteria, np.float32)) for c in ds.cvs if c.video_id == vid]
        if t == "clip" and vid in ds.clips:
            return [(vid, -1, ds.clips[vid].label)]
        if t == "skill" and vid in ds.skill:
            s = ds.skill[vid]
            return [(vid, -1, np.asarray([s.score, *s.items.values()], np.float32))]
        if t in ("phase", "tool", "triplet", "clip", "skill"):
            self.skipped.append((vid, f"no {t} labels"))
        return []

    def __len__(self) -> int:
        return len(self.samples)

    # -- decoding ---------------------------------------------------------------------------------
    def _reader(self, video: Video) -> FrameReader:
        if self._pid != os.getpid():
            # forked DataLoader worker: the parent's open decoders (and their FFmpeg threads) do not
            # exist here; closing or freeing them would block on those threads, so they are parked
            # untouched for the life of the worker and this process opens its own
            _INHERITED.extend(self._readers.values())
            self._readers = collections.OrderedDict()
            self._pid = os.getpid()
        reader = self._readers.get(video.id)
        if reader is None:
            files = video.extra.get("frames")
            reader = _SparseReader(files) if files else open_frames(video.path, fps=video.fps)
            self._readers[video.id] = reader
            while len(self._readers) > self.max_open:
                _, old = self._readers.popitem(last=False)
                old.close()
        else:
            self._readers.move_to_end(video.id)
        return reader

    def _position(self, video: Video, reader: FrameReader, frame: int) -> int:
        """Reader position of a source frame (sparse frame lists are indexed by position)."""
        if isinstance(reader, _SparseReader):
            import bisect

            return max(bisect.bisect_right(reader.keys, frame) - 1, 0)
        return frame

    def clip_indices(self, video: Video, reader: FrameReader, frame: int) -> tuple[list[int], bool]:
        """Reader positions of the clip for a sample (online: ending at ``frame``; uniform: whole video)."""
        n = reader.info.num_frames
        if self.sampling == "uniform" or frame < 0:
            return uniform_indices(n, self.num_frames), n < self.num_frames
        if isinstance(reader, _SparseReader):
            step = self.stride  # sparse frame lists: stride counts listed frames
        else:
            source_fps = reader.info.fps or video.fps or self.fps
            step = max(1, int(round(self.stride * source_fps / self.fps)))
        return online_indices(min(self._position(video, reader, frame), n - 1), self.num_frames, step)

    def __getitem__(self, index: int) -> dict[str, Any]:
        vid, frame, label = self.samples[index]
        video = self.ds.videos[vid]
        reader = self._reader(video)
        idx, padded = self.clip_indices(video, reader, frame)
        arr = reader.read(idx, size=self.size)  # (T, H, W, 3) uint8
        x = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)
        if self.mean is not None and self.std is not None:
            x = (x - self.mean) / self.std
        if self.transform is not None:
            x = self.transform(x)
        if self.layout == "CTHW":
            x = x.permute(1, 0, 2, 3).contiguous()
        y = torch.as_tensor(label, dtype=torch.long if isinstance(label, int) else torch.float32)
        return {
            "video": x,
            "label": y,
            "video_id": vid,
            "frame": frame,
            "indices": torch.tensor(idx),
            "padded": padded,
        }

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_readers"] = collections.OrderedDict()  # DataLoader workers open their own readers
        return state

    def __del__(self) -> None:
        try:  # noqa: SIM105 - module globals may already be gone at interpreter exit
            if self._pid == os.getpid():  # a fork's copy must not close the parent's decoders
                for r in self._readers.values():
                    r.close()
        except Exception:
            pass
