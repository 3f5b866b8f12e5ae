"""Demo step: a tiny VLM that learns the synthetic world's questions -- SFT on three-level chains, then GRPO
-- judged on held-out videos against the majority answer.

- Records: every question the world's layouts give (~8k at ``--size demo``), split **by world video**
  (``world.json`` splits: train/val videos train, the test video is held out -- the native layouts are
  cut from the same videos, so no frame of a held-out video is ever trained on).
- Model: a Qwen2-VL language model whose vision tower is the CLIP the grounding step trained on the
  same world (``ctx.artifacts["grounding_clip"]``, frozen; only its projector and the language model
  train); without it, a random Qwen2-VL tower (and the section says so). The tokenizer merges across
  words, so template chains are ~30 tokens and answers are generated fast (batched, KV cache).
- Stages: SFT on chains of every training record, then GRPO (hierarchical format 0.5, accuracy 1,
  IoU 1, coherence 1; answer-only ground truth) on a training subset.
- Judged on a stratified held-out subset (up to N questions per dataset/task/question type) and a
  stratified subset of the training questions (train fit), with the strict metrics of
  :mod:`surgkit.reasoning.evaluate`; baseline: the majority training answer of each (dataset, task,
  question type), with that answer's box. ``metrics.learning``: ``arena_heldout``, ``train_fit``,
  ``grpo_reward`` (held-out mean total reward after GRPO vs after SFT) and held-out accuracy per task.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from surgkit.errors import SurgkitError
from surgkit.reasoning.records import Record


@dataclasses.dataclass
class DemoSizes:
    heldout_per_group: int
    train_on_val: bool  # the val video's records train too (the final model; recipes are chosen without)
    val_per_group: int  # the val questions the demo's GRPO recipe was chosen on (reported, never trained on)
    train_per_group: int
    sft_simple_epochs: float
    sft_epochs: float
    sft_max_steps: int
    sft_batch: int
    sft_buckets: bool
    sft_megabatch: int | None  # with sft_buckets: sort by length only within chunks of k random batches
    sft_lr: float
    grpo_steps: int
    grpo_prompts: int
    generations: int
    grpo_lr: float
    grpo_temperature: float
    grpo_pool_per_group: int  # candidates per (dataset, task, question type) for the signal screen
    grpo_screen: bool  # keep the candidates whose sampled group has a reward spread (informative.py)
    grpo_min_spread: float  # ... of more than this (max - min of the group's total rewards)
    grpo_scale_rewards: str  # TRL scale_rewards: "group" divides advantages by the group's std, "none" not
    grpo_beta: float  # KL coefficient to the SFT model (a reference model is built when > 0)
    grpo_lora: bool
    completion_len: int
    eval_tokens: int
    eval_batch: int
    hidden: int
    layers: int
    vocab: int
    image_pixels: int
    tokenizer_texts: int


TINY = DemoSizes(
    heldout_per_group=1,
    train_on_val=True,
    val_per_group=1,
    train_per_group=1,
    sft_simple_epochs=1,
    sft_epochs=1,
    sft_max_steps=2,
    sft_batch=4,
    sft_buckets=True,
    sft_megabatch=None,
    sft_lr=3e-3,
    grpo_steps=1,
    grpo_prompts=2,
    generations=2,
    grpo_lr=1e-4,
    grpo_temperature=0.5,
    grpo_pool_per_group=1,
    grpo_screen=True,
    grpo_min_spread=0.25,
    grpo_scale_rewards="none",
    grpo_beta=0.0,
    grpo_lora=False,
    completion_len=16,
    eval_tokens=16,
    eval_batch=16,
    hidden=32,
    layers=1,
    vocab=512,
    image_pixels=56 * 56,
    tokenizer_texts=400,
)
DEMO = DemoSizes(
    heldout_per_group=30,
    # the final model trains on the train and val videos (train only: Arena 30.7, VQA and triplet below the
    # majority held out); the GRPO recipe below was chosen with train_on_val=False on val_per_group x groups
    # val questions (bench/reasoning_grpo_recipes.py; table in docs/reasoning.md)
    train_on_val=True,
    val_per_group=60,
    train_per_group=20,
    sft_simple_epochs=0,  # a stage-1 epoch first was tried only together with length buckets (failed)
    sft_epochs=2,  # one epoch (loss 0.8) stays below the majority answer held out (Arena 9.5 vs 25.7)
    sft_max_steps=-1,
    sft_batch=64,
    sft_buckets=False,  # length buckets are task-homogeneous batches: the loss stalled near 1.7, answers 0
    sft_megabatch=None,  # sorted within chunks of 4 batches (-9 % CPU): answers ignore the question, Arena 4.6
    sft_lr=4e-3,
    grpo_steps=24,  # 36: no better on val
    grpo_prompts=8,
    generations=4,
    grpo_lr=1e-4,
    # T 0.3 + beta 0.04 chosen on val over 2 SFT seeds x 3 GRPO seeds with the 128-px grounding tower (all 6
    # above SFT, mean +0.038); T 0.5 + beta 0 (before): +0.024 on one SFT model, -0.013 on the other
    grpo_temperature=0.3,  # 0.9 (first): sampled answers far from the greedy ones, val reward fell
    grpo_pool_per_group=17,
    grpo_screen=True,
    grpo_min_spread=0.25,
    grpo_scale_rewards="none",  # "group": tiny IoU differences got full-size advantages
    grpo_beta=0.04,  # KL to the SFT model: without it, one SFT model's greedy boxes (VQLA) drifted
    grpo_lora=False,
    completion_len=96,
    eval_tokens=96,
    eval_batch=64,
    hidden=96,
    layers=2,
    vocab=2048,
    image_pixels=84 * 84,
    tokenizer_texts=2500,
)
MAIN_METRICS = ("accuracy", "triplet_accuracy", "avg_accuracy")


def group_of(r: Record) -> tuple[str, str, str]:
    return (r.dataset, r.task, r.question_type or "")


def stratified(records: list[Record], per_group: int) -> list[Record]:
    """Up to ``per_group`` records of each (dataset, task, question type), spread over the group in order."""
    groups: dict[tuple, list[Record]] = defaultdict(list)
    for r in records:
        groups[group_of(r)].append(r)
    out = []
    for key in sorted(groups):
        g = groups[key]
        step = max(1, len(g) // per_group)
        out += g[::step][:per_group]
    return out


def majority_predictions(train: list[Record], test: list[Record]) -> dict[str, str]:
    """Trivial baseline: the most frequent training answer of each (dataset, task, question type), with the
    box of a training record that has it."""
    from surgkit.reasoning.render import answer_payload

    counts: dict[tuple, Counter] = defaultdict(Counter)
    for r in train:
        counts[group_of(r)][r.answer] += 1
    example: dict[tuple, Record] = {}
    for r in train:
        key = group_of(r)
        if key not in example and r.answer == counts[key].most_common(1)[0][0]:
            example[key] = r
    return {
        r.id: "" if group_of(r) not in example else f"<answer>{answer_payload(example[group_of(r)])}</answer>"
        for r in test
    }


def _draw(record: Record, root: Path, completion: str, out: Path) -> Path | None:
    import cv2
    import numpy as np

    from surgkit.reasoning.scoring import predicted_box
    from surgkit.utils.io import write_bytes

    img = cv2.imread(str(root / record.images[0].path))
    if img is None:
        return None
    scale = max(1, 256 // max(img.shape[:2]))
    img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    for box, color in ((record.answer_box(), (0, 200, 0)), (predicted_box(completion, record), (0, 0, 230))):
        if box is not None:
            x1, y1, x2, y2 = (int(v * scale) for v in box)
            cv2.rectangle(img, (x1, y1), (x2 - 1, y2 - 1), color, 2)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img))
    write_bytes(out, buf.tobytes())
    return out


@dataclasses.dataclass
class Judged:
    """A model's answers on the judged records: metrics per group and per-record correctness/reward."""

    metrics: dict[str, Any]
    correct: dict[str, bool]
    reward: dict[str, float]
    texts: dict[str, str]
    statuses: dict[str, str]

    def subset(self, records: list[Record]) -> Judged:
        return judge(
            records,
            {r.id: self.texts[r.id] for r in records},
            {r.id: self.statuses.get(r.id, "ok") for r in records},
        )


