import pytest

from surgkit.reasoning import rewards as R
from surgkit.reasoning.render import render_target

from .helpers import location_rec, phase_rec, rec

T = "<think>Level 1: a\nLevel 2: b\nLevel 3: c</think><answer>{}</answer>"


def test_format_rewards_adversarial():
    ok = T.format("x")
    assert R.format_basic([ok, "  " + ok + "\n"]) == [1.0, 1.0]
    assert R.format_basic(["<answer>x</answer><think>y</think>"]) == [0.0]  # wrong order
    assert R.format_basic([ok + "<answer>y</answer>"]) == [0.0]  # two answers
    assert R.format_basic(["prefix " + ok]) == [0.0]  # text outside the tags
    assert R.format_basic(["<think>a</think>"]) == [0.0]
    plain = "<think>just thinking</think><answer>x</answer>"
    assert R.format_hierarchical([ok, plain, "x"]) == [1.0, 0.5, 0.0]
    out_of_order = "<think>Level 2: b\nLevel 1: a\nLevel 3: c</think><answer>x</answer>"
    empty_level = "<think>Level 1: a\nLevel 2:\nLevel 3: c</think><answer>x</answer>"
    assert R.format_hierarchical([out_of_order, empty_level]) == [0.5, 0.5]
    # conversational completions (TRL) are read from the assistant message
    assert R.format_basic([[{"role": "assistant", "content": ok}]]) == [1.0]


def test_grounding_format_none_for_non_box_tasks():
    loc, ph = location_rec(), phase_rec()
    with_box = T.format('{"label": "right-top", "bbox_2d": [1, 2, 3, 4]}')
    assert R.format_grounding([with_box, T.format("right-top"), with_box], record=[loc, loc, ph]) == [
        1.0,
        0.0,
        None,
    ]


def test_accuracy_exact_no_substring_credit():
    r = rec(answer="GallbladderDissection")
    texts = [
        T.format(a)
        for a in (
            "GallbladderDissection",
            "gallbladder dissection",
            "gallbladder",
            "The phase is gallbladder-dissection.",
            "GallbladderDissection GallbladderPackaging",
        )
    ]
    assert R.accuracy(texts, record=[r] * 5) == [1.0, 1.0, 0.0, 1.0, 0.0]
    assert R.accuracy(["GallbladderDissection"], record=[r]) == [0.0]  # no answer block: unparseable
    # last answer block wins
    assert R.accuracy([T.format("Preparation") + "<answer>GallbladderDissection</answer>"], record=[r]) == [
        1.0
    ]
    # CholecT50 spelling is an alias of the Cholec80 label
    assert R.accuracy([T.format("gallbladder-extraction")], record=[rec(answer="GallbladderRetraction")]) == [
        1.0
    ]


def test_mcq_letter_or_text():
    r = rec(options=["Preparation", "ClippingCutting", "CalotTriangleDissection"], answer_index=2)
    texts = [
        T.format(a)
        for a in (
            "C",
            "(C)",
            "C. CalotTriangleDissection",
            "calot triangle dissection",
            "B. CalotTriangleDissection",
            "A",
        )
    ]
    assert R.accuracy(texts, record=[r] * 6) == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]


def test_triplet_blend_hand_computed():
    truth = [
        dict(instrument="grasper", verb="retract", target="gallbladder"),
        dict(instrument="hook", verb="dissect", target="gallbladder"),
    ]
    r = rec(
        task="triplet",
        answer="grasper,retract,gallbladder; hook,dissect,gallbladder",
        labels=dict(triplets=truth),
    )
    pred = T.format("grasper,retract,gallbladder; hook,coagulate,liver")
    # exact triplet F1: tp 1, |p| 2, |t| 2 -> 0.5; instrument F1 1; verb {retract, coagulate} vs {retract, dissect} 0.5;
    # target {gallbladder, liver} vs {gallbladder} -> 2/3. λ=0.5: 0.5*0.5 + 0.5*mean(1, .5, 2/3)
    expected = 0.25 + 0.5 * (1 + 0.5 + 2 / 3) / 3
    assert R.accuracy([pred], record=[r]) == [pytest.approx(expected)]
    assert R.accuracy([pred], record=[r], triplet_lambda=0.0) == [pytest.approx(0.5)]
    assert R.accuracy([T.format("grasper,retract,gallbladder;hook,dissect,gallbladder")], record=[r]) == [1.0]


