"""Benchmark of surgkit.skill: fusion-model training throughput and peak memory (DRA vs vanilla CA),
and the time of one full LOUO run on demo-sized synthetic data. Prints JSON.

    python bench/skill.py                      # paper-size fusion model (d=256, K=10, D=1024), CPU
    python bench/skill.py --device cuda        # on a GPU (peak memory from torch.cuda)
    python bench/skill.py --quick              # small sizes, for a smoke run

Each attention variant runs in its own process so its peak resident memory (CPU) is its own.
Throughput counts input segments per second of phase-2 training steps (forward, backward, AdamW step)
with the unimodal branches frozen, as in SurgFusion-Net's second phase.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def fusion_step_bench(strategy: str, args: dict, queue) -> None:
    """Phase-2 steps of one fusion variant; puts a result dict on ``queue``."""
    import torch

    from surgkit.skill.config import FusionConfig
    from surgkit.skill.model import SurgFusionNet

    torch.manual_seed(0)
    torch.set_num_threads(args["threads"])
    device = torch.device(args["device"])
    cfg = FusionConfig(
        strategy=strategy,
        d_model=args["d_model"],
        input_dims=(args["dim"],) * 3,
        num_fusionnets=args["k"],
        heads_csfb=args["heads"],
        heads_dfb=args["heads"],
    )
    model = SurgFusionNet(cfg).to(device)
    model.freeze_branches()
    model.train()
    body, head = model.fusion_parameters()
    opt = torch.optim.AdamW([{"params": body}, {"params": head, "lr": 5e-5}], lr=5e-4)
    b, t = args["batch"], args["length"]
    x = {m: torch.randn(b, t, args["dim"], device=device) for m in cfg.modalities}
    y = torch.rand(b, 1, device=device)

    def step():
        pred = model(x).score
        loss = 0.5 * torch.nn.functional.mse_loss(pred, y) + 0.5 * torch.nn.functional.l1_loss(pred, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up (allocations, optimizer state)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss_before = _rss_mb()
    t0 = time.perf_counter()
    for _ in range(args["steps"]):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    out = {
        "strategy": strategy,
        "heads": cfg.heads_csfb,
        "fusion_params_m": round(sum(p.numel() for p in body + head) / 1e6, 3),
        "steps": args["steps"],
        "seconds": round(seconds, 3),
        "segments_per_s": round(args["steps"] * b * t / seconds, 1),
        "videos_per_s": round(args["steps"] * b / seconds, 2),
    }
    if device.type == "cuda":
        out["peak_cuda_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    else:
        out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        out["rss_before_steps_mb"] = round(rss_before, 1)
    queue.put(out)


def louo_bench(device: str, quick: bool) -> dict:
    """One full LOUO run (3 branches + DRA fusion per fold) with the demo's experiment on demo-sized data."""
    import torch

    from surgkit.skill.demo import demo_experiment
    from surgkit.skill.protocol import RunOptions, run_cross_validation
    from surgkit.skill.synthetic import make_synthetic_skill_data

    torch.set_num_threads(1)
    size = "tiny" if quick else "demo"
    with tempfile.TemporaryDirectory() as tmp:
        users, trials = (3, 2) if quick else (8, 4)
        data, feats = make_synthetic_skill_data(
            Path(tmp), users=users, trials_per_user=trials, dim=768, length=(20, 40)
        )
        exp = demo_experiment(size, 0)
        t0, c0 = time.perf_counter(), time.process_time()
        res = run_cross_validation(
            exp, RunOptions(data, feats, Path(tmp) / "run", scheme="LOUO", device=device, progress=False)
        )
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    summary = res["tasks"]["Suturing"]["summary"]
    return {
        "videos": users * trials,
        "folds": len(res["tasks"]["Suturing"]["folds"]),
        "feature_dim": 768,
        "segments_per_video": "20-40",
        "epochs": [exp.train.phase1.epochs, exp.train.phase2.epochs],
        "d_model": exp.model.d_model,
        "seconds_wall": round(wall, 1),
        "seconds_cpu": round(cpu, 1),
        "scc_fusion": round(summary["fusion"]["scc_mean"], 3),
        "scc_rgb": round(summary["unimodal:rgb"]["scc_mean"], 3),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--length", type=int, default=128, help="segments per video (padded training length)")
    p.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1: no contention on shared machines)"
    )
    p.add_argument("--skip-louo", action="store_true")
    a = p.parse_args(argv)
    args = {
        "device": a.device, "threads": a.threads, "batch": 4 if a.quick else a.batch,
        "length": 16 if a.quick else a.length, "steps": a.steps or (2 if a.quick else 5),
        "d_model": 32 if a.quick else 256, "dim": 64 if a.quick else 1024, "k": 3 if a.quick else 10, "heads": 4,
    }  # fmt: skip
    ctx = mp.get_context("spawn")
    variants = []
    for strategy in ("dra", "vanilla"):
        queue = ctx.Queue()
        proc = ctx.Process(target=fusion_step_bench, args=(strategy, args, queue))
        proc.start()
        variants.append(queue.get())
        proc.join()
    import torch

    result = {
        "benchmark": "surgkit.skill",
        "device": a.device,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "threads": a.threads,
        "fusion_training": {
            "input": {k: args[k] for k in ("batch", "length", "dim", "d_model", "k")},
            "variants": variants,
        },
        "dra_over_vanilla_time": round(variants[1]["segments_per_s"] / variants[0]["segments_per_s"], 3),
    }
    if not a.skip_louo:
        result["louo_demo_run"] = louo_bench(a.device, a.quick)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
