"""Pretraining targets and losses of SurgVISTA (spec surgvista.md §4).

* Pixel target (§4.1): un-normalise the ImageNet-normalised clip, cut it into
  ``tubelet × patch × patch`` cubes, normalise each cube per channel with its mean and
  **unbiased** std (``(u − μ) / (σ + 1e-6)``), flatten as ``(p0, p1, p2, c)`` with the channel
  fastest. Reconstruction loss: MSE on the masked tokens.
* Distillation target (§4.2): the teacher's last-block patch tokens for frame ``2t`` of tubelet
  ``t``, arranged ``b (t l) c`` so row n is student token n; only masked rows are used.
  Loss: SmoothL1 (β = 1), or L1 / L2.
* Total (§4.3): ``L = w_rec · L_rec + w_distill · L_distill`` (1.0 and 0.05 by default).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from surgkit.errors import SurgkitError

DISTILL_LOSSES = ("smooth_l1", "l1", "l2")


def cubes(video: torch.Tensor, tubelet: int, patch: int) -> torch.Tensor:
    """``B×C×T×H×W → B × N × (p0·p1·p2) × C`` with tokens in (t, h, w) order."""
    b, c, t, h, w = video.shape
    x = video.reshape(b, c, t // tubelet, tubelet, h // patch, patch, w // patch, patch)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)  # b t h w p0 p1 p2 c
    return x.reshape(b, (t // tubelet) * (h // patch) * (w // patch), tubelet * patch * patch, c)


def pixel_targets(
    video: torch.Tensor,
    tubelet: int,
    patch: int,
    mean: Sequence[float],
    std: Sequence[float],
    normalize: bool = True,
) -> torch.Tensor:
    """Per-token pixel targets for every token, ``B × N × (p0·p1·p2·C)`` (spec §4.1)."""
    shape = (1, -1, 1, 1, 1)
    m = torch.as_tensor(mean, dtype=video.dtype, device=video.device).view(shape)
    s = torch.as_tensor(std, dtype=video.dtype, device=video.device).view(shape)
    x = cubes(video * s + m, tubelet, patch)
    if normalize:
        x = (x - x.mean(dim=-2, keepdim=True)) / (x.var(dim=-2, unbiased=True, keepdim=True).sqrt() + 1e-6)
    return x.flatten(2)


def select_masked(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``tokens[mask]`` reshaped to ``B × N_mask × D`` (ascending token index)."""
    return tokens[mask].reshape(tokens.shape[0], -1, tokens.shape[-1])


def teacher_frames(video: torch.Tensor, tubelet: int) -> torch.Tensor:
    """Frames seen by the image teacher: the first frame of each tubelet, ``(B·T/2) × C × H × W``."""
    b, c, t, h, w = video.shape
    return video[:, :, ::tubelet].permute(0, 2, 1, 3, 4).reshape(-1, c, h, w)


def arrange_teacher_tokens(features: torch.Tensor, batch: int) -> torch.Tensor:
    """``(B·T') × L × C`` teacher patch tokens → ``B × (T'·L) × C`` (row n = student token n)."""
    n_img, n_patches, c = features.shape
    return features.reshape(batch, (n_img // batch) * n_patches, c)


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE over all elements of the masked-token predictions."""
    return F.mse_loss(pred, target)


def distillation_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "smooth_l1") -> torch.Tensor:
    """SmoothL1 (β=1), L1 or L2 between decoder output and teacher tokens, mean over elements."""
    if kind == "smooth_l1":
        return F.smooth_l1_loss(pred, target, beta=1.0)
    if kind == "l1":
        return F.l1_loss(pred, target)
    if kind == "l2":
        return F.mse_loss(pred, target)
    raise SurgkitError(f"unknown distillation loss '{kind}' (choose from {', '.join(DISTILL_LOSSES)})")