def judge(records: list[Record], texts: dict[str, str], statuses: dict[str, str]) -> Judged:
    from surgkit.reasoning.evaluate import arena_score, compute_metrics, score_one
    from surgkit.reasoning.rewards import combine, make_reward_funcs
    from surgkit.reasoning.scoring import BoxSettings

    m = compute_metrics(records, texts, statuses=statuses)
    m["arena"] = arena_score(m)
    correct = {
        r.id: score_one(r, texts.get(r.id, ""), BoxSettings(), "tags", statuses.get(r.id, "ok")).correct
        for r in records
    }
    funcs, ws = make_reward_funcs()
    ok_texts = [texts.get(r.id, "") if statuses.get(r.id, "ok") == "ok" else "" for r in records]
    values = {f.__name__: f(ok_texts, record=records) for f in funcs}
    totals = combine(values, dict(zip([f.__name__ for f in funcs], ws, strict=True)))
    return Judged(m, correct, {r.id: t for r, t in zip(records, totals, strict=True)}, texts, statuses)


def answer(model_dir: Path, records: list[Record], root: Path, size: DemoSizes, device: str) -> Judged:
    """Greedy batched answers of a model folder on ``records``, judged."""
    from surgkit.reasoning.generation import GenerationSettings, generate_answers
    from surgkit.reasoning.scoring import BoxSettings
    from surgkit.reasoning.vlm import load_vlm

    model, proc = load_vlm(model_dir, device=device, box=BoxSettings())
    model.eval()
    gen = GenerationSettings(max_new_tokens=size.eval_tokens, batch_size=size.eval_batch)
    answers = generate_answers(model, proc, records, root, proc.surgkit_box, gen)
    texts = {r.id: a.text for r, a in zip(records, answers, strict=True)}
    statuses = {r.id: a.status for r, a in zip(records, answers, strict=True)}
    return judge(records, texts, statuses)


