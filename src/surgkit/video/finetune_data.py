"""Fine-tuning clips for SurgVISTA's downstream protocols (spec surgvista.md §8-9).

:class:`FinetuneClips` extends :class:`surgkit.data.torch.ClipDataset` (sample lists, lazy frame
readers, online clip indices) with what the official downstream datasets do on top:

* **labels per protocol**: phase id (label of the clip's **last** frame), 100-d triplet multi-hot,
  action class, and three CVS forms — ``criteria`` (3 criteria for BCE; Cholec80-CVS 0/1/2 scores
  divided by 2), ``4class`` (Endoscapes: the number of criteria met, each criterion's annotator mean
  rounded half-even; a reconstruction of the authors' unpublished ``labels/<video>.txt``) and
  ``6class`` (Cholec80-CVS: the CVS score = sum of the three 0/1/2 criteria; score 6 dropped,
  as ``generate_txt_cholec80csv.py`` does);
* **clips**: online (16 frames at interval 4 on the 1-fps timeline, ending at the labelled frame;
  the earliest frame repeats near the start), or 16 frames spread evenly over a labelled interval
  (Cholec80-CVS clips, short ones padded with their last frame) or over the whole video (action);
* **train transform** (:mod:`surgkit.video.augment`): frames read at the cache's working size
  (short side ``img·320/224``, aspect kept), RandAugment, normalise, random resized crop + flip to
  the model size, random erasing; each sample's randomness from ``(seed, epoch, index)``;
* **eval transform**: resize straight to ``img × img`` (aspect not kept), normalise.

Items carry their ``index`` so predictions gathered from several processes map back to
``(video, frame)`` exactly once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from surgkit.data.torch import ClipDataset
from surgkit.errors import SurgkitError
from surgkit.video.augment import RandAugmentSpec, rand_augment_clip, random_erase_cube, resized_crop_flip
from surgkit.video.clips import cache_short_side, even_clip_steps
from surgkit.video.masking import sample_seed

CVS_FORMS = ("criteria", "4class", "6class")
DATA_TASKS = {"phase": "phase", "action": "clip", "triplet": "triplet", "cvs": "cvs"}


def cvs_label(criteria, scale: str, form: str):
    """The target of one CVS annotation under ``form`` (None = the sample is dropped)."""
    c = np.asarray(criteria, dtype=np.float64)
    if form == "criteria":
        return (c / 2 if scale == "0-2" else c).astype(np.float32)
    if form == "4class":
        met = c >= 2 if scale == "0-2" else np.round(c) >= 1  # fully achieved / annotator majority
        return int(met.sum())
    if form == "6class":
        if scale != "0-2":
            raise SurgkitError(
                "the 6-class CVS form needs Cholec80-CVS 0/1/2 scores (use form '4class' or 'criteria')"
            )
        score = int(round(float(c.sum())))
        return None if score == 6 else score
    raise SurgkitError(f"unknown CVS form '{form}' (choose from {', '.join(CVS_FORMS)})")


class FinetuneClips(ClipDataset):
    """Clips, labels and the official train/eval transforms for one split (see the module docstring)."""

    def __init__(self, dataset, task: str, video_ids, img_size: int, num_frames: int, interval: int,
                 fps: float = 1.0, train: bool = False, settings: Any = None, cvs_form: str = "criteria",
                 stride: int = 1):  # fmt: skip
        if task not in DATA_TASKS:
            raise SurgkitError(f"unknown task '{task}' (choose from {', '.join(DATA_TASKS)})")
        self.form, self.img_size, self.train, self.settings = cvs_form, img_size, train, settings
        self.epoch = 0
        self.rand_augment = (
            RandAugmentSpec.parse(settings.rand_augment)
            if train and settings and settings.rand_augment
            else None
        )
        super().__init__(dataset, DATA_TASKS[task], video_ids=video_ids, num_frames=num_frames, stride=interval,
                         fps=fps, size=(img_size, img_size), mean=None, std=None, layout="CTHW")  # fmt: skip
        if stride > 1:  # every k-th labelled frame of each video (keeps per-video sequences for the metrics)
            seen: dict[str, int] = {}
            keep = []
            for s in self.samples:
                seen[s[0]] = seen.get(s[0], -1) + 1
                if seen[s[0]] % stride == 0:
                    keep.append(s)
            self.samples = keep
        from surgkit.video.config import IMAGENET_MEAN, IMAGENET_STD

        self.norm_mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1)
        self.norm_std = torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)

    # -- samples ----------------------------------------------------------------------------------
    def _samples_of(self, video):
        if self.task != "cvs":
            return super()._samples_of(video)
        out = []
        for c in self.ds.cvs:
            if c.video_id != video.id:
                continue
            label = cvs_label(c.criteria, c.scale, self.form)
            if label is None:
                continue
            frame = (int(c.start), int(c.end)) if c.end > c.start else int(c.end)
            out.append((video.id, frame, label))
        return out

    def clip_indices(self, video, reader, frame):
        if not isinstance(frame, tuple):
            return super().clip_indices(video, reader, frame)
        start, end = frame  # an annotated interval: frames spread evenly over it (clip tasks)
        source_fps = reader.info.fps or video.fps or self.fps
        length = max(1, int((end - start) * self.fps / source_fps) + 1)
        steps = even_clip_steps(length, self.num_frames)
        frames = [min(end, start + int(round(s * source_fps / self.fps))) for s in steps]
        idx = [min(self._position(video, reader, f), reader.info.num_frames - 1) for f in frames]
        return idx, len(set(idx)) < len(idx)

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose augmentation draws the next items use (call before iterating)."""
        self.epoch = int(epoch)

    # -- items ------------------------------------------------------------------------------------
    def _read_size(self, reader) -> tuple[int, int]:
        if not self.train:
            return (self.img_size, self.img_size)  # evaluation: straight resize, aspect not kept
        w, h = reader.info.width, reader.info.height
        short = min(cache_short_side(self.img_size), min(w, h))
        return max(1, round(w * short / min(w, h))), max(1, round(h * short / min(w, h)))

    def __getitem__(self, index: int) -> dict[str, Any]:
        vid, frame, label = self.samples[index]
        video = self.ds.videos[vid]
        reader = self._reader(video)
        if self.sampling == "uniform" and not isinstance(
            frame, tuple
        ):  # whole clip (action): official even spread
            idx = even_clip_steps(reader.info.num_frames, self.num_frames)
            padded = reader.info.num_frames < self.num_frames
        else:
            idx, padded = self.clip_indices(video, reader, frame)
        frames = reader.read(idx, size=self._read_size(reader))  # T × H × W × 3 uint8
        s = self.settings
        rng = np.random.default_rng(sample_seed(s.seed if s else 0, self.epoch, index, "finetune-aug"))
        if self.rand_augment is not None:
            frames = rand_augment_clip(frames, self.rand_augment, rng)
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float().div_(255.0)
        x = (x - self.norm_mean) / self.norm_std  # C × T × H × W
        if self.train and s is not None and s.augment:
            x = resized_crop_flip(x, self.img_size, tuple(s.rrc_scale), tuple(s.rrc_ratio), s.hflip, rng)
            x = random_erase_cube(x, s.reprob, rng)
        elif tuple(x.shape[-2:]) != (self.img_size, self.img_size):
            x = torch.nn.functional.interpolate(x, size=(self.img_size, self.img_size), mode="bilinear",
                                                align_corners=False)  # fmt: skip
        y = torch.as_tensor(label, dtype=torch.long if isinstance(label, int) else torch.float32)
        anchor = frame[1] if isinstance(frame, tuple) else frame
        return {"video": x.contiguous(), "label": y, "video_id": vid, "frame": int(anchor), "index": index,
                "padded": padded}  # fmt: skip


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "video": torch.stack([i["video"] for i in items]),
        "label": torch.stack([i["label"] for i in items]),
        "video_id": [i["video_id"] for i in items],
        "frame": torch.tensor([i["frame"] for i in items]),
        "index": torch.tensor([i["index"] for i in items]),
    }
