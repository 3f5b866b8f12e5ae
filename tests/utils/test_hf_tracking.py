"""A transformers Trainer on surgkit's tracking: no log dicts on stdout, every step in train_log.jsonl
and TensorBoard, surgkit's progress bar instead of tqdm."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn


class _Regressor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 1)

    def forward(self, x, y):
        pred = self.lin(x).squeeze(-1)
        return {"loss": nn.functional.mse_loss(pred, y), "logits": pred}


class _Data(torch.utils.data.Dataset):
    def __init__(self, n: int = 16) -> None:
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, 3, generator=g), torch.randn(n, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i]}


def test_trainer_logs_go_to_the_tracker_and_train_log_not_stdout(tmp_path, capfd):
    from transformers import Trainer, TrainingArguments

    from surgkit.utils.hf_tracking import tracker_callback, use_surgkit_logging
    from surgkit.utils.tracking import read_train_log

    args = TrainingArguments(output_dir=str(tmp_path / "ckpt"), max_steps=4, per_device_train_batch_size=4,
                             logging_steps=1, report_to="none", use_cpu=True, save_strategy="no",
                             learning_rate=0.1, disable_tqdm=True)  # fmt: skip
    trainer = Trainer(model=_Regressor(), args=args, train_dataset=_Data())
    cb = tracker_callback(tmp_path, "unit-trainer", {"lr": 0.1}, report_to="tensorboard", global_batch=4,
                          step_offset=2, progress=False)  # fmt: skip
    use_surgkit_logging(trainer, cb)
    capfd.readouterr()
    trainer.train()
    out = capfd.readouterr().out
    assert "'loss'" not in out and "train_runtime" not in out, out  # transformers' dicts stayed off stdout
    records = read_train_log(tmp_path)
    steps = [r for r in records if "loss" in r and "train_runtime" not in r]
    assert [r["step"] for r in steps] == [3, 4, 5, 6]  # global_step + offset of 2 steps done before
    assert all({"lr", "grad_norm", "samples_per_second"} <= set(r) for r in steps)
    assert any("train_runtime" in r for r in records)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tracking = json.loads((tmp_path / "tracking.json").read_text())
    assert tracking["resumed_at_step"] == 2
    ea = EventAccumulator(tracking["trackers"]["tensorboard"]["logdir"])
    ea.Reload()
    assert [(e.step, e.value) for e in ea.Scalars("loss")] == [
        (r["step"], pytest.approx(r["loss"], rel=1e-6)) for r in steps
    ]
    assert [e.value for e in ea.Scalars("lr")] == pytest.approx([r["lr"] for r in steps])


def test_log_keys_are_normalised():
    from surgkit.utils.hf_tracking import _normalise

    assert _normalise({"learning_rate": 1e-3, "eval_loss": 0.5, "reward": 1.0}) == {
        "lr": 1e-3,
        "eval/loss": 0.5,
        "reward": 1.0,
    }
