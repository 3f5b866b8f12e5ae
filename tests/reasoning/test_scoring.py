"""Scoring that cannot be fooled: one reading of an answer per task, unparseable always wrong and counted,
in the reward, the evaluation and the chain validator alike."""

import pytest

from surgkit.reasoning import rewards as R
from surgkit.reasoning.cot import validate_chain
from surgkit.reasoning.evaluate import compute_metrics
from surgkit.reasoning.render import render_target
from surgkit.reasoning.scoring import accuracy_score, is_correct, parse_answer, triplet_score

from .helpers import rec

T = "<think>Level 1: a\nLevel 2: b\nLevel 3: c</think><answer>{}</answer>"


def none_triplet():
    return rec(id="n/v/1/triplet", task="triplet", answer="none", labels=dict(triplets=[], tools=[]))


def one_triplet():
    trip = [dict(instrument="grasper", verb="retract", target="gallbladder")]
    return rec(
        id="n/v/2/triplet", task="triplet", answer="grasper,retract,gallbladder", labels=dict(triplets=trip)
    )


def no_tools():
    return rec(id="n/v/1/tools", task="tool_presence", answer="none", labels=dict(tools=[]))


def cvs():
    return rec(
        id="n/v/1/cvs", task="cvs", answer="C1 yes, C2 no, C3 yes", labels=dict(cvs=dict(c1=1, c2=0, c3=1))
    )


def yesno():
    return rec(
        id="n/v/1/yn", task="vqa", question_type="yesno", answer="no", question="Is a clipper visible?"
    )


def mcq():
    return rec(
        id="n/v/1/mcq", options=["Preparation", "ClippingCutting", "CalotTriangleDissection"], answer_index=2
    )


def vqla_state():
    return rec(
        id="n/v/1/vqla",
        task="vqla",
        question_type="state",
        answer="Retraction",
        labels=dict(vqla_class=3, object="grasper", states=dict(grasper="Retraction")),
    )


# (case name, record factory, completion, accuracy reward, strictly correct, parseable)
CASES = [
    ("none-frame, 'none'", none_triplet, T.format("none"), 1.0, True, True),
    ("none-frame, garbage answer", none_triplet, T.format("banana"), 0.0, False, False),
    ("none-frame, empty answer", none_triplet, T.format(""), 0.0, False, False),
    ("none-frame, no answer block", none_triplet, "<think>Level 1: nothing</think>", 0.0, False, False),
    ("none-frame, answer tag not closed", none_triplet, "<answer>none", 0.0, False, False),
    (
        "none-frame, a triplet where none is",
        none_triplet,
        T.format("grasper,retract,gallbladder"),
        0.0,
        False,
        True,
    ),
    ("triplet, exact", one_triplet, T.format("grasper, retract, gallbladder"), 1.0, True, True),
    (
        "triplet, right one plus a garbage group",
        one_triplet,
        T.format("grasper,retract,gallbladder; xyz"),
        2 / 3,
        False,
        True,
    ),
    ("triplet, only garbage", one_triplet, T.format("hook,eats,liver"), 0.0, False, False),
    ("no-tool frame, 'none'", no_tools, T.format("none"), 1.0, True, True),
    ("no-tool frame, empty answer", no_tools, T.format(" "), 0.0, False, False),
    ("no-tool frame, unknown tool", no_tools, T.format("laser"), 0.0, False, False),
    ("CVS, right", cvs, T.format("C1 yes, C2 no, C3 yes"), 1.0, True, True),
    ("CVS, two of three", cvs, T.format("C1 yes, C2 yes, C3 yes"), 2 / 3, False, True),
    ("CVS, unreadable", cvs, T.format("looks safe"), 0.0, False, False),
    ("yes/no, right", yesno, T.format("No, it is not."), 1.0, True, True),
    ("yes/no, no yes/no word", yesno, T.format("perhaps"), 0.0, False, False),
    ("phase, no phase named", lambda: rec(), T.format("gallbladder"), 0.0, False, False),
    (
        "phase, boilerplate + CholecT50 spelling",
        lambda: rec(),
        T.format("The phase is carlot-triangle-dissection."),
        1.0,
        True,
        True,
    ),
    (
        "phase, two phases in one answer",
        lambda: rec(),
        T.format("CalotTriangleDissection or ClippingCutting"),
        0.0,
        False,
        False,
    ),
    (
        "phase, last answer block wins",
        lambda: rec(),
        T.format("ClippingCutting") + "<answer>CalotTriangleDissection</answer>",
        1.0,
        True,
        True,
    ),
    ("MCQ, letter", mcq, T.format("(C)"), 1.0, True, True),
    ("MCQ, letter out of range", mcq, T.format("E"), 0.0, False, False),
    ("MCQ, letter contradicting text", mcq, T.format("B. CalotTriangleDissection"), 0.0, False, False),
    ("VQLA, out of the 18 classes", vqla_state, T.format("dancing"), 0.0, False, False),
    ("VQLA, right class", vqla_state, T.format("retraction"), 1.0, True, True),
]


