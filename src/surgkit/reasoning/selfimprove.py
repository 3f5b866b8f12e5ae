"""Stage 4: iterative self-improvement, our implementable reading of Surg-R1's "dual pathway" (spec §1.4).

Per round: (1) sample K chains per training question from the current policy (temperature ~0.9; batched
KV-cache generation, on the GPU when there is one: ``device="auto"``);
(2) keep the chains that pass :func:`surgkit.reasoning.cot.validate_chain` (right answer, three levels in
order, no absent instrument, relations ⊆ ground truth, positions agree with boxes) — pathway A (self);
(3) for questions without an accepted chain keep the template chain — pathway B (fallback); (4) SFT on
A ∪ B plus a seeded slice of Stage-1 sentence data, then GRPO again. Statistics per round are written
to ``self_improve.json``.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

from surgkit.reasoning.cot import ChainIssue, validate_chain
from surgkit.reasoning.parsing import extract_think
from surgkit.reasoning.records import Record
from surgkit.reasoning.scoring import BoxSettings
from surgkit.reasoning.statements import split_levels
from surgkit.reasoning.train import GRPOSettings, SFTSettings, grpo, sft
from surgkit.utils.lock import locked


@dataclasses.dataclass
class SelfImproveSettings:
    rounds: int = 1
    samples: int = 4
    temperature: float = 0.9
    max_new_tokens: int = 512
    batch_size: int = 4
    stage1_fraction: float = 0.25
    seed: int = 0


def with_chain(rec: Record, text: str, source: str) -> Record:
    """Copy of ``rec`` whose ``reasoning`` holds the levels of ``text`` (marked verified)."""
    levels = split_levels(extract_think(text) or "") or {}
    new = dataclasses.replace(rec)
    new.reasoning = {
        "level1": levels.get(1, ""),
        "level2": levels.get(2, ""),
        "level3": levels.get(3, ""),
        "source": source,
        "verified": True,
    }
    return new


def sample_chains(
    model, processor, records: list[Record], image_root, settings: SelfImproveSettings, box: BoxSettings
) -> tuple[list[Record], list[Record], dict[str, Any]]:
    """(accepted self chains, template fallbacks, stats) for ``records`` (pathways A and B).

    Chains are sampled with batched KV-cache generation (:func:`generation.generate_answers`); a chain cut
    at the token limit is rejected like any chain that fails the validator.
    """
    from surgkit.reasoning import generation

    gen = generation.GenerationSettings(
        max_new_tokens=settings.max_new_tokens,
        batch_size=settings.batch_size,
        do_sample=True,
        temperature=settings.temperature,
        num_return_sequences=settings.samples,
    )
    answers = generation.generate_answers(model, processor, records, image_root, box, gen)
    accepted, fallback, issues = [], [], {}
    for j, rec in enumerate(records):
        ok = None
        for a in answers[j * settings.samples : (j + 1) * settings.samples]:
            found = validate_chain(a.text, rec, box=box)
            if a.status != "ok":
                found = [*found, ChainIssue("length", "cut at the token limit")]
            for issue in found:
                issues[issue.kind] = issues.get(issue.kind, 0) + 1
            if not found:
                ok = a.text
                break
        if ok is not None:
            accepted.append(with_chain(rec, ok, "self"))
        else:
            fb = dataclasses.replace(rec)
            fb.reasoning = None  # the template chain is rendered at SFT time
            fallback.append(fb)
    stats = {
        "questions": len(records),
        "accepted_self": len(accepted),
        "fallback_template": len(fallback),
        "acceptance_rate": len(accepted) / max(1, len(records)),
        "rejections_by_kind": issues,
    }
    return accepted, fallback, stats


def sample_chains_sharded(
    model, processor, records: list[Record], image_root, settings: SelfImproveSettings, box: BoxSettings
) -> tuple[list[Record], list[Record], dict[str, Any]]:
    """:func:`sample_chains` under ``accelerate launch``/``torchrun``: each process samples a contiguous
    share of the questions (whole generation batches) and every process gets all the chains, in order,
    so the SFT that follows trains every process on the same data."""
    from accelerate.utils import gather_object

    from surgkit.utils.launch import process_state

    state = process_state()
    if state.num_processes == 1:
        return sample_chains(model, processor, records, image_root, settings, box)
    size = max(1, settings.batch_size)
    chunks = [records[i : i + size] for i in range(0, len(records), size)]
    with state.split_between_processes(chunks) as mine:
        part = sample_chains(model, processor, [r for c in mine for r in c], image_root, settings, box)
    parts = gather_object([part])
    accepted = [r for a, _, _ in parts for r in a]
    fallback = [r for _, f, _ in parts for r in f]
    issues: dict[str, int] = {}
    for _, _, st in parts:
        for kind, n in st["rejections_by_kind"].items():
            issues[kind] = issues.get(kind, 0) + n
    stats = {
        "questions": len(records),
        "accepted_self": len(accepted),
        "fallback_template": len(fallback),
        "acceptance_rate": len(accepted) / max(1, len(records)),
        "rejections_by_kind": issues,
        "processes": state.num_processes,
    }
    return accepted, fallback, stats


@locked("surgkit reason self-improve")  # one writer; each round's sft/grpo folder is guarded itself
def self_improve(
    model_path: str | Path,
    records: list[Record],
    image_root,
    out_dir: str | Path,
    settings: SelfImproveSettings = SelfImproveSettings(),
    sft_settings: SFTSettings = SFTSettings(),
    grpo_settings: GRPOSettings = GRPOSettings(),
    device: str = "auto",
) -> tuple[Path, list[dict[str, Any]]]:
    """R rounds of sample → validate → merge (A ∪ B) → SFT (+ Stage-1 slice) → GRPO. Returns the final model."""
    from surgkit.reasoning.vlm import load_vlm, resolve_device
    from surgkit.utils.io import write_json
    from surgkit.utils.launch import process_device, process_state

    out = Path(out_dir)
    current = Path(model_path)
    history = []
    rng = random.Random(settings.seed)
    box = BoxSettings(
        frame=sft_settings.box_frame, min_pixels=sft_settings.min_pixels, max_pixels=sft_settings.max_pixels
    )
    for r in range(settings.rounds):
        model, processor = load_vlm(current, device=process_device(resolve_device(device)), box=box)
        accepted, fallback, stats = sample_chains_sharded(
            model, processor, records, image_root, settings, processor.surgkit_box
        )
        del model
        k = int(round(settings.stage1_fraction * len(records)))
        simple = rng.sample(records, k) if k else []
        cot_settings = dataclasses.replace(sft_settings, stage="cot")
        sft_dir = sft(
            current,
            accepted + fallback,
            image_root,
            out / f"round{r + 1}" / "sft",
            cot_settings,
            device,
            extra_simple=simple,
        )
        current = grpo(sft_dir, records, image_root, out / f"round{r + 1}" / "grpo", grpo_settings, device)
        stats.update(round=r + 1, stage1_slice=len(simple), model=str(current))
        history.append(stats)
        if process_state().is_main_process:
            write_json(
                out / "self_improve.json", {"settings": dataclasses.asdict(settings), "rounds": history}
            )
    return current, history
