"""Worker run by tests/utils/test_distributed.py under torchrun / accelerate launch (and in-process).

Trains a small MLP with the shared launch path (global batches, micro-batches, grad norm, tracker
logging) and evaluates it with both sharded-evaluation paths; rank 0 writes ``result.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch import nn


def run(out: Path, batch_size: int = 7, grad_accum: int = 1, steps: int = 4, report_to: str = "none") -> dict:
    from surgkit.utils.distributed import (
        global_batches,
        grad_norm,
        mean_over_processes,
        micro_batches,
        sharded_map,
        updates_per_epoch,
    )
    from surgkit.utils.launch import LaunchOptions, make_accelerator
    from surgkit.utils.tracking import start_run

    launch = LaunchOptions(mixed_precision="no", grad_accum=grad_accum, report_to=report_to)
    acc = make_accelerator("cpu", launch=launch)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(29, 5, generator=g), torch.randn(29, 1, generator=g)
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model, opt = acc.prepare(model, opt)
    logger = start_run(out, "dist-test", {"batch_size": batch_size, "launch": launch.__dict__},
                       report_to=report_to, accelerator=acc, quiet=True)  # fmt: skip
    losses, step = [], 0
    per_epoch = updates_per_epoch(len(x), batch_size)
    for epoch in range(10):
        for batch in global_batches(len(x), batch_size, seed=3, epoch=epoch):
            total, mine = 0.0, 0
            for mb in micro_batches(acc, model, batch):
                loss = nn.functional.mse_loss(model(x[mb.indices]), y[mb.indices])
                acc.backward(loss * mb.weight)
                total += float(loss.detach()) * len(mb.indices)
                mine += len(mb.indices)
            norm = grad_norm(acc, model.parameters())
            opt.step()
            opt.zero_grad()
            step += 1
            loss_mean = mean_over_processes(acc, total / mine, mine)
            losses.append(loss_mean)
            logger.log({"loss": loss_mean, "lr": 0.1, "grad_norm": norm}, step, samples=len(batch))
            if step == steps:
                break
        if step == steps:
            break
    logger.log({"mse": 0.5}, step, prefix="eval/")
    logger.finish()
    net = acc.unwrap_model(model)
    with torch.no_grad():
        preds = sharded_map(
            acc, list(range(len(x))), lambda idx: net(x[idx]).squeeze(1).tolist(), chunk_size=4
        )
        serial = [v for i in range(0, len(x), 4) for v in net(x[i : i + 4]).squeeze(1).tolist()]
    loader = acc.prepare(torch.utils.data.DataLoader(torch.arange(len(x)), batch_size=4))
    seen = []
    for b in loader:
        seen.extend(acc.gather_for_metrics(b).tolist())
    result = {
        "processes": acc.num_processes,
        "distributed_type": acc.distributed_type.value,
        "param_type": type(next(model.parameters())).__name__,
        "losses": losses,
        "updates_per_epoch": per_epoch,
        "weights": {k: v.tolist() for k, v in net.state_dict().items()},
        "preds": preds,
        "preds_serial": serial,
        "gathered": seen,
    }
    if acc.is_main_process:
        (out / "result.json").write_text(json.dumps(result))
    acc.wait_for_everyone()
    return result


if __name__ == "__main__":
    out = Path(sys.argv[1])
    run(out, *map(int, sys.argv[2:5]), *sys.argv[5:6])
    from surgkit.utils.distributed import shutdown

    shutdown()
