"""Strict evaluation of any model's answers on reasoning records (spec reasoning §3).

Scoring is exact (normalisation + aliases, never substring credit). Per (dataset, task) group:

- ``vqla``: accuracy, macro P/R/F with ``zero_division=1`` over classes in truth ∪ prediction, true
  mIoU, the **legacy** Surgical-VQLA "mIoU" (labelled; +1 on normalised coordinates, not an IoU) and
  Acc@IoU≥0.5 (answer right and IoU ≥ 0.5) — all through :mod:`surgkit.metrics.vqla`. Unparseable or
  out-of-vocabulary answers are class −1; a missing box counts as a zero box (IoU 0).
- ``phase``/``step``: :func:`surgkit.metrics.phase.evaluate` with protocol ``sklearn-pooled`` over the
  sampled frames; unparseable answers are an extra class K (always wrong).
- ``triplet``: Triplet-Acc (exact set per frame), component accuracies (exact instrument/verb/target
  sets), and ivtmetrics-equal mAP through :func:`surgkit.metrics.triplet.evaluate` with 0/1 scores
  (a hard prediction makes AP a single precision/recall point; stated in the protocol).
- ``cvs``: per-criterion accuracy C1–C3, their average, all-three accuracy, and
  :func:`surgkit.metrics.classification.cvs_metrics` (mAP/F1 with 0/1 probabilities).
- ``tool_presence``: exact-set accuracy and per-tool macro F1.
- ``grounding``/``tool_localization``: true mIoU and Acc@0.5.
- every group: ``unparseable_answer_rate`` (no ``<answer>`` block and, in ``tags`` mode, nothing
  usable) and ``unparseable_box_rate`` (box tasks).

``lenient=True`` adds ``lenient_accuracy``: the Surg-R1 ``eval_mcq_acc.py`` rule (normalise, remove
spaces, hit on exact match **or substring either way**); it over-credits and is only a secondary column.
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from surgkit.errors import SurgkitError
from surgkit.reasoning import boxes as bx
from surgkit.reasoning.parsing import ANSWER_RE, answers_match, extract_answer, label_key
from surgkit.reasoning.records import BOX_TASKS, Record, iter_jsonl
from surgkit.reasoning.scoring import BoxSettings, Parsed, is_correct, parse_answer, truth_cvs, truth_triplets
from surgkit.vocab import CHOLEC80_PHASES, INSTRUMENTS, TARGETS, TRIPLET_ID, VERBS, VQLA_ANSWERS

ANSWER_MODES = ("auto", "tags")

# Arena Score headline maps (spec §3.3): benchmark -> (group key "dataset/task", metric).
SURGVLM_HEADLINE = {
    "phase": "phase:accuracy",
    "action": "action:accuracy",
    "triplet": "triplet:triplet_accuracy",
    "cvs": "cvs:avg_accuracy",
    "vqa": "vqla:accuracy",
    "localization": "tool_localization:miou",
}
SURG_R1_HEADLINE = {
    "endovis17": "endovis17_vqla/vqla:miou",
    "cholect50": "cholect50/triplet:triplet_accuracy",
    "endoscapes": "endoscapes/cvs:avg_accuracy",
    "cholec80": "cholec80/phase:accuracy",
    "sar_rarp50": "sar_rarp50/action:accuracy",
    "multibypass140": "multibypass140/phase:accuracy",
}


def answer_text(completion: str, mode: str = "auto") -> str | None:
    """The answer of a completion: the last ``<answer>`` block; in ``auto`` mode a completion with no
    answer tag at all is taken whole (plain-answer models, e.g. API models asked for the label only)."""
    if mode not in ANSWER_MODES:
        raise SurgkitError(f"unknown answer mode '{mode}' (choose from {', '.join(ANSWER_MODES)})")
    ans = extract_answer(completion)
    if ans is not None or mode == "tags":
        return ans
    if "<answer>" in completion or "</answer>" in completion:
        return None  # a broken tag is unparseable, not plain text
    text = re.sub(r"<think>.*?</think>", "", completion, flags=re.DOTALL).strip()
    return text or None


def as_tagged(completion: str, mode: str) -> str:
    """Completion rewritten so the strict reward-side parsers see its answer in one answer block."""
    ans = answer_text(completion, mode)
    return "" if ans is None else f"<answer>{ans}</answer>"


def lenient_match(pred: str | None, truth: str) -> bool:
    """Surg-R1 ``eval_mcq_acc.py`` rule: strip option letter, lowercase, remove spaces; hit on exact match
    or substring in either direction. Over-credits; reported only as a labelled secondary column."""
    if pred is None:
        return False
    p, t = label_key(pred), label_key(truth)
    return bool(p) and (p == t or p in t or t in p)


# ------------------------------------------------------------------------------------- scoring
@dataclasses.dataclass
class Scored:
    """One record's prediction, read by :func:`scoring.parse_answer` (``parsed.value`` None = unparseable)."""

    rec: Record
    text: str
    parsed: Parsed
    correct: bool
    iou: float | None
    lenient: bool

    @property
    def label(self) -> str | None:
        return self.parsed.label

    @property
    def box(self) -> bx.Box | None:
        return self.parsed.box


