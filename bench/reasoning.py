"""Benchmark: the reasoning pipeline on the embedded tiny Qwen2-VL, CPU by default, JSON to stdout.

    python bench/reasoning.py [--records 64] [--grpo-steps 3] [--device cpu] [--threads 2]

Measures, on records built from a tiny synthetic world (written to a temporary folder):
  * ``answers_per_s``: answers per second of the same tiny model generating 32 new tokens per answer,
    ``batched_kv`` (batch 32, KV cache: :func:`surgkit.reasoning.generation.generate_answers`) vs
    ``one_at_a_time`` (batch 1, KV cache) and ``one_at_a_time_no_cache``; ``speedup`` = batched / one at a
    time (target >= 4x on 2 cores);
  * ``completions_scored_per_s``: completions scored per second by the default reward set (hierarchical
    format, accuracy, IoU, coherence) and by the evaluation metrics, on template chains (no model);
  * ``grpo_step_seconds``: median wall time of a GRPO step (G = 4, batch 4, 32-token completions, beta 0.04),
    first step excluded (warm-up);
  * ``endpoint_answers_per_s``: evaluation throughput against a local OpenAI-compatible server on loopback
    that answers after 20 ms (measures the client: encoding, concurrency 8, HTTP, parsing, scoring).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class _Instant(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(0.02)
        content = "<think>Level 1: a\nLevel 2: b\nLevel 3: c</think><answer>none</answer>"
        out = json.dumps({"choices": [{"message": {"content": content}, "finish_reason": "stop"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *a):
        pass


def answers_per_s(model, proc, records, world, batch: int, use_cache: bool, tokens: int = 32) -> float:
    from surgkit.reasoning.generation import GenerationSettings, generate_answers

    settings = GenerationSettings(max_new_tokens=tokens, batch_size=batch, use_cache=use_cache)
    eos = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = None  # every answer runs the full length: equal work per setting
    try:
        t0 = time.perf_counter()
        generate_answers(model, proc, records, world, proc.surgkit_box, settings)
        return len(records) / (time.perf_counter() - t0)
    finally:
        model.generation_config.eos_token_id = eos


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=64)
    ap.add_argument("--grpo-steps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from surgkit.reasoning.endpoint import EndpointSettings
    from surgkit.reasoning.evaluate import compute_metrics
    from surgkit.reasoning.pipeline import tokenizer_corpus
    from surgkit.reasoning.render import render_target
    from surgkit.reasoning.rewards import make_reward_funcs
    from surgkit.reasoning.runners import endpoint_generator, predict
    from surgkit.reasoning.scoring import BoxSettings
    from surgkit.reasoning.synth_adapter import build_from_world
    from surgkit.reasoning.tiny_vlm import TinyVLMConfig, build_tiny_vlm
    from surgkit.reasoning.train import GRPOSettings, grpo
    from surgkit.reasoning.vlm import load_vlm
    from surgkit.synth import generate_world

    tmp = Path(tempfile.mkdtemp(prefix="surgkit-bench-reasoning-"))
    world = tmp / "world"
    generate_world(world, preset="tiny", layouts="vlm,vqla,cholect50", progress=False)
    records = build_from_world(world).records
    train = [r for r in records if r.split != "test"][: args.records]
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
    rewards_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    compute_metrics(records, {r.id: t for r, t in zip(records, texts, strict=True)})
    result["completions_scored_per_s"] = {
        "rewards": round(len(texts) / rewards_s, 1),
        "metrics": round(len(texts) / (time.perf_counter() - t0), 1),
        "completions": len(texts),
    }

    cfg = TinyVLMConfig(hidden_size=128, intermediate_size=256, merge_words=True, vocab_size=2048)
    model_dir = build_tiny_vlm(tmp / "tiny", tokenizer_corpus(train), cfg)
    model, proc = load_vlm(model_dir, device=args.device, box=BoxSettings())
    model.eval()
    answers_per_s(model, proc, train[:4], world, 4, True, 4)  # warm-up
    batched = answers_per_s(model, proc, train, world, 32, True)
    single = answers_per_s(model, proc, train[:16], world, 1, True)
    no_cache = answers_per_s(model, proc, train[:8], world, 1, False)
    result["answers_per_s"] = {
        "batched_kv": round(batched, 2),
        "one_at_a_time": round(single, 2),
        "one_at_a_time_no_cache": round(no_cache, 2),
        "speedup": round(batched / single, 2),
        "target_speedup": 4.0,
        "meets_target": batched / single >= 4.0,
        "new_tokens_per_answer": 32,
        "model": "tiny Qwen2-VL, hidden 128, 2 layers, merged-word BPE 2048",
    }

    settings = GRPOSettings(
        max_steps=args.grpo_steps + 1,
        lora=False,
        num_generations=4,
        batch_size=4,
        max_completion_length=32,
        learning_rate=1e-4,
    )
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the JSON
        grpo(model_dir, train[:4], world, tmp / "grpo", settings, device=args.device)
    from surgkit.utils.tracking import read_train_log

    steps = [e["step_time"] for e in read_train_log(tmp / "grpo") if "step_time" in e][1:]
    result["grpo_step_seconds"] = round(statistics.median(steps), 3) if steps else None
    result["grpo_settings"] = "G=4, batch 4, max_completion_length 32, beta 0.04, full fine-tuning"

    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Instant)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    gen = endpoint_generator(EndpointSettings(f"http://127.0.0.1:{srv.server_port}/v1", "bench"), world)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        preds, statuses = predict(records, gen, tmp / "endpoint.jsonl")
    compute_metrics(records, preds, statuses=statuses)
    result["endpoint_answers_per_s"] = round(len(records) / (time.perf_counter() - t0), 1)
    result["endpoint_settings"] = "concurrency 8, server answers after 20 ms"
    srv.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