def test_cvs_fraction_and_tools():
    r = rec(task="cvs", answer="C1 yes, C2 no, C3 yes", labels=dict(cvs=dict(c1=1, c2=0, c3=1)))
    texts = [
        T.format(a)
        for a in (
            "C1 yes, C2 no, C3 yes",
            "C1 yes, C2 yes, C3 yes",
            "C1: no; C2: yes; C3: no",
            "yes no yes",
            "maybe",
        )
    ]
    assert R.accuracy(texts, record=[r] * 5) == pytest.approx([1, 2 / 3, 0, 1, 0])
    t = rec(task="tool_presence", answer="grasper, hook", labels=dict(tools=["grasper", "hook"]))
    assert R.accuracy(
        [T.format("hook and grasper"), T.format("grasper"), T.format("grasper, laser")], record=[t] * 3
    ) == pytest.approx([1, 2 / 3, 0])


def test_iou_reward_frames_and_edge_cases():
    r = location_rec()  # GT (700, 60, 1180, 430) on 1280x1024 -> norm1000 (547, 59, 922, 420)
    exact = T.format('{"label": "right-top", "bbox_2d": [546.875, 58.59375, 921.875, 419.921875]}')
    outside = T.format('{"label": "right-top", "bbox_2d": [546.875, 58.59375, 2000, 419.921875]}')  # clipped
    degenerate = T.format("right-top [600, 100, 600, 300]")
    pair_form = T.format("right-top (546.875, 58.59375), (921.875, 419.921875)")
    out = R.iou_reward([exact, outside, degenerate, pair_form, T.format("right-top")], record=[r] * 5)
    assert out[0] == pytest.approx(1.0) and out[3] == pytest.approx(1.0)
    # clipped to x2 = 1280: IoU = 480*370 / (580*370)
    assert out[1] == pytest.approx(480 / 580)
    assert out[2] == 0.0 and out[4] == 0.0
    assert R.iou_reward([exact], record=[phase_rec()]) == [None]  # no box: not applicable
    assert R.iou_reward([exact], record=[r], mode="threshold") == [1.0]
    pixel = R.BoxSettings(frame="pixel")
    assert R.iou_reward([T.format("[700, 60, 1180, 430]")], record=[r], box_settings=pixel) == [
        pytest.approx(1.0)
    ]


def test_multi_box_hungarian():
    gt = [(0, 0, 10, 10), (20, 20, 30, 30)]
    assert R.matched_iou([(20, 20, 30, 30), (0, 0, 10, 10)], gt) == pytest.approx(1.0)
    # an extra false box halves the reward: sum 2 / max(2, 3)... here 1 matched of 1 pred vs 2 gt
    assert R.matched_iou([(0, 0, 10, 10)], gt) == pytest.approx(0.5)
    assert R.matched_iou([(0, 0, 10, 10), (20, 20, 30, 30), (50, 50, 60, 60)], gt) == pytest.approx(2 / 3)


def test_coherence_refuses_right_answer_with_hallucinated_box():
    r = location_rec()
    right = render_target(r, "cot")
    hallucinated = right.replace("[547, 59, 922, 420]", "[10, 600, 100, 990]")
    wrong_answer = right.replace('"label": "right-top"', '"label": "left-top"')
    acc = R.accuracy([right, hallucinated], record=[r, r])
    assert acc == [1.0, 1.0]  # the answer text is right in both
    coh = R.coherence([right, hallucinated, wrong_answer], record=[r] * 3)
    assert coh[0] == pytest.approx(1.0)
    assert coh[1] == 0.0  # joint term 0 (IoU 0) and the box lies left-bottom, not right-top
    # wrong answer with the right box: joint 0, quadrant self-consistency 0 ('left-top' vs a right-top box)
    assert coh[2] == 0.0
    only_joint = R.CoherenceConfig(quadrant=False)
    graded = R.CoherenceConfig(quadrant=False, joint_graded=True)
    assert R.coherence([right], record=[r], config=graded) == [
        pytest.approx(R.iou_reward([right], record=[r])[0])
    ]
    assert R.coherence([hallucinated], record=[r], config=only_joint) == [0.0]
    assert R.coherence([right], record=[phase_rec()]) == [None]


def test_reasoning_box_term():
    r = location_rec()
    cfg = R.CoherenceConfig(joint=False, quadrant=False, reasoning=True)
    good = T.format('{"label": "right-top", "bbox_2d": [547, 59, 922, 420]}').replace(
        "Level 1: a", "Level 1: the bipolar forceps is upper right"
    )
    bad = good.replace("upper right", "lower left")
    silent = T.format('{"label": "right-top", "bbox_2d": [547, 59, 922, 420]}')
    assert R.coherence([good, bad, silent], record=[r] * 3, config=cfg) == [1.0, 0.0, None]


