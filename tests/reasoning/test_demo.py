import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from surgkit.demo import DemoContext  # noqa: E402
from surgkit.reasoning.demo import demo_step, majority_predictions  # noqa: E402
from surgkit.reasoning.evaluate import compute_metrics  # noqa: E402


def test_tiny_demo_on_the_synthetic_world(tmp_path, synth_world):
    section = demo_step(DemoContext(workdir=tmp_path / "out", size="tiny", artifacts={"world": synth_world}))
    m = section.metrics
    assert m["records"] > 100 and m["template_chains_valid"] == m["records"]
    assert set(m["per_stage"]) == {
        "majority baseline",
        "random init",
        "stage 1 SFT (sentences)",
        "stage 2 SFT (CoT)",
        "stage 3 GRPO",
    }
    assert "rewards/accuracy/mean" in m["grpo_reward_means"]
    assert section.figures and section.figures[0][0].is_file()
    assert (tmp_path / "out" / "reasoning" / "records.jsonl").is_file()
    assert any("held out" in n or "official" in n for n in section.notes)


def test_majority_baseline(endovis_root):
    from surgkit.reasoning.builders import build

    recs = build("endovis18_vqla", endovis_root).records
    train = [r for r in recs if r.split == "train"]
    test = [r for r in recs if r.split == "test"]
    preds = majority_predictions(train, test)
    m = compute_metrics(test, preds)["groups"]["endovis18_vqla/vqla"]
    # train answers: kidney x2, Tissue_Manipulation, Retraction, right-top, left-bottom -> 'kidney' everywhere
    assert m["accuracy"] == pytest.approx(2 / 6)
