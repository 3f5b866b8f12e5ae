"""The feature-backbone registry: one adapter interface, folders opened by their ``model_type``.

A backbone adapter has ``name``, ``num_frames`` (clip length it takes), ``image_size`` (H, W),
``feature_dim``, ``sha256`` (a fingerprint of its weights) and ``encode(clips) -> [B, D]`` for
float clips [B, T, C, H, W] that are already normalised. Optional: ``in_channels`` (3, or 2 for
flow x/y; default 3) and ``input_norm`` (``"imagenet"``, default, or ``"minus_one_one"``).
:mod:`surgkit.prep.features` does everything else (resizing, normalisation, segmenting, padding).

Loaders are registered by ``model_type`` (the key in a folder's ``config.json``) either as a
callable ``(path, device) -> adapter`` or as a ``"module:attribute"`` string resolved on first use,
so this package imports no model family it does not need: the SurgVISTA encoder lives in
:mod:`surgkit.video` and is resolved by name, never imported here at module load.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from surgkit.errors import SurgkitError


@runtime_checkable
class VideoBackbone(Protocol):
    name: str
    num_frames: int
    image_size: tuple[int, int]
    feature_dim: int
    sha256: str | None

    def encode(self, clips: Any) -> Any:  # [B, T, C, H, W] float -> [B, D]
        ...


def weights_sha256(module: Any) -> str:
    """SHA-256 over the module's state dict (names and raw bytes in name order): a fingerprint of
    the weights that does not depend on the file format they were loaded from."""
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        t = tensor.detach().cpu().contiguous()
        h.update(str(t.dtype).encode())
        h.update(t.view(-1).view(dtype=torch.uint8).numpy().tobytes())
    return h.hexdigest()


INPUT_NORMS = ("imagenet", "minus_one_one")


def input_channels(backbone: VideoBackbone) -> int:
    """3 (images) unless the adapter declares ``in_channels`` 2 (flow x/y)."""
    return int(getattr(backbone, "in_channels", 3))


def input_norm(backbone: VideoBackbone) -> str:
    """The adapter's ``input_norm`` (default ``imagenet``)."""
    norm = str(getattr(backbone, "input_norm", "imagenet"))
    if norm not in INPUT_NORMS:
        raise SurgkitError(
            f"backbone {backbone.name}: unknown input_norm '{norm}' (choose {', '.join(INPUT_NORMS)})"
        )
    if norm == "imagenet" and input_channels(backbone) != 3:
        raise SurgkitError(f"backbone {backbone.name}: ImageNet normalisation needs 3 input channels")
    return norm


def describe_backbone(backbone: VideoBackbone) -> dict[str, Any]:
    """What the store records about the backbone of a modality."""
    return {
        "name": backbone.name,
        "sha256": backbone.sha256,
        "num_frames": int(backbone.num_frames),
        "image_size": list(backbone.image_size),
        "feature_dim": int(backbone.feature_dim),
        "in_channels": input_channels(backbone),
        "input_norm": input_norm(backbone),
    }


Loader = Callable[[Path, str], VideoBackbone]

# model_type -> loader; strings are "module:attribute", imported on first use
_LOADERS: dict[str, Loader | str] = {
    "videomae": "surgkit.backbones.videomae:load_videomae_folder",
    "surgvista": "surgkit.backbones.surgvista:SurgVistaBackbone",
    "surgvista-encoder": "surgkit.backbones.surgvista:SurgVistaBackbone",
    "surgvista-classifier": "surgkit.backbones.surgvista:SurgVistaBackbone",
    "videoswin": "surgkit.backbones.kinetics:load_videoswin_folder",
    "i3d": "surgkit.backbones.kinetics:load_i3d_folder",
}


def register_backbone(model_type: str, loader: Loader | str) -> None:
    """Make ``load_backbone`` open folders whose config.json has this ``model_type``.

    ``loader`` is ``(path, device) -> adapter`` or a ``"module:attribute"`` string naming one."""
    _LOADERS[model_type] = loader


def known_model_types() -> list[str]:
    """The ``model_type`` values :func:`load_backbone` opens."""
    return sorted(_LOADERS)


def _resolve(model_type: str) -> Loader | None:
    loader = _LOADERS.get(model_type)
    if isinstance(loader, str):
        module, _, attr = loader.partition(":")
        loader = getattr(importlib.import_module(module), attr)
        _LOADERS[model_type] = loader
    return loader


def load_backbone(
    path_or_id: str | Path | VideoBackbone, device: str = "cpu", trust_pickle: bool = False
) -> VideoBackbone:
    """An adapter for a model folder (by its config's ``model_type``), a published Video Swin / I3D
    checkpoint file (``.safetensors``, or ``.pth`` with ``trust_pickle``), an HF id, or an adapter."""
    if not isinstance(path_or_id, (str, Path)):
        if isinstance(path_or_id, VideoBackbone):
            return path_or_id
        raise SurgkitError(f"not a backbone adapter: {type(path_or_id).__name__}")
    path = Path(path_or_id)
    if path.is_dir():
        cfg_path = path / "config.json"
        if not cfg_path.is_file():
            raise SurgkitError(f"{path}: no config.json (expected an HF/surgkit model folder)")
        from surgkit.utils.modeling import read_model_config

        model_type = read_model_config(cfg_path).get("model_type", "")
        loader = _resolve(model_type)
        if loader is None:
            raise SurgkitError(
                f"{cfg_path}: no feature backbone for model_type '{model_type}' "
                f"(known: {', '.join(known_model_types())}; add one with register_backbone)"
            )
        return loader(path, device)
    if path.is_file():
        from surgkit.backbones.kinetics import from_model
        from surgkit.backbones.published import load_published

        return from_model(load_published(path, trust_pickle), str(path.resolve()), device)
    text = str(path_or_id)
    if (
        path.is_absolute()
        or text.startswith((".", "~"))
        or path.suffix in (".pth", ".pt", ".safetensors", ".bin")
    ):
        raise SurgkitError(f"{path}: no such backbone folder or checkpoint file")
    # an HF hub id: only VideoMAE-style models are supported without a local config to inspect
    from surgkit.backbones.videomae import VideoMAEBackbone

    try:
        return VideoMAEBackbone.from_pretrained(str(path_or_id), device)
    except OSError as e:
        raise SurgkitError(f"cannot load backbone '{path_or_id}': {e}") from e
