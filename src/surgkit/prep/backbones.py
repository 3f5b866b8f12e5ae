"""Frozen video backbones for segment features, behind one small adapter interface.

A backbone adapter has ``name``, ``num_frames`` (clip length it takes), ``image_size`` (H, W),
``feature_dim``, ``sha256`` (a fingerprint of its weights) and ``encode(clips) -> [B, D]`` for
float clips [B, T, 3, H, W] that are already ImageNet-normalised. :mod:`surgkit.prep.features`
does everything else (resizing, normalisation, segmenting, padding).

Built in: :class:`VideoMAEBackbone` (transformers ``VideoMAEModel``; the features are the mean of
the last hidden state over all tokens, i.e. VideoMAE's ``use_mean_pooling`` head input before
``fc_norm``; a folder exported by ``surgkit video convert to-hf`` is opened through
:func:`surgkit.video.hf.load_hf_videomae`, so it gives exactly the features of the surgkit folder) and :class:`SurgVistaBackbone` (surgkit.video SurgVISTA folders, by ``model_type``).
Other models plug in with :func:`register_backbone` keyed by the ``model_type`` in their
``config.json``, or by passing any object with this interface to
:func:`surgkit.prep.features.extract`.
"""

from __future__ import annotations

import hashlib
import json
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

    def encode(self, clips: Any) -> Any:  # [B, T, 3, H, W] float -> [B, D]
        ...


def weights_sha256(module: Any) -> str:
    """SHA-256 over the module's state dict (names and raw bytes in name order): a fingerprint of
    the weights that does not depend on the file format they were loaded from."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        t = tensor.detach().cpu().contiguous()
        h.update(str(t.dtype).encode())
        h.update(t.view(-1).view(dtype=__import__("torch").uint8).numpy().tobytes())
    return h.hexdigest()


class VideoMAEBackbone:
    """transformers ``VideoMAEModel``, frozen, mean-pooled over all tokens.

    ``pool_norm`` (optional): a LayerNorm applied to the mean, i.e. the ``fc_norm`` of a surgkit
    classifier exported to HF, so that its features are those of :class:`SurgVistaBackbone`.
    """

    def __init__(self, model: Any, name: str = "videomae", device: str = "cpu", pool_norm: Any = None):
        self.model = model.eval().to(device)
        self.pool_norm = None if pool_norm is None else pool_norm.eval().to(device)
        for p in self.model.parameters():
            p.requires_grad_(False)
        cfg = model.config
        size = cfg.image_size
        self.image_size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        self.num_frames = int(cfg.num_frames)
        self.feature_dim = int(cfg.hidden_size)
        self.name = name
        self.device = device
        self.sha256 = weights_sha256(_FullState(self.model, self.pool_norm))

    @classmethod
    def from_pretrained(cls, path_or_id: str | Path, device: str = "cpu") -> VideoMAEBackbone:
        """An HF id or folder; a surgkit-exported folder (config ``surgkit_position_table``) is read
        with :func:`surgkit.video.hf.load_hf_videomae`, which restores the SurgVISTA 3-D sin-cos
        position table and ``fc_norm`` eps that a bare ``from_pretrained`` loses."""
        path = Path(path_or_id)
        if path.is_dir() and _is_surgkit_export(path):
            from surgkit.video.hf import load_hf_videomae

            model = load_hf_videomae(path)
            if hasattr(model, "videomae"):  # exported classifier: features = fc_norm(mean), as surgkit
                return cls(model.videomae, name=str(path.resolve()), device=device, pool_norm=model.fc_norm)
            return cls(model, name=str(path.resolve()), device=device)
        from transformers import VideoMAEModel

        model = VideoMAEModel.from_pretrained(str(path_or_id))
        name = str(path.resolve()) if path.is_dir() else str(path_or_id)
        return cls(model, name=name, device=device)

    def encode(self, clips: Any) -> Any:
        import torch

        with torch.inference_mode():
            out = self.model(pixel_values=clips.to(self.device))
            pooled = out.last_hidden_state.mean(dim=1)
            if self.pool_norm is not None:
                pooled = self.pool_norm(pooled)
            return pooled.float().cpu()


def _is_surgkit_export(folder: Path) -> bool:
    """True when ``folder/config.json`` was written by surgkit's HF export."""
    try:
        return "surgkit_position_table" in json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False


class _FullState:
    """What determines the features: the model's state dict, the position table HF keeps outside
    it (``embeddings.position_embeddings``, 1-D or surgkit's 3-D table) and the optional ``fc_norm``."""

    def __init__(self, model: Any, norm: Any = None):
        self.model, self.norm = model, norm

    def state_dict(self) -> dict[str, Any]:
        state = dict(self.model.state_dict())
        table = getattr(getattr(self.model, "embeddings", None), "position_embeddings", None)
        if table is not None and "embeddings.position_embeddings" not in state:
            state["embeddings.position_embeddings"] = table
        if self.norm is not None:
            state.update({"fc_norm." + k: v for k, v in self.norm.state_dict().items()})
        return state


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


_LOADERS: dict[str, Callable[[Path, str], VideoBackbone]] = {
    "videomae": lambda path, device: VideoMAEBackbone.from_pretrained(path, device),
    "surgvista": SurgVistaBackbone,
    "surgvista-encoder": SurgVistaBackbone,
    "surgvista-classifier": SurgVistaBackbone,
}


def register_backbone(model_type: str, loader: Callable[[Path, str], VideoBackbone]) -> None:
    """Make ``load_backbone`` open folders whose config.json has this ``model_type``."""
    _LOADERS[model_type] = loader


def load_backbone(path_or_id: str | Path | VideoBackbone, device: str = "cpu") -> VideoBackbone:
    """An adapter for a model folder (by its config's ``model_type``), an HF id, or an adapter."""
    if not isinstance(path_or_id, (str, Path)):
        if isinstance(path_or_id, VideoBackbone):
            return path_or_id
        raise SurgkitError(f"not a backbone adapter: {type(path_or_id).__name__}")
    path = Path(path_or_id)
    if path.is_dir():
        cfg_path = path / "config.json"
        if not cfg_path.is_file():
            raise SurgkitError(f"{path}: no config.json (expected an HF/surgkit model folder)")
        model_type = json.loads(cfg_path.read_text()).get("model_type", "")
        loader = _LOADERS.get(model_type)
        if loader is None:
            raise SurgkitError(
                f"{cfg_path}: no feature backbone for model_type '{model_type}' "
                f"(known: {', '.join(sorted(_LOADERS))}; add one with register_backbone)"
            )
        return loader(path, device)
    # an HF hub id: only VideoMAE-style models are supported without a local config to inspect
    try:
        return VideoMAEBackbone.from_pretrained(str(path_or_id), device)
    except OSError as e:
        raise SurgkitError(f"cannot load backbone '{path_or_id}': {e}") from e
