import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from surgkit.demo import DemoContext  # noqa: E402
from surgkit.errors import SurgkitError  # noqa: E402
from surgkit.reasoning.demo import majority_predictions, split_records, stratified  # noqa: E402
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
    screen = m["grpo_prompts"]  # GRPO's prompts were screened for a reward spread by the SFT model
    assert screen["screen"] is True and 0 <= screen["kept"] <= screen["candidates"]
    assert {"sft", "grpo_screen", "grpo", "eval_grpo"} <= set(m["cpu_seconds_by_stage"])
    # the tiny world has no val video: nothing is reported as validation
    assert m["val_records"] == 0 and "validation" not in m


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


def test_split_records_trains_on_the_train_video_only():
    from .helpers import rec

    recs = [rec(id=f"{s}/{k}", split=s) for s in ("train", "val", "test") for k in range(2)]
    sp = split_records(recs)
    assert [r.id for r in sp.train] == ["train/0", "train/1"]
    assert [r.id for r in sp.val] == ["val/0", "val/1"] and [r.id for r in sp.test] == ["test/0", "test/1"]
    with pytest.raises(SurgkitError, match="no train/test"):
        split_records([r for r in recs if r.split != "test"])


def test_demo_reports_the_val_video_it_did_not_train_on(tmp_path, monkeypatch):
    """With ``train_on_val=False`` (how the GRPO recipe is chosen) the val video's questions are judged
    after each stage and never trained on: SFT sees exactly the train video's records."""
    import dataclasses
    import json

    from surgkit.reasoning import demo
    from surgkit.synth import generate_world

    world = tmp_path / "w"
    generate_world(world, preset="tiny", seed=0, layouts="vlm", videos=5, progress=False)
    assert json.loads((world / "world.json").read_text())["splits"]["lap"]["val"]
    monkeypatch.setattr(demo, "TINY", dataclasses.replace(demo.TINY, train_on_val=False))
    section = demo.demo_step(DemoContext(workdir=tmp_path / "out", size="tiny", artifacts={"world": world}))
    m = section.metrics
    assert m["val_records"] > 0 and m["trained_on_val"] is False
    v = m["validation"]
    assert v["n"] > 0 and set(v["mean_reward"]) == {"majority answer", "after SFT", "after GRPO"}
    sft = json.loads((tmp_path / "out" / "reasoning" / "sft" / "training.json").read_text())
    assert sft["records"] == m["train_records"] == m["records"] - m["val_records"] - m["heldout_records"]
    assert any(t[0].startswith("Validation") for t in section.tables)
