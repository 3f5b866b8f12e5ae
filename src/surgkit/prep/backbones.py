"""Compatibility re-export: the feature backbones moved to :mod:`surgkit.backbones`."""

from surgkit.backbones.registry import (  # noqa: F401
    VideoBackbone,
    known_model_types,
    load_backbone,
    register_backbone,
    weights_sha256,
)
from surgkit.backbones.surgvista import SurgVistaBackbone  # noqa: F401
from surgkit.backbones.videomae import VideoMAEBackbone  # noqa: F401
