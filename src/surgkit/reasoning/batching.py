"""Length-bucketed batches for SFT: less padding, the same examples every epoch.

A random batch pads every sequence to its longest one; on the demo's chains (prompt 48-111 tokens,
chains 20-53) random batches of 64 are 68 % real tokens. Here the examples are sorted by length (ties in
random order) and cut into batches, and the **batches** are shuffled each epoch: ~97 % real tokens, every
example once per epoch. The cost: a batch holds examples of similar length, which often share a task; the
batch order stays random (the usual bucketing of fairseq/ESPnet). transformers' ``group_by_length``
differs: its few mega-batches run long to short, so the task mix drifts through an epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class LengthBucketSampler(Sampler[int]):
    """Indices whose consecutive ``batch_size`` slices are batches of similar length, in random batch
    order; a partial batch (if any) comes last so that the loader's batch boundaries stay aligned.
    Epoch ``e`` draws from ``seed + e`` (deterministic, resumable)."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.lengths = [int(n) for n in lengths]
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.lengths)

    def batches(self, epoch: int) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.seed + epoch)
        tie = torch.rand(len(self.lengths), generator=g).tolist()
        order = sorted(range(len(self.lengths)), key=lambda i: (self.lengths[i], tie[i]))
        n_full = len(order) // self.batch_size
        full = [order[k * self.batch_size : (k + 1) * self.batch_size] for k in range(n_full)]
        rest = order[n_full * self.batch_size :]
        shuffled = [full[k] for k in torch.randperm(n_full, generator=g).tolist()]
        return shuffled + ([rest] if rest else [])

    def __iter__(self) -> Iterator[int]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        for b in self.batches(epoch):
            yield from b


def padding_efficiency(lengths: Sequence[int], batches: list[list[int]]) -> float:
    """Real tokens / padded tokens of ``batches`` (1.0 = no padding)."""
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches if b)
    return real / max(1, padded)
