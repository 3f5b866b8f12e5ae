"""CPU smoke of the four stages on a tiny random Qwen2-VL with images (spec §4.3). TRL is imported once here."""

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from surgkit.errors import LeakageError  # noqa: E402
from surgkit.reasoning.builders import build  # noqa: E402
from surgkit.reasoning.pipeline import tokenizer_corpus  # noqa: E402
from surgkit.reasoning.train import GRPOSettings, SFTSettings, grpo, select_split, sft  # noqa: E402
from surgkit.reasoning.vlm import TinyVLMConfig, build_tiny_vlm  # noqa: E402


@pytest.fixture(scope="module")
def setup(endovis_root, tmp_path_factory):
    recs = build("endovis18_vqla", endovis_root).records
    train = select_split(recs, "train")
    d = tmp_path_factory.mktemp("train")
    model = build_tiny_vlm(
        d / "tiny", tokenizer_corpus(train), TinyVLMConfig(hidden_size=64, intermediate_size=128)
    )
    return train, d, model


def _changed(a_dir, b_dir):
    a, b = load_file(str(a_dir / "model.safetensors")), load_file(str(b_dir / "model.safetensors"))
    assert a.keys() == b.keys()
    return sum(not torch.equal(a[k], b[k]) for k in a), len(a)


def length_reward(completions, **_):
    """Dummy reward so a random policy's group has non-zero std (spec §4.3 step 7)."""
    from surgkit.reasoning.parsing import completion_text

    return [len(completion_text(c)) / 100 for c in completions]


def test_sft_then_grpo_change_parameters_and_log_rewards(setup, endovis_root):
    train, d, model0 = setup
    s = sft(
        model0,
        train[:4],
        endovis_root,
        d / "sft",
        SFTSettings(max_steps=2, lora=False, learning_rate=1e-3, batch_size=2, warmup_ratio=0.0),
    )
    log = json.loads((d / "sft" / "train_log.json").read_text())
    losses = [e["loss"] for e in log["log_history"] if "loss" in e]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    n, total = _changed(model0, s)
    assert n > total // 2
    g = grpo(
        s,
        train[:4],
        endovis_root,
        d / "grpo",
        GRPOSettings(
            max_steps=2,
            lora=False,
            learning_rate=1e-3,
            num_generations=4,
            batch_size=4,
            max_completion_length=12,
            beta=0.04,
            extra_reward_funcs=[length_reward],
        ),
    )
    n, total = _changed(s, g)
    assert n > total // 2
    glog = json.loads((d / "grpo" / "train_log.json").read_text())
    steps = [e for e in glog["log_history"] if "rewards/accuracy/mean" in e]
    assert len(steps) == 2
    for name in ("format_hierarchical", "accuracy", "iou", "coherence", "length_reward"):
        assert f"rewards/{name}/mean" in steps[0]
    assert steps[0]["rewards/length_reward/mean"] > 0
    assert glog["reward_names"][-1] == "length_reward" and glog["settings"]["beta"] == 0.04


def test_resume_and_lora(setup, endovis_root):
    train, d, model0 = setup
    settings = SFTSettings(
        max_steps=1,
        lora=True,
        lora_r=4,
        lora_alpha=8,
        learning_rate=1e-3,
        batch_size=2,
        save_steps=1,
        warmup_ratio=0.0,
    )
    out = sft(model0, train[:2], endovis_root, d / "lora", settings)
    assert (d / "lora" / "checkpoints" / "checkpoint-1" / "adapter_config.json").is_file()
    assert _changed(model0, out)[0] > 0  # merged LoRA weights differ from the base
    resumed = sft(
        model0,
        train[:2],
        endovis_root,
        d / "lora",
        SFTSettings(**{**settings.__dict__, "max_steps": 2}),
        resume=True,
    )
    log = json.loads((d / "lora" / "train_log.json").read_text())
    assert log["start"].startswith("resumed weights from checkpoint-1") and resumed.is_dir()


def test_training_refuses_test_records(setup):
    from surgkit.reasoning.records import Record

    train, _, _ = setup
    test_rec = Record.from_dict({**train[0].to_dict(), "id": "x", "split": "test"})
    with pytest.raises(LeakageError):
        select_split([test_rec], "test")
    with pytest.raises(LeakageError):
        select_split(train + [test_rec], "all")
    assert select_split(train + [test_rec], "all", allow_leakage=True)[-1].id == "x"
