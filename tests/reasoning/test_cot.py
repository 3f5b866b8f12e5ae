import pytest

from surgkit.reasoning.cot import build_chain, split_levels, validate_chain
from surgkit.reasoning.render import render_target

from .helpers import location_rec, phase_rec, rec


def kinds(text, r):
    return {i.kind for i in validate_chain(text, r)}


def test_template_is_deterministic_and_valid():
    r = phase_rec()
    a, b = render_target(r, "cot"), render_target(r, "cot")
    assert a == b
    assert validate_chain(a, r) == []
    levels = split_levels(a.split("<think>")[1].split("</think>")[0])
    assert "hook" in levels[1] and "upper right" in levels[1] and "lower left" in levels[1]
    assert "hook is dissecting the cystic duct" in levels[2]
    assert "Calot triangle dissection" in levels[3] and levels[3].endswith("CalotTriangleDissection.")


def test_seeded_paraphrases_vary_but_stay_valid():
    r = phase_rec()
    texts = {build_chain(r, variant=v).text() for v in range(12)}
    assert len(texts) > 1
    for t in texts:
        assert validate_chain(t, r) == []


def test_validator_catches_each_error_kind():
    r = phase_rec()
    good = render_target(r, "cot")
    assert kinds(good.replace("<answer>", "<answer>x</answer><answer>"), r) >= {"tags"}
    swapped = (
        good.replace("Level 1:", "Level X:").replace("Level 2:", "Level 1:").replace("Level X:", "Level 2:")
    )
    assert "levels" in kinds(swapped, r)
    assert kinds(good.replace("<answer>CalotTriangleDissection", "<answer>ClippingCutting"), r) == {"answer"}
    assert "instrument" in kinds(good.replace("(grasper)", "(grasper) and a clipper"), r)
    assert kinds(
        good.replace("hook is dissecting the cystic duct", "hook is cutting the cystic duct"), r
    ) == {"relation"}
    assert kinds(good.replace("(hook) in the upper right", "(hook) in the lower right"), r) == {"position"}
    assert "tissue" in kinds(
        good.replace("Anatomy visible:", "Anatomy visible: the liver and")
        .replace("The tissue in view includes", "The tissue in view includes the liver and")
        .replace("The instruments work on", "The instruments work on the liver and"),
        r,
    )


def test_vqla_location_chain_agrees_with_box():
    r = location_rec()
    t = render_target(r, "cot")
    assert "right top quadrant" in t and '"bbox_2d": [547, 59, 922, 420]' in t
    assert validate_chain(t, r) == []
    assert kinds(t.replace("performing Tissue Manipulation", "performing Suction"), r) == {"state"}


@pytest.mark.parametrize("mode", ["answer_only", "sentence"])
def test_other_renderers(mode):
    t = render_target(phase_rec(), mode)
    assert "<think>" not in t and "CalotTriangleDissection" in t


# ------------------------------------------------------------------ meaning, not wording (issue 18 item 7)
def cvs_rec():
    return rec(
        id="e/5/300/cvs",
        task="cvs",
        answer="C1 yes, C2 no, C3 yes",
        labels=dict(cvs=dict(c1=1, c2=0, c3=1), anatomy=["gallbladder", "cystic_plate"]),
    )


