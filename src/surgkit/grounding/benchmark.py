"""The zero-shot grounding benchmark runner (seed 001 §3-4; vlm_bench spec §2, §4, §5).

For every frame: zero-shot prediction over the task's prompts, the heatmap of the predicted
class (Grad-CAM or Chefer rollout, by the adapter), the heatmap mapped to frame pixels, and the
grounding metrics of :mod:`surgkit.metrics.grounding`:

* ``instrument`` task: accuracy (top-1 in the GT set), tau-AC and tau-AA;
* ``triplet`` task: triplet accuracy and component accuracies (instrument, verb, target), and the
  Action Reasoning Score. A frame is *valid* when a ground-truth triplet has the predicted
  instrument and the predicted verb; for valid frames the secondary prompt
  ``I am performing {predicted verb}`` gets its own heatmap, and ARS is the share of its attended
  set inside the GT box of the predicted instrument. V/T = valid / total frames (%),
  Z/V = valid frames with ARS = 0 / valid frames (%) - the columns of the seed's Table 2.

Outputs in ``out_dir``: ``run_config.json``, ``prompts.json``, ``shards/*.json`` (per-frame records)
with ``heatmaps/*.npz`` (uint8 maps at model-input resolution, no pickle; geometry in the records),
then ``predictions.jsonl``, ``summary.json`` (per video and overall, with the protocol) and
``table.md``. Shards are written atomically, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from surgkit.errors import SurgkitError
from surgkit.grounding.adapters import VLMAdapter
from surgkit.grounding.frames import GroundingFrame, triplet_names
from surgkit.grounding.geometry import FrameGeometry, to_frame
from surgkit.grounding.prompts import (
    PromptSet,
    instrument_prompts,
    load_templates,
    normalise_label,
    triplet_key,
    triplet_prompts,
    verb_prompts,
)
from surgkit.grounding.zeroshot import class_embeddings, cosine_scores, weights_checksum
from surgkit.metrics.grounding import action_reasoning_score, attended_set, tau_aa, tau_ac
from surgkit.utils.io import atomic_path, sha256_json, write_json, write_text
from surgkit.vocab import INSTRUMENTS, TARGETS, VERBS

TASKS = ("instrument", "triplet")
TARGET_CHOICES = ("predicted", "gt")


@dataclasses.dataclass
class BenchSettings:
    """Protocol switches of a benchmark run (defaults = the pinned decisions of spec §8)."""

    task: str = "instrument"
    tau: float = 0.5
    batch_size: int = 8
    heatmap_target: str = "predicted"  # explain the predicted class (default) or the first GT class
    null_policy: str = "exclude"  # null_verb / null_target prompts excluded from the pools
    articles: bool = False  # a -> an fix in rendered prompts
    templates: str | None = None  # templates JSON (default: surgkit/grounding/templates.json)
    save_heatmaps: bool = True
    max_frames: int | None = None
    strict: bool = False  # raise on a frame without annotations instead of skipping it

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise SurgkitError(f"unknown task '{self.task}' (choose from {', '.join(TASKS)})")
        if self.heatmap_target not in TARGET_CHOICES:
            raise SurgkitError(f"unknown heatmap target '{self.heatmap_target}' (predicted or gt)")
        if not 0.0 < self.tau <= 1.0:
            raise SurgkitError(f"tau must be in (0, 1], got {self.tau}")
        if self.batch_size < 1:
            raise SurgkitError("batch size must be at least 1")

    def protocol(self, adapter: VLMAdapter) -> dict[str, Any]:
        """Everything a reader of the numbers needs to know (written into every summary)."""
        return {
            "task": self.task,
            "tau": self.tau,
            "threshold": ">= tau after min-max normalisation in frame coordinates",
            "empty_attention": "an all-zero heatmap scores 0 and is counted",
            "heatmap_explains": f"{self.heatmap_target} class",
            "heatmap_method": adapter.heatmap_method,
            "model": adapter.describe(),
            "multi_label_rule": "top-1 prediction is correct if it is among the frame's GT labels",
            "valid_frame_rule": "a GT triplet has the predicted instrument and the predicted verb",
            "ars_heatmap": "separate heatmap of the secondary prompt 'I am performing {predicted verb}'",
            "null_policy": self.null_policy,
            "articles_fixed": self.articles,
            "text_embedding": "mean of L2-normalised prompt embeddings, re-normalised",
            "tau_ac_empty_gt": "frames without any GT region are excluded from tau-AC",
        }


def build_prompt_sets(settings: BenchSettings, vocabulary: Sequence[str]) -> dict[str, PromptSet]:
    """The task's prompt sets: ``primary`` (instrument or triplet pool) and, for triplets, ``verb``."""
    tpl = load_templates(settings.templates)
    if settings.task == "instrument":
        return {"primary": instrument_prompts(vocabulary, tpl, articles=settings.articles)}
    return {
        "primary": triplet_prompts(None, tpl, articles=settings.articles, null_policy=settings.null_policy),
        "verb": verb_prompts(VERBS, tpl, articles=settings.articles, null_policy=settings.null_policy),
    }


