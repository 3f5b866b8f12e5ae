"""The SurgVISTA encoder of :mod:`surgkit.video` as a feature backbone, resolved lazily.

The architecture stays in :mod:`surgkit.video` (its config, layers, ``SurgVistaEncoder``); this
adapter imports it only when a SurgVISTA folder is opened, so importing :mod:`surgkit.backbones`
(and :mod:`surgkit.prep`) never imports :mod:`surgkit.video`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from surgkit.backbones.registry import weights_sha256


class SurgVistaBackbone:
    """A surgkit SurgVISTA folder (``surgkit.video``): encoder, pre-training or classifier model.

    Features: the encoder's mean over all tokens (pre-training/encoder folders) or the
    classifier's ``fc_norm(mean)`` (classifier folders). surgkit.video takes B x C x T x H x W
    clips, so the [B, T, C, H, W] input is permuted.
    """

    def __init__(self, folder: str | Path, device: str = "cpu"):
        from surgkit.video.model import load_model

        model = load_model(folder, map_location=device).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        if hasattr(model, "features"):
            self._fn = model.features
        elif hasattr(model, "pooled"):
            self._fn = model.pooled
        else:
            self._fn = model.encoder.pooled
        cfg = model.config
        self.model, self.device, self.name = model, device, str(Path(folder).resolve())
        self.num_frames = int(cfg.num_frames)
        self.image_size = (int(cfg.img_size), int(cfg.img_size))
        self.feature_dim = int(cfg.embed_dim)
        self.sha256 = weights_sha256(model)

    def encode(self, clips: Any) -> Any:
        import torch

        with torch.inference_mode():
            return self._fn(clips.to(self.device).permute(0, 2, 1, 3, 4)).float().cpu()


def save_random_encoder(folder: str | Path, seed: int = 0, **config: Any) -> Path:
    """A randomly initialised SurgVISTA encoder (``SurgVistaEncoderConfig(**config)``) saved as a
    model folder; a stand-in for a pretrained one in demos and tests. Kept when it already exists."""
    import torch

    from surgkit.video.config import SurgVistaEncoderConfig
    from surgkit.video.model import SurgVistaEncoder

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        torch.manual_seed(seed)
        SurgVistaEncoder(SurgVistaEncoderConfig(**config)).eval().save_pretrained(folder)
    return folder
