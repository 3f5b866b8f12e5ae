"""Per-frame scoring rules of the grounding benchmark (seed 001 §3.3-3.4, §4.1).

Pure functions of the ground truth, the model's scores and the heatmaps in frame coordinates, so
every rule is testable with hand-made inputs:

* :func:`explained_index` - which class the primary heatmap explains: the prediction (``pred``,
  the seed's choice) or, with ``gt``, the ground-truth class the prediction is scored against (the
  prediction itself when it is correct; otherwise the in-pool GT class closest to it - for
  triplets the one sharing most components, instrument and verb first - ties broken by the
  model's score). ``None`` when no GT class of the frame is in the prompt pool (e.g. a frame whose
  only triplets are null triplets): nothing is explained then, and the record says so.
* :func:`match_triplet` - the triplet flags. ``same-triplet`` validity (default): the prediction is
  compared with the one GT triplet that matches it best (instrument and verb first, then the number
  of matching components), as in the seed's eq. (6) for one predicted and one GT triplet; so
  ``valid == instrument_correct and verb_correct`` always and ``correct`` implies ``valid``.
  ``any-triplet``: each component is checked against the set of GT components.
* :func:`instrument_record` / :func:`triplet_record` - τ-AC, τ-AA (on the region of the explained
  class), ARS (on the verb heatmap, inside the GT box of the predicted instrument, valid frames
  only), and the chance levels: the score of a uniform heatmap, i.e. the area fraction of the
  region (:func:`surgkit.metrics.grounding.uniform_score`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from surgkit.metrics.grounding import action_reasoning_score, attended_set, tau_aa, tau_ac, uniform_score

Names = tuple[str, str, str]  # normalised (instrument, verb, target)
NULL_VERB = "null verb"


def _closeness(pred: Names, gt: Names) -> tuple[bool, int]:
    """How close a GT triplet is to the prediction: (instrument and verb both match, # matches)."""
    same = [p == g for p, g in zip(pred, gt, strict=True)]
    return (same[0] and same[1], sum(same))


def explained_index(
    task: str,
    target: str,
    pred: int,
    gt_indices: Sequence[int],
    scores: np.ndarray,
    names: Sequence[Names] | None = None,
) -> int | None:
    """Index of the class the primary heatmap explains (see the module docstring).

    ``gt_indices``: the frame's GT classes that are in the prompt pool; ``names``: the triplet
    names of every pool class (triplet task).
    """
    if target == "pred":
        return int(pred)
    if not gt_indices:
        return None
    if pred in gt_indices:
        return int(pred)
    if task == "triplet":
        assert names is not None
        return int(max(gt_indices, key=lambda k: (*_closeness(names[pred], names[k]), scores[k], -k)))
    return int(max(gt_indices, key=lambda k: (scores[k], -k)))


@dataclasses.dataclass(frozen=True)
class TripletMatch:
    """Flags of one triplet prediction against a frame's GT triplets."""

    matched: Names | None
    correct: bool
    instrument_correct: bool
    verb_correct: bool
    target_correct: bool

    @property
    def valid(self) -> bool:
        """A valid frame (ARS, V/T): instrument and verb both correct."""
        return self.instrument_correct and self.verb_correct


def match_triplet(pred: Names, gts: Sequence[Names], validity: str = "same-triplet") -> TripletMatch:
    """Correctness flags of ``pred`` against the GT triplets ``gts`` under the validity rule."""
    if not gts:
        return TripletMatch(None, False, False, False, False)
    matched = max(gts, key=lambda g: _closeness(pred, g))  # first of the best (GT order)
    if validity == "same-triplet":
        flags = [p == m for p, m in zip(pred, matched, strict=True)]
    elif validity == "any-triplet":
        flags = [pred[c] in {g[c] for g in gts} for c in range(3)]
    else:
        raise ValueError(f"unknown validity rule {validity!r}")
    return TripletMatch(matched, pred in set(gts), *flags)


def top_k(keys: Sequence[str], scores: np.ndarray, k: int = 5) -> list[list[Any]]:
    order = np.argsort(-scores, kind="stable")[:k]
    return [[keys[int(j)], round(float(scores[int(j)]), 6)] for j in order]


def instrument_record(
    gt: Sequence[str],
    pred: str,
    explained: str,
    heat: np.ndarray,
    regions: Mapping[str, np.ndarray],
    tau: float = 0.5,
    rule: str = ">=",
) -> dict[str, Any]:
    """Instrument task: correctness, τ-AC on the union of all GT regions, τ-AA on the region of the
    explained class, and their uniform-heatmap chance levels."""
    union = np.zeros(heat.shape, dtype=bool)
    for m in regions.values():
        union |= m
    ac = tau_ac(heat, union, tau, rule)
    own = regions.get(explained)
    return {
        "gt": list(gt),
        "pred": pred,
        "correct": pred in gt,
        "explained": explained,
        "tau_ac": None if np.isnan(ac) else ac,
        "tau_aa": tau_aa(heat, regions, explained, tau, rule),
        "attended_fraction": float(attended_set(heat, tau, rule).mean()),
        "tau_ac_uniform": uniform_score(union) if union.any() else None,
        "tau_aa_uniform": uniform_score(own) if own is not None else 0.0,
    }


def triplet_record(
    gt_keys: Sequence[str],
    gt_names: Sequence[Names],
    pred_key: str,
    pred_names: Names,
    explained: str | None,
    match: TripletMatch,
    verb_heat: np.ndarray | None,
    boxes: Mapping[str, np.ndarray],
    tau: float = 0.5,
    rule: str = ">=",
) -> dict[str, Any]:
    """Triplet task: flags of :func:`match_triplet` and, on valid frames, ARS from the verb heatmap
    inside the GT box of the predicted instrument (with its chance level, the box's area fraction)."""
    rec: dict[str, Any] = {
        "gt": list(gt_keys),
        "pred": pred_key,
        "matched_gt": ",".join(match.matched) if match.matched else None,
        "correct": match.correct,
        "instrument_correct": match.instrument_correct,
        "verb_correct": match.verb_correct,
        "target_correct": match.target_correct,
        "valid": match.valid,
        "explained": explained,
        "explained_status": "explained" if explained is not None else "gt_not_in_pool",
        "ars": None,
        "ars_uniform": None,
        "ars_status": "not_valid",
    }
    if not match.valid:
        return rec
    box = boxes.get(pred_names[0])
    if pred_names[1] == NULL_VERB:
        rec["ars_status"] = "null_verb"
    elif box is None or not box.any():
        rec["ars_status"] = "no_box_for_instrument"
    elif verb_heat is None:
        rec["ars_status"] = "no_verb_prompt"
    else:
        rec.update(
            ars=action_reasoning_score(verb_heat, box, tau, rule),
            ars_uniform=uniform_score(box),
            ars_status="scored",
        )
    return rec
