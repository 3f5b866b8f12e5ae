"""File-level entry points behind ``surgkit reason …`` (the CLI only parses options and calls these)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from surgkit.errors import DataFormatError, SurgkitError
from surgkit.reasoning.records import Record, read_records, resolve_image, write_jsonl


def template_reasoning(rec: Record) -> tuple[dict[str, Any] | None, list[str]]:
    """The template chain of ``rec`` as a ``reasoning`` dict, validated; (None, issues) if it fails."""
    from surgkit.reasoning.cot import build_chain, validate_chain

    chain = build_chain(rec)
    issues = validate_chain(chain.text(), rec)
    if issues:
        return None, [f"{i.kind}: {i.message}" for i in issues]
    return {
        "level1": chain.level1,
        "level2": chain.level2,
        "level3": chain.level3,
        "source": "template",
        "template_id": chain.template_id,
        "verified": True,
    }, []


def build_records_file(
    source: str,
    root: str | Path,
    out: str | Path,
    cot: bool = False,
    stride: int = 1,
    frames_dir=None,
    vqla_box_size: tuple[int, int] | None = None,
    stride_s: float = 30.0,
    mcq: bool = False,
) -> dict[str, Any]:
    """Build records from a dataset root, optionally add MCQ copies and attach validated template chains,
    write JSONL."""
    from surgkit.reasoning.builders import build

    kw = {"vqla_box_size": vqla_box_size} if vqla_box_size else {}
    report = build(source, root, frames_dir=frames_dir, stride=stride, stride_s=stride_s, **kw)
    if mcq:
        from surgkit.reasoning.benchmarks import mcq_records

        report.records += mcq_records(report.records)
    template_failures = []
    if cot:
        for rec in report.records:
            reasoning, issues = template_reasoning(rec)
            rec.reasoning = reasoning
            if issues:
                template_failures.append((rec.id, issues))
    n = write_jsonl(out, report.records)
    return {
        "written": n,
        "by_task": report.counts(),
        "skipped": report.skipped,
        "notes": report.notes,
        "template_failures": template_failures,
    }


def answer_problem(rec: Record) -> str | None:
    """Why the canonical answer of ``rec`` is not usable for scoring (None if it is)."""
    from surgkit.reasoning.lexicon import ALL_INSTRUMENTS
    from surgkit.reasoning.parsing import (
        TOOL_ALIASES,
        answers_match,
        parse_cvs,
        parse_name_set,
        parse_triplets,
    )
    from surgkit.vocab import CHOLEC80_PHASES, VQLA_ANSWERS

    a = rec.answer
    if (
        rec.options is not None
        and rec.answer_index is not None
        and not answers_match(rec.options[rec.answer_index], a)
    ):
        return f"answer {a!r} is not option {rec.answer_index} ({rec.options[rec.answer_index]!r})"
    if rec.task == "vqla" and rec.labels.get("vqla_class") is not None and a not in VQLA_ANSWERS:
        return f"unknown VQLA answer {a!r} (not one of the 18 classes)"
    cholec = rec.labels.get("phase_vocab", "cholec80") == "cholec80"
    if (
        rec.task == "phase"
        and cholec
        and not any(answers_match(a, p, rec.answer_aliases, "phase") for p in CHOLEC80_PHASES)
    ):
        return f"unknown Cholec80 phase {a!r} (set labels.phase_vocab for another phase set)"
    if rec.task == "triplet" and not parse_triplets(a) and a.strip().lower() != "none":
        return f"triplet answer {a!r} does not parse as 'instrument,verb,target; …'"
    if rec.task == "cvs" and parse_cvs(a) is None:
        return f"CVS answer {a!r} does not parse as 'C1 yes/no, C2 yes/no, C3 yes/no'"
    if rec.task == "tool_presence" and parse_name_set(a, ALL_INSTRUMENTS, TOOL_ALIASES) is None:
        return f"tool answer {a!r} names an unknown instrument"
    return None


def validate_records_file(path: str | Path, image_root=None, check_images: bool = False) -> dict[str, Any]:
    """Parse every line (errors listed as file:line), check images, and validate each stored or template chain."""
    from surgkit.reasoning.cot import validate_chain
    from surgkit.reasoning.render import render_target

    errors: list[DataFormatError] = []
    records = read_records(path, errors=errors)
    problems = [str(e) for e in errors]
    chains_ok, chain_problems = 0, []
    for rec in records:
        why = answer_problem(rec)
        if why:
            problems.append(f"{rec.id}: {why}")
        if check_images:
            try:
                resolve_image(rec, image_root)
            except SurgkitError as e:
                problems.append(str(e))
        issues = validate_chain(render_target(rec, "cot"), rec)
        if issues:
            chain_problems.append(f"{rec.id}: " + "; ".join(f"{i.kind}: {i.message}" for i in issues))
        else:
            chains_ok += 1
    return {
        "records": len(records),
        "line_errors": problems,
        "chains_valid": chains_ok,
        "chain_problems": chain_problems,
    }


def load_train_records(
    path: str | Path, split: str = "train", allow_leakage: bool = False, limit: int = 0
) -> list[Record]:
    from surgkit.reasoning.train import select_split

    recs = select_split(read_records(path), split, allow_leakage)
    return recs[:limit] if limit > 0 else recs


def tokenizer_corpus(records: list[Record]) -> list[str]:
    """Every text the model will see or produce for these records, with its multiplicity: per record the
    system prompts, the question, and the sentence and chain targets."""
    from surgkit.reasoning.render import question_text, render_target, system_prompt

    prompts = [system_prompt(), system_prompt(reasoning=False)]
    corpus = []
    for rec in records:
        corpus += prompts
        corpus.append(question_text(rec))
        for mode in ("sentence", "cot"):
            corpus.append(render_target(rec, mode))
    return corpus


def make_tiny_model(records_path: str | Path, out: str | Path, seed: int = 0, **sizes: Any) -> Path:
    """The embedded tiny Qwen2-VL with a tokenizer trained on the records' texts (train split only)."""
    from surgkit.reasoning.tiny_vlm import TinyVLMConfig, build_tiny_vlm

    recs = [r for r in read_records(records_path) if r.split == "train"] or read_records(records_path)
    cfg = dataclasses.replace(TinyVLMConfig(), **{k: v for k, v in sizes.items() if v is not None})
    return build_tiny_vlm(out, tokenizer_corpus(recs), cfg, seed)


def parse_size(text: str | None) -> tuple[int, int] | None:
    """'1280x1024' -> (1280, 1024)."""
    if not text:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SurgkitError(f"bad size '{text}' (use WIDTHxHEIGHT, e.g. 1280x1024)") from None
    return w, h


def parse_weights(text: str | None) -> dict[str, float] | None:
    """'accuracy=1,format_hierarchical=0.5' -> dict (None -> defaults)."""
    if not text:
        return None
    out = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        try:
            out[name.strip()] = float(value) if value else 1.0
        except ValueError:
            raise SurgkitError(f"bad reward weight '{part}' (use name=weight)") from None
    return out