def score_one(
    rec: Record, completion: str, settings: BoxSettings, mode: str = "auto", status: str = "ok"
) -> Scored:
    """Score one completion; a completion whose ``status`` is not ``ok`` (null, refusal, cut at the
    length limit, rejected request) is unparseable whatever its text."""
    tagged = as_tagged(completion, mode) if status == "ok" else ""
    parsed = parse_answer(tagged, rec, settings)
    gt = rec.answer_box()
    iou = None if gt is None else bx.iou(parsed.box, gt)
    return Scored(
        rec, completion, parsed, is_correct(parsed, rec), iou, lenient_match(parsed.label, rec.answer)
    )


def group_key(rec: Record) -> str:
    return f"{rec.dataset}/{rec.task}"


def compute_metrics(
    records: Iterable[Record],
    predictions: dict[str, str],
    box_settings: BoxSettings = BoxSettings(),
    answer_mode: str = "auto",
    lenient: bool = False,
    statuses: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Metrics per ``dataset/task`` group (module docstring). A record without a prediction is
    counted in ``missing_predictions`` and scored as unparseable (never left out of a mean);
    ``statuses`` (id -> ok/null/refusal/length/rejected) marks answers that must count as unparseable."""
    groups: dict[str, list[Scored]] = defaultdict(list)
    missing = []
    statuses = statuses or {}
    for rec in records:
        if rec.id not in predictions:
            missing.append(rec.id)
        text = predictions.get(rec.id, "")
        status = statuses.get(rec.id, "ok") if rec.id in predictions else "missing"
        groups[group_key(rec)].append(score_one(rec, text, box_settings, answer_mode, status))
    out: dict[str, Any] = {"groups": {}, "missing_predictions": len(missing)}
    for key, items in sorted(groups.items()):
        task = items[0].rec.task
        unparseable = [not s.parsed.parseable for s in items]
        m = {
            "n": len(items),
            "unparseable_answer_rate": float(np.mean(unparseable)),
            "unparseable_answers": int(np.sum(unparseable)),
        }
        if task in BOX_TASKS:
            m["unparseable_box_rate"] = float(np.mean([s.box is None for s in items]))
        m.update(TASK_METRICS.get(task, _exact_metrics)(items))
        if lenient:
            m["lenient_accuracy"] = float(np.mean([s.lenient for s in items]))
            m["lenient_note"] = "Surg-R1 eval_mcq_acc.py rule (substring either way); over-credits"
        out["groups"][key] = m
    out["protocol"] = {
        "matching": "exact after normalisation + aliases; no substring credit",
        "answer_mode": answer_mode,
        "box_frame": box_settings.frame,
        "lenient_column": bool(lenient),
    }
    return out


def _exact_metrics(items: list[Scored]) -> dict[str, Any]:
    return {"accuracy": float(np.mean([s.correct for s in items]))}


def _vqla_metrics(items: list[Scored]) -> dict[str, Any]:
    from surgkit.metrics import vqla

    idx = {label_key(a): k for k, a in enumerate(VQLA_ANSWERS)}
    for s in items:  # answers outside the 18 Surgical-VQLA classes get their own class ids
        idx.setdefault(label_key(s.rec.answer), len(idx))
    y_true = [idx[label_key(s.rec.answer)] for s in items]
    y_pred = [idx.get(label_key(s.parsed.value), -1) if s.parsed.parseable else -1 for s in items]
    with_box = [s for s in items if s.rec.answer_box() is not None]
    out: dict[str, Any] = {}
    if len(with_box) == len(items):
        gt_norm = np.array([_norm(s.rec.answer_box(), s.rec) for s in items])
        pred_norm = np.array([_norm(s.box, s.rec) if s.box else (0.0, 0.0, 0.0, 0.0) for s in items])
        res = vqla.evaluate(y_true, y_pred, pred_norm, gt_norm)
        legacy_gt = np.array([_legacy_gt(s.rec) for s in items])
        res["miou_legacy"] = vqla.miou_legacy(pred_norm, legacy_gt)
        res["acc_at_iou50"] = float(np.mean([s.correct and (s.iou or 0) >= 0.5 for s in items]))
    else:
        res = vqla.evaluate(y_true, y_pred)
    res["protocol"]["unparseable"] = (
        "unparseable / out-of-vocabulary answers are class -1; missing box = zero box"
    )
    res["protocol"]["legacy_gt"] = (
        "legacy mIoU uses the reference GT conversion (1-based pixels -> cxcywh / image size)"
    )
    out.update(res)
    return out


def _norm(box: bx.Box, rec: Record) -> tuple[float, float, float, float]:
    return bx.to_frame(box, "norm", *rec.size)


def _legacy_gt(rec: Record) -> tuple[float, float, float, float]:
    from surgkit.metrics import vqla

    one_based = bx.to_vqla_pixels(rec.answer_box())
    return tuple(vqla.vqla_gt_to_normalized(np.array([one_based], float), rec.size)[0])


def _phase_metrics(items: list[Scored]) -> dict[str, Any]:
    from surgkit.metrics import phase

    k = len(CHOLEC80_PHASES)
    by_video: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for s in items:
        g = next(i for i, p in enumerate(CHOLEC80_PHASES) if answers_match(p, s.rec.answer, task="phase"))
        p = CHOLEC80_PHASES.index(s.parsed.value) if s.parsed.parseable else k
        by_video[s.rec.video_id].append((s.rec.frame_index or 0, g, p))
    names = sorted(by_video)
    labels = [np.array([g for _, g, _ in sorted(by_video[v])]) for v in names]
    preds = [np.array([p for _, _, p in sorted(by_video[v])]) for v in names]
    res = phase.evaluate(labels, preds, num_phases=k + 1, protocol="sklearn-pooled", video_names=names)
    out = {
        key: res[key] for key in ("image_accuracy", "video_accuracy", "precision", "recall", "f1", "jaccard")
    }
    out["accuracy"] = out.pop("image_accuracy")
    out["protocol"] = {**res["protocol"], "unparseable": f"extra class {k} (always wrong)"}
    out["protocol"].pop("video_names", None)
    return out


def _triplet_metrics(items: list[Scored]) -> dict[str, Any]:
    from surgkit.metrics import triplet

    preds = [set(s.parsed.value[0]) if s.parsed.parseable and not s.parsed.value[1] else None for s in items]
    truths = [truth_triplets(s.rec) for s in items]
    out: dict[str, Any] = {"triplet_accuracy": float(np.mean([s.correct for s in items]))}
    for k, name in enumerate(("instrument", "verb", "target")):
        out[f"{name}_accuracy"] = float(
            np.mean(
                [
                    p is not None and {x[k] for x in p} == {x[k] for x in t}
                    for p, t in zip(preds, truths, strict=True)
                ]
            )
        )
    tgt = np.zeros((len(items), 100))
    sco = np.zeros((len(items), 100))
    for row, (p, t) in enumerate(zip(preds, truths, strict=True)):
        for trip, arr in ((t, tgt), (p or set(), sco)):
            for i, v, g in trip:
                tid = TRIPLET_ID.get((INSTRUMENTS.index(i), VERBS.index(v), TARGETS.index(g)))
                if tid is not None:
                    arr[row, tid] = 1
    res = triplet.evaluate(tgt, sco, video_ids=[s.rec.video_id for s in items], mode="video")
    for comp in ("i", "v", "t", "ivt"):
        if comp in res:
            out[f"{comp}_map"] = res[comp]["mAP"] if isinstance(res[comp], dict) else res[comp]
    out["protocol"] = {
        "map": "ivtmetrics-equal video-wise mAP with 0/1 scores (hard predictions: one PR point)",
        "unparseable": "wrong in every accuracy; an all-zero score row in the mAP",
    }
    return out


def _cvs_metrics(items: list[Scored]) -> dict[str, Any]:
    from surgkit.metrics.classification import cvs_metrics

    preds = np.array([s.parsed.value if s.parsed.parseable else (-1, -1, -1) for s in items])
    truth = np.array([truth_cvs(s.rec) for s in items])
    hits = preds == truth
    out: dict[str, Any] = {f"c{k + 1}_accuracy": float(hits[:, k].mean()) for k in range(3)}
    out["avg_accuracy"] = float(hits.mean())
    out["all_criteria_accuracy"] = float(hits.all(axis=1).mean())
    res = cvs_metrics(np.clip(preds, 0, 1).astype(float), truth.astype(float))
    out["map_hard"] = res["map"]
    out["f1"] = res["f1"]
    out["protocol"] = {
        "criteria": "C1 two structures, C2 hepatocystic triangle, C3 cystic plate (Endoscapes numbering); "
        "binarised rater mean >= 0.5",
        "map_hard": "Endoscapes mAP with 0/1 scores",
    }
    return out


def _tool_metrics(items: list[Scored]) -> dict[str, Any]:
    preds = [set(s.parsed.value) if s.parsed.parseable else None for s in items]
    truths = [set(s.rec.labels.get("tools") or []) for s in items]
    out: dict[str, Any] = {"accuracy": float(np.mean([p == t for p, t in zip(preds, truths, strict=True)]))}
    f1s = []
    for tool in sorted(set().union(*truths, *(p or set() for p in preds))):
        y = np.array([tool in t for t in truths])
        p = np.array([tool in (q or set()) for q in preds])
        tp = (y & p).sum()
        f1s.append(0.0 if tp == 0 else 2 * tp / (y.sum() + p.sum()))
    out["macro_f1"] = float(np.mean(f1s)) if f1s else float("nan")
    return out


def _box_metrics(items: list[Scored]) -> dict[str, Any]:
    ious = [s.iou or 0.0 for s in items]
    return {
        "accuracy": float(np.mean([s.correct for s in items])),
        "miou": float(np.mean(ious)),
        "acc_at_iou50": float(np.mean([v >= 0.5 for v in ious])),
    }


TASK_METRICS: dict[str, Callable[[list[Scored]], dict[str, Any]]] = {
    "vqla": _vqla_metrics,
    "phase": _phase_metrics,
    "step": _exact_metrics,
    "triplet": _triplet_metrics,
    "cvs": _cvs_metrics,
    "tool_presence": _tool_metrics,
    "grounding": _box_metrics,
    "tool_localization": _box_metrics,
}


# ----------------------------------------------------------------------------------- Arena score
def arena_score(
    results: dict[str, Any], headline: dict[str, str] | None = None, reduce: str = "mean"
) -> dict[str, Any]:
    """Arena Score (spec §3.3): the mean (Surg-R1) or sum (SurgVLM) of one headline metric per benchmark, in %.

    ``headline`` maps benchmark -> "group:metric"; a group given without a dataset ("phase") matches the
    first group whose task is that name. Benchmarks without results are listed as missing, never zero.
    """
    headline = SURGVLM_HEADLINE if headline is None else headline
    if reduce not in ("mean", "sum"):
        raise SurgkitError("reduce must be 'mean' or 'sum'")
    groups = results.get("groups", results)
    used, missing = {}, []
    for bench, spec in headline.items():
        group, metric = spec.split(":")
        key = group if group in groups else next((g for g in groups if g.split("/")[-1] == group), None)
        value = groups.get(key, {}).get(metric) if key else None
        if value is None or (isinstance(value, float) and np.isnan(value)):
            missing.append(bench)
        else:
            used[bench] = {"group": key, "metric": metric, "value_pct": 100.0 * float(value)}
    vals = [v["value_pct"] for v in used.values()]
    score = (float(np.mean(vals)) if reduce == "mean" else float(np.sum(vals))) if vals else float("nan")
    return {
        "score": score,
        "reduce": reduce,
        "headline": dict(headline),
        "benchmarks": used,
        "missing": missing,
    }


# ----------------------------------------------------------------------------------- predictions
PRED_KEYS = ("completion", "text", "response", "prediction", "answer")


def load_predictions(path: str | Path, statuses: dict[str, str] | None = None) -> dict[str, str]:
    """{id: completion} from a JSONL file of ``{"id": ..., "completion": ...}`` (or text/response/...).

    A ``status`` field other than ``ok`` (null, refusal, length, rejected, ...) is collected in
    ``statuses`` when given, and such answers are scored as unparseable.
    """
    from surgkit.errors import DataFormatError

    out: dict[str, str] = {}
    for lineno, obj in iter_jsonl(path):
        if not isinstance(obj, dict) or "id" not in obj:
            raise DataFormatError("a prediction needs an 'id'", path=path, line=lineno)
        key = next((k for k in PRED_KEYS if k in obj), None)
        if key is None:
            raise DataFormatError(f"a prediction needs one of {', '.join(PRED_KEYS)}", path=path, line=lineno)
        out[str(obj["id"])] = str(obj[key] if obj[key] is not None else "")
        if statuses is not None:
            statuses[str(obj["id"])] = "null" if obj[key] is None else str(obj.get("status", "ok"))
    return out


def has_answer_tag(text: str) -> bool:
    return ANSWER_RE.search(text) is not None
