"""Intra-op CPU thread count for a block of torch work (the one copy every package uses)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op CPU threads (None: leave torch's setting), then restore it.

    Small models on a small or busy CPU are several times faster on one thread: a second OpenMP
    thread spends its time spin-waiting for the first (measured in the demo's prep, skill and
    reasoning steps).
    """
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)
