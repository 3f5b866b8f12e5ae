"""Process-count-independent training and evaluation on top of Accelerate.

The rules every surgkit trainer follows so that 1 process and N processes compute the same thing:

- **Global batch.** A step's batch (``batch_size`` samples, drawn from a seeded generator that does
  not depend on the rank) is split over the processes and, within a process, into ``grad_accum``
  micro-batches (:func:`micro_batches`). Each micro-batch's mean loss is multiplied by its
  :attr:`MicroBatch.weight` = ``world · accum · n_micro / n_global`` before ``accelerator.backward``
  (which divides by ``accum``) and DDP averages over processes, so the update is the gradient of
  the mean loss over the whole global batch, exactly as on one process (up to float summation order).
- **Schedule length** is counted in optimizer updates from the dataset size and the *global* batch
  (:func:`updates_per_epoch`), or, for a DataLoader prepared by Accelerate, from its length *after*
  ``accelerator.prepare`` (:func:`prepared_updates_per_epoch`).
- **Evaluation** is sharded with :func:`sharded_map` (contiguous shards, gathered in order: every
  item exactly once) or, for a prepared DataLoader, with ``accelerator.gather_for_metrics`` (which drops
  the samples Accelerate repeats to even out the last batch).
- Only the main process writes files, holds locks, shows progress and logs (``accelerator.is_main_process``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence, Sized
from typing import Any, TypeVar

import numpy as np
import torch

from surgkit.errors import SurgkitError

T = TypeVar("T")
R = TypeVar("R")


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The sample order of one epoch: a permutation from ``(seed, epoch)``, identical on every process."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def global_batches(
    n: int, batch_size: int, seed: int, epoch: int, shuffle: bool = True, drop_last: bool = False
) -> list[np.ndarray]:
    """One epoch of global batches (index arrays) in the order of :func:`epoch_order`."""
    if batch_size < 1:
        raise SurgkitError(f"batch size must be >= 1 (got {batch_size})")
    order = epoch_order(n, seed, epoch, shuffle)
    stop = (n // batch_size) * batch_size if drop_last else n
    return [order[i : i + batch_size] for i in range(0, stop, batch_size)]


def updates_per_epoch(num_samples: int, global_batch: int, drop_last: bool = False) -> int:
    """Optimizer updates per epoch for a global batch: the same for any number of processes."""
    if num_samples < 1:
        return 0
    return num_samples // global_batch if drop_last else math.ceil(num_samples / global_batch)


def prepared_updates_per_epoch(prepared_loader: Sized, grad_accum: int = 1) -> int:
    """Updates per epoch of a DataLoader *after* ``accelerator.prepare`` (which divides its length by
    the number of processes unless ``split_batches``); counting before ``prepare`` stretches the schedule."""
    return max(1, math.ceil(len(prepared_loader) / max(1, grad_accum)))


@dataclasses.dataclass(frozen=True)
class MicroBatch:
    """This process's part of one global batch: sample ``indices`` and the loss ``weight``."""

    indices: np.ndarray
    weight: float
    index: int
    count: int

    @property
    def last(self) -> bool:
        return self.index == self.count - 1


def split_global_batch(indices: Sequence[int], world: int, rank: int, accum: int) -> list[MicroBatch]:
    """Split a global batch into this rank's ``accum`` micro-batches (contiguous, as even as possible).

    Rank ``r`` takes the ``r``-th of ``world`` near-equal parts; that part is cut into ``accum``
    micro-batches. Every micro-batch of every rank must be non-empty (DDP needs every process to run
    backward), so the global batch must hold at least ``world · accum`` samples.
    """
    idx = np.asarray(indices)
    total = len(idx)
    if total < world * accum:
        raise SurgkitError(
            f"a batch of {total} samples cannot be split over {world} processes x {accum} "
            "accumulation steps; use a larger batch, fewer processes or a smaller --grad-accum"
        )
    part = np.array_split(idx, world)[rank]
    micros = np.array_split(part, accum)
    return [MicroBatch(m, world * accum * len(m) / total, i, accum) for i, m in enumerate(micros)]


def micro_batches(
    accelerator: Any, model: torch.nn.Module, indices: Sequence[int], grad_accum: int | None = None
) -> Iterator[MicroBatch]:
    """Iterate this process's micro-batches of a global batch; gradients sync only on the last one.

    Use as::

        for mb in micro_batches(acc, model, batch):
            loss = loss_fn(model(x[mb.indices]), y[mb.indices]) * mb.weight
            acc.backward(loss)
        optimizer.step()

    ``grad_accum`` defaults to ``accelerator.gradient_accumulation_steps`` (``backward`` divides by it).
    """
    accum = int(grad_accum or accelerator.gradient_accumulation_steps)
    if accum != accelerator.gradient_accumulation_steps:
        raise SurgkitError(
            f"grad_accum {accum} differs from the Accelerator's {accelerator.gradient_accumulation_steps}"
        )
    for mb in split_global_batch(indices, accelerator.num_processes, accelerator.process_index, accum):
        ctx = contextlib.nullcontext() if mb.last else accelerator.no_sync(model)
        with ctx:
            yield mb


