"""Rule-based rewards for GRPO (spec reasoning §2), with the TRL reward signature.

Every reward is ``f(completions, **columns) -> list[float | None]``: ``completions`` are strings or
TRL conversational completions (a list with one assistant message); the record of each completion
comes in the ``record`` column (a :class:`Record`, its dict, or its JSON text), repeated per generation
as TRL does. ``None`` means "does not apply to this record" (TRL then leaves it out of the weighted
sum). All rewards lie in [0, 1]. No substring credit anywhere (spec §3.4 pitfall).

Formulas:
- format_basic: 1 iff the completion is exactly ``<think>…</think><answer>…</answer>`` (whitespace
  allowed around/between) with one tag of each kind.
- format_grounding: basic and the answer carries a box (four numbers); None for tasks without a box.
- format_hierarchical: basic and Level 1/2/3 in order, each non-empty -> 1; basic only -> ``partial``.
- accuracy: exact label match after normalisation + aliases; MCQ by option; triplets
  (1-λ)·F1(triplets) + λ·mean(F1 instrument, verb, target); CVS fraction of criteria right; tool sets F1.
- iou: true IoU of the predicted box (converted from the prompt's frame, clipped to the image) with the
  answer box; several boxes: Hungarian matching, Σ IoU_matched / max(#gt, #pred); ``threshold`` mode
  1[IoU ≥ 0.5].
- coherence (Surgery-R1 "multimodal coherence", our reading, §2.5): weighted mean of the enabled terms
  (joint: 1[answer right]·1[IoU ≥ τ] or ·IoU if graded; quadrant: quadrant of the predicted box =
  predicted location text; reasoning: the positions the chain states for the answer object agree with
  the predicted box -- read by :mod:`surgkit.reasoning.statements` on the one region definition of
  :mod:`surgkit.reasoning.boxes`, so "upper centre" is one cell and "right-top" one quadrant).
- process rewards (§2.6): L1 entity F1, L2 relation F1, L3 conclusion = answer.

Answers are read by :mod:`surgkit.reasoning.scoring`: an unparseable answer scores 0 in every reward
that looks at the answer, whatever the record (a frame without triplets needs the answer "none").
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from surgkit.reasoning import boxes as bx
from surgkit.reasoning.parsing import answers_match, completion_text, extract_answer, extract_think
from surgkit.reasoning.records import BOX_TASKS, Record
from surgkit.reasoning.scoring import (
    BoxSettings,
    accuracy_score,
    format_ok,
    is_correct,
    parse_answer,
    predicted_box,
    predicted_boxes,
    set_f1,
    truth_triplets,
)
from surgkit.reasoning.statements import ChainStatements, parse_chain, split_levels

Reward = list[float | None]


# ------------------------------------------------------------------------------------- plumbing
@lru_cache(maxsize=4096)
def _record_from_json(text: str) -> Record:
    return Record.from_dict(json.loads(text))


def as_record(obj: Any) -> Record:
    """A record column entry (Record, dict or JSON text) as a :class:`Record`."""
    if isinstance(obj, Record):
        return obj
    if isinstance(obj, str):
        return _record_from_json(obj)
    return Record.from_dict(obj)


def _texts(completions: Sequence[Any]) -> list[str]:
    return [completion_text(c) for c in completions]


def _records(n: int, record: Sequence[Any] | None) -> list[Record]:
    if record is None or len(record) != n:
        raise ValueError("rewards need a 'record' column aligned with the completions")
    return [as_record(r) for r in record]


@lru_cache(maxsize=4096)
def _statements(think: str) -> ChainStatements:
    return parse_chain(think)


def chain_statements(text: str) -> ChainStatements:
    """What the ``<think>`` block of a completion states (cached; see :mod:`statements`)."""
    return _statements(extract_think(text) or "")


# ---------------------------------------------------------------------------------------- format
def format_basic(completions: Sequence[Any], **_: Any) -> Reward:
    """1 iff exactly ``<think>…</think><answer>…</answer>`` (one of each tag), else 0."""
    return [float(format_ok(t)) for t in _texts(completions)]


def format_grounding(completions: Sequence[Any], record: Sequence[Any] | None = None, **_: Any) -> Reward:
    """Basic format and a four-number box in the answer; None for records without a box task."""
    from surgkit.reasoning.parsing import parse_payload

    texts = _texts(completions)
    out: Reward = []
    for t, rec in zip(texts, _records(len(texts), record), strict=True):
        if rec.task not in BOX_TASKS:
            out.append(None)
            continue
        _, nums = parse_payload(extract_answer(t))
        out.append(float(format_ok(t) and nums is not None))
    return out


def format_hierarchical(completions: Sequence[Any], partial: float = 0.5, **_: Any) -> Reward:
    """Basic format with Level 1, 2, 3 in order and non-empty -> 1; basic format only -> ``partial``."""
    out: Reward = []
    for t in _texts(completions):
        if not format_ok(t):
            out.append(0.0)
            continue
        st = chain_statements(t)
        out.append(1.0 if st.levels is not None and not st.empty_levels() else partial)
    return out


# -------------------------------------------------------------------------------------- accuracy
def accuracy(
    completions: Sequence[Any], record: Sequence[Any] | None = None, triplet_lambda: float = 0.5, **_: Any
) -> Reward:
    """Per-task accuracy in [0, 1] (:func:`scoring.accuracy_score`); unparseable -> 0."""
    texts = _texts(completions)
    return [
        accuracy_score(parse_answer(t, r), r, triplet_lambda)
        for t, r in zip(texts, _records(len(texts), record), strict=True)
    ]


# ------------------------------------------------------------------------------------------- IoU
def matched_iou(pred: Sequence[bx.Box], truth: Sequence[bx.Box]) -> float:
    """Σ IoU over a Hungarian matching / max(#truth, #pred) (Visual-RFT "v2" style, true IoU)."""
    from scipy.optimize import linear_sum_assignment

    if not pred or not truth:
        return 0.0
    m = np.array([[bx.iou(p, t) for t in truth] for p in pred])
    rows, cols = linear_sum_assignment(-m)
    return float(m[rows, cols].sum() / max(len(pred), len(truth)))


def iou_reward(
    completions: Sequence[Any],
    record: Sequence[Any] | None = None,
    mode: str = "continuous",
    threshold: float = 0.5,
    box_settings: BoxSettings = BoxSettings(),
    **_: Any,
) -> Reward:
    """IoU of predicted vs answer boxes; None for records without an answer box."""
    texts = _texts(completions)
    out: Reward = []
    for t, rec in zip(texts, _records(len(texts), record), strict=True):
        gts = [b.bbox for b in rec.answer_boxes()]
        if not gts:
            out.append(None)
            continue
        if len(gts) == 1:
            v = bx.iou(predicted_box(t, rec, box_settings), gts[0])
        else:
            v = matched_iou(predicted_boxes(t, rec, box_settings), gts)
        out.append(float(v >= threshold) if mode == "threshold" else v)
    return out


# ------------------------------------------------------------------------------------- coherence
@dataclasses.dataclass(frozen=True)
class CoherenceConfig:
    """The three switchable terms of the multimodal coherence reward (spec §2.5) and their weights."""

    joint: bool = True
    joint_weight: float = 1.0
    joint_graded: bool = False
    tau: float = 0.5
    quadrant: bool = True
    quadrant_weight: float = 0.5
    reasoning: bool = False
    reasoning_weight: float = 0.5


def answer_object(rec: Record) -> str:
    """The object a box answer is about (VQLA: the questioned instrument; grounding: the answer)."""
    return str(rec.labels.get("object") or rec.answer)


def reasoning_box_agreement(text: str, rec: Record, box: bx.Box) -> float | None:
    """Fraction of the positions the chain states for the answer object whose region holds the box
    centre; None when the chain states no position for it."""
    obj = answer_object(rec)
    st = chain_statements(text)
    votes = [p.region.contains(box, *rec.size) for p in st.positions if obj in p.names]
    return None if not votes else float(np.mean(votes))


def coherence_one(text: str, rec: Record, cfg: CoherenceConfig, settings: BoxSettings) -> float | None:
    gt = rec.answer_box()
    if gt is None:
        return None
    parsed = parse_answer(text, rec, settings)
    pred = predicted_box(text, rec, settings)
    terms: list[tuple[float, float]] = []
    if cfg.joint:
        v = bx.iou(pred, gt)
        ok = is_correct(parsed, rec)
        terms.append((cfg.joint_weight, float(ok) * (v if cfg.joint_graded else float(v >= cfg.tau))))
    if cfg.quadrant and rec.task == "vqla" and rec.question_type == "location":
        consistent = (
            pred is not None
            and parsed.parseable
            and answers_match(parsed.label, bx.quadrant(pred, *rec.size), task=rec.task)
        )
        terms.append((cfg.quadrant_weight, float(consistent)))
    if cfg.reasoning and pred is not None:
        agree = reasoning_box_agreement(text, rec, pred)
        if agree is not None:
            terms.append((cfg.reasoning_weight, agree))
    if not terms:
        return None
    return sum(w * v for w, v in terms) / sum(w for w, _ in terms)


def coherence(
    completions: Sequence[Any],
    record: Sequence[Any] | None = None,
    config: CoherenceConfig = CoherenceConfig(),
    box_settings: BoxSettings = BoxSettings(),
    **_: Any,
) -> Reward:
    """Multimodal coherence: a right answer with a hallucinated box earns 0 from the joint term."""
    texts = _texts(completions)
    return [
        coherence_one(t, r, config, box_settings)
        for t, r in zip(texts, _records(len(texts), record), strict=True)
    ]


# ------------------------------------------------------------------------------ process rewards
def _resolve(names: frozenset[str], known: set[str]) -> str:
    """One name of a candidate set: the one the annotations know, else the first alphabetically."""
    hit = sorted(names & known)
    return hit[0] if hit else sorted(names)[0]


def l1_entity_f1(completions: Sequence[Any], record: Sequence[Any] | None = None, **_: Any) -> Reward:
    """F1 of the instruments Level 1 states present vs those annotated (0 without levels)."""
    from surgkit.reasoning.cot import present_instruments

    texts = _texts(completions)
    out: Reward = []
    for t, rec in zip(texts, _records(len(texts), record), strict=True):
        st = chain_statements(t)
        if st.levels is None:
            out.append(0.0)
            continue
        truth = set(present_instruments(rec))
        named = {
            _resolve(m.instruments, truth)
            for m in st.in_level(st.mentions, 1)
            if m.instruments and not m.negated
        }
        out.append(set_f1(named, truth))
    return out


def l2_relation_f1(completions: Sequence[Any], record: Sequence[Any] | None = None, **_: Any) -> Reward:
    """F1 of the relations Level 2 states vs the ground-truth triplets; None without triplet labels."""
    texts = _texts(completions)
    out: Reward = []
    for t, rec in zip(texts, _records(len(texts), record), strict=True):
        if rec.labels.get("triplets") is None:
            out.append(None)
            continue
        truth = truth_triplets(rec)
        insts, targets = {i for i, _, _ in truth}, {g for _, _, g in truth}
        st = chain_statements(t)
        stated = {
            (_resolve(r.instruments, insts), r.verb, _resolve(r.targets, targets))
            for r in st.in_level(st.relations, 2)
            if not r.negated
        }
        out.append(set_f1(stated, truth) if st.levels is not None else 0.0)
    return out


def l3_conclusion(text: str, rec: Record) -> str | None:
    """The label Level 3 reaches: its last phase (phase tasks), last quadrant (VQLA location), else the
    words after its last "is"/"at"."""
    import re

    st = chain_statements(text)
    if st.levels is None:
        return None
    if rec.task in ("phase", "step"):
        phases = [p.phase for p in st.in_level(st.phases, 3) if not p.negated]
        return phases[-1] if phases else None
    if rec.task == "vqla" and rec.question_type == "location":
        quads = [p.region.name for p in st.in_level(st.positions, 3) if "-" in p.region.name]
        return quads[-1] if quads else None
    m = re.search(r"(?:is|are|at)\s+(?:the\s+)?([A-Za-z_\- ]+?)\.?\s*$", st.levels[3].strip())
    return m.group(1) if m else None


def l3_consistency(completions: Sequence[Any], record: Sequence[Any] | None = None, **_: Any) -> Reward:
    """1 if the label Level 3 reaches equals the ``<answer>`` label (phase/VQLA/action tasks), else 0."""
    texts = _texts(completions)
    out: Reward = []
    for t, rec in zip(texts, _records(len(texts), record), strict=True):
        if rec.task not in ("phase", "step", "vqla", "action"):
            out.append(None)
            continue
        parsed = parse_answer(t, rec)
        reached = l3_conclusion(t, rec)
        ok = parsed.parseable and reached is not None and answers_match(reached, parsed.label, task=rec.task)
        out.append(float(ok))
    return out


# ---------------------------------------------------------------------------------- combination
REWARDS: dict[str, Callable[..., Reward]] = {
    "format": format_basic,
    "format_grounding": format_grounding,
    "format_hierarchical": format_hierarchical,
    "accuracy": accuracy,
    "iou": iou_reward,
    "coherence": coherence,
    "l1_entity_f1": l1_entity_f1,
    "l2_relation_f1": l2_relation_f1,
    "l3_consistency": l3_consistency,
}
DEFAULT_WEIGHTS: dict[str, float] = {
    "format_hierarchical": 0.5,
    "accuracy": 1.0,
    "iou": 1.0,
    "coherence": 1.0,
}


def make_reward_funcs(
    weights: dict[str, float] | None = None,
    box_settings: BoxSettings = BoxSettings(),
    coherence_config: CoherenceConfig = CoherenceConfig(),
    triplet_lambda: float = 0.5,
    iou_mode: str = "continuous",
) -> tuple[list[Callable[..., Reward]], list[float]]:
    """Named reward functions (TRL logs ``rewards/<name>/mean``) and their weights, for ``GRPOTrainer``."""
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
    funcs, ws = [], []
    for name, w in weights.items():
        if name not in REWARDS:
            from surgkit.errors import SurgkitError

            raise SurgkitError(f"unknown reward '{name}' (choose from {', '.join(REWARDS)})")
        base = REWARDS[name]
        extra: dict[str, Any] = {}
        if name in ("iou", "coherence"):
            extra["box_settings"] = box_settings
        if name == "iou":
            extra["mode"] = iou_mode
        if name == "coherence":
            extra["config"] = coherence_config
        if name == "accuracy":
            extra["triplet_lambda"] = triplet_lambda

        def fn(completions, _base=base, _extra=extra, **kw):  # noqa: ANN001
            return _base(completions, **{**kw, **_extra})

        fn.__name__ = name
        funcs.append(fn)
        ws.append(float(w))
    return funcs, ws


def combine(values: dict[str, Reward], weights: dict[str, float]) -> list[float]:
    """r_i = Σ_k w_k · r_i^k over the applicable (non-None) rewards (spec §2.7); NaN-free."""
    n = len(next(iter(values.values()))) if values else 0
    out = []
    for i in range(n):
        total = 0.0
        for name, vals in values.items():
            v = vals[i]
            if v is not None and not math.isnan(v):
                total += weights.get(name, 1.0) * v
        out.append(total)
    return out


def reward_breakdown(
    text: str, rec: Record, weights: dict[str, float] | None = None, box_settings: BoxSettings = BoxSettings()
) -> dict[str, float | None]:
    """Each reward of one completion and the weighted total (for reports and the demo)."""
    funcs, ws = make_reward_funcs(weights, box_settings)
    values = {f.__name__: f([text], record=[rec]) for f in funcs}
    out: dict[str, float | None] = {k: v[0] for k, v in values.items()}
    out["total"] = combine(values, dict(zip([f.__name__ for f in funcs], ws, strict=True)))[0]
    return out


__all__ = [
    "BoxSettings",
    "CoherenceConfig",
    "DEFAULT_WEIGHTS",
    "REWARDS",
    "accuracy",
    "as_record",
    "chain_statements",
    "coherence",
    "combine",
    "format_basic",
    "format_grounding",
    "format_hierarchical",
    "iou_reward",
    "l1_entity_f1",
    "l2_relation_f1",
    "l3_consistency",
    "make_reward_funcs",
    "matched_iou",
    "reward_breakdown",
    "split_levels",
]
