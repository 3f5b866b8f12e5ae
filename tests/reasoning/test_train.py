"""SFT and GRPO on tiny random VLMs with images (spec §4.3): GRPO must learn, not just run.

No reward in these tests is unable to fail: they are the project's own rewards (format, accuracy), each
0 for a wrong completion.
"""

import dataclasses
import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from surgkit.errors import LeakageError, SurgkitError  # noqa: E402
from surgkit.reasoning.builders import build  # noqa: E402
from surgkit.reasoning.pipeline import tokenizer_corpus  # noqa: E402
from surgkit.reasoning.records import Record  # noqa: E402
from surgkit.reasoning.tiny_vlm import TinyVLMConfig, build_tiny_vlm  # noqa: E402
from surgkit.reasoning.train import GRPOSettings, SFTSettings, grpo, select_split, sft  # noqa: E402
from surgkit.utils.tracking import read_train_log  # noqa: E402

SMALL = TinyVLMConfig(hidden_size=48, intermediate_size=96, vision_embed_dim=16)


@pytest.fixture(scope="module")
def setup(endovis_root, tmp_path_factory):
    recs = build("endovis18_vqla", endovis_root).records
    train = select_split(recs, "train")
    d = tmp_path_factory.mktemp("train")
    model = build_tiny_vlm(d / "tiny", tokenizer_corpus(train), SMALL)
    return train, d, model


def _changed(a_dir, b_dir):
    a, b = load_file(str(a_dir / "model.safetensors")), load_file(str(b_dir / "model.safetensors"))
    assert a.keys() == b.keys()
    return sum(not torch.equal(a[k], b[k]) for k in a), len(a)


def yes_no_records(root):
    """One frame, one question, both answers: SFT on both makes the policy unsure (p(yes) ~ 1/2)."""
    Image.new("RGB", (56, 56), (150, 60, 60)).save(root / "f.png")
    base = dict(
        dataset="toy",
        split="train",
        video_id="v",
        images=[dict(path="f.png", width=56, height=56)],
        task="vqa",
        question_type="yesno",
        question="Is a grasper visible?",
    )
    return [Record.from_dict({**base, "id": f"toy/{a}", "answer": a}) for a in ("yes", "no")]


def test_grpo_learns_a_tiny_task(tmp_path):
    """After SFT the policy says yes or no; GRPO with the accuracy reward (truth: yes) must change the
    weights and raise the mean reward over its steps -- with tags decoded intact (the format reward is
    earned, which it cannot be if the tags vanish in decoding)."""
    both = yes_no_records(tmp_path)
    cfg = dataclasses.replace(SMALL, merge_words=True, vocab_size=512)  # short sequences: a fast test
    model0 = build_tiny_vlm(tmp_path / "tiny", tokenizer_corpus(both), cfg, seed=0)
    s = sft(
        model0,
        both * 8,
        tmp_path,
        tmp_path / "sft",
        SFTSettings(
            max_steps=150,
            lora=False,
            learning_rate=5e-3,
            batch_size=8,
            warmup_ratio=0.0,
            seed=0,
            completion_logits_only=True,
        ),
        device="cpu",
    )
    g = grpo(
        s,
        [both[0]] * 16,  # the question whose answer is yes
        tmp_path,
        tmp_path / "grpo",
        GRPOSettings(
            max_steps=12,
            lora=False,
            learning_rate=2e-3,
            num_generations=8,
            batch_size=8,
            temperature=0.8,
            max_completion_length=48,
            beta=0.0,
            rewards={"format_hierarchical": 0.5, "accuracy": 1.0},
            seed=0,
        ),
        device="cpu",
    )
    n, total = _changed(s, g)
    assert n > total // 2
    log = read_train_log(tmp_path / "grpo")
    acc = [e["rewards/accuracy/mean"] for e in log if "rewards/accuracy/mean" in e]
    fmt = [e["rewards/format_hierarchical/mean"] for e in log if "rewards/format_hierarchical/mean" in e]
    assert len(acc) == 12
    assert sum(fmt) / len(fmt) > 0.5  # the tags survived TRL's decoding (else every format reward is 0)
    first, last = sum(acc[:4]) / 4, sum(acc[-4:]) / 4
    assert 0.0 < first < 1.0  # the group had something to learn from
    assert last > first + 0.2, acc


def test_tags_that_vanish_in_decoding_are_refused(setup, tmp_path):
    """A tokenizer with <think>/<answer> as special tokens would zero every GRPO reward: refused."""
    from surgkit.reasoning.vlm import check_tags_survive, load_processor

    train, d, model0 = setup
    proc = load_processor(model0)
    check_tags_survive(proc)  # surgkit's tiny tokenizers keep them
    proc.tokenizer.add_special_tokens({"additional_special_tokens": ["<think>", "</think>"]})
    with pytest.raises(SurgkitError, match="marks <think>, </think> as special tokens"):
        check_tags_survive(proc)


