"""GRPO completions drawn by a rule that does not depend on the number of processes (test helper).

TRL seeds every process differently on purpose (``set_seed(seed, device_specific=True)``: processes
that share a prompt must not sample the same completions), so a 2-process GRPO run cannot draw the
tokens a 1-process run draws. For the 2-process parity tests each completion row here draws its
tokens from its own generator, seeded by (generation round, global row, token position), by inverse
CDF on the distribution TRL's generation config produces. A row's global index is
``rank x rows-per-process + local row`` (Accelerate hands process ``r`` the ``r``-th per-process slice
of every generation batch). Everything else is TRL and surgkit as users run them: the prompt sampler,
the reward gathering, group advantages, loss normalisation, DDP, accumulation.

Also adds a reward ``variety`` (distinct characters of the completion / 20): the project's rewards
are all 0 on a random tiny policy's text, which would leave every advantage 0 and nothing to compare.

``python tests/reasoning/fixed_sampling.py ARGS`` runs ``surgkit ARGS`` with both in place (use under
``torchrun``; ``FIXED_SAMPLING_REWARDS='{"variety": 1}'`` sets the default GRPO rewards); in-process
tests use :func:`install` with pytest's ``monkeypatch``.
"""

from __future__ import annotations

import sys

import numpy as np
import torch


class RowSampler:
    """Logits processor: keeps one token per row, drawn with the row's own generator."""

    def __init__(self, round_index: int, rank: int) -> None:
        self.round, self.rank, self.step = round_index, rank, 0

    def __call__(self, input_ids, scores):
        rows = scores.shape[0]
        cdf = torch.softmax(scores.float(), dim=-1).cumsum(-1)
        out = torch.full_like(scores, float("-inf"))
        for i in range(rows):
            seed = int(
                np.random.SeedSequence([self.round, self.rank * rows + i, self.step]).generate_state(1)[0]
            )
            u = torch.rand(1, generator=torch.Generator().manual_seed(seed)) * cdf[i, -1]
            token = min(int(torch.searchsorted(cdf[i], u)), scores.shape[1] - 1)
            out[i, token] = 0.0
        self.step += 1
        return out


def variety(completions, **_):
    texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
    return [len(set(t)) / 20.0 for t in texts]


def install(setattr_, default_rewards: dict[str, float] | None = None) -> None:
    """Patch GRPO generation and register ``variety``; ``setattr_`` is ``monkeypatch.setattr`` or
    ``setattr``. ``default_rewards`` replaces GRPOSettings' default weights (for commands without
    ``--rewards``, e.g. ``reason self-improve``)."""
    from transformers import GenerationMixin, LogitsProcessorList
    from trl.trainer.grpo_trainer import GRPOTrainer

    from surgkit.reasoning import rewards, train

    state = {"round": 0, "active": None}
    generate, turn = GenerationMixin.generate, GRPOTrainer._generate_single_turn

    def fixed_generate(self, *args, **kwargs):
        if state["active"] is not None:
            kwargs["logits_processor"] = LogitsProcessorList([RowSampler(state["round"], state["active"])])
        return generate(self, *args, **kwargs)

    def fixed_turn(self, *args, **kwargs):
        state["active"] = self.accelerator.process_index
        try:
            return turn(self, *args, **kwargs)
        finally:
            state["active"] = None
            state["round"] += 1

    setattr_(GenerationMixin, "generate", fixed_generate)
    setattr_(GRPOTrainer, "_generate_single_turn", fixed_turn)
    setattr_(rewards, "REWARDS", {**rewards.REWARDS, "variety": variety})
    if default_rewards is not None:
        setattr_(train, "DEFAULT_WEIGHTS", dict(default_rewards))


if __name__ == "__main__":
    import json
    import os

    install(setattr, json.loads(os.environ.get("FIXED_SAMPLING_REWARDS", "null")))
    from surgkit.cli import main

    main(sys.argv[1:])