def test_process_rewards_resist_keyword_stuffing():
    r = phase_rec()
    good = render_target(r, "cot")
    stuffed = good.replace("Level 2:", "grasper hook clipper scissors irrigator bipolar.\nLevel 2:")
    f1 = R.l1_entity_f1([good, stuffed], record=[r, r])
    assert f1[0] == 1.0 and f1[1] < 0.6
    assert R.l2_relation_f1([good], record=[r]) == [1.0]
    assert R.l2_relation_f1(
        [good.replace("is dissecting the cystic duct", "is clipping the cystic duct")], record=[r]
    ) == [0.5]
    assert R.l3_consistency(
        [good, good.replace("<answer>CalotTriangleDissection", "<answer>Preparation")], record=[r, r]
    ) == [1.0, 0.0]


def test_combination_skips_none_and_make_funcs_names():
    assert R.combine({"a": [1.0, None], "b": [0.5, 1.0]}, {"a": 2.0, "b": 1.0}) == [2.5, 1.0]
    funcs, ws = R.make_reward_funcs()
    assert [f.__name__ for f in funcs] == list(R.DEFAULT_WEIGHTS) and ws == list(R.DEFAULT_WEIGHTS.values())
    r = location_rec()
    bd = R.reward_breakdown(render_target(r, "cot"), r)
    assert bd["total"] == pytest.approx(0.5 + 1 + bd["iou"] + 1)
    with pytest.raises(ValueError, match="unknown reward"):
        R.make_reward_funcs({"nope": 1})


def test_coherence_one_grid_definition_on_the_projects_own_chains(synth_world):
    """Every box-bearing record of the world: its template chain (3x3 cells in Level 1, a quadrant in
    Level 3) scores coherence 1 with all three terms on; moving the stated positions breaks it."""
    from surgkit.reasoning.synth_adapter import build_from_world

    full = R.CoherenceConfig(reasoning=True)
    recs = [r for r in build_from_world(synth_world).records if r.answer_box() is not None]
    assert len(recs) > 20
    texts = [render_target(r, "cot") for r in recs]
    agree = [R.reasoning_box_agreement(t, r, r.answer_box()) for t, r in zip(texts, recs, strict=True)]
    assert all(a in (None, 1.0) for a in agree) and sum(a == 1.0 for a in agree) > 20
    assert R.coherence(texts, record=recs, config=full) == [pytest.approx(1.0)] * len(recs)
    # corrupted: every stated cell/quadrant replaced by the opposite one
    swap = {
        "upper": "lower",
        "lower": "upper",
        "left": "right",
        "right": "left",
        "top": "bottom",
        "bottom": "top",
    }
    import re

    def flip(text):
        think, rest = text.split("</think>")
        return (
            re.sub(r"\b(upper|lower|left|right|top|bottom)\b", lambda m: swap[m.group(1)], think)
            + "</think>"
            + rest
        )

    moved = []
    for t, r, a in zip(texts, recs, agree, strict=True):
        names = {p.region.name for p in R.chain_statements(t).positions if R.answer_object(r) in p.names}
        if a is not None and names != {"centre"}:  # the centre cell has no opposite
            moved.append(R.reasoning_box_agreement(flip(t), r, r.answer_box()))
    assert len(moved) > 20 and max(moved) < 1.0


@pytest.mark.parametrize(
    "phrase,box,agrees",
    [
        ("in the upper centre", (40, 0, 60, 20), True),  # 'centre' as a column of the upper row
        ("in the centre", (40, 30, 60, 50), True),
        ("in the upper centre", (40, 30, 60, 50), False),
        ("in the right top quadrant", (60, 30, 70, 38), True),  # quadrant: right half, top half
        ("in the upper right", (60, 30, 70, 38), False),  # grid: that centre is in the middle row
        ("in the middle left", (0, 30, 20, 50), True),
        ("on the left", (20, 0, 45, 80), True),  # a half: x centre 32.5 < 50
    ],
)
def test_position_phrases_on_one_region_definition(phrase, box, agrees):
    r = rec(
        id="g/1",
        task="grounding",
        answer="grasper",
        boxes=[dict(label="grasper", bbox=list(box), role="answer")],
    )  # 100 x 80 image
    text = f"<think>Level 1: The grasper {phrase}.\nLevel 2: x\nLevel 3: y</think><answer>grasper</answer>"
    assert R.reasoning_box_agreement(text, r, r.answer_box()) == float(agrees)
