"""The interface every benchmarked VLM implements, so adding a model is one file.

A :class:`VLMAdapter` wraps a dual encoder and exposes:

* ``encode_image(pixels)`` and ``encode_text(prompts)``: unnormalised embeddings (B, D), (N, D);
* ``explain(pixels, choose_targets)``: one forward pass with gradients, the image embeddings and
  one heatmap batch per chosen target (e.g. the predicted class and, for ARS, the predicted verb);
* ``preprocess``: the :class:`~surgkit.grounding.geometry.Preprocess` that turns frames into pixels:
  the model family's ``official`` transform (given by the subclass) or its ``full-frame`` twin,
  chosen with :meth:`VLMAdapter.configure` together with the heatmap settings
  (:class:`~surgkit.grounding.protocol.HeatmapOptions`).

Subclasses implement ``_explainable_forward`` (image embedding with the graph kept, plus the
tensors the method differentiates: conv features for Grad-CAM, attention maps for rollout) and
``_relevance`` (the method itself). The explanation target is
``score_scale * cos(image embedding, t)``; gradients are enabled inside, whatever the caller's
grad mode, and models stay in eval mode and float32 (spec §4).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from surgkit.errors import SurgkitError
from surgkit.grounding.geometry import Preprocess
from surgkit.grounding.protocol import PREPROCESSING, HeatmapOptions

TargetChooser = Callable[[torch.Tensor], Sequence[torch.Tensor]]


class VLMAdapter(abc.ABC):
    """Base class of the benchmarked vision-language models (see module docstring)."""

    heatmap_method: ClassVar[str] = "none"

    def __init__(self, name: str, official: Preprocess, device: str | torch.device = "cpu"):
        self.name = name
        self.official = official
        self.preprocessing = "official"
        self.heatmap_options = HeatmapOptions()
        self.device = torch.device(device)

    @property
    def preprocess(self) -> Preprocess:
        """The transform in use: the official one or its full-frame twin (:meth:`configure`)."""
        return self.official if self.preprocessing == "official" else self.official.full_frame()

    def configure(
        self, preprocessing: str | None = None, heatmap: HeatmapOptions | None = None
    ) -> VLMAdapter:
        """Choose the preprocessing (``official`` or ``full-frame``) and the heatmap settings."""
        if preprocessing is not None:
            if preprocessing not in PREPROCESSING:
                raise SurgkitError(
                    f"unknown preprocessing {preprocessing!r} (choose from {', '.join(PREPROCESSING)})"
                )
            self.preprocessing = preprocessing
        if heatmap is not None:
            self.heatmap_options = heatmap
        return self

    # -- to implement -------------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def probability_scale(self) -> float:
        """Softmax temperature of zero-shot probabilities (SurgVLP 100, CLIP logit_scale.exp())."""

    @property
    @abc.abstractmethod
    def score_scale(self) -> float:
        """Scale of the explanation target score_scale * cos (irrelevant for Grad-CAM)."""

    @abc.abstractmethod
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised pixels -> (B, D) unnormalised image embeddings."""

    @abc.abstractmethod
    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """N prompt strings -> (N, D) unnormalised text embeddings."""

    @abc.abstractmethod
    def _explainable_forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """Image embeddings with the autograd graph kept, and the state ``_relevance`` needs."""

    @abc.abstractmethod
    def _relevance(self, state: Any, score: torch.Tensor, retain_graph: bool) -> torch.Tensor:
        """Heatmaps (B, S, S) in [0, 1] at input resolution for the per-image scalar ``score`` (B,)."""

    def describe_heatmap(self) -> dict[str, Any]:
        """The heatmap method and the settings of it in use (recorded with every result)."""
        return {"method": self.heatmap_method}

    def describe(self) -> dict[str, Any]:
        """Settings recorded in every result file (method, scales, preprocessing)."""
        return {
            "name": self.name,
            "heatmap_method": self.heatmap_method,
            "heatmap": self.describe_heatmap(),
            "score_scale": float(self.score_scale),
            "probability_scale": float(self.probability_scale),
            "preprocessing": self.preprocessing,
            "preprocess": self.preprocess.describe(),
        }

    # -- shared -------------------------------------------------------------------------------
    def _check_grad_allowed(self) -> None:
        if torch.is_inference_mode_enabled():
            raise SurgkitError("heatmaps need autograd: do not call explain() under torch.inference_mode()")

    def explain(
        self, pixels: torch.Tensor, choose_targets: TargetChooser
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One forward pass, then one heatmap batch per target set.

        ``choose_targets`` receives the L2-normalised image embeddings (B, D) (detached) and returns
        a list of (B, D) text embeddings, one row per image; heatmap k explains
        ``score_scale * cos(img_b, targets[k]_b)``. Returns the unnormalised image embeddings
        (detached) and the list of (B, S, S) maps in [0, 1].
        """
        self._check_grad_allowed()
        pixels = pixels.to(self.device, torch.float32)
        with torch.enable_grad():
            emb, state = self._explainable_forward(pixels)
            targets = list(choose_targets(F.normalize(emb.detach(), dim=-1)))
            maps = []
            for k, t in enumerate(targets):
                t = F.normalize(t.to(emb.device, emb.dtype).detach(), dim=-1)
                score = self.score_scale * F.cosine_similarity(emb, t, dim=-1)
                maps.append(self._relevance(state, score, retain_graph=k < len(targets) - 1).detach())
        return emb.detach(), maps

    def heatmap(self, pixels: torch.Tensor, text_embeddings: torch.Tensor) -> torch.Tensor:
        """Heatmaps (B, S, S) for one given text embedding per image (B, D)."""
        return self.explain(pixels, lambda _img: [text_embeddings])[1][0]


def load_adapter(spec: str, device: str = "cpu", **options: Any) -> VLMAdapter:
    """Build an adapter from a model folder or checkpoint path.

    * an HF CLIP folder (``config.json`` with ``model_type: clip``) -> :class:`HFClipAdapter`;
    * a surgkit SurgicalVLM folder (``model_type: surgical-vlm``) -> :class:`SurgicalVLMAdapter`;
    * a SurgVLP/HecVL/PeskaVLP checkpoint file (``.pth``/``.safetensors``) -> converted on the fly
      (needs ``vocab=`` and, for pickle-based ``.pth``, ``trust_checkpoint=True``).
    """
    import json
    from pathlib import Path

    path = Path(spec)
    if path.is_file():
        from surgkit.grounding.surgvlp import SurgicalVLMAdapter

        return SurgicalVLMAdapter.from_reference_checkpoint(path, device=device, **options)
    config = path / "config.json"
    if not config.is_file():
        if path.exists():
            raise SurgkitError(f"{path}: no config.json (expected an HF CLIP or surgkit SurgicalVLM folder)")
        if path.is_absolute() or spec.startswith((".", "~")) or spec.count("/") > 1:  # a path, not a hub id
            raise SurgkitError(f"{spec}: no such model folder or checkpoint file")
        from surgkit.grounding.clip import HFClipAdapter

        return HFClipAdapter.from_pretrained(spec, device=device, **options)  # a hub id
    try:
        model_type = json.loads(config.read_text()).get("model_type")
    except json.JSONDecodeError as e:
        raise SurgkitError(f"{config}:{e.lineno}: invalid JSON ({e.msg})") from None
    if model_type == "clip":
        from surgkit.grounding.clip import HFClipAdapter

        return HFClipAdapter.from_pretrained(path, device=device, **options)
    if model_type == "surgical-vlm":
        from surgkit.grounding.surgvlp import SurgicalVLMAdapter

        return SurgicalVLMAdapter.from_pretrained(path, device=device, **options)
    raise SurgkitError(f"{config}: unsupported model_type '{model_type}' (clip or surgical-vlm)")
