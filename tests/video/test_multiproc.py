"""Fine-tuning with 2 CPU processes (gloo, torchrun) equals 1 process: LR trajectory, losses, metrics.

2 processes × batch 2 against 1 process × batch 4: the same global batches (Accelerate gives process r
batch r of every 2), the same lr (scaled by the global batch), the schedule counted after ``prepare``,
per-sample augmentation seeded by sample index, and sharded evaluation gathered without the padding
duplicates. Dropout, drop path and mixup (per-process randomness by nature) are off here.
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from surgkit.video.finetune import FinetuneSettings, finetune

from ..multiproc import check, torchrun
from .native_data import make_cholec80

SCRIPT = """
import json, sys
from surgkit.video.finetune import FinetuneSettings, finetune
finetune(FinetuneSettings.from_dict(json.load(open(sys.argv[1]))), progress=False)
from surgkit.utils.distributed import shutdown
shutdown()
"""


@pytest.mark.parity
def test_two_processes_equal_one_process(tmp_path):
    root = make_cholec80(tmp_path / "c80", numbers=(1, 2, 33, 41), seconds=16)

    def settings(run, batch):
        return FinetuneSettings.from_preset(
            "phase", "cholec80", str(root), run_dir=str(tmp_path / run), epochs=2, batch_size=batch,
            model_overrides={"img_size": 32, "depth": 1}, num_frames=4, interval=2, device="cpu", torch_threads=1,
            train_samples_per_epoch=16, eval_frame_stride=3, mixup=0.0, cutmix=0.0, drop_path_rate=0.0,
            fc_drop_rate=0.0, warmup_epochs=0.5, frame_cache=str(tmp_path / "frames"),
        )  # fmt: skip

    one = finetune(settings("one", 4), progress=False)
    two_settings = settings("two", 2)
    (tmp_path / "s.json").write_text(json.dumps(dataclasses.asdict(two_settings)))
    (tmp_path / "run.py").write_text(SCRIPT)
    check(torchrun([str(tmp_path / "run.py"), str(tmp_path / "s.json")], nproc=2, timeout=240))
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert two["processes"] == 2 and two["global_batch"] == one["global_batch"] == 4
    assert two["steps_per_epoch"] == one["steps_per_epoch"] == 4  # counted after prepare, not 8
    lr_one = [lr for h in one["history"] for lr in h["lr"]]
    lr_two = [lr for h in two["history"] for lr in h["lr"]]
    lr, low = 5e-4 * 4 / 64, 1e-6 * 4 / 64  # base and min lr × global batch / 64
    # 8 updates, 2 of warm-up (linspace from 0), then the cosine down towards min_lr: the whole trajectory
    expected = [0.0, lr] + [low + 0.5 * (lr - low) * (1 + math.cos(math.pi * i / 6)) for i in range(6)]
    assert lr_one == pytest.approx(expected, rel=1e-12) and lr_two == pytest.approx(expected, rel=1e-12)
    from surgkit.utils.tracking import read_train_log

    from ..multiproc import assert_parity, logged_runs

    def steps(run):
        return [r["loss"] for r in read_train_log(tmp_path / run) if "loss" in r]

    def weights(run):
        from safetensors.torch import load_file

        return {
            k: v.numpy() for k, v in load_file(str(tmp_path / run / "last" / "model.safetensors")).items()
        }

    assert len(steps("one")) == 8
    assert_parity("video finetune (official phase preset, augmentation on, 1x4 vs 2x2; sharded eval)", steps("one"),
                  steps("two"), weights("one"), weights("two"), rtol=1e-4, atol=1e-5,
                  test_rows=len((tmp_path / "one" / "predictions_test.csv").read_text().splitlines()) - 1,
                  **logged_runs(tmp_path / "one", tmp_path / "two"))  # fmt: skip
    for a, b in zip(one["history"], two["history"], strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["val"]["video_accuracy"] == pytest.approx(a["val"]["video_accuracy"])
    for k in ("image_accuracy", "video_accuracy", "precision", "recall"):
        assert two["test"][k] == pytest.approx(one["test"][k], abs=1e-9, nan_ok=True), k
    rows_one = (tmp_path / "one" / "predictions_test.csv").read_text().splitlines()
    rows_two = (tmp_path / "two" / "predictions_test.csv").read_text().splitlines()
    assert (
        rows_two == rows_one and len(rows_one) == 1 + 6
    )  # every test frame once (16 s / stride 3), no padding