def check_frames(
    frames: Sequence[GroundingFrame], settings: BenchSettings, prompts: dict[str, PromptSet]
) -> tuple[list[GroundingFrame], list[dict[str, str]]]:
    """Validate frames against the prompt vocabulary; frames that cannot be scored are skipped with a reason.

    A GT instrument name missing from the prompt vocabulary is an error (it names the frame's source);
    a frame without annotations is skipped (or an error with ``strict``).
    """
    usable, skipped = [], []
    primary = prompts["primary"]
    for f in frames:
        if settings.task == "instrument":
            if not f.instruments:
                reason = "image without annotated instruments"
                if settings.strict:
                    raise SurgkitError(f"{f.where()}: frame {f.key}: {reason}")
                skipped.append({"frame": f.key, "reason": reason, "where": f.where()})
                continue
            for label in f.instruments:
                primary.index(label, where=f"{f.where()}: frame {f.key}")
        else:
            if not f.triplets:
                reason = "frame without triplet labels"
                if settings.strict:
                    raise SurgkitError(f"{f.where()}: frame {f.key}: {reason}")
                skipped.append({"frame": f.key, "reason": reason, "where": f.where()})
                continue
        usable.append(f)
    if settings.max_frames is not None:
        usable = usable[: settings.max_frames]
    return usable, skipped


class _Chooser:
    """Picks the text embeddings to explain from the normalised image embeddings (one forward pass)."""

    def __init__(
        self, settings: BenchSettings, prompts: dict[str, PromptSet], banks: dict[str, torch.Tensor]
    ):
        self.settings, self.prompts, self.banks = settings, prompts, banks
        self.gt_index: list[int] | None = None
        self.scores: torch.Tensor | None = None
        self.pred: np.ndarray | None = None
        self.verb_pred: np.ndarray | None = None

    def __call__(self, img: torch.Tensor) -> list[torch.Tensor]:
        primary = self.banks["primary"]
        self.scores = cosine_scores(img, primary).cpu()
        self.pred = np.argmax(self.scores.numpy(), axis=1)  # ties -> lowest index
        explained = self.pred if self.settings.heatmap_target == "predicted" else np.asarray(self.gt_index)
        targets = [primary[torch.as_tensor(explained)]]
        if self.settings.task == "triplet":
            classes = self.prompts["primary"].classes
            verb_set = self.prompts["verb"]
            verbs = [normalise_label(VERBS[classes[int(k)].components[1]]) for k in explained]
            self.verb_pred = np.asarray([verb_set.get(v) for v in verbs])
            safe = torch.as_tensor(np.where(self.verb_pred < 0, 0, self.verb_pred))
            targets.append(self.banks["verb"][safe])
        return targets


