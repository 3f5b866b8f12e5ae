"""Trackers and train_log.jsonl: what a trainer logs can be read back from TensorBoard's event files."""

from __future__ import annotations

import json
import time

import pytest

from surgkit.utils.tracking import flatten_config, read_train_log, start_run


def _scalars(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(logdir))
    ea.Reload()
    return {tag: [(e.step, e.value) for e in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]}


def test_tensorboard_scalars_read_back_equal_the_train_log(tmp_path):
    import torch

    log = start_run(tmp_path, "unit", {"lr": 0.1, "model": {"depth": 2, "tags": ["a"]}, "x": None},
                    report_to="tensorboard", quiet=True)  # fmt: skip
    for step in range(1, 4):
        log.log({"loss": torch.tensor(1.0 / step), "lr": 0.1 * step, "note": "text kept in jsonl"}, step,
                samples=8)  # fmt: skip
    log.log({"acc": 0.75}, 3, prefix="eval/")
    log.finish()
    records = read_train_log(tmp_path)
    assert [r["step"] for r in records] == [1, 2, 3, 3]
    assert records[0]["note"] == "text kept in jsonl" and records[0]["samples_per_second"] > 0
    tracking = json.loads((tmp_path / "tracking.json").read_text())
    assert tracking["report_to"] == ["tensorboard"]
    logdir = tracking["trackers"]["tensorboard"]["logdir"]
    assert logdir == str((tmp_path / "tensorboard" / "unit").resolve())
    scalars = _scalars(logdir)
    assert [s for s, _ in scalars["loss"]] == [1, 2, 3]
    assert [v for _, v in scalars["loss"]] == pytest.approx([r["loss"] for r in records[:3]], rel=1e-6)
    assert [v for _, v in scalars["lr"]] == pytest.approx([0.1, 0.2, 0.3], rel=1e-6)
    assert scalars["eval/acc"] == [(3, pytest.approx(0.75))]
    assert "note" not in scalars


def test_resume_drops_the_log_after_the_resume_step_and_tensorboard_purges_it(tmp_path):
    log = start_run(tmp_path, "unit", {}, report_to="tensorboard", quiet=True)
    for step in range(1, 5):
        log.log({"loss": float(step)}, step)
    log.finish()
    # a resumed run is a later process: its event file gets a later timestamp in its name (TensorBoard reads
    # files in name order; within one second the name order of writers of one process is not their age)
    time.sleep(1.1)
    log = start_run(tmp_path, "unit", {}, report_to="tensorboard", resume_step=2, quiet=True)
    for step in range(3, 5):
        log.log({"loss": 10.0 * step}, step)
    log.finish()
    assert [(r["step"], r["loss"]) for r in read_train_log(tmp_path)] == [
        (1, 1.0),
        (2, 2.0),
        (3, 30.0),
        (4, 40.0),
    ]
    assert json.loads((tmp_path / "tracking.json").read_text())["resumed_at_step"] == 2
    assert _scalars(tmp_path / "tensorboard" / "unit")["loss"] == [(1, 1.0), (2, 2.0), (3, 30.0), (4, 40.0)]
    start_run(tmp_path, "unit", {}, report_to="none", quiet=True).finish()  # a fresh run starts a new log
    assert read_train_log(tmp_path) == []


def test_no_tracker_still_writes_the_train_log_and_says_so(tmp_path):
    log = start_run(tmp_path, "unit", {}, report_to="none", quiet=True)
    log.log({"loss": 1.0, "nan": float("nan")}, 1)
    tracking = json.loads((tmp_path / "tracking.json").read_text())
    assert tracking["report_to"] == ["none"] and tracking["trackers"] == {}
    assert not (tmp_path / "tensorboard").exists()
    assert read_train_log(tmp_path)[0]["loss"] == 1.0


def test_flatten_config_gives_tracker_safe_values():
    flat = flatten_config({"a": {"b": 1, "c": [1, 2]}, "d": None, "e": True})
    assert flat == {"a.b": 1, "a.c": "[1, 2]", "d": "None", "e": True}
