"""surgkit.backbones: frozen video feature backbones behind one registry, below prep, video and skill.

* :mod:`~surgkit.backbones.registry` — the adapter interface (:class:`VideoBackbone`),
  :func:`load_backbone` (a folder by its ``config.json`` ``model_type``, an HF id, or an adapter),
  :func:`register_backbone`, :func:`weights_sha256`;
* :mod:`~surgkit.backbones.videomae` — transformers ``VideoMAEModel`` (and surgkit HF exports);
* :mod:`~surgkit.backbones.surgvista` — the SurgVISTA encoder of :mod:`surgkit.video`, resolved lazily.

Documentation: docs/prep.md. This package file does not import torch.
"""

from surgkit.backbones.registry import (
    VideoBackbone,
    known_model_types,
    load_backbone,
    register_backbone,
    weights_sha256,
)

__all__ = ["VideoBackbone", "known_model_types", "load_backbone", "register_backbone", "weights_sha256"]


def __getattr__(name: str):  # lazy adapters: VideoMAEBackbone, SurgVistaBackbone
    if name == "VideoMAEBackbone":
        from surgkit.backbones.videomae import VideoMAEBackbone

        return VideoMAEBackbone
    if name == "SurgVistaBackbone":
        from surgkit.backbones.surgvista import SurgVistaBackbone

        return SurgVistaBackbone
    raise AttributeError(f"module 'surgkit.backbones' has no attribute {name!r}")