def _gt_index(frame: GroundingFrame, settings: BenchSettings, primary: PromptSet) -> int:
    if settings.task == "instrument":
        return primary.index(frame.instruments[0])
    for comp in frame.triplets:
        key = triplet_key(INSTRUMENTS[comp[0]], VERBS[comp[1]], TARGETS[comp[2]])
        if primary.get(key) >= 0:
            return primary.get(key)
    return 0


def _instrument_record(frame, pred_key, scores, keys, heat, regions) -> dict[str, Any]:
    union = np.zeros(heat.shape, dtype=bool)
    for m in regions.values():
        union |= m
    ac = tau_ac(heat, union)
    attended = attended_set(heat)
    top = np.argsort(-scores, kind="stable")[:5]
    return {
        "gt": frame.instruments,
        "pred": pred_key,
        "correct": pred_key in frame.instruments,
        "top5": [[keys[int(k)], round(float(scores[int(k)]), 6)] for k in top],
        "tau_ac": None if np.isnan(ac) else ac,
        "tau_aa": tau_aa(heat, regions, pred_key),
        "attended_fraction": float(attended.mean()),
    }


def _triplet_record(frame, pred_comp, pred_key, verb_heat, regions) -> dict[str, Any]:
    gt = [triplet_names(c) for c in frame.triplets]
    pi, pv, pt = triplet_names(pred_comp)
    valid = any(i == pi and v == pv for i, v, _ in gt)
    rec: dict[str, Any] = {
        "gt": [triplet_key(INSTRUMENTS[c[0]], VERBS[c[1]], TARGETS[c[2]]) for c in frame.triplets],
        "pred": pred_key,
        "correct": pred_key
        in [triplet_key(INSTRUMENTS[c[0]], VERBS[c[1]], TARGETS[c[2]]) for c in frame.triplets],
        "instrument_correct": pi in {g[0] for g in gt},
        "verb_correct": pv in {g[1] for g in gt},
        "target_correct": pt in {g[2] for g in gt},
        "valid": valid,
        "ars": None,
        "ars_status": "not_valid",
    }
    if valid:
        box = regions.get(pi)
        if box is None or not box.any():
            rec["ars_status"] = "no_box_for_instrument"
        elif verb_heat is None:
            rec["ars_status"] = "no_verb_prompt"
        else:
            rec["ars"] = action_reasoning_score(verb_heat, box)
            rec["ars_status"] = "scored"
    return rec


def _quantise(m: torch.Tensor) -> np.ndarray:
    return np.round(m.detach().cpu().float().clamp(0, 1).numpy() * 255.0).astype(np.uint8)


