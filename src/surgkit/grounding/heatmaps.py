"""Heatmap methods as pure tensor functions (vlm_bench spec §4.1, §4.2; seed 001 §3.2).

* **Grad-CAM** (Selvaraju et al. 2017) for ResNet VLMs: with A the last conv block's output
  (B, K, h, w) and y = cos(image embedding, t) the similarity with the chosen text embedding t,
  alpha_k = mean_ij dy/dA_k,ij and L = ReLU(sum_k alpha_k A_k); bilinear upsampling
  (``align_corners=False``) to the input size; per-image min-max (all zeros if max - min < 1e-7).
  The score scale does not matter (cos and 100 cos give the same normalised map).
* **Gradient-weighted attention rollout** (Chefer et al. 2021) for ViT VLMs: per block l,
  C_l = mean_heads clamp(dS/dA_l * A_l, min=0) with A_l the post-softmax attention (B, heads, N, N);
  R = I, then R <- R + C_l R for l = start_layer .. L-1 in forward order, i.e.
  R = (I + C_{L-1}) ... (I + C_s). Relevance of the patches = R[CLS, 1:], reshaped to the patch
  grid, upsampled bilinearly and min-max normalised. The score S is logit_scale.exp() * cos by
  default (rollout is not scale invariant); ``start_layer`` 0 = all blocks (paper, seed),
  -1 = last block only (Chefer's 2022 notebook). ``order="later-right"`` accumulates
  R <- R + R C_l instead, i.e. R = (I + C_s) ... (I + C_{L-1}) (a choice the seed leaves open; the
  two orders give different maps).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from surgkit.errors import SurgkitError
from surgkit.grounding.geometry import minmax_normalise


def upsample_and_normalise(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, h, w) -> (B, H, W): bilinear (``align_corners=False``) then per-map min-max."""
    up = F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    return minmax_normalise(up)


def gradcam_weights(grads: torch.Tensor) -> torch.Tensor:
    """alpha_k = spatial mean of dy/dA_k: (B, K, h, w) -> (B, K)."""
    return grads.mean(dim=(2, 3))


def gradcam_map(features: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """L = ReLU(sum_k alpha_k A_k) at feature resolution: (B, K, h, w) x2 -> (B, h, w)."""
    alpha = gradcam_weights(grads)
    return torch.relu((alpha[:, :, None, None] * features).sum(dim=1))


def chefer_layer_relevance(attention: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """C_l = mean over heads of clamp(grad * attention, min=0): (B, heads, N, N) -> (B, N, N)."""
    return (grad * attention).clamp(min=0).mean(dim=1)


ORDERS = ("later-left", "later-right")


def chefer_rollout(
    attentions: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    start_layer: int = 0,
    order: str = "later-left",
) -> torch.Tensor:
    """Relevance of each patch token for the CLS token: returns R[:, 0, 1:] of shape (B, N - 1).

    ``attentions[l]`` and ``grads[l]`` are block l's attention probabilities and dS/dA, in forward
    order. Blocks ``start_layer .. L-1`` are used (negative values count from the end). ``order``:
    ``later-left`` (Chefer: R <- R + C_l R) or ``later-right`` (R <- R + R C_l).
    """
    if order not in ORDERS:
        raise SurgkitError(f"unknown rollout order {order!r} (choose from {', '.join(ORDERS)})")
    n_layers = len(attentions)
    if n_layers == 0 or len(grads) != n_layers:
        raise SurgkitError(f"rollout needs one gradient per attention map (got {n_layers} and {len(grads)})")
    start = start_layer if start_layer >= 0 else n_layers + start_layer
    if not 0 <= start < n_layers:
        raise SurgkitError(f"start_layer {start_layer} is outside the {n_layers} attention blocks")
    b, _, n, _ = attentions[0].shape
    rel = torch.eye(n, dtype=attentions[0].dtype, device=attentions[0].device).expand(b, n, n).clone()
    for layer in range(start, n_layers):
        c = chefer_layer_relevance(attentions[layer], grads[layer])
        rel = rel + (torch.bmm(c, rel) if order == "later-left" else torch.bmm(rel, c))
    return rel[:, 0, 1:]


def patch_relevance_to_map(relevance: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, N - 1) patch relevances on a square grid -> (B, H, W) normalised map."""
    b, n = relevance.shape
    side = int(round(math.sqrt(n)))
    if side * side != n:
        raise SurgkitError(f"{n} patch tokens do not form a square grid")
    return upsample_and_normalise(relevance.reshape(b, side, side), size)
