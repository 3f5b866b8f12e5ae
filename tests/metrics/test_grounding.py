"""Grounding metrics (spec §5): the §5.3 fixture, the τ boundary, empty attention, ARS eligibility."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from surgkit.errors import SurgkitError
from surgkit.metrics.grounding import (
    action_reasoning_score,
    attended_set,
    evaluate,
    tau_aa,
    tau_ac,
    uniform_score,
)

M = np.add.outer(np.arange(4), np.arange(4)).astype(float)  # rows (0 1 2 3) ... (3 4 5 6)
G = np.zeros((4, 4), bool)
G[2:, 2:] = True
B = np.zeros((4, 4), bool)
B[:2, 2:] = True


def test_spec_fixture_5_3():
    assert attended_set(M).sum() == 10
    assert tau_ac(M, G) == pytest.approx(0.4)
    assert tau_aa(M, {"hook": G}, "hook") == pytest.approx(0.4)
    assert tau_aa(M, {"hook": G}, "grasper") == 0.0  # predicted class not in the image
    assert tau_aa(M, np.stack([np.zeros_like(G), G]), 1) == pytest.approx(0.4)
    assert tau_aa(M, np.stack([np.zeros_like(G), G]), 0) == 0.0  # empty mask = absent
    assert action_reasoning_score(M, B) == pytest.approx(0.3)


def test_tau_aa_two_classes_counts_only_the_predicted_class():
    # hook region: the lower-right 2x2 (G); grasper region: the upper-right 2x2 (B); A = 10 pixels
    masks = {"hook": G, "grasper": B}
    assert tau_aa(M, masks, "hook") == pytest.approx(4 / 10)  # A ∩ G = {(2,2),(2,3),(3,2),(3,3)}
    assert tau_aa(M, masks, "grasper") == pytest.approx(3 / 10)  # A ∩ B = {(0,3),(1,2),(1,3)}
    assert tau_ac(M, G | B) == pytest.approx(7 / 10)  # τ-AC counts both
    assert tau_aa(M, np.stack([G, B]), 1) == pytest.approx(3 / 10)
    assert tau_aa(M, masks, "scissors") == 0.0


def test_ars_counts_inside_the_instrument_box_only():
    inside = np.zeros((4, 4), bool)
    inside[3, :] = True  # bottom row: values 3 4 5 6, all attended (normalised ≥ 0.5)
    assert action_reasoning_score(M, inside) == pytest.approx(4 / 10)
    assert action_reasoning_score(M, ~inside) == pytest.approx(6 / 10)


def test_strict_rule_and_uniform_chance_level():
    heat = np.array([[0.0, 0.5], [1.0, 0.25]])
    assert attended_set(heat, 0.5, ">").tolist() == [[False, False], [True, False]]
    region = np.array([[False, True], [False, False]])
    assert tau_ac(heat, region, rule=">") == 0.0 and tau_ac(heat, region) == pytest.approx(0.5)
    assert action_reasoning_score(heat, region, rule=">") == 0.0
    assert action_reasoning_score(heat, region) == pytest.approx(0.5)
    assert uniform_score(G) == pytest.approx(4 / 16) and uniform_score(G | B) == pytest.approx(0.5)
    with pytest.raises(SurgkitError, match="threshold rule"):
        attended_set(heat, 0.5, "=>")


def test_threshold_is_inclusive_at_exactly_tau():
    heat = np.array([[0.0, 0.5], [1.0, 0.25]])  # already in [0, 1]: 0.5 is attended
    assert attended_set(heat, 0.5).tolist() == [[False, True], [True, False]]
    region = np.array([[False, True], [False, False]])
    assert tau_ac(heat, region) == pytest.approx(0.5)


def test_constant_heatmap_scores_zero_and_is_counted():
    flat = np.full((4, 4), 3.0)
    assert not attended_set(flat).any()
    assert tau_ac(flat, G) == 0.0 and action_reasoning_score(flat, B) == 0.0
    samples = [
        {"heatmap": M, "gt_union_mask": G, "class_masks": {1: G}, "predicted_class": 1},
        {"heatmap": flat, "gt_union_mask": G, "class_masks": {1: G}, "predicted_class": 1},
    ]
    res = evaluate(samples)
    assert res["tau_ac"] == pytest.approx(0.2) and res["tau_aa"] == pytest.approx(0.2)
    assert res["no_attention"] == 1 and res["num_samples"] == 2


def test_dataset_aggregation_ars_only_on_eligible_samples_and_empty_gt_excluded():
    empty = np.zeros((4, 4), bool)
    base = {
        "heatmap": M,
        "class_masks": {0: G},
        "predicted_class": 0,
        "verb_heatmap": M,
        "instrument_box_mask": B,
    }
    samples = [
        {**base, "gt_union_mask": G, "instrument_correct": True, "verb_correct": True},
        {**base, "gt_union_mask": G, "instrument_correct": True, "verb_correct": False},
        {
            **base,
            "gt_union_mask": empty,
            "instrument_correct": True,
            "verb_correct": True,
            "verb_heatmap": M.T,
        },
    ]
    res = evaluate(samples)
    assert res["num_ars_eligible"] == 2
    assert res["ars"] == pytest.approx((0.3 + action_reasoning_score(M.T, B)) / 2)
    assert res["excluded_empty_gt"] == 1 and res["num_tau_ac"] == 2
    assert res["tau_ac"] == pytest.approx(0.4)
    assert res["tau_aa"] == pytest.approx(0.4)
    assert res["protocol"]["threshold"].startswith(">=")


def test_bad_inputs():
    with pytest.raises(SurgkitError, match="shape"):
        tau_ac(M, np.zeros((3, 3), bool))
    bad = M.copy()
    bad[1, 2] = np.nan
    with pytest.raises(SurgkitError, match=r"pixel \(1, 2\)"):
        tau_ac(bad, G)
    with pytest.raises(SurgkitError, match="sample 0 lacks the field 'class_masks'"):
        evaluate([{"heatmap": M, "gt_union_mask": G}])


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, (5, 6), elements=st.floats(-10, 10)), arrays(bool, (5, 6)), st.floats(0.05, 1.0))
def test_scores_are_fractions(heat, mask, tau):
    for value in (tau_ac(heat, mask, tau), action_reasoning_score(heat, mask, tau)):
        assert np.isnan(value) or 0.0 <= value <= 1.0
