import pytest

from surgkit.reasoning.cot import build_chain, split_levels, validate_chain
from surgkit.reasoning.render import render_target

from .helpers import location_rec, phase_rec


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
    assert kinds(t.replace("performing Tissue Manipulation", "performing Suction"), r) == {"relation"}


@pytest.mark.parametrize("mode", ["answer_only", "sentence"])
def test_other_renderers(mode):
    t = render_target(phase_rec(), mode)
    assert "<think>" not in t and "CalotTriangleDissection" in t
