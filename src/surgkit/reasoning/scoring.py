"""Reading a completion's answer for a record and scoring it (spec reasoning §2.1, §2.3, §3).

One place decides what an answer means for a task; the rewards, the evaluation and the chain
validator all call it, so a prediction cannot be right in one and wrong in another.

:func:`parse_answer` returns a :class:`Parsed` whose ``value`` is the task-typed prediction, or
None when the answer is **unparseable** -- and an unparseable answer is wrong in every score, for
every record, including frames whose truth is empty (no triplet, no tool): "none" must be said.

- no ``<answer>`` block, or an empty one -> unparseable;
- MCQ: the option chosen by letter or exact text (``parsing.option_letter``), else unparseable;
- triplet: "none" -> ∅; each group "instrument,verb,target" must name vocabulary words; groups that
  do not parse count as wrong predictions (they lower precision); none parsing -> unparseable;
- tool presence: "none" -> ∅; an unknown name -> unparseable;
- CVS: three criteria (``parsing.parse_cvs``), else unparseable;
- yes/no questions: the first yes/no word, else unparseable;
- phase/step (Cholec80 vocabulary): one of the 7 phases (aliases and spellings accepted), else
  unparseable; VQLA: one of the 18 Surgical-VQLA classes (or the record's own answer), else
  unparseable; other tasks: any non-empty label.

Scores: :func:`is_correct` (strict: exact label, exact set, all three CVS criteria) and
:func:`accuracy_score` (the GRPO accuracy reward: triplets (1-λ)·F1 + λ·mean component F1, CVS
fraction of criteria, tool sets F1; otherwise 0/1).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from surgkit.reasoning import boxes as bx
from surgkit.reasoning.parsing import (
    BRACKET_BOX_RE,
    TOOL_ALIASES,
    answers_match,
    extract_answer,
    first_yes_no,
    label_key,
    option_letter,
    parse_cvs,
    parse_name_set,
    parse_payload,
    parse_triplet_groups,
)
from surgkit.reasoning.records import Record
from surgkit.vocab import CHOLEC80_PHASES, VQLA_ANSWERS

FORMAT_RE = re.compile(r"\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*", re.DOTALL)
UNPARSED = ("?", "?", "?")  # stands for a triplet group that did not parse (never a true triplet)


def format_ok(text: str) -> bool:
    """Exactly ``<think>…</think><answer>…</answer>`` (whitespace around/between), one tag of each kind."""
    return FORMAT_RE.fullmatch(text or "") is not None and all(
        text.count(t) == 1 for t in ("<think>", "</think>", "<answer>", "</answer>")
    )


# ------------------------------------------------------------------------------------- boxes
QWEN_MIN_PIXELS = 56 * 56
SURG_R1_MAX_PIXELS = 28 * 28 * 1280  # 1003520, Surg-R1's MAX_PIXELS (Eval_SurgR1)


@dataclasses.dataclass(frozen=True)
class BoxSettings:
    """How boxes in prompts and completions are framed: ``frame`` (see :data:`boxes.FRAMES`).

    For ``input`` (Qwen2.5-VL native pixels of the resized model input) the input size is the
    processor's resize with ``min_pixels``/``max_pixels`` and ``factor`` (patch size x merge size).
    None = not set: a local model binds them to its processor (:func:`surgkit.reasoning.vlm.bind_processor`
    sets explicit values on the processor and checks the resize); without a processor (predictions,
    endpoints) the defaults are Qwen's min 3136 and Surg-R1's max 1003520.
    """

    frame: str = "norm1000"
    min_pixels: int | None = None
    max_pixels: int | None = None
    factor: int = 28

    @property
    def resolved_min(self) -> int:
        return QWEN_MIN_PIXELS if self.min_pixels is None else int(self.min_pixels)

    @property
    def resolved_max(self) -> int:
        return SURG_R1_MAX_PIXELS if self.max_pixels is None else int(self.max_pixels)

    def input_size(self, rec: Record) -> tuple[int, int] | None:
        if self.frame != "input":
            return None
        return bx.qwen25_input_size(
            *rec.size, factor=self.factor, min_pixels=self.resolved_min, max_pixels=self.resolved_max
        )

    def to_internal(self, values: Sequence[float], rec: Record) -> bx.Box | None:
        """Prompt-frame numbers -> internal pixel box clipped to the image; None if degenerate."""
        w, h = rec.size
        box = bx.clip_box(bx.from_frame(tuple(values), self.frame, w, h, self.input_size(rec)), w, h)
        return box if bx.is_valid(box) else None

    def to_prompt(self, box: bx.Box, rec: Record) -> list[float]:
        out = bx.to_frame(box, self.frame, *rec.size, self.input_size(rec))
        return [int(v) if float(v).is_integer() else round(v, 4) for v in out]


def predicted_box(text: str, rec: Record, settings: BoxSettings = BoxSettings()) -> bx.Box | None:
    """The first predicted box of a completion in the internal frame, or None (missing/degenerate)."""
    _, nums = parse_payload(extract_answer(text))
    return None if nums is None else settings.to_internal(nums, rec)


def predicted_boxes(text: str, rec: Record, settings: BoxSettings = BoxSettings()) -> list[bx.Box]:
    """All predicted boxes of the answer (JSON list of objects or several ``[…]`` lists), valid ones only."""
    import json

    ans = extract_answer(text)
    if ans is None:
        return []
    raw: list[Sequence[float]] = []
    try:
        obj = json.loads(ans)
        items = obj if isinstance(obj, list) else [obj]
        for it in items:
            if isinstance(it, dict) and isinstance(it.get("bbox_2d"), list) and len(it["bbox_2d"]) == 4:
                raw.append([float(v) for v in it["bbox_2d"]])
    except (json.JSONDecodeError, TypeError, ValueError):
        raw = [[float(g) for g in m.groups()] for m in BRACKET_BOX_RE.finditer(ans)]
    out = [settings.to_internal(r, rec) for r in raw]
    return [b for b in out if b is not None]


# ----------------------------------------------------------------------------------- truths
def truth_triplets(rec: Record) -> set[tuple[str, str, str]]:
    return {(t["instrument"], t["verb"], t["target"]) for t in rec.labels.get("triplets") or []}


def truth_cvs(rec: Record) -> tuple[int, int, int]:
    """(C1, C2, C3) in the Endoscapes numbering (:data:`lexicon.CVS_NUMBERING`)."""
    cvs = rec.labels.get("cvs") or {}
    return tuple(int(cvs.get(c, 0)) for c in ("c1", "c2", "c3"))  # type: ignore[return-value]


def truth_option(rec: Record) -> int | None:
    if rec.answer_index is not None:
        return rec.answer_index
    return next((k for k, o in enumerate(rec.options or []) if answers_match(o, rec.answer)), None)


# ---------------------------------------------------------------------------------- parsing
@dataclasses.dataclass(frozen=True)
class Parsed:
    """A completion's answer read for one record; ``value`` None = unparseable (always wrong)."""

    answer: str | None
    label: str | None
    value: Any
    box: bx.Box | None

    @property
    def parseable(self) -> bool:
        return self.value is not None


