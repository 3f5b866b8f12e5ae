"""transformers ``VideoMAEModel`` as a feature backbone.

The features are the mean of the last hidden state over all tokens, i.e. VideoMAE's
``use_mean_pooling`` head input before ``fc_norm``. A folder exported by ``surgkit video convert
to-hf`` is opened through :func:`surgkit.video.hf.load_hf_videomae` (resolved lazily), so it gives
exactly the features of the surgkit folder it came from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from surgkit.backbones.registry import weights_sha256


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

        if path.is_dir():
            from surgkit.utils.modeling import check_hf_folder, check_hf_shapes

            check_hf_folder(path)  # remote code, pickles, broken weights: refused before transformers
            check_hf_shapes(path, VideoMAEModel)  # every tensor's shape, on the meta device
        from transformers.utils import logging as hf_logging

        level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()  # a mismatch is reported once, by surgkit, in one line
        hf_logging.disable_progress_bar()
        try:
            model = VideoMAEModel.from_pretrained(str(path_or_id), use_safetensors=True)
        except Exception as e:  # noqa: BLE001 - untrusted folder: any failure is the folder's
            from surgkit.errors import SurgkitError

            first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
            raise SurgkitError(f"{path_or_id}: cannot load this VideoMAE model ({first})") from None
        finally:
            hf_logging.set_verbosity(level)
            if bars:
                hf_logging.enable_progress_bar()
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


def load_videomae_folder(path: Path, device: str = "cpu") -> VideoMAEBackbone:
    """Registry loader for ``model_type: videomae`` folders."""
    return VideoMAEBackbone.from_pretrained(path, device)