GOOD = "<answer>CalotTriangleDissection</answer>"
# (case, think body) for phase_rec(): hook dissecting the cystic duct (box upper right), grasper
# retracting the gallbladder (box lower left), phase CalotTriangleDissection -- each chain is wrong in meaning
CORRUPTED = [
    (
        "paraphrased false relation (simple present)",
        "Level 1: A hook in the upper right and a grasper in the lower left; the gallbladder and the cystic duct.\n"
        "Level 2: The hook cuts the cystic duct while the grasper retracts the gallbladder.\n"
        "Level 3: This is typical of Calot triangle dissection.",
        "relation",
    ),
    (
        "paraphrased false relation (passive)",
        "Level 1: I see the hook and the grasper, with the gallbladder and the cystic duct.\n"
        "Level 2: The cystic duct is being coagulated by the hook; the gallbladder is retracted by the grasper.\n"
        "Level 3: The scene corresponds to Calot triangle dissection.",
        "relation",
    ),
    (
        "true relation denied",
        "Level 1: The hook and the grasper are visible, as are the gallbladder and the cystic duct.\n"
        "Level 2: The hook is not dissecting the cystic duct; the grasper retracts the gallbladder.\n"
        "Level 3: Hence Calot triangle dissection.",
        "relation",
    ),
    (
        "tissue stated at the wrong level (an absent tissue in Level 2)",
        "Level 1: A hook and a grasper are in the field.\n"
        "Level 2: The hook dissects the cystic duct next to the omentum; the grasper retracts the gallbladder.\n"
        "Level 3: So the phase is Calot triangle dissection.",
        "tissue",
    ),
    (
        "Level 3 reaches a different phase than the answer",
        "Level 1: A hook and a grasper; the gallbladder and the cystic duct.\n"
        "Level 2: The hook is dissecting the cystic duct; the grasper is retracting the gallbladder.\n"
        "Level 3: This is characteristic of clipping and cutting.",
        "phase",
    ),
    (
        "Level 3 reaches another phase in CholecT50 spelling, then names the answer",
        "Level 1: A hook and a grasper; the gallbladder and the cystic duct.\n"
        "Level 2: The hook is dissecting the cystic duct; the grasper is retracting the gallbladder.\n"
        "Level 3: The evidence points to gallbladder-dissection. So the phase is CalotTriangleDissection.",
        "phase",
    ),
    ("empty levels", "Level 1: \nLevel 2: -\nLevel 3: N/A", "levels"),
    (
        "placeholder level",
        "Level 1: A hook and a grasper.\nLevel 2: ...\nLevel 3: So the phase is Calot triangle dissection.",
        "levels",
    ),
    (
        "paraphrased wrong position",
        "Level 1: The hook sits at the lower left of the image and the grasper too.\n"
        "Level 2: The hook dissects the cystic duct; the grasper retracts the gallbladder.\n"
        "Level 3: Calot triangle dissection.",
        "position",
    ),
    (
        "absent instrument under a synonym",
        "Level 1: A hook, a grasper and a clip applier are visible.\n"
        "Level 2: The hook dissects the cystic duct; the grasper retracts the gallbladder.\n"
        "Level 3: Calot triangle dissection.",
        "instrument",
    ),
    (
        "present instrument stated absent",
        "Level 1: The hook is in view; no grasper is visible.\n"
        "Level 2: The hook dissects the cystic duct.\n"
        "Level 3: Calot triangle dissection.",
        "instrument",
    ),
]


@pytest.mark.parametrize("case,think,kind", CORRUPTED, ids=[c[0] for c in CORRUPTED])
def test_corrupted_chains_are_refused(case, think, kind):
    r = phase_rec()
    found = kinds(f"<think>{think}</think>{GOOD}", r)
    assert kind in found, (case, found)


def test_paraphrased_true_chain_is_accepted():
    """The validator checks meaning: a chain worded unlike the templates but true is accepted."""
    r = phase_rec()
    think = (
        "Level 1: In the upper right there is a monopolar hook, and a grasper sits in the lower left; "
        "the gallbladder and the cystic duct are in view.\n"
        "Level 2: The hook dissects the cystic duct while the gallbladder is being retracted by the grasper.\n"
        "Level 3: Dissection of the cystic duct is typical of Calot triangle dissection, not of clipping and cutting."
    )
    assert validate_chain(f"<think>{think}</think>{GOOD}", r) == []


def test_cvs_claims_checked_by_meaning():
    r = cvs_rec()
    good = render_target(r, "cot")
    assert validate_chain(good, r) == []
    # C2 is the hepatocystic triangle (Endoscapes numbering): claiming it cleared contradicts c2 = 0
    lie = good.replace(
        "the hepatocystic triangle is not yet cleared", "the hepatocystic triangle is fully cleared"
    )
    assert lie != good and "cvs" in kinds(lie, r)
    verdict = good.replace("is not achieved", "is achieved")
    assert verdict != good and "cvs" in kinds(verdict, r)
    numbered = "<think>Level 1: The gallbladder.\nLevel 2: No instrument acts.\nLevel 3: C1 yes, C2 yes, C3 yes.</think>"
    assert "cvs" in kinds(numbered + "<answer>C1 yes, C2 no, C3 yes</answer>", r)


def test_vqla_location_claim_in_level3_checked_against_box():
    r = location_rec()
    t = render_target(r, "cot").replace(
        "centre in the right top quadrant", "centre in the left bottom quadrant"
    )
    assert "position" in kinds(t, r)