def answer_kind(rec: Record) -> str:
    """How a record's answer is read: mcq, triplet, cvs, tools, yesno, phase, vqla or label."""
    if rec.options:
        return "mcq"
    if rec.task == "triplet":
        return "triplet"
    if rec.task == "cvs":
        return "cvs"
    if rec.task == "tool_presence":
        return "tools"
    if rec.question_type == "yesno":
        return "yesno"
    if rec.task in ("phase", "step") and rec.labels.get("phase_vocab", "cholec80") == "cholec80":
        return "phase"
    if rec.task == "vqla" and rec.labels.get("vqla_class") is not None:
        return "vqla"
    return "label"


def parse_answer(text: str, rec: Record, settings: BoxSettings = BoxSettings()) -> Parsed:
    """The answer of ``text`` (last ``<answer>`` block) for ``rec`` (see the module docstring)."""
    from surgkit.reasoning.lexicon import ALL_INSTRUMENTS
    from surgkit.reasoning.records import BOX_TASKS

    ans = extract_answer(text)
    if ans is not None and not ans.strip():
        ans = None
    label, _ = parse_payload(ans)
    label = label.strip() if label and label.strip() else None
    box = predicted_box(text, rec, settings) if rec.task in BOX_TASKS else None
    if label is None:
        return Parsed(ans, None, None, box)
    kind = answer_kind(rec)
    value: Any
    if kind == "mcq":
        value = option_letter(label, rec.options or [])
    elif kind == "triplet":
        value = _triplet_value(label)
    elif kind == "cvs":
        value = parse_cvs(label)
    elif kind == "tools":
        names = parse_name_set(label, ALL_INSTRUMENTS, TOOL_ALIASES)
        value = None if names is None else frozenset(names)
    elif kind == "yesno":
        value = first_yes_no(label)
    elif kind == "phase":
        value = next(
            (p for p in CHOLEC80_PHASES if answers_match(label, p, rec.answer_aliases, "phase")), None
        )
    elif kind == "vqla":
        vocab = (*VQLA_ANSWERS, rec.answer)
        value = next((a for a in vocab if answers_match(label, a, (), rec.task)), None)
    else:
        value = label_key(label) or None
    return Parsed(ans, label, value, box)


