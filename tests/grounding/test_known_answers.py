"""Known-answer tests of the benchmark: hand-computed τ-AC, τ-AA, ARS, V/T and Z/V, through the runner
(scripted model, known_answers.py) and through the metric functions on the same arrays.

Each deliberate mistake of issue 14 makes at least one test here fail: τ-AA scored against all
instruments, ARS against the outside of the box, ARS from the class heatmap instead of the verb
heatmap, "valid" defined as instrument *or* verb.
"""

from __future__ import annotations

import numpy as np
import pytest

from surgkit.grounding.benchmark import BenchSettings, load_heatmap, load_records, run_benchmark
from surgkit.grounding.frames import rasterise_box
from surgkit.metrics.grounding import action_reasoning_score, evaluate, tau_aa, tau_ac, uniform_score
from surgkit.vocab import CHOLEC80_TOOLS, INSTRUMENTS

from .known_answers import (
    CLIPPER,
    GRASPER,
    HOOK,
    INSTRUMENT_EXPECTED,
    INSTRUMENT_FRAMES,
    TRIPLET_FRAMES,
    S,
    inst,
    instrument_frames,
    scripted,
    trip,
    triplet_frames,
    verb,
)


def _run(task, tmp_path, frames=None, **settings):
    adapter = scripted(task)
    frames = (
        frames if frames is not None else (instrument_frames() if task == "instrument" else triplet_frames())
    )
    vocab = CHOLEC80_TOOLS if task == "instrument" else INSTRUMENTS
    summary = run_benchmark(adapter, frames, vocab, BenchSettings(task=task, batch_size=3, **settings),
                            tmp_path / "run", progress=False)  # fmt: skip
    records = {r["frame"]: r for r in load_records(tmp_path / "run")}
    return summary, records, adapter


def mask(box):
    return rasterise_box(box, (S, S))


# ------------------------------------------------------------------------------ instrument task
def test_instrument_task_known_answers_through_the_runner(tmp_path):
    s, recs, adapter = _run("instrument", tmp_path)
    assert [recs[f]["pred"] for f in (1, 2, 3, 4)] == ["hook", "hook", "grasper", "hook"]
    for fid, expected in INSTRUMENT_EXPECTED.items():
        for key, value in expected.items():
            assert recs[fid][key] == pytest.approx(value), (fid, key)
    o = s["overall"]
    assert o["accuracy"] == pytest.approx(3 / 4)
    assert o["tau_ac"] == pytest.approx((0.4 + 1 / 3 + 0.5 + 0.0) / 4)
    assert o["tau_aa"] == pytest.approx((0.16 + 0.0 + 0.5 + 0.0) / 4)
    assert o["tau_ac_uniform"] == pytest.approx((196 / 400 + 0.5 + 0.5 + 0.5) / 4)
    assert o["best_constant_accuracy"] == pytest.approx(3 / 4) and o["best_constant_class"] == "grasper"
    assert o["no_attention"] == 1 and o["tau_ac_frames"] == 4
    v1 = s["videos"]["video01"]
    assert v1["tau_ac"] == pytest.approx((0.4 + 1 / 3) / 2) and v1["tau_aa"] == pytest.approx(0.08)
    assert {(f, p) for f, p in adapter.explained} == {(1, inst("hook")), (2, inst("hook")), (3, inst("grasper")),
                                                     (4, inst("hook"))}  # fmt: skip
    # the stored heatmap is the explained one, in frame coordinates
    assert np.array_equal(
        load_heatmap(tmp_path / "run", recs[1]) >= 0.5, INSTRUMENT_FRAMES[1]["maps"][inst("hook")] > 0
    )