def _process_batch(
    adapter, frames, settings, prompts, banks, offset
) -> tuple[list[dict], dict[str, np.ndarray]]:
    loaded, failed = [], []
    for b, f in enumerate(frames):
        try:
            loaded.append((offset + b, f, f.load_image()))
        except SurgkitError as e:  # an unreadable image is reported; the rest of the batch goes on
            failed.append({"index": offset + b, "video": f.video, "frame": f.frame, "error": str(e)})
    if not loaded:
        return failed, {}
    offsets = [k for k, _, _ in loaded]
    frames = [f for _, f, _ in loaded]
    images = [img for _, _, img in loaded]
    pixels, geoms = adapter.preprocess(images)
    chooser = _Chooser(settings, prompts, banks)
    chooser.gt_index = [_gt_index(f, settings, prompts["primary"]) for f in frames]
    _emb, maps = adapter.explain(pixels, chooser)
    keys = prompts["primary"].keys
    records, arrays = [], {}
    for b, (frame, img, geom) in enumerate(zip(frames, images, geoms, strict=True)):
        idx = offsets[b]
        heat = to_frame(maps[0][b], geom)
        regions = frame.region_masks(img.shape[:2], frame.regions)
        pred = int(chooser.pred[b])
        rec: dict[str, Any] = {
            "index": idx,
            "video": frame.video,
            "frame": frame.frame,
            "image": str(frame.image) if isinstance(frame.image, (str, Path)) else None,
            "geometry": geom.to_dict(),
            "boxes": {k: [list(map(float, bx)) for bx in v] for k, v in frame.boxes.items()},
            "box_unit": frame.unit,
            "explained": keys[int(chooser.gt_index[b])] if settings.heatmap_target == "gt" else keys[pred],
        }
        scores = chooser.scores[b].numpy()
        if settings.task == "instrument":
            rec.update(_instrument_record(frame, keys[pred], scores, keys, heat, regions))
        else:
            comp = prompts["primary"].classes[pred].components
            has_verb = chooser.verb_pred[b] >= 0
            verb_heat = to_frame(maps[1][b], geom) if has_verb else None
            boxes = frame.region_masks(img.shape[:2], "boxes")  # ARS: B(instrument) is the GT box
            rec.update(_triplet_record(frame, comp, keys[pred], verb_heat, boxes))
            rec["pred_score"] = float(scores[pred])
            if settings.save_heatmaps and has_verb:
                arrays[f"{idx}_verb"] = _quantise(maps[1][b])
        if settings.save_heatmaps:
            arrays[f"{idx}_primary"] = _quantise(maps[0][b])
        records.append(rec)
    return sorted(records + failed, key=lambda r: r["index"]), arrays


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)