def _triplet_value(label: str) -> tuple[frozenset, int] | None:
    """(parsed triplets, number of groups that did not parse); None when nothing parses."""
    if label_key(label) in ("none", "notriplet", "noaction"):
        return frozenset(), 0
    good, bad = parse_triplet_groups(label)
    if not good:
        return None
    return frozenset(good), bad


# ---------------------------------------------------------------------------------- scoring
def set_f1(pred: set, truth: set) -> float:
    """F1 of two sets; both empty -> 1."""
    if not pred and not truth:
        return 1.0
    tp = len(pred & truth)
    return 0.0 if tp == 0 else 2 * tp / (len(pred) + len(truth))


def triplet_score(
    pred: set[tuple[str, str, str]] | None, truth: set[tuple[str, str, str]], lam: float = 0.5, bad: int = 0
) -> float:
    """(1-λ)·F1 over exact triplets + λ·mean(F1 instrument, verb, target); ``bad`` unparsed groups are
    counted as wrong predictions; an unparseable answer (None) -> 0."""
    if pred is None:
        return 0.0
    filler = {(f"?{k}", f"?{k}", f"?{k}") for k in range(bad)}
    full = set(pred) | filler
    comp = [set_f1({p[k] for p in full}, {t[k] for t in truth}) for k in range(3)]
    return (1 - lam) * set_f1(full, truth) + lam * float(np.mean(comp))


def is_correct(p: Parsed, rec: Record) -> bool:
    """Strict correctness: exact label / option / set (no unparsed group) / all three CVS criteria."""
    if not p.parseable:
        return False
    kind = answer_kind(rec)
    if kind == "mcq":
        return p.value == truth_option(rec)
    if kind == "triplet":
        trip, bad = p.value
        return bad == 0 and set(trip) == truth_triplets(rec)
    if kind == "cvs":
        return tuple(p.value) == truth_cvs(rec)
    if kind == "tools":
        return set(p.value) == set(rec.labels.get("tools") or [])
    if kind == "yesno":
        return p.value == rec.answer.strip().lower()
    if kind == "phase":
        return answers_match(p.value, rec.answer, rec.answer_aliases, "phase")
    return answers_match(p.label, rec.answer, rec.answer_aliases, rec.task)


def accuracy_score(p: Parsed, rec: Record, lam: float = 0.5, strict_cvs: bool = False) -> float:
    """GRPO accuracy in [0, 1]: partial credit for triplets, CVS and tool sets; 0 when unparseable."""
    if not p.parseable:
        return 0.0
    kind = answer_kind(rec)
    if kind == "triplet":
        trip, bad = p.value
        return triplet_score(set(trip), truth_triplets(rec), lam, bad)
    if kind == "cvs" and not strict_cvs:
        return sum(a == b for a, b in zip(p.value, truth_cvs(rec), strict=True)) / 3
    if kind == "tools" and lam > 0:
        return set_f1(set(p.value), set(rec.labels.get("tools") or []))
    return float(is_correct(p, rec))


def answer_correct(text: str, rec: Record, settings: BoxSettings = BoxSettings()) -> bool:
    """Strict correctness of a completion's answer for ``rec``."""
    return is_correct(parse_answer(text, rec, settings), rec)