def batch_counts(total: int, world: int) -> list[int]:
    """Samples of each rank in a global batch of ``total`` (the split of :func:`split_global_batch`)."""
    return [len(p) for p in np.array_split(np.arange(total), world)]


def gather_global_batch(accelerator: Any, local: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
    """The whole global batch of a per-sample tensor (e.g. embeddings), for losses that couple samples.

    Rank ``r`` holds rows ``counts[r]`` (in rank order, as :func:`split_global_batch` deals them). The
    result has every rank's rows in global order; this rank's rows keep their gradient, the others
    are constants. Every rank then computes the same global loss ``L``; backpropagate
    ``L * accelerator.num_processes``: each rank gets ``∂L/∂θ`` through its own samples, DDP averages,
    and the update is exactly ``∂L/∂θ`` of the one-process run (contrastive losses need their
    negatives from the whole batch, which splitting the batch alone would lose).
    """
    world = accelerator.num_processes
    if world == 1:
        return local
    if len(counts) != world or local.shape[0] != counts[accelerator.process_index]:
        raise SurgkitError(
            f"rank {accelerator.process_index} holds {local.shape[0]} rows, counts say {list(counts)}"
        )
    width = max(counts)
    padded = torch.cat([local.detach(), local.new_zeros((width - local.shape[0], *local.shape[1:]))])
    parts = accelerator.gather(padded[None]).reshape(world, width, *local.shape[1:])
    rows = [local if r == accelerator.process_index else parts[r, : counts[r]] for r in range(world)]
    return torch.cat(rows)


def counted_once(accelerator: Any, value: torch.Tensor) -> torch.Tensor:
    """``value`` with its gradient divided by the number of processes, same value.

    For a quantity every process computes identically and uses in a loss built from
    :func:`gather_global_batch` and backpropagated as ``loss * num_processes`` (e.g. CLIP's learned
    temperature): without this its gradient would be counted once per process.
    """
    world = accelerator.num_processes
    return value if world == 1 else value.detach() + (value - value.detach()) / world


def grad_norm(accelerator: Any, parameters: Any, max_norm: float | None = None) -> float:
    """The global L2 norm of the gradients (after unscaling), clipping to ``max_norm`` when given."""
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return 0.0
    norm = accelerator.clip_grad_norm_(params, max_norm if max_norm and max_norm > 0 else float("inf"))
    return float(norm)


def mean_over_processes(accelerator: Any, value: float, weight: float = 1.0) -> float:
    """The weighted mean of a per-process scalar (e.g. a loss over ``weight`` samples) over processes."""
    t = torch.tensor([float(value) * weight, float(weight)], dtype=torch.float64, device=accelerator.device)
    t = accelerator.reduce(t, reduction="sum")
    return float(t[0] / t[1]) if float(t[1]) else float("nan")


def shutdown() -> None:
    """Destroy this process's default process group, if a launch created one.

    A process that exits with a live gloo/NCCL group can abort in teardown ("terminate called without an
    active exception", SIGABRT) after its work is done, so the launcher reports a failed run; PyTorch asks
    every script to call ``destroy_process_group`` before it exits."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every process of a distributed launch (no-op in a single process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def sharded_map(
    accelerator: Any, items: Sequence[T], fn: Callable[[list[T]], list[R]], chunk_size: int | None = None
) -> list[R]:
    """``fn`` over ``items`` in chunks of ``chunk_size``, the chunks shared out over the processes.

    Each process takes a contiguous run of whole chunks; the results are gathered in item order on
    every process, each item exactly once. Because a chunk is the same batch whatever the number of
    processes, the output equals the one-process output bit for bit (for ``fn`` deterministic per
    chunk). ``chunk_size=None`` = one chunk per process share (rounding may then differ slightly).
    """
    from accelerate.utils import gather_object

    items = list(items)
    world = accelerator.num_processes
    if chunk_size is None:
        chunk_size = max(1, math.ceil(len(items) / world))
    chunks = [items[i : i + chunk_size] for i in range(0, len(items), chunk_size)]

    def run(part: list[list[T]]) -> list[R]:
        out: list[R] = []
        for chunk in part:
            res = list(fn(list(chunk)))
            if len(res) != len(chunk):
                raise SurgkitError(f"sharded function returned {len(res)} results for {len(chunk)} items")
            out.extend(res)
        return out

    if world == 1:
        return run(chunks)
    with accelerator.split_between_processes(chunks) as mine:
        local = run(list(mine))
    return list(gather_object(local))