def _mean(d: dict[str, float], ids: list[str]) -> float:
    return sum(d[i] for i in ids) / max(1, len(ids))


@dataclasses.dataclass
class Splits:
    """The world's records by video split: SFT and GRPO train on ``train``; ``val`` (the val video) is
    what the demo's recipe was chosen on; ``test`` (the test video) is held out."""

    records: list[Record]
    train: list[Record]
    val: list[Record]
    test: list[Record]


def split_records(records: list[Record], train_on_val: bool = False) -> Splits:
    """Records by split; ``train_on_val``: the val video's records train too (and nothing is val)."""
    by = {k: [r for r in records if r.split == k] for k in ("train", "val", "test")}
    if not by["train"] or not by["test"]:
        raise SurgkitError("the world gave no train/test records")
    if train_on_val:
        return Splits(records, by["train"] + by["val"], [], by["test"])
    return Splits(records, by["train"], by["val"], by["test"])


def _timed(seconds: dict[str, float], cpu: dict[str, float], name: str, fn, *args, **kw):
    t, c = time.perf_counter(), time.process_time()
    out = fn(*args, **kw)
    seconds[name] = time.perf_counter() - t
    cpu[name] = time.process_time() - c
    return out


def sft_stage(
    model0: Path, train: list[Record], world: Path, work: Path, size: DemoSizes, seed: int, dev: str
):
    """SFT on the chains of every training record (random batches: see ``DEMO.sft_buckets``)."""
    from surgkit.reasoning.train import SFTSettings, sft

    def settings(stage: str, epochs: float) -> SFTSettings:
        return SFTSettings(
            stage=stage,
            epochs=epochs,
            max_steps=size.sft_max_steps,
            lora=False,
            learning_rate=size.sft_lr,
            batch_size=size.sft_batch,
            warmup_ratio=0.03,
            scheduler="cosine",
            max_length=None,
            save_steps=10**6,
            seed=seed,
            completion_logits_only=True,
            cache_images=True,
            image_cache=str(work / "image_cache"),
            group_by_length=size.sft_buckets,
            length_megabatch=size.sft_megabatch,
            report_to="none",
        )

    start = model0
    if size.sft_simple_epochs > 0:  # Surg-R1 stage 1: short answers teach the answer mapping cheaply
        start = sft(model0, train, world, work / "sft1", settings("simple", size.sft_simple_epochs), dev)
    return sft(start, train, world, work / "sft", settings("cot", size.sft_epochs), dev)


def grpo_prompts(model: Path, train: list[Record], world: Path, size: DemoSizes, seed: int, dev: str):
    """GRPO's prompts: a stratified pool of training records, screened for a reward spread under the
    policy about to be trained (:mod:`surgkit.reasoning.informative`); (prompts, screen statistics)."""
    from surgkit.reasoning.informative import ScreenSettings, informative_prompts

    pool = stratified(train, size.grpo_pool_per_group)
    if not size.grpo_screen:
        return pool, {"candidates": len(pool), "kept": len(pool), "screen": False}
    screen = ScreenSettings(
        generations=size.generations,
        temperature=size.grpo_temperature,
        max_new_tokens=size.completion_len,
        batch_size=16,
        min_spread=size.grpo_min_spread,
        seed=seed,
    )
    kept, stats = informative_prompts(model, pool, world, screen, dev)
    stats = {**stats, "screen": True, "fallback_to_pool": not kept}  # no signal anywhere: GRPO on the pool
    return (kept or pool), stats


