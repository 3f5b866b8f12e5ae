"""Mask source (d): SAM 2 video propagation through transformers ``Sam2VideoModel``, streamed.

Prompts come per video from a small JSON file (the coordinates are pixels of the *extracted*
frames, ``frame`` is the index of an extracted frame, as ``surgkit prep frames`` numbers them)::

    {"classes": {"1": "tool", "2": "suture"},                 # optional names of the class ids
     "videos": {"Suturing_B001_capture1": [
         {"frame": 0, "object": 1, "class": 1, "box": [x0, y0, x1, y1]},
         {"frame": 0, "object": 2, "class": 2, "points": [[x, y], [x, y]], "labels": [1, 0]},
         {"frame": 40, "object": 1, "class": 1, "box": [x0, y0, x1, y1]}]}}   # a correction

An object is one tracked instance; ``class`` (default 1) is the label written for it. A prompt is
a box, positive/negative points (labels 1/0), or both (the box comes first, as SAM 2 requires).

Streaming (nothing of the whole video is held): frames are read chunk by chunk, each frame is
resized to the model's square input (``config.image_size``; area/bilinear), scaled to [0, 1] and
ImageNet-normalised (the transformers SAM 2 processors do the same but need torchvision), handed
to ``Sam2VideoModel(inference_session, frame=...)``, and the session forgets every frame and
per-frame output older than the memory the model can attend to (``num_maskmem`` mask memories,
``max_object_pointers_in_encoder`` object pointers; prompted frames are kept). Tracking runs
forward: an object is background before its first prompt. Per pixel, the object with the highest
mask logit above ``threshold`` (logits upsampled bilinearly to the frame) gives the class.
A video that stopped half-way restarts from its first frame (SAM 2's memory is not saved).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from surgkit.errors import DataFormatError, SurgkitError
from surgkit.prep.masks import IMAGENET_MEAN, IMAGENET_STD
from surgkit.utils.inputs import as_dict, as_float, as_int, as_list, get, key_path, read_json


@dataclasses.dataclass(frozen=True)
class Prompt:
    frame: int
    object: int
    cls: int = 1
    box: tuple[float, float, float, float] | None = None
    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()


def parse_prompts(data: Any, path: str | Path = "prompts") -> dict[str, list[Prompt]]:
    """{video id: [Prompt, ...]} of a prompts document (see the module docstring); every problem is
    a :class:`DataFormatError` naming the file and the key path."""
    videos = as_dict(get(data, "videos", path), path, "videos")
    out: dict[str, list[Prompt]] = {}
    for vid, items in videos.items():
        where = key_path("videos", vid)
        prompts = []
        for i, item in enumerate(as_list(items, path, where)):
            k = key_path(where, i)
            as_dict(item, path, k)
            box = item.get("box")
            if box is not None:
                box = tuple(
                    as_float(v, path, key_path(key_path(k, "box"), j))
                    for j, v in enumerate(as_list(box, path, key_path(k, "box")))
                )
                if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
                    raise DataFormatError(
                        f"{key_path(k, 'box')}: expected [x0, y0, x1, y1] with x1 > x0, y1 > y0", path=path
                    )
            points = tuple(
                tuple(
                    as_float(c, path, key_path(key_path(key_path(k, "points"), j), n))
                    for n, c in enumerate(as_list(p, path, key_path(key_path(k, "points"), j)))
                )
                for j, p in enumerate(as_list(item.get("points", []), path, key_path(k, "points")))
            )
            if any(len(p) != 2 for p in points):
                raise DataFormatError(f"{key_path(k, 'points')}: each point is [x, y]", path=path)
            labels = tuple(
                as_int(v, path, key_path(key_path(k, "labels"), j), lo=0, hi=1)
                for j, v in enumerate(
                    as_list(item.get("labels", [1] * len(points)), path, key_path(k, "labels"))
                )
            )
            if len(labels) != len(points):
                raise DataFormatError(
                    f"{key_path(k, 'labels')}: {len(labels)} labels for {len(points)} points", path=path
                )
            if box is None and not points:
                raise DataFormatError(f"{k}: a prompt needs a box or points", path=path)
            prompts.append(
                Prompt(
                    frame=as_int(get(item, "frame", path, k), path, key_path(k, "frame"), lo=0),
                    object=as_int(get(item, "object", path, k), path, key_path(k, "object"), lo=0),
                    cls=as_int(item.get("class", 1), path, key_path(k, "class"), lo=1, hi=255),
                    box=box,
                    points=points,
                    labels=labels,
                )
            )
        out[str(vid)] = sorted(prompts, key=lambda p: p.frame)
    return out


def read_prompts(path: str | Path) -> dict[str, list[Prompt]]:
    return parse_prompts(read_json(path, "SAM 2 prompts file"), path)


class Sam2Masks:
    """Source (d): ``Sam2VideoModel`` (a model, an HF folder or id) prompted per video."""

    def __init__(
        self,
        model: Any,
        prompts: dict[str, list[Prompt]] | str | Path,
        *,
        device: str = "cpu",
        threshold: float = 0.0,
        name: str | None = None,
        prompts_name: str | None = None,
    ):
        import torch

        if isinstance(model, (str, Path)):
            from transformers import Sam2VideoModel

            name = name or str(model)
            try:
                model = Sam2VideoModel.from_pretrained(str(model))
            except (OSError, ValueError) as e:
                raise SurgkitError(f"cannot load SAM 2 video model '{model}': {e}") from None
        self.model = model.eval().to(device)
        if isinstance(prompts, (str, Path)):
            prompts_name = prompts_name or str(prompts)
            prompts = read_prompts(prompts)
        self.prompts = dict(prompts)
        self.name, self.prompts_name = name or type(model).__name__, prompts_name or "in-memory prompts"
        self.device, self.threshold = device, float(threshold)
        self.size = int(model.config.image_size)
        cfg = model.config
        # frame k attends to the mask memories of k-1 .. k-(num_maskmem-1) and the object pointers of
        # k-1 .. k-(max_object_pointers-1): older frames are dropped (tested against the offline path)
        self.keep = max(int(cfg.num_maskmem), int(cfg.max_object_pointers_in_encoder)) - 1
        self._mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def describe(self) -> dict[str, Any]:
        from surgkit.utils.io import sha256_json

        return {
            "source": "sam2",
            "model": self.name,
            "prompts": self.prompts_name,
            "prompts_sha256": sha256_json(
                {v: [dataclasses.asdict(p) for p in ps] for v, ps in sorted(self.prompts.items())}
            ),
            "input_size": self.size,
            "threshold": self.threshold,
            "memory_frames": self.keep,
        }

    def tracker(self, video_id: str, height: int, width: int, num_frames: int) -> Sam2Tracker:
        """A fresh streaming state for one video of ``num_frames`` frames of ``height`` x ``width``."""
        prompts = self.prompts.get(video_id)
        if not prompts:
            raise SurgkitError(f"{self.prompts_name}: no SAM 2 prompts for video '{video_id}'")
        late = [p.frame for p in prompts if p.frame >= num_frames]
        if late:
            raise SurgkitError(
                f"{self.prompts_name}: video '{video_id}' has {num_frames} frames, prompts at frames {late}"
            )
        return Sam2Tracker(self, prompts, height, width)


class Sam2Tracker:
    """The streaming state of one video: feed consecutive chunks of frames, get class-id masks."""

    def __init__(self, source: Sam2Masks, prompts: list[Prompt], height: int, width: int):
        import torch
        from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

        self.src, self.height, self.width = source, int(height), int(width)
        self.session = Sam2VideoInferenceSession(
            video_height=self.height, video_width=self.width, inference_device=source.device,
            inference_state_device=source.device, video_storage_device=source.device, dtype=torch.float32,
        )  # fmt: skip
        self.by_frame: dict[int, list[Prompt]] = {}
        for p in prompts:
            self.by_frame.setdefault(p.frame, []).append(p)
        self.classes: dict[int, int] = {}
        self.next_frame = 0

    def _pixels(self, frame: np.ndarray) -> Any:
        import torch

        from surgkit.prep.transforms import resize

        x = torch.from_numpy(resize(frame, self.src.size, self.src.size)).permute(2, 0, 1).float().div_(255.0)
        return (x - self.src._mean) / self.src._std

    def _add_prompts(self, k: int) -> None:
        import torch

        sx, sy = self.src.size / self.width, self.src.size / self.height
        objs = []
        for p in self.by_frame.get(k, []):
            coords, labels = [], []
            if p.box is not None:  # SAM 2 encodes a box as two corner points with labels 2 and 3
                coords += [(p.box[0], p.box[1]), (p.box[2], p.box[3])]
                labels += [2, 3]
            coords += list(p.points)
            labels += list(p.labels)
            xy = torch.tensor(coords, dtype=torch.float32) * torch.tensor([sx, sy])
            idx = self.session.obj_id_to_idx(p.object)
            self.session.add_point_inputs(idx, k, {
                "point_coords": xy.view(1, 1, -1, 2), "point_labels": torch.tensor(labels, dtype=torch.int32).view(1, 1, -1)
            })  # fmt: skip
            self.session.remove_mask_inputs(idx, k)
            self.classes[p.object] = p.cls
            objs.append(p.object)
        if objs:
            self.session.obj_with_new_inputs = objs

    def _forget(self, k: int) -> None:
        """Drop frames and non-prompted outputs the model can no longer attend to (prompted frames'
        outputs live in ``cond_frame_outputs`` and stay)."""
        old = k - self.src.keep
        if old < 0:
            return
        self.session.processed_frames.pop(old, None)
        for out in self.session.output_dict_per_obj.values():
            out["non_cond_frame_outputs"].pop(old, None)
        for tracked in self.session.frames_tracked_per_obj.values():
            tracked.pop(old, None)

    def predict(self, frames: np.ndarray) -> np.ndarray:
        """uint8 [n, H, W] class ids for the next ``n`` frames of the video."""
        import torch
        import torch.nn.functional as F

        out = np.zeros((len(frames), self.height, self.width), np.uint8)
        for i, frame in enumerate(frames):
            k = self.next_frame
            self.next_frame += 1
            self._add_prompts(k)
            if self.session.get_obj_num() == 0:  # before the first prompt: background
                continue
            with torch.inference_mode():
                res = self.src.model(inference_session=self.session, frame=self._pixels(frame), frame_idx=k)
                logits = F.interpolate(
                    res.pred_masks.float(), (self.height, self.width), mode="bilinear", align_corners=False
                )[:, 0]
            best, which = logits.max(0)
            cls = torch.tensor([self.classes.get(o, 1) for o in res.object_ids], dtype=torch.uint8)
            out[i] = torch.where(best > self.src.threshold, cls[which], 0).numpy()
            self._forget(k)
        return out


def tiny_sam2(
    image_size: int = 64, seed: int = 0, num_maskmem: int = 7, max_object_pointers: int = 16
) -> Any:
    """A randomly initialised, very small ``Sam2VideoModel`` (Hiera of width 12, 64² input): for
    tests and demos of the plumbing only, it segments nothing meaningful."""
    import torch
    from transformers import Sam2HieraDetConfig, Sam2VideoConfig, Sam2VideoModel, Sam2VisionConfig

    s = int(image_size)
    if s % 32:
        raise SurgkitError(f"tiny SAM 2 input size must be a multiple of 32, got {s}")
    h = 128  # SAM 2 splits object pointers into memory-width (64) tokens: hidden must be a multiple > 64
    hiera = Sam2HieraDetConfig(
        hidden_size=12, image_size=s, patch_stride=4, patch_kernel_size=7, patch_padding=3,
        blocks_per_stage=[1, 1, 2, 1], embed_dim_per_stage=[12, 24, 48, 96],
        window_positional_embedding_background_size=[4, 4], global_attention_blocks=[3],
    )  # fmt: skip
    vision = Sam2VisionConfig(
        backbone_config=hiera, backbone_channel_list=[96, 48, 24, 12],
        backbone_feature_sizes=[[s // 4, s // 4], [s // 8, s // 8], [s // 16, s // 16]], fpn_hidden_size=h,
    )  # fmt: skip
    config = Sam2VideoConfig(
        vision_config=vision,
        prompt_encoder_config={"hidden_size": h, "image_size": s, "patch_size": 16, "mask_input_channels": 16},
        mask_decoder_config={"hidden_size": h, "mlp_dim": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                             "iou_head_hidden_dim": 32},
        image_size=s, num_maskmem=num_maskmem, max_object_pointers_in_encoder=max_object_pointers,
        memory_attention_hidden_size=h, memory_attention_num_layers=1, memory_attention_feed_forward_hidden_size=64,
        memory_attention_rope_feat_sizes=[s // 16, s // 16], memory_encoder_hidden_size=h,
        mask_downsampler_embed_dim=h, memory_fuser_embed_dim=h, memory_fuser_intermediate_dim=64,
    )  # fmt: skip
    torch.manual_seed(seed)
    return Sam2VideoModel(config).eval()


def prompts_from_labels(labels: np.ndarray, frame: int, min_pixels: int = 4) -> list[Prompt]:
    """Box prompts from a class-id map: one object per class present (object id = class id), its
    box the bounding box of the class's pixels (x1, y1 exclusive). For prompting SAM 2 from an
    annotated frame, e.g. the synthetic world's ground truth."""
    out = []
    for c in np.unique(labels):
        if c == 0:
            continue
        ys, xs = np.nonzero(labels == c)
        if len(xs) < min_pixels:
            continue
        box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        out.append(Prompt(frame=int(frame), object=int(c), cls=int(c), box=box))
    return out
