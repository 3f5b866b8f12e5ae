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
  predicted location text; reasoning: positional words about the answer object agree with the box).
- process rewards (§2.6): L1 entity F1, L2 relation F1, L3 verdict = answer.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from surgkit.reasoning import boxes as bx
from surgkit.reasoning.parsing import (
    BRACKET_BOX_RE,
    TOOL_ALIASES,
    answers_match,
    completion_text,
    extract_answer,
    extract_think,
    first_yes_no,
    option_letter,
    parse_cvs,
    parse_name_set,
    parse_payload,
    parse_triplets,
)
from surgkit.reasoning.records import BOX_TASKS, Record

Reward = list[float | None]
FORMAT_RE = re.compile(r"\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*", re.DOTALL)


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


@dataclasses.dataclass(frozen=True)
class BoxSettings:
    """How boxes in completions are read: the prompt's coordinate ``frame`` (see boxes.FRAMES); for
    ``input`` the model-input size follows Qwen2.5-VL's resize with these min/max pixels."""

    frame: str = "norm1000"
    min_pixels: int = 56 * 56
    max_pixels: int = 28 * 28 * 1280

    def input_size(self, rec: Record) -> tuple[int, int] | None:
        if self.frame != "input":
            return None
        return bx.qwen25_input_size(*rec.size, min_pixels=self.min_pixels, max_pixels=self.max_pixels)

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


# ---------------------------------------------------------------------------------------- format
def _format_ok(text: str) -> bool:
    return FORMAT_RE.fullmatch(text) is not None and all(
        text.count(t) == 1 for t in ("<think>", "</think>", "<answer>", "</answer>")
    )


def format_basic(completions: Sequence[Any], **_: Any) -> Reward:
    """1 iff exactly ``<think>…</think><answer>…</answer>`` (one of each tag), else 0."""
    return [float(_format_ok(t)) for t in _texts(completions)]


def format_grounding(completions: Sequence[Any], record: Sequence[Any] | None = None, **_: Any) -> Reward:
    """Basic format and a four-number box in the answer; None for records without a box task."""
    texts = _texts(completions)
    out: Reward = []
    for t, rec in zip(texts, _records(len(texts), record), strict=True):
        if rec.task not in BOX_TASKS:
            out.append(None)
            continue
        _, nums = parse_payload(extract_answer(t))
        out.append(float(_format_ok(t) and nums is not None))
    return out


def format_hierarchical(completions: Sequence[Any], partial: float = 0.5, **_: Any) -> Reward:
    """Basic format with Level 1, 2, 3 in order and non-empty -> 1; basic format only -> ``partial``."""
    from surgkit.reasoning.cot import split_levels

    out: Reward = []
    for t in _texts(completions):
        if not _format_ok(t):
            out.append(0.0)
            continue
        levels = split_levels(extract_think(t) or "")
        out.append(1.0 if levels and all(levels.values()) else partial)
    return out


# -------------------------------------------------------------------------------------- accuracy
def set_f1(pred: set, truth: set) -> float:
    """F1 of two sets; both empty -> 1."""
    if not pred and not truth:
        return 1.0
    tp = len(pred & truth)
    return 0.0 if tp == 0 else 2 * tp / (len(pred) + len(truth))


def triplet_score(
    pred: set[tuple[str, str, str]] | None, truth: set[tuple[str, str, str]], lam: float = 0.5
) -> float:
    """(1-λ)·F1 over exact triplets + λ·mean(F1 instrument, F1 verb, F1 target); None pred -> 0."""
    if pred is None:
        return 0.0
    comp = [set_f1({p[k] for p in pred}, {t[k] for t in truth}) for k in range(3)]
    return (1 - lam) * set_f1(pred, truth) + lam * float(np.mean(comp))


def truth_triplets(rec: Record) -> set[tuple[str, str, str]]:
    return {(t["instrument"], t["verb"], t["target"]) for t in rec.labels.get("triplets") or []}


def truth_cvs(rec: Record) -> tuple[int, int, int]:
    cvs = rec.labels.get("cvs") or {}
    return tuple(int(cvs.get(c, 0)) for c in ("c1", "c2", "c3"))  # type: ignore[return-value]


def answer_correct(text: str, rec: Record) -> bool:
    """Strict correctness of the answer label (exact match; MCQ by option; sets and CVS all right)."""
    return accuracy_one(text, rec, lam=0.0, strict_cvs=True) == 1.0


def accuracy_one(text: str, rec: Record, lam: float = 0.5, strict_cvs: bool = False) -> float:
    """Accuracy reward of one completion for one record (see the module docstring)."""
    ans = extract_answer(text)
    label, _ = parse_payload(ans)
    if rec.options:
        k = option_letter(label, rec.options)
        truth = rec.answer_index if rec.answer_index is not None else _index_of(rec.answer, rec.options)
        return float(k is not None and k == truth)
    if rec.task == "triplet":
        return triplet_score(parse_triplets(label), truth_triplets(rec), lam)
    if rec.task == "cvs":
        pred = parse_cvs(label)
        if pred is None:
            return 0.0
        hits = [p == t for p, t in zip(pred, truth_cvs(rec), strict=True)]
        return float(all(hits)) if strict_cvs else sum(hits) / 3
    if rec.task == "tool_presence":
        from surgkit.reasoning.lexicon import ALL_INSTRUMENTS

        pred = parse_name_set(label, ALL_INSTRUMENTS, TOOL_ALIASES)
        truth = set(rec.labels.get("tools") or [])
        if pred is None:
            return 0.0
        return float(pred == truth) if lam == 0.0 else set_f1(pred, truth)
    if rec.question_type == "yesno":
        return float(first_yes_no(label) == rec.answer.strip().lower())
    return float(answers_match(label, rec.answer, rec.answer_aliases, rec.task))