def grpo_stage(
    model: Path, prompts: list[Record], world: Path, work: Path, size: DemoSizes, seed: int, dev: str
):
    """GRPO from the SFT model (full fine-tuning; KL to the SFT model with ``size.grpo_beta``)."""
    from surgkit.reasoning.train import GRPOSettings, grpo

    return grpo(
        model,
        prompts,
        world,
        work / "grpo",
        GRPOSettings(
            max_steps=size.grpo_steps,
            lora=size.grpo_lora,
            lora_r=16,
            lora_alpha=32,
            merge_lora=True,
            learning_rate=size.grpo_lr,
            num_generations=size.generations,
            batch_size=size.grpo_prompts * size.generations,
            max_completion_length=size.completion_len,
            temperature=size.grpo_temperature,
            scale_rewards=size.grpo_scale_rewards,
            beta=size.grpo_beta,
            save_steps=10**6,
            seed=seed,
            cache_images=True,
            image_cache=str(work / "image_cache"),
            report_to="none",
        ),
        dev,
    )


def _build_model(work: Path, train: list[Record], tower, size: DemoSizes, seed: int) -> tuple[Path, str]:
    from surgkit.reasoning.pipeline import tokenizer_corpus
    from surgkit.reasoning.tiny_vlm import TinyVLMConfig, build_tiny_vlm

    kind = "clip" if tower and (Path(tower) / "model.safetensors").is_file() else "qwen2-vl"
    cfg = TinyVLMConfig(
        kind=kind,
        hidden_size=size.hidden,
        intermediate_size=2 * size.hidden,
        num_layers=size.layers,
        vocab_size=size.vocab,
        image_pixels=size.image_pixels,
        vision_tower=str(tower) if kind == "clip" else None,
        merge_words=True,
        tokenizer_texts=size.tokenizer_texts,
    )
    return build_tiny_vlm(work / "tiny0", tokenizer_corpus(train), cfg, seed), kind


def _records(world: Path, work: Path, train_on_val: bool = False) -> tuple[Splits, int]:
    from surgkit.reasoning.pipeline import template_reasoning
    from surgkit.reasoning.records import write_jsonl
    from surgkit.reasoning.synth_adapter import build_from_world

    records = build_from_world(world).records
    valid = 0
    for r in records:
        r.reasoning, issues = template_reasoning(r)
        valid += not issues
    write_jsonl(work / "records.jsonl", records)
    return split_records(records, train_on_val), valid


def demo_step(ctx) -> Any:
    from surgkit.utils.threads import torch_threads

    world = ctx.artifacts.get("world")
    if world is None:
        raise SurgkitError("the reasoning demo needs the synthetic world (ctx.artifacts['world'])")
    world = Path(world)
    size = TINY if ctx.tiny else DEMO
    work = Path(ctx.workdir) / "reasoning"
    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}
    t_cpu = time.process_time()
    with torch_threads(1):  # tiny matrices: one thread avoids the synchronisation of two (measured)
        t, c = time.perf_counter(), time.process_time()
        splits, valid = _records(world, work, size.train_on_val)
        heldout = stratified(splits.test, size.heldout_per_group)
        val = stratified(splits.val, size.val_per_group)
        fit = stratified(splits.train, size.train_per_group)
        dev = "cpu" if ctx.device == "cpu" else "auto"
        model0, kind = _build_model(work, splits.train, ctx.artifacts.get("grounding_clip"), size, ctx.seed)
        seconds["records_and_model"] = time.perf_counter() - t
        cpu["records_and_model"] = time.process_time() - c

        s2 = _timed(seconds, cpu, "sft", sft_stage, model0, splits.train, world, work, size, ctx.seed, dev)
        after_sft = _timed(seconds, cpu, "eval_sft", answer, s2, heldout + val + fit, world, size, dev)
        prompts, screen = _timed(
            seconds, cpu, "grpo_screen", grpo_prompts, s2, splits.train, world, size, ctx.seed, dev
        )
        g = _timed(seconds, cpu, "grpo", grpo_stage, s2, prompts, world, work, size, ctx.seed, dev)
        after_grpo = _timed(seconds, cpu, "eval_grpo", answer, g, heldout + val, world, size, dev)
    metrics = {
        "records": len(splits.records),
        "records_by_task": dict(Counter(r.task for r in splits.records)),
        "template_chains_valid": valid,
        "train_records": len(splits.train),
        "val_records": len(splits.val),
        "trained_on_val": size.train_on_val,
        "heldout_records": len(splits.test),
        "heldout_judged": len(heldout),
        "val_judged": len(val),
        "train_judged": len(fit),
        "vision_tower": "grounding CLIP (frozen, trained on the world)"
        if kind == "clip"
        else "random Qwen2-VL",
        "grpo_prompts": screen,
    }
    metrics.update(
        {
            "seconds": {k: round(v, 1) for k, v in seconds.items()},
            "cpu_seconds_by_stage": {k: round(v, 1) for k, v in cpu.items()},
            "torch_threads": 1,
        }
    )
    run = Run(splits, heldout, val, fit, after_sft, after_grpo, work, world, size)
    section = _section(run, metrics)
    section.metrics["cpu_seconds"] = round(time.process_time() - t_cpu, 1)
    return section


