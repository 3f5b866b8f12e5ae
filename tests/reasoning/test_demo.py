import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from surgkit.demo import DemoContext  # noqa: E402
from surgkit.reasoning.demo import majority_predictions, stratified  # noqa: E402
from surgkit.reasoning.evaluate import compute_metrics  # noqa: E402


def test_tiny_demo_on_the_synthetic_world(tmp_path, synth_world):
    from surgkit.reasoning.demo import demo_step

    section = demo_step(DemoContext(workdir=tmp_path / "out", size="tiny", artifacts={"world": synth_world}))
    m = section.metrics
    assert m["records"] > 100 and m["template_chains_valid"] == m["records"]
    assert set(m["per_stage_heldout"]) == {"majority answer", "after SFT", "after GRPO"}
    learning = m["learning"]
    assert {"arena_heldout", "train_fit", "grpo_reward"} <= set(learning)
    for e in learning.values():
        assert set(e) >= {"model", "baseline", "baseline_kind", "n", "holds"}
    assert m["vision_tower"] == "random Qwen2-VL"  # no grounding CLIP in this context: said so
    assert any("vision tower is random" in n for n in section.notes)
    assert section.figures and section.figures[0][0].is_file()
    assert (tmp_path / "out" / "reasoning" / "records.jsonl").is_file()


def test_majority_baseline_per_question_type(endovis_root):
    from surgkit.reasoning.builders import build

    recs = build("endovis18_vqla", endovis_root).records
    train = [r for r in recs if r.split == "train"]
    test = [r for r in recs if r.split == "test"]
    preds = majority_predictions(train, test)
    m = compute_metrics(test, preds)["groups"]["endovis18_vqla/vqla"]
    # per question type: organ -> kidney (right x2), state -> Tissue_Manipulation (tie broken by first
    # seen; right once), location -> right-top (right once) of the 6 test questions
    assert m["accuracy"] == pytest.approx(4 / 6)


def test_stratified_takes_each_group():
    from .helpers import rec

    recs = [rec(id=f"a/{k}", task="phase") for k in range(10)] + [
        rec(id=f"b/{k}", task="vqa") for k in range(3)
    ]
    picked = stratified(recs, 2)
    assert [r.id for r in picked] == ["a/0", "a/5", "b/0", "b/1"]
