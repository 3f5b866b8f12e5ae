"""The per-frame rules of surgkit.grounding.scoring on hand-made inputs."""

from __future__ import annotations

import numpy as np
import pytest

from surgkit.grounding.scoring import explained_index, instrument_record, match_triplet, triplet_record

G_R_GB = ("grasper", "retract", "gallbladder")
H_D_GB = ("hook", "dissect", "gallbladder")
G_NULL = ("grasper", "null verb", "null target")


def test_explained_index_pred_and_gt_targets():
    scores = np.array([0.9, 0.2, 0.5, 0.1])
    assert explained_index("instrument", "pred", 0, [1, 2], scores) == 0
    assert explained_index("instrument", "gt", 0, [1, 2], scores) == 2  # highest-scoring GT class
    assert explained_index("instrument", "gt", 2, [1, 2], scores) == 2  # a correct prediction explains itself
    assert (
        explained_index("instrument", "gt", 0, [1, 3], np.array([0.9, 0.3, 0.0, 0.3])) == 1
    )  # tie: lower index
    assert explained_index("triplet", "gt", 0, [], scores, [G_R_GB] * 4) is None  # nothing in the pool


def test_explained_triplet_is_the_closest_gt_triplet_then_the_score():
    names = [("grasper", "dissect", "gallbladder"), G_R_GB, H_D_GB, ("hook", "coagulate", "liver")]
    scores = np.array([1.0, 0.1, 0.4, 0.9])
    # pred 0 shares 2 components with both GT triplets 1 and 2 (no instrument+verb match): the score decides
    assert explained_index("triplet", "gt", 0, [1, 2], scores, names) == 2
    # pred 3 (hook, coagulate, liver): GT 2 shares the instrument, GT 1 nothing
    assert explained_index("triplet", "gt", 3, [1, 2], scores, names) == 2


def test_match_triplet_rules():
    pred = ("grasper", "dissect", "gallbladder")
    same = match_triplet(pred, [G_R_GB, H_D_GB])
    assert same.matched == G_R_GB and (same.instrument_correct, same.verb_correct, same.target_correct) == (
        True,
        False,
        True,
    )
    assert not same.valid and not same.correct
    anyt = match_triplet(pred, [G_R_GB, H_D_GB], "any-triplet")
    assert anyt.valid and not anyt.correct
    exact = match_triplet(H_D_GB, [G_R_GB, H_D_GB])
    assert exact.correct and exact.valid and exact.matched == H_D_GB
    null = match_triplet(G_R_GB, [G_NULL])
    assert null.instrument_correct and not null.verb_correct and not null.valid
    assert match_triplet(G_R_GB, []) == match_triplet(G_R_GB, [], "any-triplet")
    with pytest.raises(ValueError):
        match_triplet(G_R_GB, [G_R_GB], "either")


def test_records_carry_chance_levels_and_statuses():
    heat = np.zeros((4, 4))
    heat[0, :2] = 1.0
    box = np.zeros((4, 4), bool)
    box[0, :] = True
    rec = instrument_record(["grasper"], "hook", "hook", heat, {"grasper": box})
    assert rec["tau_ac"] == 1.0 and rec["tau_aa"] == 0.0 and rec["tau_ac_uniform"] == 0.25
    assert rec["tau_aa_uniform"] == 0.0 and not rec["correct"]
    null_pred = ("grasper", "null verb", "null target")
    t = triplet_record(["grasper,null_verb,null_target"], [G_NULL], "grasper,null_verb,null_target", null_pred,
                       None, match_triplet(null_pred, [G_NULL]), heat, {"grasper": box})  # fmt: skip
    assert t["valid"] and t["ars"] is None and t["ars_status"] == "null_verb"
    assert t["explained_status"] == "gt_not_in_pool"
    nobox = triplet_record(["grasper,retract,gallbladder"], [G_R_GB], "grasper,retract,gallbladder", G_R_GB,
                           "grasper,retract,gallbladder", match_triplet(G_R_GB, [G_R_GB]), heat, {})  # fmt: skip
    assert nobox["ars_status"] == "no_box_for_instrument" and nobox["ars"] is None
