"""Checkpoint/resume: a resumed run continues exactly like an uninterrupted one."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from surgkit.errors import SurgkitError
from surgkit.utils.training import (
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
)


def _setup():
    seed_everything(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    return model, opt, sched


def _step(model, opt, sched):
    x = torch.randn(16, 4)  # consumes the torch RNG, as does dropout
    noise = np.random.rand() + random.random()  # noqa: NPY002 - numpy and python RNG must resume too
    loss = (model(x) - noise).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()
    return loss.item()


def test_resume_matches_uninterrupted(tmp_path):
    model, opt, sched = _setup()
    straight = [_step(model, opt, sched) for _ in range(6)]
    final_straight = [p.detach().clone() for p in model.parameters()]

    model, opt, sched = _setup()
    first = [_step(model, opt, sched) for _ in range(3)]
    save_checkpoint(tmp_path, 3, model, opt, sched, meta={"epoch": 0})
    _step(model, opt, sched)  # work after the checkpoint is lost by the "crash"

    model2, opt2, sched2 = _setup()
    seed_everything(123)  # a different process state before resuming
    meta = load_checkpoint(latest_checkpoint(tmp_path), model2, opt2, sched2)
    assert meta == {"step": 3, "epoch": 0}
    rest = [_step(model2, opt2, sched2) for _ in range(3)]
    assert first + rest == straight
    for a, b in zip(final_straight, model2.parameters(), strict=True):
        assert torch.equal(a, b)


def test_keep_and_latest(tmp_path):
    model, opt, sched = _setup()
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, model, opt, sched, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-00000002", "checkpoint-00000003"]
    (tmp_path / ".checkpoint-00000004.tmp").mkdir()  # an interrupted save is never picked up
    assert latest_checkpoint(tmp_path).name == "checkpoint-00000003"


def test_checkpoint_has_no_pickle(tmp_path):
    model, opt, sched = _setup()
    _step(model, opt, sched)
    ckpt = save_checkpoint(tmp_path, 1, model, opt, sched)
    suffixes = {p.suffix for p in ckpt.iterdir()}
    assert suffixes <= {".safetensors", ".json"}


def test_load_rejects_non_checkpoint(tmp_path):
    model, _, _ = _setup()
    with pytest.raises(SurgkitError, match="not a surgkit checkpoint"):
        load_checkpoint(tmp_path, model)