def run_benchmark(
    adapter: VLMAdapter,
    frames: Sequence[GroundingFrame],
    vocabulary: Sequence[str],
    settings: BenchSettings,
    out_dir: str | Path,
    dataset: str = "",
    extra_protocol: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the benchmark over ``frames``; returns (and writes) the summary. Resumable per shard."""
    from surgkit.utils.progress import console, make_progress

    out = Path(out_dir)
    prompts = build_prompt_sets(settings, [normalise_label(v) for v in vocabulary])
    usable, skipped = check_frames(frames, settings, prompts)
    if not usable:
        raise SurgkitError(
            f"no frame can be benchmarked for the {settings.task} task ({len(skipped)} skipped)"
        )
    run_cfg = {
        "model": adapter.describe(),
        "weights": weights_checksum(adapter),
        "settings": dataclasses.asdict(settings),
        "frames": [f.key for f in usable],
        "dataset": dataset,
    }
    fingerprint = sha256_json(run_cfg)
    cfg_path = out / "run_config.json"
    if cfg_path.is_file():
        old = json.loads(cfg_path.read_text()).get("fingerprint")
        if old != fingerprint:
            raise SurgkitError(f"{out}: holds a run with other settings, model or frames; choose a new --out")
    write_json(cfg_path, {**run_cfg, "fingerprint": fingerprint, "frames": len(usable)})
    write_json(out / "prompts.json", {name: p.to_dict() for name, p in prompts.items()})
    banks = {name: class_embeddings(adapter, p, cache_dir=out / "cache") for name, p in prompts.items()}
    for s in skipped:
        console.print(f"[yellow]skipped[/] {s['where']}: frame {s['frame']}: {s['reason']}", highlight=False)

    bs = settings.batch_size
    n_shards = (len(usable) + bs - 1) // bs
    with make_progress(disable=not progress) as bar:
        task = bar.add_task(f"{adapter.name} {settings.task}", total=len(usable), unit="frames")
        for s in range(n_shards):
            shard = out / "shards" / f"{s:05d}.json"
            chunk = usable[s * bs : (s + 1) * bs]
            if not shard.is_file():
                records, arrays = _process_batch(adapter, chunk, settings, prompts, banks, s * bs)
                if settings.save_heatmaps:
                    _save_npz(out / "heatmaps" / f"{s:05d}.npz", arrays)
                write_json(shard, records)
            bar.advance(task, len(chunk))

    records, errors = [], []
    for s in range(n_shards):
        for rec in json.loads((out / "shards" / f"{s:05d}.json").read_text()):
            (errors if "error" in rec else records).append(rec)
    for e in errors:
        console.print(f"[yellow]skipped[/] frame {e['video']}/{e['frame']}: {e['error']}", highlight=False)
        skipped.append({"frame": f"{e['video']}/{e['frame']}", "reason": e["error"], "where": "image"})
    if not records:
        raise SurgkitError(f"no frame could be read ({len(errors)} unreadable images)")
    write_text(out / "predictions.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    summary = {
        "model": adapter.name,
        "dataset": dataset,
        "task": settings.task,
        "frames": len(records),
        "skipped": skipped,
        "protocol": {**settings.protocol(adapter), **(extra_protocol or {})},
        **summarise(records, settings.task),
    }
    write_json(out / "summary.json", summary)
    from surgkit.grounding.tables import run_markdown

    write_text(out / "table.md", run_markdown([summary]))
    return summary


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def _aggregate(records: list[dict[str, Any]], task: str) -> dict[str, Any]:
    n = len(records)
    out: dict[str, Any] = {"frames": n, "accuracy": _mean([float(r["correct"]) for r in records])}
    if task == "instrument":
        ac = [r["tau_ac"] for r in records if r["tau_ac"] is not None]
        labels = {lb for r in records for lb in r["gt"]}
        # reference: accuracy of the best single constant prediction on these frames (uses their labels)
        best = max((sum(lb in r["gt"] for r in records) for lb in labels), default=0)
        out.update(
            best_constant_accuracy=best / n if n else float("nan"),
            tau_ac=_mean(ac),
            tau_aa=_mean([r["tau_aa"] for r in records]),
            tau_ac_frames=len(ac),
            no_attention=sum(r["attended_fraction"] == 0 for r in records),
        )
        return out
    valid = [r for r in records if r["valid"]]
    scored = [r["ars"] for r in valid if r["ars_status"] == "scored"]
    out.update(
        instrument_accuracy=_mean([float(r["instrument_correct"]) for r in records]),
        verb_accuracy=_mean([float(r["verb_correct"]) for r in records]),
        target_accuracy=_mean([float(r["target_correct"]) for r in records]),
        ars=_mean(scored),
        valid_frames=len(valid),
        ars_scored=len(scored),
        ars_no_box=sum(r["ars_status"] == "no_box_for_instrument" for r in valid),
        v_over_t=100.0 * len(valid) / n if n else float("nan"),
        z_over_v=100.0 * sum(a == 0 for a in scored) / len(scored) if scored else float("nan"),
    )
    return out


def summarise(records: list[dict[str, Any]], task: str) -> dict[str, Any]:
    """Per-video and overall metrics (overall = over all frames pooled, as in the seed's tables)."""
    videos: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        videos.setdefault(r["video"], []).append(r)
    return {
        "overall": _aggregate(records, task),
        "videos": {v: _aggregate(rs, task) for v, rs in sorted(videos.items())},
    }


def load_summary(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        raise SurgkitError(f"{path}: not found (is {run_dir} a finished `surgkit ground bench` run?)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SurgkitError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None


def load_records(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "predictions.jsonl"
    if not path.is_file():
        raise SurgkitError(f"{path}: not found")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_heatmap(run_dir: str | Path, record: dict[str, Any], kind: str = "primary", batch_size: int | None = None
                 ) -> np.ndarray | None:  # fmt: skip
    """A saved heatmap in frame coordinates (float in [0, 1]) for a record of ``predictions.jsonl``."""
    run_dir = Path(run_dir)
    if batch_size is None:
        batch_size = int(json.loads((run_dir / "run_config.json").read_text())["settings"]["batch_size"])
    path = run_dir / "heatmaps" / f"{record['index'] // batch_size:05d}.npz"
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        key = f"{record['index']}_{kind}"
        if key not in data:
            return None
        m = data[key].astype(np.float32) / 255.0
    return to_frame(m, FrameGeometry.from_dict(record["geometry"]))
