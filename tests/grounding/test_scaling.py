"""`ground train-clip` on 2 processes == 1 process; `ground bench` sharded == unsharded; trackers read back."""

from __future__ import annotations

import json

import pytest

from tests.grounding.miniworld import write_mini_world
from tests.multiproc import assert_parity, check, logged_runs, record_identical, torchrun


def _weights(folder):
    from safetensors.torch import load_file

    return {k: v.numpy() for k, v in load_file(str(folder / "model.safetensors")).items()}


def _losses(run_dir, key="loss"):
    from surgkit.utils.tracking import read_train_log

    return [r[key] for r in read_train_log(run_dir) if key in r]


@pytest.mark.slow
@pytest.mark.parity
def test_train_clip_two_processes_equal_one_and_log_to_tensorboard(tmp_path, run_cli):
    world = write_mini_world(tmp_path / "w", videos=(1, 2), frames=8)
    args = ["ground", "train-clip", "--world", str(world), "--size", "test", "--steps", "3", "--batch-size", "5",
            "--device", "cpu", "--report-to", "tensorboard"]  # fmt: skip
    code, _, err = run_cli(*args, "--out", str(tmp_path / "one"))
    assert code == 0, err
    check(torchrun(["-m", "surgkit", *args, "--out", str(tmp_path / "two")]))
    one, two = tmp_path / "one.train", tmp_path / "two.train"
    assert len(_losses(one)) == 3
    assert_parity("ground train-clip (tiny CLIP, batch 5 = 3 + 2 pairs, AdamW)", _losses(one), _losses(two),
                  _weights(tmp_path / "one"), _weights(tmp_path / "two"), rtol=1e-5, atol=1e-5,
                  loose=("k_proj.bias", 1e-3), **logged_runs(one, two))  # Adam steps of <= ~lr (2.25e-4) on zero-gradient key biases  # fmt: skip
    # gradient norms too: Adam would hide a gradient counted twice (it is scale-invariant), clipping would not
    assert _losses(two, "grad_norm") == pytest.approx(_losses(one, "grad_norm"), rel=1e-5)
    record = json.loads((tmp_path / "two" / "surgkit_training.json").read_text())
    assert record["processes"] == 2 and record["launch"]["report_to"] == "tensorboard"
    # the tracker: TensorBoard scalars of the 2-process run equal its train_log.jsonl
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tracking = json.loads((two / "tracking.json").read_text())
    ea = EventAccumulator(tracking["trackers"]["tensorboard"]["logdir"])
    ea.Reload()
    assert {"loss", "lr", "grad_norm", "samples_per_second"} <= set(ea.Tags()["scalars"])
    assert [e.step for e in ea.Scalars("loss")] == [1, 2, 3]
    assert [e.value for e in ea.Scalars("loss")] == pytest.approx(_losses(two), rel=1e-6)


def test_train_clip_refuses_gradient_accumulation(tmp_path, run_cli):
    world = write_mini_world(tmp_path / "w", videos=(1, 2), frames=3)
    code, _, err = run_cli("ground", "train-clip", "--world", world, "--out", tmp_path / "o", "--size", "test",
                           "--steps", "1", "--device", "cpu", "--grad-accum", "2", "--report-to", "none")  # fmt: skip
    assert code == 2 and "--grad-accum > 1 would change the contrastive loss" in err


@pytest.mark.slow
@pytest.mark.parity
def test_bench_on_two_processes_gives_identical_outputs(tmp_path, tiny_clip_dir, run_cli):
    """12 frames in batches of 5: shards 0-1 on rank 0, shard 2 on rank 1; the main process merges."""
    import numpy as np

    world = write_mini_world(tmp_path / "w")
    args = ["ground", "bench", "--model", str(tiny_clip_dir), "--dataset", "synth", "--root", str(world),
            "--task", "instrument", "--batch-size", "5", "--device", "cpu"]  # fmt: skip
    code, _, err = run_cli(*args, "--out", str(tmp_path / "one"))
    assert code == 0, err
    res = check(torchrun(["-m", "surgkit", *args, "--out", str(tmp_path / "two")]))
    assert "3 batches over 2 processes" in res.stderr
    one, two = tmp_path / "one", tmp_path / "two"
    assert sorted(p.name for p in (two / "shards").iterdir()) == ["00000.json", "00001.json", "00002.json"]
    for name in ("predictions.jsonl", "summary.json", "table.md", "run_config.json"):
        assert (two / name).read_bytes() == (one / name).read_bytes(), name
    for s in ("00000", "00001", "00002"):
        a, b = np.load(one / "heatmaps" / f"{s}.npz"), np.load(two / "heatmaps" / f"{s}.npz")
        assert sorted(a.files) == sorted(b.files) and all(np.array_equal(a[k], b[k]) for k in a.files)
    record_identical(
        "ground bench (tiny CLIP, 12 frames, 3 batches over 2 processes)",
        ["predictions.jsonl", "summary.json", "table.md", "run_config.json", "heatmaps/*.npz"],
    )
    assert len((one / "predictions.jsonl").read_text().splitlines()) == 12
