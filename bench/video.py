"""Benchmark: SurgVISTA pretraining step throughput (clips/s) and peak memory, SDPA vs eager attention.

One training step = student forward (encoder on visible tokens + both decoders) + losses +
backward + AdamW update, on random ImageNet-normalised clips with a tube mask (ratio 0.85) and
random teacher tokens (the teacher's own cost is excluded: it depends on the teacher chosen).
Every configuration runs in a fresh subprocess so its peak memory (max RSS on CPU,
``torch.cuda.max_memory_allocated`` on GPU) is its own. Prints one JSON document.

    python bench/video.py                      # tiny and base, SDPA and eager, CPU
    python bench/video.py --sizes base --batch 4 --device cuda
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time


def run_one(size: str, impl: str, batch: int, steps: int, device: str, threads: int | None) -> dict:
    import torch

    if threads:
        torch.set_num_threads(threads)

    from surgkit.video.config import preset
    from surgkit.video.masking import batch_tube_masks
    from surgkit.video.model import SurgVistaForPretraining
    from surgkit.video.pretrain import param_groups

    torch.manual_seed(0)
    cfg = preset(size, attn_implementation=impl)
    model = SurgVistaForPretraining(cfg).to(device).train()
    opt = torch.optim.AdamW(param_groups(model, 0.05), lr=1e-4, betas=(0.9, 0.95))
    g = torch.Generator().manual_seed(0)
    video = torch.randn(batch, 3, cfg.num_frames, cfg.img_size, cfg.img_size, generator=g).to(device)
    mask = batch_tube_masks(batch, cfg.grid, cfg.mask_ratio, g).to(device)
    teacher = torch.randn(batch, cfg.num_tokens, cfg.distill_target_dim, generator=g).to(device)

    def step() -> float:
        out = model(video, mask, teacher)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(out.loss)

    step()  # warm-up (allocator, kernels)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # fmt: skip
    return {
        "size": size, "attention": impl, "device": device, "batch": batch, "steps": steps,
        "tokens": cfg.num_tokens, "visible_tokens": cfg.num_tokens - cfg.grid[0] * int(cfg.mask_ratio * cfg.grid[1] * cfg.grid[2]),
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "seconds_per_step": round(dt / steps, 4), "clips_per_s": round(batch * steps / dt, 3),
        "peak_memory_mib": round(peak, 1),
        "peak_memory_kind": "cuda max_memory_allocated" if device.startswith("cuda") else "process max RSS",
        "torch_threads": torch.get_num_threads(),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["tiny", "base"])
    ap.add_argument("--attention", nargs="+", default=["sdpa", "eager"])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--one", nargs=2, metavar=("SIZE", "IMPL"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(
            json.dumps(run_one(args.one[0], args.one[1], args.batch, args.steps, args.device, args.threads))
        )
        return
    results = []
    for size in args.sizes:
        for impl in args.attention:
            cmd = [sys.executable, __file__, "--one", size, impl, "--batch", str(args.batch), "--steps",
                   str(args.steps), "--device", args.device] + (["--threads", str(args.threads)] if args.threads else [])  # fmt: skip
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                results.append(
                    {"size": size, "attention": impl, "error": res.stderr.strip().splitlines()[-1:]}
                )
            else:
                results.append(json.loads(res.stdout.strip().splitlines()[-1]))
    import torch

    print(json.dumps({"benchmark": "surgkit.video pretraining step", "torch": torch.__version__,
                      "machine": platform.machine(), "python": platform.python_version(), "results": results},
                     indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
