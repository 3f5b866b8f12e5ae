"""Feature adapters for the skill paper's Kinetics backbones: Video Swin (RGB, masks) and I3D (flow).

Besides the common adapter attributes each declares what it takes, so :mod:`surgkit.prep.features`
can prepare the input:

* ``in_channels``: 3 (images) or 2 (flow x/y, I3D flow);
* ``input_norm``: ``"imagenet"`` (Video Swin: (x/255 - mean)/std with the MMAction2 mean
  (123.675, 116.28, 103.53) and std (58.395, 57.12, 57.375), i.e. ImageNet's) or
  ``"minus_one_one"`` (I3D: RGB x/127.5 - 1; flow clipped to ±bound and divided by it, which for
  surgkit's 8-bit maps u = round((f + b)·255 / 2b) is again u/127.5 - 1).

Features: Video Swin — the final LayerNorm map averaged over (T', H', W') (1024-d for Swin-B,
768 for T/S); I3D — Mixed_5c average-pooled (2, 7, 7) and averaged over time (1024-d).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from surgkit.backbones.registry import weights_sha256


class _KineticsBackbone:
    input_norm = "imagenet"

    def __init__(self, model: Any, name: str, device: str = "cpu"):
        self.model = model.eval().to(device)
        for p in self.model.parameters():
            p.requires_grad_(False)
        cfg = model.config
        self.name, self.device = name, device
        self.num_frames = int(cfg.num_frames)
        self.image_size = (int(cfg.image_size), int(cfg.image_size))
        self.sha256 = weights_sha256(self.model)

    def encode(self, clips: Any) -> Any:
        """[B, T, C, H, W] normalised clips -> [B, D] float32 features."""
        import torch

        with torch.inference_mode():
            x = clips.to(self.device).permute(0, 2, 1, 3, 4).contiguous()
            return self.model.features(x).float().cpu()


class VideoSwinBackbone(_KineticsBackbone):
    """A :class:`~surgkit.backbones.videoswin.VideoSwinModel`; features = pooled final map."""

    input_norm = "imagenet"

    def __init__(self, model: Any, name: str = "videoswin", device: str = "cpu"):
        super().__init__(model, name, device)
        self.in_channels = int(model.config.in_chans)
        self.feature_dim = int(model.config.num_features)


class I3DBackbone(_KineticsBackbone):
    """An :class:`~surgkit.backbones.i3d.InceptionI3d` (RGB or 2-channel flow), BatchNorm folded."""

    input_norm = "minus_one_one"

    def __init__(self, model: Any, name: str = "i3d", device: str = "cpu"):
        super().__init__(model, name, device)
        self.model.fuse()
        self.in_channels = int(model.config.in_channels)
        self.feature_dim = int(model.config.feature_dim)


def load_videoswin_folder(path: Path, device: str = "cpu") -> VideoSwinBackbone:
    """Registry loader for ``model_type: videoswin`` folders (strict)."""
    from surgkit.backbones.videoswin import VideoSwinModel

    return VideoSwinBackbone(VideoSwinModel.from_pretrained(path), str(Path(path).resolve()), device)


def load_i3d_folder(path: Path, device: str = "cpu") -> I3DBackbone:
    """Registry loader for ``model_type: i3d`` folders (strict)."""
    from surgkit.backbones.i3d import InceptionI3d

    return I3DBackbone(InceptionI3d.from_pretrained(path), str(Path(path).resolve()), device)


def from_model(model: Any, name: str | None = None, device: str = "cpu") -> VideoSwinBackbone | I3DBackbone:
    """The adapter of an in-memory Video Swin or I3D model."""
    from surgkit.backbones.i3d import InceptionI3d

    if isinstance(model, InceptionI3d):
        return I3DBackbone(model, name or "i3d", device)
    return VideoSwinBackbone(model, name or "videoswin", device)