@dataclasses.dataclass
class Run:
    """What the demo step produced, for its report section."""

    splits: Splits
    heldout: list[Record]
    val: list[Record]
    fit: list[Record]
    after_sft: Judged
    after_grpo: Judged
    work: Path
    world: Path
    size: DemoSizes


def _learning(heldout, fit, after_sft: Judged, after_grpo: Judged, majority: Judged) -> dict:
    """The step's ``metrics.learning`` entries (held-out unless named otherwise)."""
    from surgkit.demo import learning_entry

    held_ids = [r.id for r in heldout]
    fit_ids = [r.id for r in fit]

    def acc(j: Judged, ids: list[str]) -> float:
        return _mean({k: float(v) for k, v in j.correct.items()}, ids) if ids else float("nan")

    learning = {
        "arena_heldout": learning_entry(
            after_grpo.subset(heldout).metrics["arena"]["score"],
            majority.subset(heldout).metrics["arena"]["score"],
            "majority answer",
            len(heldout),
        ),
        "train_fit": learning_entry(
            acc(after_sft, fit_ids),
            acc(majority, fit_ids),
            "majority answer (on the training questions)",
            len(fit),
        ),
        "grpo_reward": learning_entry(
            _mean(after_grpo.reward, held_ids),
            _mean(after_sft.reward, held_ids),
            "the SFT model",
            len(heldout),
        ),
    }
    for task in ("phase", "tool_presence", "vqa", "vqla", "triplet"):
        ids = [r.id for r in heldout if r.task == task]
        if ids:
            learning[f"{task}_heldout_accuracy"] = learning_entry(
                acc(after_grpo, ids), acc(majority, ids), "majority answer", len(ids)
            )
    return learning


def _stage_rows(stages: dict[str, Judged], records: list[Record]) -> tuple[list[str], list[list]]:
    groups = sorted({k for j in stages.values() for k in j.metrics["groups"]})
    ids = [r.id for r in records]
    rows = []
    for name, j in stages.items():
        cells = []
        for key in groups:
            gm = j.metrics["groups"].get(key, {})
            cells.append(round(float(next((gm[k] for k in MAIN_METRICS if k in gm), float("nan"))), 3))
        rows.append([name] + cells + [round(j.metrics["arena"]["score"], 1), round(_mean(j.reward, ids), 3)])
    return groups + ["Arena (mean %)", "mean reward"], rows


