"""Benchmark: frames/s of zero-shot classification + heatmap on CPU (tiny and base-size configs).

For each model (HF CLIP-ViT with Chefer rollout; SurgVLP-family ResNet-50 with Grad-CAM), with
random weights and a fixed prompt bank, it times over ``--iters`` batches of ``--batch`` frames:

* ``zero_shot_fps``: image encoding (no grad) + cosine scores + argmax;
* ``explain_fps``: one explainable forward pass + the heatmap of the predicted class (backward);
* ``backward_share``: share of the explain time spent in the gradient/relevance step.

Prints JSON (and writes it to ``--out`` if given). Usage::

    python bench/grounding.py [--sizes tiny,base] [--batch 8] [--iters 3] [--threads 2] [--out bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def clip_adapter(size: str):
    from surgkit.grounding.clip import HFClipAdapter
    from surgkit.grounding.tiny_clip import build_clip, build_tokenizer

    tok = build_tokenizer(
        ["an image showing a grasper in use", "I use a hook to dissect the gallbladder"], 300
    )
    return HFClipAdapter(build_clip(tok, size), tok, name=f"clip-{size}")


def surgvlp_adapter(size: str):
    from transformers import BertTokenizer

    from surgkit.grounding.surgvlp import SurgicalVLM, SurgicalVLMAdapter, SurgicalVLMConfig

    if size == "base":
        cfg = SurgicalVLMConfig()  # ResNet-50 at 224, BERT-base
    else:
        bert = dict(vocab_size=64, hidden_size=32, num_hidden_layers=5, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=80)  # fmt: skip
        cfg = SurgicalVLMConfig(resnet_layers=(1, 1, 1, 1), resnet_width=8, bert=bert, image_size=64)
    vocab = {
        t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "hook", "grasper"])
    }
    return SurgicalVLMAdapter(SurgicalVLM(cfg), BertTokenizer(vocab=vocab), name=f"surgvlp-{size}")


class _Timed:
    """Wraps an adapter's two explain stages to time them separately."""

    def __init__(self, adapter):
        self.adapter, self.forward_s, self.relevance_s = adapter, 0.0, 0.0
        self._fwd, self._rel = adapter._explainable_forward, adapter._relevance

        def fwd(pixels):
            t = time.perf_counter()
            out = self._fwd(pixels)
            self.forward_s += time.perf_counter() - t
            return out

        def rel(state, score, retain_graph):
            t = time.perf_counter()
            out = self._rel(state, score, retain_graph)
            self.relevance_s += time.perf_counter() - t
            return out

        adapter._explainable_forward, adapter._relevance = fwd, rel


def measure(adapter, batch: int, iters: int, classes: int = 7) -> dict:
    size = adapter.preprocess.size
    x = torch.randn(batch, 3, size, size)
    with torch.no_grad():
        bank = F.normalize(adapter.encode_text([f"a hook {k}" for k in range(classes)]), dim=-1)
    timed = _Timed(adapter)

    def choose(img):
        return [bank[(img @ bank.T).argmax(1)]]

    adapter.explain(x, choose)  # warm-up
    with torch.no_grad():
        adapter.encode_image(x)
    timed.forward_s = timed.relevance_s = 0.0
    t = time.perf_counter()
    for _ in range(iters):
        with torch.no_grad():
            (F.normalize(adapter.encode_image(x), dim=-1) @ bank.T).argmax(1)
    zs = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(iters):
        adapter.explain(x, choose)
    ex = time.perf_counter() - t
    frames = batch * iters
    return {
        "model": adapter.name,
        "heatmap_method": adapter.heatmap_method,
        "input_size": size,
        "params_m": round(sum(p.numel() for p in adapter.model.parameters()) / 1e6, 2),
        "zero_shot_fps": round(frames / zs, 2),
        "explain_fps": round(frames / ex, 2),
        "zero_shot_plus_heatmap_fps": round(frames / (zs + ex), 2),
        "backward_share": round(timed.relevance_s / max(timed.forward_s + timed.relevance_s, 1e-9), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="tiny,base")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    for size in args.sizes.split(","):
        for build in (clip_adapter, surgvlp_adapter):
            results.append({"size": size, **measure(build(size), args.batch, args.iters)})
    report = {
        "benchmark": "grounding zero-shot + heatmap",
        "device": "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "batch": args.batch,
        "iters": args.iters,
        "note": "wall-clock on a shared machine; compare configurations within one run",
        "results": results,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        from surgkit.utils.io import write_text

        write_text(args.out, text + "\n")


if __name__ == "__main__":
    main()
