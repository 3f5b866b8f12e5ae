"""Choose the reasoning demo's GRPO recipe on VALIDATION questions (the world's val video); prints JSON.

    python bench/reasoning_grpo_recipes.py --world DEMO/world --clip DEMO/grounding/tiny-clip --out /tmp/rec \
        [--recipes '{"name": {"grpo_beta": 0.1, ...}, ...}'] [--seeds 0,1] [--size demo|tiny]

One SFT model is trained on the train video's records (as the demo does), then each recipe (a set of
``DemoSizes`` overrides on top of ``surgkit.reasoning.demo.DEMO``) runs GRPO from it with each seed, and
the greedy answers are judged on ``stratified(val records, DEMO.val_per_group)``: the mean total reward
(the reward GRPO optimises and the demo reports) after SFT and after GRPO, their paired difference and its
standard error. The test video's records are never loaded into a model here: the recipe is chosen
without the held-out questions. Run on one thread (``OMP_NUM_THREADS=1``), as the demo runs the step.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

RECIPES = {  # the candidates of the issue-18 selection (docs/reasoning.md, "Synthetic world and demo")
    "before (T 0.9, group-std advantages, no screen, 12 steps)": dict(
        grpo_steps=12, grpo_temperature=0.9, grpo_scale_rewards="group", grpo_screen=False, grpo_beta=0.0,
        grpo_pool_per_group=6,
    ),
    "demo (T 0.5, unscaled advantages, screen spread > 0.25, beta 0, 24 steps)": {},
}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", type=Path, required=True)
    ap.add_argument("--clip", type=Path, default=None, help="the grounding step's tiny-clip folder")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--recipes", default=None, help="JSON {name: DemoSizes overrides}")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--size", default="demo", choices=("demo", "tiny"))
    a = ap.parse_args()

    import torch

    from surgkit.reasoning import demo as D

    torch.set_num_threads(1)
    base = D.DEMO if a.size == "demo" else D.TINY
    recipes = json.loads(a.recipes) if a.recipes else RECIPES
    work = a.out / "reasoning"
    splits, _ = D._records(a.world, work)
    if not splits.val:
        raise SystemExit("the world has no val video: nothing to choose on")
    val = D.stratified(splits.val, base.val_per_group)
    c = time.process_time()
    model0, kind = D._build_model(work, splits.train, a.clip, base, 0)
    sft = D.sft_stage(model0, splits.train, a.world, work, base, 0, "cpu")
    after_sft = D.answer(sft, val, a.world, base, "cpu")
    ids = [r.id for r in val]
    out = {
        "split": "val",
        "n": len(val),
        "vision_tower": kind,
        "sft_cpu_seconds": round(time.process_time() - c, 1),
        "val_reward_after_sft": D._mean(after_sft.reward, ids),
        "recipes": {},
    }
    for name, over in recipes.items():
        size = dataclasses.replace(base, **over)
        for seed in (int(s) for s in a.seeds.split(",")):
            c = time.process_time()
            run = a.out / f"r{len(out['recipes'])}_s{seed}"
            prompts, screen = D.grpo_prompts(sft, splits.train, a.world, size, seed, "cpu")
            g = D.grpo_stage(sft, prompts, a.world, run, size, seed, "cpu")
            cpu = time.process_time() - c
            j = D.answer(g, val, a.world, size, "cpu")
            d = [j.reward[i] - after_sft.reward[i] for i in ids]
            out["recipes"][f"{name} / seed {seed}"] = {
                "overrides": over,
                "val_reward_after_grpo": D._mean(j.reward, ids),
                "difference": statistics.mean(d),
                "difference_se": statistics.stdev(d) / len(d) ** 0.5 if len(d) > 1 else None,
                "prompts": screen,
                "grpo_cpu_seconds": round(cpu, 1),
            }
            print(json.dumps({name: out["recipes"][f"{name} / seed {seed}"]}), flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