def test_sft_writes_jsonl_log_and_changes_weights(setup, endovis_root, capsys):
    train, d, model0 = setup
    s = sft(
        model0,
        train[:4],
        endovis_root,
        d / "sft",
        SFTSettings(max_steps=2, lora=False, learning_rate=1e-3, batch_size=2, warmup_ratio=0.0),
    )
    losses = [e["loss"] for e in read_train_log(d / "sft") if "loss" in e]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    assert "'loss'" not in capsys.readouterr().out  # TRL's log dicts go to train_log.jsonl, not stdout
    info = json.loads((d / "sft" / "training.json").read_text())
    assert info["stage"] == "sft-cot" and info["output"].endswith("model")
    n, total = _changed(model0, s)
    assert n > total // 2


def test_lora_adapter_per_stage_merge_on_request_and_resume(setup, endovis_root):
    from surgkit.reasoning.vlm import load_vlm

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
    assert out == d / "lora" / "adapter" and (out / "adapter_config.json").is_file()
    assert not (d / "lora" / "model").exists()  # merged only on request
    merged_in_memory, _ = load_vlm(out)  # an adapter folder loads as base + adapter, merged
    base, _ = load_vlm(model0)
    diff = [k for k, v in merged_in_memory.state_dict().items() if not torch.equal(v, base.state_dict()[k])]
    assert diff  # the adapter changed some weights
    resumed = sft(
        model0,
        train[:2],
        endovis_root,
        d / "lora",
        SFTSettings(**{**settings.__dict__, "max_steps": 2}),
        resume=True,
    )
    info = json.loads((d / "lora" / "training.json").read_text())
    assert info["start"].startswith("resumed weights from checkpoint-1") and resumed == out
    merged = sft(
        model0,
        train[:2],
        endovis_root,
        d / "merged",
        SFTSettings(**{**settings.__dict__, "merge_lora": True}),
    )
    assert merged == d / "merged" / "model" and (d / "merged" / "adapter" / "adapter_config.json").is_file()
    assert _changed(model0, merged)[0] > 0  # merged weights differ from the base


def test_training_refuses_test_records(setup):
    train, _, _ = setup
    test_rec = Record.from_dict({**train[0].to_dict(), "id": "x", "split": "test"})
    with pytest.raises(LeakageError):
        select_split([test_rec], "test")
    with pytest.raises(LeakageError):
        select_split(train + [test_rec], "all")
    assert select_split(train + [test_rec], "all", allow_leakage=True)[-1].id == "x"


def test_7b_path_on_a_tiny_qwen25_vl(endovis_root, tmp_path):
    """The switches of the Qwen2.5-VL-7B recipe on a tiny Qwen2.5-VL: LoRA adapter per stage, gradient
    checkpointing, the model-input box frame bound to explicit max pixels, merge on request, GRPO from the
    adapter folder; vLLM refused without a GPU."""
    from surgkit.reasoning.vlm import load_processor

    recs = select_split(build("endovis18_vqla", endovis_root).records, "train")[:4]
    cfg = dataclasses.replace(SMALL, kind="qwen2.5-vl")
    m = build_tiny_vlm(tmp_path / "q25", tokenizer_corpus(recs), cfg)
    common = dict(
        lora=True, lora_r=4, lora_alpha=8, gradient_checkpointing=True, box_frame="input", max_pixels=56 * 56
    )
    s = sft(
        m,
        recs,
        endovis_root,
        tmp_path / "s",
        SFTSettings(max_steps=2, batch_size=2, learning_rate=1e-3, **common),
    )
    assert s == tmp_path / "s" / "adapter"
    info = json.loads((tmp_path / "s" / "training.json").read_text())
    assert info["box"]["frame"] == "input" and info["box"]["max_pixels"] == 56 * 56
    assert info["settings"]["gradient_checkpointing"] is True
    g = grpo(
        s,
        recs,
        endovis_root,
        tmp_path / "g",
        GRPOSettings(
            max_steps=1, num_generations=2, batch_size=2, max_completion_length=8, merge_lora=True, **common
        ),
    )
    assert g == tmp_path / "g" / "model" and (tmp_path / "g" / "adapter" / "adapter_config.json").is_file()
    assert load_processor(g).image_processor.size["longest_edge"] == 56 * 56
    with pytest.raises(SurgkitError, match="use_vllm needs a CUDA GPU"):
        grpo(s, recs, endovis_root, tmp_path / "v", GRPOSettings(use_vllm=True, max_steps=1), device="cpu")
