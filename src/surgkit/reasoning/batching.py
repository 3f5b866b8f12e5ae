"""Length-bucketed batches for SFT: less padding, the same examples every epoch.

A random batch pads every sequence to its longest one; on the demo's chains (prompt 48-111 tokens,
chains 20-53) random batches of 64 are 68 % real tokens. Here the examples are sorted by length (ties in
random order) and cut into batches, and the **batches** are shuffled each epoch: ~97 % real tokens, every
example once per epoch. The cost: a batch holds examples of similar length, which often share a task; the
batch order stays random (the usual bucketing of fairseq/ESPnet). transformers' ``group_by_length``
differs: its few mega-batches run long to short, so the task mix drifts through an epoch.

``megabatch=k`` sorts only within chunks of ``k`` random batches (a random permutation cut into chunks of
``k x batch_size``, each sorted by length and cut into batches): every batch is drawn from a random
``k``-batch sample of the data, so its task mix stays close to random batches' while padding shrinks
(on the demo's chains, batches of 64: 74 % real tokens at random, 86 % with ``k = 4``, 99.6 % fully sorted).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class LengthBucketSampler(Sampler[int]):
    """Indices whose consecutive ``batch_size`` slices are batches of similar length, in random batch
    order; a partial batch (if any) comes last so that the loader's batch boundaries stay aligned.
    Epoch ``e`` draws from ``seed + e`` (deterministic, resumable)."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, megabatch: int | None = None):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if megabatch is not None and megabatch < 1:
            raise ValueError("megabatch must be >= 1 (or None: sort the whole epoch)")
        self.lengths = [int(n) for n in lengths]
        self.batch_size = batch_size
        self.seed = seed
        self.megabatch = megabatch
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.lengths)

    def batches(self, epoch: int) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.seed + epoch)
        n, bs = len(self.lengths), self.batch_size
        if self.megabatch is None:
            tie = torch.rand(n, generator=g).tolist()
            chunks = [sorted(range(n), key=lambda i: (self.lengths[i], tie[i]))]
        else:
            perm = torch.randperm(n, generator=g).tolist()
            size = self.megabatch * bs
            chunks = [sorted(perm[c : c + size], key=lambda i: self.lengths[i]) for c in range(0, n, size)]
        full, rest = [], []
        for chunk in chunks:
            n_full = len(chunk) // bs
            full += [chunk[k * bs : (k + 1) * bs] for k in range(n_full)]
            rest += chunk[n_full * bs :]
        order = torch.randperm(len(full), generator=g).tolist()
        shuffled = [full[k] for k in order]
        tail = [rest[k : k + bs] for k in range(0, len(rest), bs)]
        return shuffled + tail

    def __iter__(self) -> Iterator[int]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        for b in self.batches(epoch):
            yield from b


def padding_efficiency(lengths: Sequence[int], batches: list[list[int]]) -> float:
    """Real tokens / padded tokens of ``batches`` (1.0 = no padding)."""
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches if b)
    return real / max(1, padded)