def test_instrument_metric_functions_on_the_same_arrays():
    maps = {f: d["maps"] for f, d in INSTRUMENT_FRAMES.items()}
    regions = {"grasper": mask(GRASPER), "hook": mask(HOOK)}
    union = regions["grasper"] | regions["hook"]
    heat = maps[1][inst("hook")]
    assert tau_ac(heat, union) == pytest.approx(0.4)
    assert tau_aa(heat, regions, "hook") == pytest.approx(0.16)  # two classes: only the hook box counts
    assert tau_aa(heat, regions, "grasper") == pytest.approx(0.24)
    assert uniform_score(union) == pytest.approx(196 / 400)
    strip = maps[2][inst("hook")]
    two = {"grasper": mask(GRASPER), "clipper": mask(CLIPPER)}
    assert tau_ac(strip, two["grasper"] | two["clipper"]) == pytest.approx(1 / 3)
    assert tau_ac(strip, two["grasper"] | two["clipper"], rule=">") == 0.0
    assert tau_aa(strip, two, "hook") == 0.0  # predicted class absent
    res = evaluate([
        {"heatmap": heat, "gt_union_mask": union, "class_masks": regions, "predicted_class": "hook"},
        {"heatmap": strip, "gt_union_mask": two["grasper"] | two["clipper"], "class_masks": two, "predicted_class": "hook"},
    ])  # fmt: skip
    assert res["tau_ac"] == pytest.approx((0.4 + 1 / 3) / 2) and res["tau_aa"] == pytest.approx(0.08)


def test_strict_threshold_rule_changes_the_strip_frame(tmp_path):
    s, recs, _ = _run("instrument", tmp_path, threshold=">")
    assert recs[2]["tau_ac"] == 0.0 and recs[1]["tau_ac"] == pytest.approx(0.4)
    assert s["protocol"]["threshold"] == ">"
    t, trecs, _ = _run("triplet", tmp_path / "t", threshold=">")  # the 0.5 strip of the verb map drops out
    assert trecs[11]["ars"] == pytest.approx(0.8) and t["overall"]["ars"] == pytest.approx(0.4)


def test_gt_heatmap_target_explains_the_gt_class_the_model_scores_highest(tmp_path):
    s, recs, adapter = _run("instrument", tmp_path, heatmap_target="gt")
    assert recs[2]["explained"] == "clipper" and recs[2]["pred"] == "hook"  # clipper 0.3 > grasper 0.1
    assert recs[2]["tau_ac"] == 1.0 and recs[2]["tau_aa"] == 1.0  # its map is the clipper box
    assert recs[1]["explained"] == "hook"  # a correct prediction explains itself
    assert (2, inst("clipper")) in adapter.explained
    assert s["protocol"]["heatmap_target"] == "gt"


# --------------------------------------------------------------------------------- triplet task
def test_triplet_task_known_answers_through_the_runner(tmp_path):
    s, recs, adapter = _run("triplet", tmp_path)
    assert set(recs) == {11, 12, 13, 14, 15}  # the null-only frame 16 is left out ...
    assert (
        s["skipped"][0]["frame"] == "video02/16"
        and "outside the valid triplet pool" in s["skipped"][0]["reason"]
    )
    assert [recs[f]["valid"] for f in (11, 12, 13, 14, 15)] == [True, True, False, False, False]
    assert [recs[f]["correct"] for f in (11, 12, 13, 14, 15)] == [True, False, False, False, False]
    assert recs[11]["ars"] == pytest.approx(96 / 116) and recs[12]["ars"] == 0.0
    assert recs[11]["ars_uniform"] == pytest.approx(96 / 400) and recs[12]["ars_uniform"] == pytest.approx(
        0.25
    )
    assert all(recs[f]["ars"] is None and recs[f]["ars_status"] == "not_valid" for f in (13, 14, 15))
    o = s["overall"]
    assert o["frames"] == 5 and o["valid_frames"] == 2 and o["ars_scored"] == 2
    assert o["v_over_t"] == pytest.approx(40.0)
    assert o["ars"] == pytest.approx(48 / 116) and o["z_over_v"] == pytest.approx(50.0)
    assert o["ars_uniform"] == pytest.approx((96 / 400 + 0.25) / 2)
    assert o["accuracy"] == pytest.approx(0.2)
    assert (o["instrument_accuracy"], o["verb_accuracy"], o["target_accuracy"]) == pytest.approx(
        (0.8, 0.6, 0.6)
    )
    assert (
        o["best_constant_accuracy"] == pytest.approx(0.6)
        and o["best_constant_class"] == "grasper,retract,gallbladder"
    )
    assert s["videos"]["video01"]["v_over_t"] == pytest.approx(200 / 3)
    # ARS used the verb prompt of the predicted verb
    assert (11, verb("dissect")) in adapter.explained and (12, verb("retract")) in adapter.explained
    for r in recs.values():  # per-frame flags agree with validity
        assert r["valid"] == (r["instrument_correct"] and r["verb_correct"])
        assert not r["correct"] or r["valid"]


