"""`reason sft|grpo|self-improve` on 2 processes == 1 process on the same global batch; `reason eval`
sharded over 2 processes == 1 process (identical files); trackers read back from the event files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.multiproc import assert_parity, check, logged_runs, record_identical, torchrun


def _weights(folder):
    from safetensors.torch import load_file

    return {k: v.numpy() for k, v in load_file(str(folder / "model.safetensors")).items()}


def _moved(before, after) -> float:
    """How far training moved the weights (max |Δ|): the scale the 1-vs-2-process difference is read against."""
    return max(float(abs(after[k] - before[k]).max()) for k in before)


def _log(run_dir, key="loss"):
    from surgkit.utils.tracking import read_train_log

    return [r[key] for r in read_train_log(run_dir) if key in r]


@pytest.fixture(scope="module")
def tiny(endovis_root, tmp_path_factory):
    """EndoVis18-VQLA records (6 train, 6 test) and a tiny VLM whose tokenizer learnt them."""
    from surgkit.reasoning.builders import build
    from surgkit.reasoning.pipeline import tokenizer_corpus
    from surgkit.reasoning.records import write_jsonl
    from surgkit.reasoning.tiny_vlm import TinyVLMConfig, build_tiny_vlm

    d = tmp_path_factory.mktemp("rscale")
    recs = build("endovis18_vqla", endovis_root).records
    write_jsonl(d / "records.jsonl", [r.to_dict() for r in recs])
    cfg = TinyVLMConfig(hidden_size=48, intermediate_size=96, vision_embed_dim=16)
    model = build_tiny_vlm(d / "tiny", tokenizer_corpus([r for r in recs if r.split == "train"]), cfg)
    return d / "records.jsonl", model


@pytest.mark.slow
@pytest.mark.parity
def test_sft_two_processes_equal_one_then_sharded_eval_is_identical(tiny, endovis_root, tmp_path, run_cli):
    records, model = tiny
    common = ["--records", str(records), "--root", str(endovis_root), "--device", "cpu"]
    # global batch 4: 1 process x 4, and 2 processes x 1 sample x --grad-accum 2
    sft = ["reason", "sft", "--model", str(model), *common, "--no-lora", "--max-steps", "3", "--batch-size", "4",
           "--lr", "2e-3", "--report-to", "tensorboard"]  # fmt: skip
    code, _, err = run_cli(*sft, "--out", str(tmp_path / "one"))
    assert code == 0, err
    check(torchrun(["-m", "surgkit", *sft, "--grad-accum", "2", "--out", str(tmp_path / "two")]))
    one, two = tmp_path / "one", tmp_path / "two"
    assert len(_log(one)) == 3
    assert_parity("reason sft (tiny Qwen2-VL, all weights, batch 4 = 1 x 4 vs 2 x 1 x accum 2, AdamW)",
                  _log(one), _log(two), _weights(one / "model"), _weights(two / "model"), rtol=1e-5, atol=1e-5,
                  training_moved_weights=_moved(_weights(model), _weights(one / "model")), **logged_runs(one, two))  # fmt: skip
    # gradient norms: Adam is scale-invariant, so a gradient counted twice would hide from the weights
    assert _log(two, "grad_norm") == pytest.approx(_log(one, "grad_norm"), rel=1e-4)
    assert _log(two, "lr") == pytest.approx(_log(one, "lr"), rel=1e-9)  # the same schedule length
    training = json.loads((two / "training.json").read_text())
    assert training["settings"]["batch_size"] == 4 and training["settings"]["grad_accum"] == 2
    # TensorBoard of the 2-process run: its scalars are the train_log.jsonl values; the run id is recorded
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tracking = json.loads((two / "tracking.json").read_text())
    ea = EventAccumulator(tracking["trackers"]["tensorboard"]["logdir"])
    ea.Reload()
    assert {"loss", "lr", "grad_norm", "samples_per_second"} <= set(ea.Tags()["scalars"])
    assert [e.step for e in ea.Scalars("loss")] == [1, 2, 3]
    assert [e.value for e in ea.Scalars("loss")] == pytest.approx(_log(two), rel=1e-6)

    # sharded inference: the trained model answers all 12 records on 2 processes, files byte-identical
    ev = ["reason", "eval", *common, "--model", str(two / "model"), "--split", "all", "--max-new-tokens", "6",
          "--batch-size", "2"]  # fmt: skip
    code, _, err = run_cli(*ev, "--out", str(tmp_path / "ev1"))
    assert code == 0, err
    check(torchrun(["-m", "surgkit", *ev, "--out", str(tmp_path / "ev2")]))
    for name in ("predictions.jsonl", "metrics.json", "surgkit-run.json"):
        assert (tmp_path / "ev2" / name).read_bytes() == (tmp_path / "ev1" / name).read_bytes(), name
    rows = (tmp_path / "ev2" / "predictions.jsonl").read_text().splitlines()
    assert len(rows) == 12 and len({json.loads(r)["id"] for r in rows}) == 12  # every record once
    record_identical(
        "reason eval (tiny Qwen2-VL, 12 records, batch 2 over 2 processes)",
        ["predictions.jsonl", "metrics.json", "surgkit-run.json"],
    )


def test_launch_options_reach_the_trl_trainers(monkeypatch):
    """--mixed-precision/--grad-accum/--report-to become TrainingArguments; the batch is the global batch."""
    from pathlib import Path

    from surgkit.errors import SurgkitError
    from surgkit.reasoning.train import GRPOSettings, SFTSettings, _trainer_args, with_launch
    from surgkit.utils.launch import LaunchOptions

    launch = LaunchOptions(mixed_precision="bf16", grad_accum=2, report_to="none")
    s = with_launch(SFTSettings(batch_size=8), launch)
    assert (s.mixed_precision, s.grad_accum, s.report_to) == ("bf16", 2, "none")
    monkeypatch.setenv("WORLD_SIZE", "2")
    args = _trainer_args(s, Path("out"), 0, "cpu")
    # global batch 8 = 2 processes x 2 micro-batches x 2 samples
    assert (args["per_device_train_batch_size"], args["gradient_accumulation_steps"]) == (2, 2)
    assert args["bf16"] and not args["fp16"] and args["use_cpu"] and args["report_to"] == []
    assert not _trainer_args(SFTSettings(batch_size=2), Path("out"), 0, "cpu")["bf16"]  # auto: full on CPU
    # what accelerate launch --mixed_precision passes down
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    assert _trainer_args(SFTSettings(batch_size=2), Path("out"), 0, "cpu")["bf16"]
    assert with_launch(GRPOSettings(), LaunchOptions()).report_to is None  # default: TensorBoard if installed
    with pytest.raises(SurgkitError, match="not a multiple of processes x --grad-accum = 2 x 2"):
        _trainer_args(SFTSettings(batch_size=6, grad_accum=2), Path("out"), 0, "cpu")
    with pytest.raises(SurgkitError, match="fp16 needs a GPU"):
        _trainer_args(SFTSettings(batch_size=2, mixed_precision="fp16"), Path("out"), 0, "cpu")


HELPER = str(Path(__file__).with_name("fixed_sampling.py"))


@pytest.mark.slow
@pytest.mark.parity
def test_grpo_two_processes_equal_one(tiny, endovis_root, tmp_path, run_cli, monkeypatch):
    """A group of 4 completions split 2 + 2 over the processes (advantages need the gathered rewards),
    KL to the reference model on, --grad-accum 2 on the 2 processes (1 completion per micro-batch)."""
    from tests.reasoning.fixed_sampling import install

    records, model = tiny
    args = ["reason", "grpo", "--model", str(model), "--records", str(records), "--root", str(endovis_root),
            "--device", "cpu", "--no-lora", "--max-steps", "3", "--num-generations", "4", "--batch-size", "4",
            "--max-completion-length", "8", "--beta", "0.04", "--lr", "1e-3", "--temperature", "1.0",
            "--rewards", "variety=1,format_hierarchical=0.5", "--report-to", "tensorboard"]  # fmt: skip
    check(torchrun([HELPER, *args, "--grad-accum", "2", "--out", str(tmp_path / "two")]))
    install(monkeypatch.setattr)
    code, _, err = run_cli(*args, "--out", str(tmp_path / "one"))
    assert code == 0, err
    one, two = tmp_path / "one", tmp_path / "two"
    reward = "rewards/variety/mean"
    assert len(_log(one, reward)) == 3 and len(set(_log(one, reward))) > 1
    assert max(_log(one, "reward_std")) > 0  # completions differ within a group: advantages are not all 0
    assert_parity("reason grpo (tiny Qwen2-VL, G=4 split 2 + 2, KL on, 1 x 4 vs 2 x 1 x accum 2, AdamW)",
                  _log(one), _log(two), _weights(one / "model"), _weights(two / "model"), rtol=1e-5, atol=5e-5,
                  # Adam's first steps are ~lr x sign(gradient): weights whose gradient is ~0 turn rounding noise
                  # into steps (measured <= 8.1e-6 with 2e-3 of movement)
                  training_moved_weights=_moved(_weights(model), _weights(one / "model")),
                  rewards=_log(one, reward), **logged_runs(one, two))  # fmt: skip
    for key in (reward, "reward_std", "grad_norm", "kl", "completions/mean_length"):
        assert _log(two, key) == pytest.approx(_log(one, key), rel=1e-4, abs=1e-6), key
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(
        json.loads((two / "tracking.json").read_text())["trackers"]["tensorboard"]["logdir"]
    )
    ea.Reload()
    assert [e.value for e in ea.Scalars(reward)] == pytest.approx(_log(two, reward), rel=1e-6)


@pytest.mark.slow
@pytest.mark.parity
def test_self_improve_two_processes_equal_one(tiny, endovis_root, tmp_path, run_cli, monkeypatch):
    """Round 1 on 2 processes == 1 process: the sampled chains (batches seeded by index, shared out over
    the processes), the SFT on them and the GRPO after it."""
    from tests.reasoning.fixed_sampling import install

    records, model = tiny
    rewards = {"variety": 1.0, "format_hierarchical": 0.5}
    args = ["reason", "self-improve", "--model", str(model), "--records", str(records), "--root",
            str(endovis_root), "--device", "cpu", "--no-lora", "--samples", "2", "--max-new-tokens", "8",
            "--batch-size", "4", "--sft-steps", "2", "--grpo-steps", "2", "--sft-lr", "2e-3", "--grpo-lr", "1e-3",
            "--num-generations", "4", "--max-completion-length", "8", "--report-to", "tensorboard"]  # fmt: skip
    env = {"FIXED_SAMPLING_REWARDS": json.dumps(rewards)}
    check(torchrun([HELPER, *args, "--grad-accum", "2", "--out", str(tmp_path / "two")], env=env))
    install(monkeypatch.setattr, rewards)
    code, _, err = run_cli(*args, "--out", str(tmp_path / "one"))
    assert code == 0, err
    one, two = tmp_path / "one", tmp_path / "two"
    # the same chains were sampled, validated and merged: identical round statistics (6 questions)
    rounds = [json.loads((run / "self_improve.json").read_text())["rounds"] for run in (one, two)]
    assert [{**r, "model": None} for r in rounds[1]] == [{**r, "model": None} for r in rounds[0]]
    assert rounds[0][0]["questions"] == 6 and sum(rounds[0][0]["rejections_by_kind"].values()) >= 6
    chains = (one / "round1" / "chains.jsonl").read_text().splitlines()
    assert (
        len(chains) == 12 and len({json.loads(c)["text"] for c in chains}) > 6
    )  # 2 sampled chains per question
    assert (two / "round1" / "chains.jsonl").read_text().splitlines() == chains
    for stage, before in (("sft", _weights(model)), ("grpo", _weights(one / "round1" / "sft" / "model"))):
        a, b = one / "round1" / stage, two / "round1" / stage
        assert len(_log(a)) == 2
        assert_parity(f"reason self-improve round 1 {stage} (4 = 1 x 4 vs 2 x 1 x accum 2)", _log(a), _log(b),
                      _weights(a / "model"), _weights(b / "model"), rtol=1e-5, atol=5e-5,
                      training_moved_weights=_moved(before, _weights(a / "model")), **logged_runs(a, b))  # fmt: skip
        assert _log(b, "grad_norm") == pytest.approx(_log(a, "grad_norm"), rel=1e-4), stage
        # each stage logs to its own tracker run, recorded in its folder
        tracking = json.loads((b / "tracking.json").read_text())
        assert tracking["trackers"]["tensorboard"]["run_id"] == f"reason-{stage}"
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        ea = EventAccumulator(tracking["trackers"]["tensorboard"]["logdir"])
        ea.Reload()
        assert [e.value for e in ea.Scalars("loss")] == pytest.approx(_log(b), rel=1e-6), stage


def test_seeded_generation_batches_do_not_depend_on_the_process(tiny, endovis_root):
    """Sampling with per-batch seeds: the batches of shard 0/2 and 1/2 together are the unsharded answers."""
    from surgkit.reasoning.builders import build
    from surgkit.reasoning.generation import GenerationSettings, generate_answers
    from surgkit.reasoning.vlm import load_vlm

    _, folder = tiny
    from surgkit.reasoning.scoring import BoxSettings

    model, processor = load_vlm(folder, device="cpu", box=BoxSettings())
    recs = build("endovis18_vqla", endovis_root).records[:5]
    gen = GenerationSettings(
        max_new_tokens=6, batch_size=2, do_sample=True, temperature=1.0, num_return_sequences=2
    )

    def texts(seed, shard=None):
        out = generate_answers(
            model, processor, recs, endovis_root, processor.surgkit_box, gen, seed=seed, shard=shard
        )
        return [None if a is None else a.text for a in out]

    whole = texts((0, 1))
    parts = [texts((0, 1), (0, 2)), texts((0, 1), (1, 2))]
    # every answer comes from exactly one shard (batches 0 and 2 from shard 0, batch 1 from shard 1)
    assert [(a is None) + (b is None) for a, b in zip(*parts, strict=True)] == [1] * 10
    assert sum(a is not None for a in parts[1]) == 4
    merged = [a if a is not None else b for a, b in zip(*parts, strict=True)]
    assert merged == whole and None not in whole
    assert texts((0, 2)) != whole  # another seed (e.g. the next round) samples other chains