def _section(run: Run, metrics: dict[str, Any]) -> Any:
    from surgkit.demo import DemoSection
    from surgkit.reasoning.render import render_target
    from surgkit.reasoning.rewards import reward_breakdown

    heldout, val, fit, after_sft, after_grpo = run.heldout, run.val, run.fit, run.after_sft, run.after_grpo
    judged = heldout + val + fit
    majority = judge(judged, majority_predictions(run.splits.train, judged), {})
    metrics = {"learning": _learning(heldout, fit, after_sft, after_grpo, majority), **metrics}
    stages = {
        "majority answer": majority.subset(heldout),
        "after SFT": after_sft.subset(heldout),
        "after GRPO": after_grpo.subset(heldout),
    }
    header, rows = _stage_rows(stages, heldout)
    tables = [("Held-out main metric per group (accuracy; triplet: Triplet-Acc; CVS: mean criterion accuracy)",
               ["held-out"] + header, rows)]  # fmt: skip
    if val:
        val_ids = [r.id for r in val]
        metrics["validation"] = {
            "split": "val (the world's val video: neither trained on nor held out)",
            "n": len(val),
            "mean_reward": {
                "majority answer": _mean(majority.reward, val_ids),
                "after SFT": _mean(after_sft.reward, val_ids),
                "after GRPO": _mean(after_grpo.reward, val_ids),
            },
        }
        vheader, vrows = _stage_rows(
            {k: j.subset(val) for k, j in (("majority answer", majority), ("after SFT", after_sft),
                                           ("after GRPO", after_grpo))}, val)  # fmt: skip
        tables.append(("Validation (val video; the demo's GRPO recipe was chosen on these questions)",
                       ["val"] + vheader, vrows))  # fmt: skip
    sample = next((r for r in heldout if r.answer_box() is not None), heldout[0])
    chain = render_target(sample, "cot")
    out_grpo = after_grpo.texts.get(sample.id, "")
    tables.append(
        (
            "Sample record",
            ["field", "value"],
            [
                ["question", sample.question],
                ["answer", sample.answer],
                ["template chain", chain],
                ["template reward breakdown", json.dumps(reward_breakdown(chain, sample))],
                ["GRPO model output", out_grpo],
                ["its reward breakdown", json.dumps(reward_breakdown(out_grpo, sample))],
            ],
        )
    )
    figures = []
    fig = _draw(sample, run.world, out_grpo, run.work / "sample_boxes.png")
    if fig is not None:
        figures.append((fig, f"{sample.id}: ground-truth box (green), GRPO model's box (red, if any)"))
    glog = [
        json.loads(x) for x in (run.work / "grpo" / "train_log.jsonl").read_text().splitlines() if x.strip()
    ]
    metrics.update(
        {
            "grpo_train_reward_per_step": [round(e["reward"], 3) for e in glog if "reward" in e],
            "per_stage_heldout": {k: v.metrics["groups"] for k, v in stages.items()},
            "arena": {k: v.metrics["arena"]["score"] for k, v in stages.items()},
        }
    )
    size = run.size
    return DemoSection(
        key="reasoning",
        title="Reasoning VLM: three-level CoT, SFT → GRPO (tiny Qwen2-VL on a trained CLIP tower)",
        summary=(
            f"{metrics['records']} records from the world ({metrics['template_chains_valid']} template chains pass "
            f"the validator), split by world video: {metrics['train_records']} train"
            f"{' (train and val videos)' if metrics['trained_on_val'] else ''}, {metrics['val_records']} val, "
            f"{metrics['heldout_records']} held out. A tiny Qwen2-VL ({metrics['vision_tower']} as vision tower) is "
            f"trained by SFT on the chains of every training question, then by GRPO; strict metrics on "
            f"{len(heldout)} held-out and {len(fit)} training questions against the majority answer."
        ),
        metrics=metrics,
        tables=tables,
        figures=figures,
        notes=[
            "Splits by world video (world.json): the native layouts are cut from the same videos; the test video "
            "is held out everywhere. The GRPO recipe was chosen on the val video's questions with a model trained "
            "on the train video only (bench/reasoning_grpo_recipes.py, docs/reasoning.md)"
            + ("; this model trains on the train and val videos." if metrics["trained_on_val"] else "."),
            "Strict exact matching after normalisation + aliases; unparseable answers are wrong and counted. VQLA "
            "mIoU is the true IoU.",
            "Baseline: the majority training answer of each (dataset, task, question type) with that answer's box.",
            f"GRPO: hierarchical format 0.5, accuracy 1, IoU 1, coherence 1 (the reward judged here, on greedy "
            f"answers); answer-only ground truth; temperature {size.grpo_temperature}, advantages scaled "
            f"'{size.grpo_scale_rewards}', KL beta {size.grpo_beta}; {size.grpo_steps} steps of "
            f"{size.grpo_prompts} prompts x {size.generations}, the prompts whose sampled group's reward "
            f"spread exceeds {size.grpo_min_spread} ({metrics['grpo_prompts'].get('kept')} of "
            f"{metrics['grpo_prompts'].get('candidates')}).",
        ]
        + (
            []
            if metrics["vision_tower"].startswith("grounding")
            else ["No grounding CLIP in this run: the vision tower is random."]
        ),
    )
