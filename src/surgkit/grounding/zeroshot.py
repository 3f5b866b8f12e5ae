"""Zero-shot classification with prompt ensembling and cached text embeddings (vlm_bench spec §2).

* Class embedding: encode every prompt of the class, L2-normalise each, average, re-normalise
  (CLIP prompt-ensembling rule).
* Image embedding: L2-normalised. Score s_c = cos(img, txt_c); prediction = argmax_c s_c with
  ties going to the lowest class index.
* Probabilities (optional): softmax(scale * s), scale = 100 for the SurgVLP family (fixed in the
  reference) and ``logit_scale.exp()`` for CLIP.
* Multi-label frames: a top-1 prediction is correct if it is among the ground-truth labels.

Text embeddings are cached per (model, prompt set) in memory and, when a folder is given, on disk
as safetensors keyed by a SHA-256 of the model description, a weight checksum and the prompts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from surgkit.grounding.adapters import VLMAdapter
from surgkit.grounding.prompts import PromptSet
from surgkit.utils.io import save_tensors, sha256_json

_MEMORY: dict[str, torch.Tensor] = {}


def ensemble(prompt_embeddings: torch.Tensor, owner: list[int], n_classes: int) -> torch.Tensor:
    """(P, D) prompt embeddings + class index per prompt -> (C, D) normalised class embeddings."""
    e = F.normalize(prompt_embeddings.float(), dim=-1)
    idx = torch.as_tensor(owner, device=e.device)
    sums = torch.zeros(n_classes, e.shape[1], dtype=e.dtype, device=e.device).index_add_(0, idx, e)
    counts = torch.bincount(idx, minlength=n_classes).clamp_min(1).to(e.dtype)[:, None]
    return F.normalize(sums / counts, dim=-1)


def weights_checksum(adapter: VLMAdapter) -> str:
    """A cheap fingerprint of the model weights (sum and sum of squares per tensor)."""
    model = getattr(adapter, "model", None)
    if model is None:
        return "unknown"
    with torch.no_grad():
        stats = [
            (name, round(float(p.double().sum()), 6), round(float(p.double().square().sum()), 6))
            for name, p in model.state_dict().items()
            if p.is_floating_point()
        ]
    return sha256_json(stats)


def text_bank_key(adapter: VLMAdapter, prompts: PromptSet) -> str:
    return sha256_json(
        {"model": adapter.describe(), "weights": weights_checksum(adapter), "prompts": prompts.to_dict()}
    )


def class_embeddings(
    adapter: VLMAdapter, prompts: PromptSet, batch_size: int = 64, cache_dir: str | Path | None = None
) -> torch.Tensor:
    """(C, D) ensembled, L2-normalised text embeddings of a prompt set (cached)."""
    key = text_bank_key(adapter, prompts)
    if key in _MEMORY:
        return _MEMORY[key].to(adapter.device)
    path = Path(cache_dir) / f"text-{key[:16]}.safetensors" if cache_dir is not None else None
    if path is not None and path.is_file():
        from safetensors.torch import load_file

        bank = load_file(str(path))["embeddings"]
    else:
        flat, owner = prompts.flat()
        chunks = []
        with torch.no_grad():
            for start in range(0, len(flat), batch_size):
                chunks.append(adapter.encode_text(flat[start : start + batch_size]).float().cpu())
        bank = ensemble(torch.cat(chunks), owner, len(prompts))
        if path is not None:
            save_tensors(path, {"embeddings": bank}, metadata={"key": key, "task": prompts.task})
    _MEMORY[key] = bank
    return bank.to(adapter.device)


def cosine_scores(image_embeddings: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """s = normalise(img) @ bank^T: (B, D) x (C, D) -> (B, C)."""
    return F.normalize(image_embeddings.float(), dim=-1) @ F.normalize(bank.float(), dim=-1).T


def argmax_lowest(scores: torch.Tensor | np.ndarray) -> np.ndarray:
    """Row-wise argmax; ties resolve to the lowest index."""
    s = scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
    return np.argmax(s, axis=-1)  # numpy returns the first maximum


def probabilities(scores: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(scale * s) over classes."""
    return torch.softmax(scale * scores, dim=-1)
