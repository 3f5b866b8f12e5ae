"""Stage 4: iterative self-improvement, our implementable reading of Surg-R1's "dual pathway" (spec §1.4).

Per round: (1) sample K chains per training question from the current policy (temperature ~0.9; batched
KV-cache generation, on the GPU when there is one: ``device="auto"``);
(2) keep the chains that pass :func:`surgkit.reasoning.cot.validate_chain` (right answer, three levels in
order, no absent instrument, relations ⊆ ground truth, positions agree with boxes) — pathway A (self);
(3) for questions without an accepted chain keep the template chain — pathway B (fallback); (4) SFT on
A ∪ B plus a seeded slice of Stage-1 sentence data, then GRPO again. Statistics per round are written
to ``self_improve.json``, every sampled chain with its validation to ``round<r>/chains.jsonl``. Each
generation batch is sampled with its own seed, so the chains do not depend on the number of processes
(``accelerate launch`` / ``torchrun`` share the batches out).
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

CHAINS = "chains.jsonl"  # per round: every sampled chain, its validation and whether it was kept


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
    model,
    processor,
    records: list[Record],
    image_root,
    settings: SelfImproveSettings,
    box: BoxSettings,
    round_index: int = 0,
    chains_out: str | Path | None = None,
) -> tuple[list[Record], list[Record], dict[str, Any]]:
    """(accepted self chains, template fallbacks, stats) for ``records`` (pathways A and B).

    Chains are sampled with batched KV-cache generation (:func:`generation.generate_answers`), each
    batch with its own seed ``(settings.seed, round_index, batch)``; under ``accelerate launch`` /
    ``torchrun`` the batches are shared out over the processes and gathered, so N processes sample
    exactly the chains of one. A chain cut at the token limit is rejected like any chain that fails
    the validator. ``chains_out``: every sampled chain as one JSON line (record id, sample, status,
    the validator's issue kinds -- ``null`` after an accepted sample, which is not validated --, whether
    it was kept, text), written by the main process.
    """
    from surgkit.reasoning import generation

    gen = generation.GenerationSettings(
        max_new_tokens=settings.max_new_tokens,
        batch_size=settings.batch_size,
        do_sample=True,
        temperature=settings.temperature,
        num_return_sequences=settings.samples,
    )
    answers = _sharded_answers(model, processor, records, image_root, box, gen, (settings.seed, round_index))
    accepted, fallback, issues, log = [], [], {}, []
    for j, rec in enumerate(records):
        ok = None
        for s, a in enumerate(answers[j * settings.samples : (j + 1) * settings.samples]):
            entry = {
                "id": rec.id,
                "sample": s,
                "status": a.status,
                "issues": None,
                "kept": False,
                "text": a.text,
            }
            log.append(entry)
            if ok is not None:
                continue
            found = validate_chain(a.text, rec, box=box)
            if a.status != "ok":
                found = [*found, ChainIssue("length", "cut at the token limit")]
            for issue in found:
                issues[issue.kind] = issues.get(issue.kind, 0) + 1
            entry.update(issues=sorted({i.kind for i in found}), kept=not found)
            if not found:
                ok = a.text
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
    if chains_out is not None:
        _write_chains(Path(chains_out), log)
    return accepted, fallback, stats


def _write_chains(path: Path, log: list[dict[str, Any]]) -> None:
    import json

    from surgkit.utils.io import write_text
    from surgkit.utils.launch import process_state

    if process_state().is_main_process:
        write_text(path, "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in log))


def _sharded_answers(model, processor, records, image_root, box, gen, seed: tuple[int, ...]) -> list:
    """``generate_answers`` with per-batch seeds; on N processes each generates every N-th batch and
    all processes get every answer (same list as one process)."""
    from surgkit.reasoning import generation
    from surgkit.utils.launch import process_state

    state = process_state()
    world = state.num_processes
    shard = (state.process_index, world) if world > 1 else None
    answers = generation.generate_answers(
        model, processor, records, image_root, box, gen, seed=seed, shard=shard
    )
    if world > 1:
        from accelerate.utils import gather_object

        mine = [(k, a) for k, a in enumerate(answers) if a is not None]
        for part in gather_object([mine]):
            for k, a in part:
                answers[k] = a
    return answers


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
        accepted, fallback, stats = sample_chains(
            model,
            processor,
            records,
            image_root,
            settings,
            processor.surgkit_box,
            round_index=r,
            chains_out=out / f"round{r + 1}" / CHAINS,
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