def test_ars_metric_function_on_the_same_arrays():
    verb_map, class_map = (
        TRIPLET_FRAMES[11]["maps"][verb("dissect")],
        TRIPLET_FRAMES[11]["maps"][trip("hook", "dissect", "gallbladder")],
    )
    assert action_reasoning_score(verb_map, mask(HOOK)) == pytest.approx(96 / 116)
    assert action_reasoning_score(verb_map, mask(HOOK), rule=">") == pytest.approx(0.8)
    assert action_reasoning_score(class_map, mask(HOOK)) == 0.0  # the class heatmap is not the verb heatmap
    assert action_reasoning_score(TRIPLET_FRAMES[12]["maps"][verb("retract")], mask(GRASPER)) == 0.0
    base = {"heatmap": class_map, "gt_union_mask": mask(HOOK), "class_masks": {}, "predicted_class": "hook"}
    res_samples = [
        {**base, "verb_heatmap": verb_map, "instrument_box_mask": mask(HOOK), "instrument_correct": True, "verb_correct": True},
        {**base, "verb_heatmap": verb_map, "instrument_box_mask": mask(HOOK), "instrument_correct": True, "verb_correct": False},
        {**base, "verb_heatmap": verb_map, "instrument_box_mask": mask(HOOK), "instrument_correct": False, "verb_correct": True},
    ]  # fmt: skip
    res = evaluate(res_samples)
    assert res["num_ars_eligible"] == 1 and res["ars"] == pytest.approx(96 / 116)
    assert evaluate(res_samples[:1], rule=">")["ars"] == pytest.approx(0.8)


def test_any_triplet_validity_rule(tmp_path):
    s, recs, _ = _run("triplet", tmp_path, validity="any-triplet")
    assert [recs[f]["valid"] for f in (11, 12, 13, 14, 15)] == [True, True, False, False, True]
    assert recs[15]["ars"] == 1.0
    o = s["overall"]
    assert o["v_over_t"] == pytest.approx(60.0) and o["ars"] == pytest.approx((96 / 116 + 0 + 1) / 3)
    assert o["z_over_v"] == pytest.approx(100 / 3) and o["verb_accuracy"] == pytest.approx(0.8)


def test_null_only_frames_counted_on_request_are_never_valid(tmp_path):
    s, recs, _ = _run("triplet", tmp_path, out_of_pool="count", heatmap_target="gt")
    r = recs[16]
    assert r["gt"] == ["grasper,null_verb,null_target"] and not r["valid"] and not r["correct"]
    assert r["explained"] is None and r["explained_status"] == "gt_not_in_pool"  # never a wrong class
    assert r["instrument_correct"] and not r["verb_correct"]
    assert s["overall"]["frames"] == 6 and s["overall"]["v_over_t"] == pytest.approx(200 / 6)
    assert s["overall"]["not_explained"] == 1
    assert load_heatmap(tmp_path / "run", r) is None  # no primary map stored for it
    # the gt target explains the in-pool GT triplet closest to the prediction
    assert recs[15]["explained"] == "hook,dissect,gallbladder"  # tie on closeness, higher score
    assert recs[13]["explained"] == "hook,dissect,gallbladder"


def test_all_pool_keeps_null_triplets_in_the_pool(tmp_path):
    s, recs, _ = _run("triplet", tmp_path, triplet_pool="all")
    assert 16 in recs and s["pool_size"] == 100 and not recs[16]["valid"]
    s2, _, _ = _run("triplet", tmp_path / "p", triplet_pool="product")
    assert s2["pool_size"] == 6 * 9 * 14
