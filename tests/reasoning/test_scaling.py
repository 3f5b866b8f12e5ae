"""`reason sft|grpo|self-improve` on 2 processes == 1 process on the same global batch; `reason eval`
sharded over 2 processes == 1 process (identical files); trackers read back from the event files."""

from __future__ import annotations

import json

import pytest

from tests.multiproc import assert_parity, check, torchrun


def _weights(folder):
    from safetensors.torch import load_file

    return {k: v.numpy() for k, v in load_file(str(folder / "model.safetensors")).items()}


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
                  global_batch=4)  # fmt: skip
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