@pytest.mark.parametrize("name,factory,text,acc,correct,parseable", CASES, ids=[c[0] for c in CASES])
def test_scoring_case(name, factory, text, acc, correct, parseable):
    r = factory()
    p = parse_answer(text, r)
    assert p.parseable == parseable
    assert is_correct(p, r) == correct
    assert accuracy_score(p, r) == pytest.approx(acc)
    assert R.accuracy([text], record=[r]) == [pytest.approx(acc)]  # the GRPO reward reads it the same way
    if not correct:  # the chain validator refuses it too
        assert any(i.kind == "answer" for i in validate_chain(text, r))


def test_evaluation_counts_unparseable_and_never_credits_it():
    recs = [none_triplet(), rec(**{**none_triplet().to_dict(), "id": "n/v/2/triplet"}), no_tools()]
    preds = {recs[0].id: T.format("none"), recs[1].id: T.format("banana"), recs[2].id: T.format("")}
    m = compute_metrics(recs, preds, answer_mode="tags")["groups"]
    trip = m["t/triplet"]
    assert trip["triplet_accuracy"] == 0.5 and trip["unparseable_answers"] == 1
    assert trip["instrument_accuracy"] == 0.5  # garbage is no empty instrument set
    tools = m["t/tool_presence"]
    assert tools["accuracy"] == 0.0 and tools["unparseable_answer_rate"] == 1.0


def test_missing_and_failed_answers_are_unparseable_not_dropped():
    recs = [rec(id=f"p/{k}") for k in range(4)]
    right = T.format("CalotTriangleDissection")
    preds = {"p/0": right, "p/1": right, "p/2": right}  # p/3 missing
    statuses = {"p/1": "null", "p/2": "length"}  # an empty response and one cut at the token limit
    m = compute_metrics(recs, preds, statuses=statuses)
    g = m["groups"]["t/phase"]
    assert m["missing_predictions"] == 1 and g["n"] == 4
    assert g["accuracy"] == 0.25 and g["unparseable_answers"] == 3


def test_template_chains_score_full_marks():
    """The project's own template chains are right by every score (a test that could fail: the chains
    are built from annotations, the scores from parsing)."""
    for r in (none_triplet(), one_triplet(), no_tools(), cvs(), mcq(), vqla_state()):
        text = render_target(r, "cot")
        assert R.accuracy([text], record=[r]) == [1.0], r.id
        assert R.format_hierarchical([text]) == [1.0]


def test_triplet_score_of_an_unparseable_answer_is_zero_even_on_an_empty_frame():
    assert triplet_score(None, set()) == 0.0
    assert triplet_score(set(), set()) == 1.0  # "none" said on a frame without triplets
    assert triplet_score(None, {("grasper", "retract", "gallbladder")}) == 0.0
