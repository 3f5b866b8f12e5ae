"""Teacher chains (Surg-R1's data pipeline: 13 % of its chains came from GPT-4o): ask a larger served VLM
through any OpenAI-compatible endpoint for a three-level chain per training question, keep the chains
that pass the validator, fall back to the template chain for the others.

The teacher sees the frame, the question, the ground-truth answer and the frame's annotated facts
(instruments with their grid cells, relations, phase, CVS criteria) -- Surg-R1 distils chains that
reach the known answer; the facts keep them checkable. Every chain is judged by
:func:`surgkit.reasoning.cot.validate_chain` on what it states; an accepted chain is stored in the
record's ``reasoning`` with ``source: teacher`` and the teacher's name, a refused one is counted by the
kind of its first problem. Requests go through :mod:`surgkit.reasoning.endpoint` (bounded concurrency,
retries, statuses) and :func:`surgkit.reasoning.runners.predict`, so an interrupted run resumes after the
chains already received, and a folder is never mixed between two teachers.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

from surgkit.reasoning.endpoint import EndpointSettings, image_block
from surgkit.reasoning.records import Record
from surgkit.reasoning.scoring import BoxSettings

TEACHER_SYSTEM = (
    "You write the reasoning of a surgical vision assistant. Given a frame, a question, its correct answer "
    "and the annotated facts of the frame, write three short levels inside <think></think>: 'Level 1:' the "
    "instruments and tissues that are seen (and where, using upper/middle/lower and left/centre/right), "
    "'Level 2:' which instrument acts on which tissue, 'Level 3:' what this means for the question, ending "
    "with the answer; then the answer alone inside <answer></answer>. State only what the facts support; "
    "never name an instrument, tissue, action or phase the facts do not give."
)


def facts(rec: Record) -> str:
    """The annotated facts of a record as short lines (what a chain may state)."""
    from surgkit.reasoning.boxes import grid_cell, grid_name
    from surgkit.reasoning.cot import frame_phase, instrument_states, present_instruments, present_tissues
    from surgkit.reasoning.lexicon import CVS_CLAUSES, CVS_NUMBERING, readable

    lines = []
    inst = []
    for name in present_instruments(rec):
        b = next((x.bbox for x in rec.boxes if x.label == name), None)
        inst.append(readable(name) + (f" ({grid_name(*grid_cell(b, *rec.size))})" if b else ""))
    if inst:
        lines.append("instruments: " + ", ".join(inst))
    if present_tissues(rec):
        lines.append("tissues: " + ", ".join(readable(t) for t in present_tissues(rec)))
    for t in rec.labels.get("triplets") or []:
        lines.append(f"relation: {readable(t['instrument'])} {t['verb']} {readable(t['target'])}")
    for name, states in instrument_states(rec).items():
        lines.append(f"state: {readable(name)} {', '.join(states)}")
    if frame_phase(rec):
        lines.append(f"phase: {frame_phase(rec)}")
    for c, crit in CVS_NUMBERING.items():
        if rec.labels.get("cvs") is not None:
            lines.append(f"{c.upper()}: {CVS_CLAUSES[crit][0 if rec.labels['cvs'].get(c) else 1]}")
    return "\n".join(lines) or "no annotated facts beyond the answer"


def teacher_messages(rec: Record, image_root, box: BoxSettings = BoxSettings()) -> list[dict[str, Any]]:
    from surgkit.reasoning.render import answer_payload, image_paths, question_text

    content: list[dict[str, Any]] = [image_block(p) for p in image_paths(rec, image_root)]
    content.append(
        {
            "type": "text",
            "text": f"Question: {question_text(rec)}\nCorrect answer: {answer_payload(rec, box)}\n"
            f"Annotated facts:\n{facts(rec)}",
        }
    )
    return [{"role": "system", "content": TEACHER_SYSTEM}, {"role": "user", "content": content}]


def teacher_generator(settings: EndpointSettings, image_root, box: BoxSettings = BoxSettings()):
    """A :class:`surgkit.reasoning.runners.Generator` asking the teacher for chains."""
    from surgkit.reasoning.endpoint import Client
    from surgkit.reasoning.runners import Generator

    client = Client(settings)

    def answer(batch, on_answer):
        requests = [(r.id, teacher_messages(r, image_root, box)) for r in batch]
        return client.ask_many(requests, lambda k, a: on_answer(batch[k], a))

    identity = {**settings.identity(), "role": "teacher"}
    gen = Generator(identity, answer, f"teacher {settings.chat_url} ({settings.model})", box)
    gen.client = client  # type: ignore[attr-defined]
    return gen


def teach(
    records: list[Record],
    settings: EndpointSettings,
    image_root,
    work: str | Path,
    box: BoxSettings = BoxSettings(),
) -> tuple[list[Record], dict[str, Any]]:
    """Records with teacher chains where valid and template chains elsewhere, and the statistics.

    Raw teacher answers are kept (resumable) in ``work/teacher.jsonl``.
    """
    from surgkit.reasoning.cot import validate_chain
    from surgkit.reasoning.parsing import extract_think
    from surgkit.reasoning.pipeline import template_reasoning
    from surgkit.reasoning.runners import predict
    from surgkit.reasoning.statements import split_levels
    from surgkit.utils.lock import output_lock
    from surgkit.utils.runinfo import check_resume

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    gen = teacher_generator(settings, image_root, box)
    with output_lock(work, "surgkit reason teach"):
        check_resume(
            work, {"teacher": gen.identity, "box": dataclasses.asdict(box)}, command="surgkit reason teach"
        )
        texts, statuses = predict(records, gen, work / "teacher.jsonl")

    out, rejected = [], Counter()
    accepted = fallback = 0
    for rec in records:
        new = dataclasses.replace(rec)
        text = texts.get(rec.id, "")
        issues = validate_chain(text, rec, box=box) if statuses.get(rec.id) == "ok" else None
        if issues == []:
            levels = split_levels(extract_think(text) or "") or {}
            new.reasoning = {f"level{k}": levels[k] for k in (1, 2, 3)}
            new.reasoning.update(source="teacher", verified=True, teacher=settings.model)
            accepted += 1
        else:
            rejected[issues[0].kind if issues else statuses.get(rec.id, "missing")] += 1
            new.reasoning, _ = template_reasoning(rec)
            fallback += 1
        out.append(new)
    stats = {
        "questions": len(records),
        "teacher_accepted": accepted,
        "template_fallback": fallback,
        "acceptance_rate": accepted / max(1, len(records)),
        "rejected_by_kind": dict(rejected),
        "teacher": settings.model,
    }
    return out, stats
