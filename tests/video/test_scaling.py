"""`video pretrain|finetune` from the command line on 2 processes == 1 process on the same global batch
(loss trajectory step by step and final weights), with gradient accumulation and TensorBoard logging."""

from __future__ import annotations

import json

import pytest

from tests.multiproc import assert_parity, check, logged_runs, torchrun

from .native_data import make_cholec80
from .test_pretrain import make_frame_folders


def _weights(path):
    from safetensors.torch import load_file

    return {k: v.numpy() for k, v in load_file(str(path)).items()}


def _log(run_dir, key="loss"):
    from surgkit.utils.tracking import read_train_log

    return [r[key] for r in read_train_log(run_dir) if key in r]


def _scalars(run_dir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tracking = json.loads((run_dir / "tracking.json").read_text())
    ea = EventAccumulator(tracking["trackers"]["tensorboard"]["logdir"])
    ea.Reload()
    return [(e.step, e.value) for e in ea.Scalars(tag)]


@pytest.mark.slow
@pytest.mark.parity
def test_pretrain_two_processes_with_accumulation_equal_one_process(tmp_path, run_cli):
    """1 process x batch 4 vs 2 processes x batch 1 x --grad-accum 2: global batch 4 both."""
    data = make_frame_folders(tmp_path / "data")
    cfg = {"data": [str(data)], "model": "tiny", "model_overrides": {"img_size": 32, "depth": 1, "drop_path_rate": 0.0},
           "num_frames": 4, "interval": 2, "steps": 3, "warmup_steps": 1, "save_every": 100, "teacher": "random-vit",
           "torch_threads": 1}  # fmt: skip
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    base = [
        "video",
        "pretrain",
        "--config",
        str(tmp_path / "cfg.json"),
        "--device",
        "cpu",
        "--report-to",
        "tensorboard",
    ]
    code, _, err = run_cli(*base, "--run-dir", str(tmp_path / "one"), "--batch-size", "4")
    assert code == 0, err
    check(
        torchrun(
            [
                "-m",
                "surgkit",
                *base,
                "--run-dir",
                str(tmp_path / "two"),
                "--batch-size",
                "1",
                "--grad-accum",
                "2",
            ]
        )
    )
    one, two = tmp_path / "one", tmp_path / "two"
    s1, s2 = (json.loads((d / "summary.json").read_text()) for d in (one, two))
    assert (s1["processes"], s2["processes"], s1["global_batch"], s2["global_batch"]) == (1, 2, 4, 4)
    assert_parity("video pretrain (tiny SurgVISTA, 1x4 vs 2x1x accum 2, AdamW)", _log(one), _log(two),
                  _weights(one / "model" / "model.safetensors"), _weights(two / "model" / "model.safetensors"),
                  rtol=1e-5, atol=1e-6, **logged_runs(one, two))  # fmt: skip
    assert _log(two, "grad_norm") == pytest.approx(_log(one, "grad_norm"), rel=1e-4)
    assert [s for s, _ in _scalars(two, "loss_rec")] == [1, 2, 3]
    assert [v for _, v in _scalars(two, "loss")] == pytest.approx(_log(two), rel=1e-6)


@pytest.mark.slow
@pytest.mark.parity
def test_finetune_two_processes_with_accumulation_equal_one_process(tmp_path, run_cli):
    """1 process x batch 4 vs 2 processes x batch 1 x --grad-accum 2; per-step losses, weights, val metrics."""
    root = make_cholec80(tmp_path / "c80", numbers=(1, 2, 33, 41), seconds=16)
    cfg = {"model_overrides": {"img_size": 32, "depth": 1}, "num_frames": 4, "interval": 2, "torch_threads": 1,
           "train_samples_per_epoch": 16, "eval_frame_stride": 3, "mixup": 0.0, "cutmix": 0.0, "drop_path_rate": 0.0,
           "fc_drop_rate": 0.0, "warmup_epochs": 0.5, "frame_cache": str(tmp_path / "frames")}  # fmt: skip
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    base = ["video", "finetune", "--task", "phase", "--dataset", "cholec80", "--root", str(root), "--config",
            str(tmp_path / "cfg.json"), "--epochs", "2", "--device", "cpu", "--report-to", "tensorboard"]  # fmt: skip
    code, _, err = run_cli(*base, "--run-dir", str(tmp_path / "one"), "--batch-size", "4")
    assert code == 0, err
    check(torchrun(["-m", "surgkit", *base, "--run-dir", str(tmp_path / "two"), "--batch-size", "1", "--grad-accum", "2"],
                   timeout=400))  # fmt: skip
    one, two = tmp_path / "one", tmp_path / "two"
    s1, s2 = (json.loads((d / "summary.json").read_text()) for d in (one, two))
    assert (s1["global_batch"], s2["global_batch"], s1["steps_per_epoch"], s2["steps_per_epoch"]) == (
        4,
        4,
        4,
        4,
    )
    assert len(_log(one)) == 8
    assert_parity("video finetune (tiny SurgVISTA phase, 1x4 vs 2x1x accum 2, AdamW + layer decay)", _log(one),
                  _log(two), _weights(one / "last" / "model.safetensors"), _weights(two / "last" / "model.safetensors"),
                  rtol=1e-5, atol=1e-6, **logged_runs(one, two))  # fmt: skip
    val1, val2 = _log(one, "eval/video_accuracy"), _log(two, "eval/video_accuracy")
    assert len(val1) == 2 and val2 == pytest.approx(val1)
    assert [s for s, _ in _scalars(two, "eval/video_accuracy")] == [4, 8]


@pytest.mark.slow
@pytest.mark.parity
def test_teacher_train_two_processes_with_accumulation_equal_one_process(tmp_path, run_cli):
    """`video teacher train` (MAE): 1 process x batch 4 vs 2 processes x batch 1 x --grad-accum 2; each
    draw's frame, crop and mask are seeded by the draw, whichever process takes it."""
    data = make_frame_folders(tmp_path / "data", videos=2, frames=12)
    base = ["video", "teacher", "train", "--data", str(data), "--img-size", "32", "--steps", "3", "--base-lr", "0.05",
            "--device", "cpu", "--report-to", "tensorboard"]  # fmt: skip
    code, _, err = run_cli(*base, "--run-dir", str(tmp_path / "one"), "--batch-size", "4")
    assert code == 0, err
    check(torchrun(["-m", "surgkit", *base, "--run-dir", str(tmp_path / "two"), "--batch-size", "1",
                    "--grad-accum", "2"]))  # fmt: skip
    one, two = tmp_path / "one", tmp_path / "two"
    s1, s2 = (json.loads((d / "summary.json").read_text()) for d in (one, two))
    assert (s1["processes"], s2["processes"], s1["global_batch"], s2["global_batch"], s1["lr"]) == (
        1, 2, 4, 4, pytest.approx(s2["lr"], rel=1e-12))  # fmt: skip
    assert _log(one) == pytest.approx(s1["history"], rel=1e-12) and len(s1["history"]) == 3
    w1, w2 = (_weights(d / "teacher" / "model.safetensors") for d in (one, two))
    before = _fresh_teacher_weights()
    assert_parity("video teacher train (tiny MAE ViT, 1x4 vs 2x1x accum 2, AdamW)", _log(one), _log(two), w1, w2,
                  rtol=1e-5, atol=1e-6,
                  training_moved_weights=max(float(abs(w1[k] - before[k]).max()) for k in w1),
                  **logged_runs(one, two))  # fmt: skip
    assert _log(two, "grad_norm") == pytest.approx(_log(one, "grad_norm"), rel=1e-4)
    assert [s for s, _ in _scalars(two, "loss")] == [1, 2, 3]
    assert [v for _, v in _scalars(two, "loss")] == pytest.approx(_log(two), rel=1e-6)


def _fresh_teacher_weights():
    """The teacher's initial weights: the encoder built after ``torch.manual_seed(seed)``, as training does."""
    import torch

    from surgkit.video.teacher import ImageViT, teacher_config

    torch.manual_seed(0)
    model = ImageViT(teacher_config("tiny", img_size=32, patch_size=8, source="pending"))
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}
