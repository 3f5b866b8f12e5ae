"""HF ``transformers.CLIPModel`` as a benchmarked VLM, with Chefer rollout heatmaps (spec §1.3, §4.2).

* Loaded from a local folder (or hub id) with **eager attention**: with the default ``sdpa``,
  transformers 5 returns an empty ``attentions`` tuple without an exception, so the adapter
  switches to eager and asserts one attention map per vision block.
* Embeddings are computed explicitly, because transformers 5 changed the return type of
  ``get_image_features``/``get_text_features``:
  image = ``visual_projection(vision_model(pixels).pooler_output)`` (pooler = post-LN CLS),
  text = ``text_projection(text_model(ids, mask).pooler_output)`` (EOS token).
* Preprocessing: the folder's ``preprocessor_config.json`` provides mean/std; the geometry is the
  pinned full-frame resize to ``vision_config.image_size`` unless ``native=True`` (shorter side +
  center crop, bicubic, as OpenAI CLIP).
* Rollout target: ``logit_scale.exp() * cos`` (Chefer), ``start_layer`` 0 (all blocks); both
  configurable (``score_scale=1.0`` gives the plain cosine).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from surgkit.errors import SurgkitError
from surgkit.grounding.adapters import VLMAdapter
from surgkit.grounding.geometry import CLIP_MEAN, CLIP_STD, Preprocess
from surgkit.grounding.heatmaps import chefer_rollout, patch_relevance_to_map

MAX_TEXT_TOKENS = 77


def _read_preprocessor(folder: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    cfg = folder / "preprocessor_config.json"
    if not cfg.is_file():
        return CLIP_MEAN, CLIP_STD
    try:
        d = json.loads(cfg.read_text())
    except json.JSONDecodeError as e:
        raise SurgkitError(f"{cfg}:{e.lineno}: invalid JSON ({e.msg})") from None
    return tuple(d.get("image_mean", CLIP_MEAN)), tuple(d.get("image_std", CLIP_STD))


class HFClipAdapter(VLMAdapter):
    """CLIP-ViT through ``transformers.CLIPModel``; heatmaps by gradient-weighted attention rollout."""

    heatmap_method = "chefer_rollout"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        preprocess: Preprocess | None = None,
        name: str = "clip",
        device: str | torch.device = "cpu",
        start_layer: int = 0,
        score_scale: float | None = None,
    ):
        size = int(model.config.vision_config.image_size)
        super().__init__(name, preprocess or Preprocess("resize", size, CLIP_MEAN, CLIP_STD), device)
        if self.preprocess.size != size:
            raise SurgkitError(f"preprocessing size {self.preprocess.size} != CLIP image_size {size}")
        if getattr(model.config, "_attn_implementation", "eager") != "eager":
            model.set_attn_implementation("eager")
        self.model = model.to(self.device).eval().float()
        self.tokenizer = tokenizer
        self.start_layer = start_layer
        self._score_scale = score_scale
        self.max_tokens = min(MAX_TEXT_TOKENS, int(model.config.text_config.max_position_embeddings))

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        device: str | torch.device = "cpu",
        native: bool = False,
        name: str | None = None,
        **kwargs: Any,
    ) -> HFClipAdapter:
        """Load model, tokenizer and normalisation from a folder (or hub id) with eager attention."""
        from transformers import AutoTokenizer, CLIPModel

        folder = Path(path)
        try:
            model = CLIPModel.from_pretrained(str(path), attn_implementation="eager")
            tokenizer = AutoTokenizer.from_pretrained(str(path))
        except OSError as e:
            raise SurgkitError(f"{path}: cannot load an HF CLIP model ({e})") from None
        mean, std = _read_preprocessor(folder) if folder.is_dir() else (CLIP_MEAN, CLIP_STD)
        size = int(model.config.vision_config.image_size)
        if native:
            pre = Preprocess("shorter_crop", size, mean, std, interpolation="bicubic")  # type: ignore[arg-type]
        else:
            pre = Preprocess("resize", size, mean, std)  # type: ignore[arg-type]
        return cls(model, tokenizer, pre, name=name or folder.name, device=device, **kwargs)

    @property
    def probability_scale(self) -> float:
        return float(self.model.logit_scale.detach().exp())

    @property
    def score_scale(self) -> float:
        return self.probability_scale if self._score_scale is None else float(self._score_scale)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "start_layer": self.start_layer, "attn_implementation": "eager"}

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self.model.vision_model(pixel_values=pixels.to(self.device, torch.float32))
        return self.model.visual_projection(out.pooler_output)

    def tokenize(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Pad to the longest prompt, truncate at 77 tokens (warning when a prompt is cut)."""
        lengths = [len(ids) for ids in self.tokenizer(list(prompts), truncation=False)["input_ids"]]
        cut = [p for p, n in zip(prompts, lengths, strict=True) if n > self.max_tokens]
        if cut:
            warnings.warn(
                f"{len(cut)} prompt(s) truncated to {self.max_tokens} tokens, e.g. {cut[0]!r}", stacklevel=2
            )
        enc = self.tokenizer(
            list(prompts), padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )
        return {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        out = self.model.text_model(**self.tokenize(prompts))
        return self.model.text_projection(out.pooler_output)

    def vision_attentions(self, pixels: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Image embeddings and the post-softmax attention maps of every vision block (in the graph)."""
        # a clone that requires grad keeps the graph even when every parameter is frozen
        px = pixels.to(self.device, torch.float32).clone().requires_grad_(True)
        out = self.model.vision_model(pixel_values=px, output_attentions=True)
        attentions = tuple(out.attentions or ())
        n_layers = int(self.model.config.vision_config.num_hidden_layers)
        if len(attentions) != n_layers:
            raise SurgkitError(
                f"CLIP returned {len(attentions)} attention maps for {n_layers} vision blocks: "
                "rollout needs eager attention (load with attn_implementation='eager')"
            )
        return self.model.visual_projection(out.pooler_output), attentions

    def _explainable_forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, Any]:
        return self.vision_attentions(pixels)

    def _relevance(self, state: Any, score: torch.Tensor, retain_graph: bool) -> torch.Tensor:
        grads = torch.autograd.grad(score.sum(), state, retain_graph=retain_graph)
        rel = chefer_rollout(state, grads, start_layer=self.start_layer)
        return patch_relevance_to_map(rel, (self.preprocess.size, self.preprocess.size))
