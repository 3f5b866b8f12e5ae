"""Benchmark: the reasoning pipeline on the embedded tiny Qwen2-VL, CPU by default, JSON to stdout.

    python bench/reasoning.py [--records 16] [--grpo-steps 3] [--device cpu]

Measures, on records built from a tiny synthetic world (written to a temporary folder):
  * ``reward_throughput``: completions scored per second by the default reward set (hierarchical format,
    accuracy, IoU, coherence) on template chains (pure Python, no model);
  * ``generation_tokens_per_s``: greedy new tokens per second of the tiny model (batch 8);
  * ``grpo_step_seconds``: median wall time of a GRPO step (G = 4, batch 4, 32-token completions, beta 0.04),
    first step excluded (warm-up);
  * ``endpoint_answers_per_s``: evaluation throughput against a local OpenAI-compatible server on loopback
    that answers instantly (measures the client: encoding, HTTP, parsing, scoring).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class _Instant(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        out = json.dumps(
            {
                "choices": [
                    {
                        "message": {
                            "content": "<think>Level 1: a\nLevel 2: b\nLevel 3: c</think><answer>none</answer>"
                        }
                    }
                ]
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *a):
        pass


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=16)
    ap.add_argument("--grpo-steps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    import torch

    from surgkit.reasoning.evaluate import compute_metrics
    from surgkit.reasoning.pipeline import tokenizer_corpus
    from surgkit.reasoning.render import render_target
    from surgkit.reasoning.rewards import make_reward_funcs
    from surgkit.reasoning.runners import endpoint_generator
    from surgkit.reasoning.synth_adapter import build_from_world
    from surgkit.reasoning.train import GRPOSettings, grpo
    from surgkit.reasoning.vlm import TinyVLMConfig, build_tiny_vlm, generate, load_vlm
    from surgkit.synth import generate_world

    tmp = Path(tempfile.mkdtemp(prefix="surgkit-bench-reasoning-"))
    world = tmp / "world"
    generate_world(world, preset="tiny", layouts="vlm,vqla", progress=False)
    records = build_from_world(world).records
    train = [r for r in records if r.split == "train"][: args.records]
    result: dict = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": args.device,
        "records": len(train),
    }

    funcs, _ = make_reward_funcs()
    texts = [render_target(r, "cot") for r in records]
    t0 = time.perf_counter()
    for f in funcs:
        f(texts, record=records)
    result["reward_throughput"] = round(len(texts) / (time.perf_counter() - t0), 1)

    model_dir = build_tiny_vlm(tmp / "tiny", tokenizer_corpus(train), TinyVLMConfig())
    model, proc = load_vlm(model_dir, device=args.device)
    generate(model, proc, train[:2], world, None, 4)  # warm-up
    t0 = time.perf_counter()
    n_new = 32
    outs = generate(model, proc, train[:8], world, None, n_new)
    dt = time.perf_counter() - t0
    result["generation_tokens_per_s"] = round(len(outs) * n_new / dt, 1)
    result["generation_note"] = (
        "upper bound: assumes every sequence ran the full 32 new tokens (greedy, batch 8)"
    )

    settings = GRPOSettings(
        max_steps=args.grpo_steps + 1,
        lora=False,
        num_generations=4,
        batch_size=4,
        max_completion_length=32,
        learning_rate=1e-4,
    )
    with contextlib.redirect_stdout(sys.stderr):  # the trainer prints its logs; stdout carries only the JSON
        grpo(model_dir, train[:4], world, tmp / "grpo", settings, device=args.device)
    log = json.loads((tmp / "grpo" / "train_log.json").read_text())["log_history"]
    steps = [e["step_time"] for e in log if "step_time" in e][1:]
    result["grpo_step_seconds"] = round(statistics.median(steps), 3) if steps else None
    result["grpo_settings"] = "G=4, batch 4, max_completion_length 32, beta 0.04, full fine-tuning"

    srv = HTTPServer(("127.0.0.1", 0), _Instant)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    gen = endpoint_generator(f"http://127.0.0.1:{srv.server_port}/v1", "bench", world)
    t0 = time.perf_counter()
    preds = {r.id: c for r, c in zip(records, gen(records), strict=True)}
    compute_metrics(records, preds)
    result["endpoint_answers_per_s"] = round(len(records) / (time.perf_counter() - t0), 1)
    srv.shutdown()
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
