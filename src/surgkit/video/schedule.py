"""The per-step learning-rate schedule of the official SurgVISTA code (``utils.cosine_scheduler``).

For ``total`` optimizer steps of which ``warmup`` warm up (spec surgvista.md §6.2, §8)::

    lr[k] = base · k / (warmup − 1)                                   k < warmup  (np.linspace(0, base, warmup))
    lr[k] = final + ½ (base − final) (1 + cos(π i / (total − warmup)))  i = k − warmup

so the warm-up starts at exactly 0 and reaches ``base`` on its last step, and the cosine reaches
``final`` one step after the end. Pretraining scales base/final by ``global_batch/256``,
fine-tuning by ``global_batch/64`` (:func:`scale_lr`). Layer-wise lr decay multiplies every
group's lr by its ``lr_scale``. The schedule length must be counted from the data loader **as
prepared for the run's processes** (each process sees 1/N of the batches).
"""

from __future__ import annotations

import math

import torch

from surgkit.errors import SurgkitError


def cosine_schedule(base: float, final: float, total: int, warmup: int = 0) -> list[float]:
    """Per-step learning rates (length ``total``): linspace warm-up from 0, then cosine to ``final``."""
    if total < 1:
        raise SurgkitError(f"the schedule needs at least one optimizer step, got {total}")
    warmup = max(0, min(int(warmup), total))
    lrs = [base * k / (warmup - 1) if warmup > 1 else 0.0 for k in range(warmup)]
    n = total - warmup
    lrs += [final + 0.5 * (base - final) * (1 + math.cos(math.pi * i / n)) for i in range(n)]
    return lrs


def scale_lr(lr: float, global_batch: int, reference: int) -> float:
    """Linear scaling rule: ``lr · global_batch / reference`` (256 pretraining, 64 fine-tuning)."""
    return lr * global_batch / reference


def schedule_scheduler(
    optimizer: torch.optim.Optimizer, lrs: list[float]
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepping through ``lrs`` (each group's lr × its ``lr_scale``, default 1).

    The optimizer's groups must have been built with ``lr = 1.0`` so that the lambda is the lr itself;
    after the last step the final value is held.
    """
    for g in optimizer.param_groups:
        if g.get("initial_lr", g["lr"]) != 1.0:
            raise SurgkitError("schedule_scheduler expects param groups created with lr=1.0")

    def factor(step: int, scale: float) -> float:
        return lrs[min(step, len(lrs) - 1)] * scale

    lambdas = [lambda s, sc=g.get("lr_scale", 1.0): factor(s, sc) for g in optimizer.param_groups]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
