"""GRPO prompts that carry a signal: DAPO's dynamic sampling, screened once before training.

GRPO's advantage of completion i in a group of G is (r_i - mean(r)) / std(r) (spec §2.7): a prompt whose G
completions all earn the same total reward has zero advantage everywhere and adds no gradient, only
noise-free dead weight in the batch. DAPO (Yu et al. 2025, §3.2 "Dynamic Sampling") over-samples and keeps
the groups whose reward is neither all right nor all wrong. Here the policy about to be trained samples G
completions per candidate prompt (batched KV-cache generation, :mod:`surgkit.reasoning.generation`), the
completions are scored with the GRPO reward functions and weights (:func:`rewards.make_reward_funcs`,
:func:`rewards.combine`: the same total the trainer and the demo's judge compute), and the candidates
whose total reward varies within the group (max - min > ``min_spread``) are kept.

DAPO re-samples at every step; this screen runs once, with the starting policy: it suits short runs in
which the policy moves little (the demo's), and costs one sampling pass over the candidates.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from surgkit.reasoning.records import Record
from surgkit.reasoning.scoring import BoxSettings


@dataclasses.dataclass(frozen=True)
class ScreenSettings:
    """How candidates are sampled: ``generations`` completions each at ``temperature`` (use GRPO's own
    group size and temperature, so that the screen sees the groups the trainer will)."""

    generations: int = 4
    temperature: float = 0.9
    max_new_tokens: int = 512
    batch_size: int = 16
    min_spread: float = 1e-6
    seed: int = 0


def group_spreads(totals: list[float], generations: int) -> list[float]:
    """max - min of each consecutive group of ``generations`` totals."""
    if generations < 1 or len(totals) % generations:
        raise ValueError(f"{len(totals)} rewards do not form groups of {generations}")
    return [
        max(totals[k : k + generations]) - min(totals[k : k + generations])
        for k in range(0, len(totals), generations)
    ]


def sampled_totals(
    model, processor, records: list[Record], image_root, settings: ScreenSettings, weights=None
) -> list[float]:
    """Total GRPO reward of ``settings.generations`` sampled completions per record (record-major)."""
    from surgkit.reasoning.generation import GenerationSettings, generate_answers
    from surgkit.reasoning.rewards import combine, make_reward_funcs

    box = processor.surgkit_box
    gen = GenerationSettings(
        max_new_tokens=settings.max_new_tokens,
        batch_size=settings.batch_size,
        do_sample=True,
        temperature=settings.temperature,
        num_return_sequences=settings.generations,
    )
    answers = generate_answers(model, processor, records, image_root, box, gen, seed=(settings.seed,))
    texts = [a.text if a.status == "ok" else "" for a in answers]  # cut or refused: unparseable
    per = [r for r in records for _ in range(settings.generations)]
    funcs, ws = make_reward_funcs(weights, box)
    values = {f.__name__: f(texts, record=per) for f in funcs}
    return combine(values, dict(zip([f.__name__ for f in funcs], ws, strict=True)))


def screen(
    model,
    processor,
    records: list[Record],
    image_root,
    settings: ScreenSettings = ScreenSettings(),
    weights=None,
) -> tuple[list[Record], dict[str, Any]]:
    """(the records whose sampled group has a reward spread, statistics), in the input order."""
    totals = sampled_totals(model, processor, records, image_root, settings, weights)
    spreads = group_spreads(totals, settings.generations)
    kept = [r for r, s in zip(records, spreads, strict=True) if s > settings.min_spread]
    stats = {
        "candidates": len(records),
        "kept": len(kept),
        "kept_fraction": len(kept) / max(1, len(records)),
        "sampled_mean_reward": sum(totals) / max(1, len(totals)),
        "generations": settings.generations,
        "temperature": settings.temperature,
    }
    return kept, stats


def informative_prompts(
    model_dir: str | Path,
    records: list[Record],
    image_root,
    settings: ScreenSettings = ScreenSettings(),
    device: str = "cpu",
    weights: dict[str, float] | None = None,
    box: BoxSettings = BoxSettings(),
) -> tuple[list[Record], dict[str, Any]]:
    """:func:`screen` with the model of a local folder (boxes read in ``box``'s frame, bound to its
    processor as GRPO binds them)."""
    from surgkit.reasoning.vlm import load_vlm

    model, processor = load_vlm(model_dir, device=device, box=box)
    model.eval()
    return screen(model, processor, records, image_root, settings, weights)
