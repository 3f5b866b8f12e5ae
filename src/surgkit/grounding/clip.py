"""HF ``transformers.CLIPModel`` as a benchmarked VLM, with Chefer rollout heatmaps (spec §1.3, §4.2).

* Loaded from a local folder (or hub id) with **eager attention**: with the default ``sdpa``,
  transformers 5 returns an empty ``attentions`` tuple without an exception, so the adapter
  switches to eager and asserts one attention map per vision block.
* Embeddings are computed explicitly, because transformers 5 changed the return type of
  ``get_image_features``/``get_text_features``:
  image = ``visual_projection(vision_model(pixels).pooler_output)`` (pooler = post-LN CLS),
  text = ``text_projection(text_model(ids, mask).pooler_output)`` (EOS token).
* Official preprocessing: the folder's ``preprocessor_config.json`` (HF ``CLIPImageProcessor``):
  shorter side to ``size.shortest_edge``, centre crop ``crop_size`` (must equal the vision
  ``image_size``), bicubic, ``image_mean``/``image_std``; OpenAI CLIP's values when the file is
  absent. ``full-frame`` resizes the whole frame instead (:meth:`VLMAdapter.configure`).
* Rollout settings (:class:`~surgkit.grounding.protocol.HeatmapOptions`): target
  ``logit_scale.exp() * cos`` (Chefer) or the plain cosine, first block 0 (all blocks) or -1 (the
  last), product order ``later-left`` (Chefer) or ``later-right``.
"""

from __future__ import annotations

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


def _triple(value: Any, path: Path, key: str) -> tuple[float, float, float]:
    from surgkit.utils.inputs import as_float, as_list

    items = as_list(value, path, key)
    if len(items) != 3:
        raise SurgkitError(f"{path}: {key} needs 3 values, got {len(items)}")
    return tuple(as_float(v, path, f"{key}[{k}]") for k, v in enumerate(items))  # type: ignore[return-value]


def official_preprocess(folder: Path | None, image_size: int) -> Preprocess:
    """The HF CLIPImageProcessor transform of a model folder (OpenAI CLIP's when there is none)."""
    from surgkit.utils.inputs import as_dict, as_int, get, read_json

    cfg = folder / "preprocessor_config.json" if folder is not None else None
    if cfg is None or not cfg.is_file():
        return Preprocess("shorter_crop", image_size, CLIP_MEAN, CLIP_STD, interpolation="bicubic")
    d = as_dict(read_json(cfg), cfg)
    mean = _triple(get(d, "image_mean", cfg, default=list(CLIP_MEAN)), cfg, "image_mean")
    std = _triple(get(d, "image_std", cfg, default=list(CLIP_STD)), cfg, "image_std")
    size = get(d, "size", cfg, default={"shortest_edge": image_size})
    short = size.get("shortest_edge", image_size) if isinstance(size, dict) else size
    short = as_int(short, cfg, "size.shortest_edge", lo=1)
    crop = get(d, "crop_size", cfg, default={"height": image_size, "width": image_size})
    crop_hw = (crop.get("height"), crop.get("width")) if isinstance(crop, dict) else (crop, crop)
    if crop_hw != (image_size, image_size):
        raise SurgkitError(f"{cfg}: crop_size {crop_hw} differs from the model's image_size {image_size}")
    return Preprocess("shorter_crop", image_size, mean, std, interpolation="bicubic", short_side=short)


class HFClipAdapter(VLMAdapter):
    """CLIP-ViT through ``transformers.CLIPModel``; heatmaps by gradient-weighted attention rollout."""

    heatmap_method = "chefer_rollout"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        official: Preprocess | None = None,
        name: str = "clip",
        device: str | torch.device = "cpu",
    ):
        size = int(model.config.vision_config.image_size)
        super().__init__(name, official or official_preprocess(None, size), device)
        if self.official.size != size:
            raise SurgkitError(f"preprocessing size {self.official.size} != CLIP image_size {size}")
        if getattr(model.config, "_attn_implementation", "eager") != "eager":
            model.set_attn_implementation("eager")
        self.model = model.to(self.device).eval().float()
        self.tokenizer = tokenizer
        self.max_tokens = min(MAX_TEXT_TOKENS, int(model.config.text_config.max_position_embeddings))

    @classmethod
    def from_pretrained(
        cls, path: str | Path, device: str | torch.device = "cpu", name: str | None = None
    ) -> HFClipAdapter:
        """Load model, tokenizer and official preprocessing from a folder (or hub id), eager attention."""
        from transformers import AutoTokenizer, CLIPModel

        folder = Path(path)
        try:
            model = CLIPModel.from_pretrained(str(path), attn_implementation="eager")
            tokenizer = AutoTokenizer.from_pretrained(str(path))
        except OSError as e:
            raise SurgkitError(f"{path}: cannot load an HF CLIP model ({e})") from None
        size = int(model.config.vision_config.image_size)
        pre = official_preprocess(folder if folder.is_dir() else None, size)
        return cls(model, tokenizer, pre, name=name or folder.name, device=device)

    @property
    def probability_scale(self) -> float:
        return float(self.model.logit_scale.detach().exp())

    @property
    def score_scale(self) -> float:
        return self.probability_scale if self.heatmap_options.rollout_target == "logit" else 1.0

    def describe_heatmap(self) -> dict[str, Any]:
        o = self.heatmap_options
        n = int(self.model.config.vision_config.num_hidden_layers)
        start = o.rollout_start if o.rollout_start >= 0 else n + o.rollout_start
        blocks = "all" if start == 0 else ("last" if start == n - 1 else f"{start}..{n - 1}")
        target = (
            f"logit_scale.exp()·cos (x{self.probability_scale:.4g})" if o.rollout_target == "logit" else "cos"
        )
        return {"method": self.heatmap_method, "blocks": blocks, "start": o.rollout_start, "target": target,
                "order": o.rollout_order}  # fmt: skip

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "attn_implementation": "eager"}

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
        o = self.heatmap_options
        rel = chefer_rollout(state, grads, start_layer=o.rollout_start, order=o.rollout_order)
        return patch_relevance_to_map(rel, (self.preprocess.size, self.preprocess.size))
