"""The shared launch path: 2 processes (gloo) compute what 1 process computes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from surgkit.errors import SurgkitError
from surgkit.utils.distributed import (
    epoch_order,
    global_batches,
    split_global_batch,
    updates_per_epoch,
)
from tests.multiproc import assert_parity, check, torchrun

WORKER = Path(__file__).with_name("dist_worker.py")


def test_split_global_batch_covers_every_sample_once_with_weights_of_the_global_mean():
    batch = np.arange(11)
    world, accum = 2, 3
    parts = [split_global_batch(batch, world, r, accum) for r in range(world)]
    seen = np.concatenate([mb.indices for p in parts for mb in p])
    assert sorted(seen.tolist()) == batch.tolist()
    # sum over ranks and micro-steps of weight·mean / (world·accum) == 1/N per sample (DDP mean, backward / accum)
    per_sample = {}
    for p in parts:
        for mb in p:
            for i in mb.indices:
                per_sample[int(i)] = mb.weight / len(mb.indices) / (world * accum)
    assert all(v == pytest.approx(1 / 11) for v in per_sample.values())
    assert [mb.last for mb in parts[0]] == [False, False, True]
    with pytest.raises(SurgkitError, match="cannot be split over 2 processes x 3"):
        split_global_batch(np.arange(5), 2, 0, 3)


def test_epoch_order_and_schedule_do_not_depend_on_the_process():
    a, b = epoch_order(10, 0, 1), epoch_order(10, 0, 1)
    assert a.tolist() == b.tolist() and a.tolist() != epoch_order(10, 0, 2).tolist()
    batches = global_batches(10, 4, seed=0, epoch=0)
    assert [len(x) for x in batches] == [4, 4, 2]
    assert [len(x) for x in global_batches(10, 4, 0, 0, drop_last=True)] == [4, 4]
    assert updates_per_epoch(10, 4) == 3 and updates_per_epoch(10, 4, drop_last=True) == 2


@pytest.mark.slow
@pytest.mark.parity
@pytest.mark.parametrize("accum", [1, 2])
def test_two_processes_train_and_evaluate_like_one(tmp_path, accum):
    """Global batch 7 (uneven split: 4+3 samples, and 2+2 / 2+1 with accumulation), 4 SGD-momentum steps."""
    from tests.utils.dist_worker import run

    one = run(tmp_path / "one", batch_size=7, grad_accum=accum, steps=4)
    (tmp_path / "two").mkdir()
    check(torchrun([str(WORKER), str(tmp_path / "two"), "7", str(accum), "4", "none"]))
    two = json.loads((tmp_path / "two" / "result.json").read_text())
    assert one["processes"] == 1 and two["processes"] == 2
    assert two["updates_per_epoch"] == one["updates_per_epoch"] == 5
    assert_parity(f"shared launch path (MLP, batch 7, grad-accum {accum})", one["losses"], two["losses"],
                  one["weights"], two["weights"], rtol=1e-5, atol=1e-6)  # fmt: skip
    # sharded inference: every item once, in order, exactly the serial outputs of the same weights
    assert two["preds"] == two["preds_serial"]
    # gather_for_metrics of a prepared loader drops the repeated samples that even out the last batch
    assert sorted(two["gathered"]) == list(range(29)) and len(two["gathered"]) == 29
    # only the main process logged: one line per step plus the eval line
    lines = (tmp_path / "two" / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(s)["step"] for s in lines] == [1, 2, 3, 4, 4]


def test_the_cli_leaves_a_launch_s_process_group_on_exit(tmp_path, monkeypatch):
    """A process that exits with a live gloo group can abort in teardown after its work is done (seen: a
    two-process run reported SIGABRT, 'terminate called without an active exception'); every command
    therefore destroys the group on the way out, on success and on error."""
    import torch.distributed as dist

    from surgkit.cli import main
    from surgkit.utils.distributed import shutdown

    shutdown()  # nothing to do without a group
    for argv, code in ((["--version"], 0), (["data", "check", "--root", str(tmp_path / "absent")], 2)):
        dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store-{code}", rank=0, world_size=1)
        assert dist.is_initialized()
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == code
        assert not dist.is_initialized()