def _index_of(answer: str, options: Sequence[str]) -> int | None:
    return next((k for k, o in enumerate(options) if answers_match(o, answer)), None)


def accuracy(
    completions: Sequence[Any], record: Sequence[Any] | None = None, triplet_lambda: float = 0.5, **_: Any
) -> Reward:
    """Per-task accuracy reward in [0, 1] (see module docstring)."""
    texts = _texts(completions)
    return [
        accuracy_one(t, r, triplet_lambda) for t, r in zip(texts, _records(len(texts), record), strict=True)
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
            p = predicted_box(t, rec, box_settings)
            v = bx.iou(p, gts[0])
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


POSITION_WORDS = {
    "left": ("col", 0),
    "right": ("col", 2),
    "upper": ("row", 0),
    "top": ("row", 0),
    "lower": ("row", 2),
    "bottom": ("row", 2),
    "centre": ("both", 1),
    "center": ("both", 1),
}


def _reasoning_box_agreement(think: str, obj: str, box: bx.Box, rec: Record) -> float | None:
    """Fraction of positional words in sentences naming ``obj`` that agree with the box's 3x3 cell."""
    from surgkit.reasoning.lexicon import readable

    row, col = bx.grid_cell(box, *rec.size)
    votes = []
    for sentence in re.split(r"[.;\n]", think.lower()):
        if readable(obj).lower() not in sentence and obj.lower() not in sentence:
            continue
        for word, (axis, idx) in POSITION_WORDS.items():
            if re.search(rf"\b{word}\b", sentence):
                if axis == "both":
                    votes.append(row == 1 and col == 1)
                else:
                    votes.append((row if axis == "row" else col) == idx)
    return None if not votes else float(np.mean(votes))


def coherence_one(text: str, rec: Record, cfg: CoherenceConfig, settings: BoxSettings) -> float | None:
    gt = rec.answer_box()
    if gt is None:
        return None
    pred = predicted_box(text, rec, settings)
    terms: list[tuple[float, float]] = []
    if cfg.joint:
        ok = answer_correct(text, rec)
        v = bx.iou(pred, gt)
        terms.append((cfg.joint_weight, float(ok) * (v if cfg.joint_graded else float(v >= cfg.tau))))
    if cfg.quadrant and rec.task == "vqla" and rec.question_type == "location":
        label, _ = parse_payload(extract_answer(text))
        consistent = (
            pred is not None and label is not None and answers_match(label, bx.quadrant(pred, *rec.size))
        )
        terms.append((cfg.quadrant_weight, float(consistent)))
    if cfg.reasoning and pred is not None:
        obj = rec.labels.get("object") or rec.answer
        agree = _reasoning_box_agreement(extract_think(text) or "", obj, pred, rec)
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
def _levels(text: str) -> dict[int, str]:
    from surgkit.reasoning.cot import split_levels

    return split_levels(extract_think(text) or "") or {}


def l1_entity_f1(completions: Sequence[Any], record: Sequence[Any] | None = None, **_: Any) -> Reward:
    """F1 of instruments named in Level 1 vs those present (0 without Level 1)."""
    from surgkit.reasoning.cot import _mentions, present_instruments
    from surgkit.reasoning.lexicon import ALL_INSTRUMENTS

    texts = _texts(completions)
    out: Reward = []
    for t, rec in zip(texts, _records(len(texts), record), strict=True):
        lv = _levels(t)
        named = {m[0] for m in _mentions(lv.get(1, ""), ALL_INSTRUMENTS)}
        out.append(set_f1(named, set(present_instruments(rec))) if lv else 0.0)
    return out


def l2_relation_f1(completions: Sequence[Any], record: Sequence[Any] | None = None, **_: Any) -> Reward:
    """F1 of triplets stated in Level 2 vs ground truth; None for records without triplet labels."""
    from surgkit.reasoning.cot import stated_relations

    texts = _texts(completions)
    out: Reward = []
    for t, rec in zip(texts, _records(len(texts), record), strict=True):
        if rec.labels.get("triplets") is None:
            out.append(None)
            continue
        out.append(set_f1(stated_relations(_levels(t).get(2, "")), truth_triplets(rec)))
    return out


def l3_consistency(completions: Sequence[Any], record: Sequence[Any] | None = None, **_: Any) -> Reward:
    """1 if the label stated at the end of Level 3 equals the ``<answer>`` label (phase/VQLA tasks)."""
    texts = _texts(completions)
    out: Reward = []
    for t, rec in zip(texts, _records(len(texts), record), strict=True):
        if rec.task not in ("phase", "step", "vqla", "action"):
            out.append(None)
            continue
        l3 = _levels(t).get(3, "")
        m = re.search(r"(?:is|at)\s+([A-Za-z_\- ]+?)\.?\s*$", l3.strip())
        label, _ = parse_payload(extract_answer(t))
        out.append(float(bool(m) and label is not None and answers_match(m.group(1), label, task=rec.task)))
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
