"""Tube masking of SurgVISTA/VideoMAE (spec surgvista.md §3).

Per sample, one spatial pattern with exactly ``int(ratio · H·W)`` masked positions is drawn and
repeated over all temporal slices ("tubes"), flattened in (t, h, w) order. True = masked.
Every sample therefore has the same number of masked tokens, which the encoder's
``tokens[~mask].reshape(B, -1, D)`` relies on.

Determinism: masks come from an explicit :class:`torch.Generator`. The data pipeline seeds one
generator per sample from ``(seed, epoch, sample index)`` (:func:`sample_generator`), so the
mask of a sample does not depend on the number of processes or workers.
"""

from __future__ import annotations

import hashlib

import torch

from surgkit.errors import SurgkitError


def masked_per_slice(grid_h: int, grid_w: int, ratio: float) -> int:
    """``int(ratio · H·W)``, the official count (166 of 196 at ratio 0.85)."""
    if not 0.0 <= ratio < 1.0:
        raise SurgkitError(f"mask ratio must be in [0, 1), got {ratio}")
    return int(ratio * grid_h * grid_w)


def tube_mask(
    grid: tuple[int, int, int], ratio: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One tube mask: bool vector of length ``T·H·W`` with ``T·int(ratio·H·W)`` True entries."""
    t, h, w = grid
    n_mask = masked_per_slice(h, w, ratio)
    order = torch.randperm(h * w, generator=generator)
    spatial = torch.zeros(h * w, dtype=torch.bool)
    spatial[order[:n_mask]] = True
    return spatial.repeat(t)


def batch_tube_masks(
    batch: int, grid: tuple[int, int, int], ratio: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``batch`` independent tube masks, shape ``B × (T·H·W)``."""
    return torch.stack([tube_mask(grid, ratio, generator) for _ in range(batch)])


def sample_seed(seed: int, epoch: int, index: int, salt: str = "mask") -> int:
    """A 63-bit seed derived from (seed, epoch, sample index); stable across processes and runs."""
    digest = hashlib.sha256(f"{salt}:{seed}:{epoch}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def sample_generator(seed: int, epoch: int, index: int, salt: str = "mask") -> torch.Generator:
    """A CPU generator seeded by :func:`sample_seed`."""
    return torch.Generator().manual_seed(sample_seed(seed, epoch, index, salt))
