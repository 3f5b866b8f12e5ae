"""The zero-shot grounding benchmark runner (seed 001 §3-4; vlm_bench spec §2, §4, §5).

For every frame: zero-shot prediction over the task's prompt pool, the heatmap of the explained
class (Grad-CAM or Chefer rollout, by the adapter), the heatmap mapped to frame pixels, and the
grounding metrics of :mod:`surgkit.metrics.grounding` with the rules of
:mod:`surgkit.grounding.scoring`:

* ``instrument`` task: accuracy (top-1 in the GT set) beside the best constant prediction, τ-AC and
  τ-AA beside the score of a uniform heatmap (the area fraction of the regions);
* ``triplet`` task: triplet and component accuracies, and the Action Reasoning Score. A frame is
  *valid* when the predicted instrument and verb are correct (validity rule of the protocol); for
  valid frames the secondary prompt ``I am performing {predicted verb}`` gets its own heatmap, and
  ARS is the share of its attended set inside the GT box of the predicted instrument.
  V/T = valid / total frames (%), Z/V = valid frames with ARS = 0 / scored valid frames (%) - the
  columns of the seed's Table 2.

Every protocol choice is a field of :class:`~surgkit.grounding.protocol.BenchSettings` and is
written into ``run_config.json``, ``summary.json`` and the table captions.

Outputs in ``out_dir``: ``run_config.json``, ``prompts.json``, ``shards/*.json`` (per-frame records)
with ``heatmaps/*.npz`` (uint8 maps at model-input resolution, no pickle; geometry in the records),
then ``predictions.jsonl``, ``summary.json`` (per video and overall, with the protocol) and
``table.md``. Shards are written atomically, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

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
from surgkit.grounding.protocol import BenchSettings
from surgkit.grounding.scoring import explained_index, instrument_record, match_triplet, top_k, triplet_record
from surgkit.grounding.zeroshot import class_embeddings, cosine_scores, weights_checksum
from surgkit.utils.inputs import escape
from surgkit.utils.io import atomic_path, sha256_json, write_json, write_text
from surgkit.vocab import INSTRUMENTS, TARGETS, VERBS

__all__ = ["BenchSettings", "load_heatmap", "load_records", "load_summary", "run_benchmark", "summarise"]


def build_prompt_sets(settings: BenchSettings, vocabulary: Sequence[str]) -> dict[str, PromptSet]:
    """The task's prompt sets: ``primary`` (instrument vocabulary or triplet pool) and, for
    triplets, ``verb`` (the secondary prompt; ``null_verb`` only with the ``all`` pool)."""
    tpl = load_templates(settings.templates)
    if settings.task == "instrument":
        return {"primary": instrument_prompts(vocabulary, tpl, articles=settings.articles)}
    nulls = "render" if settings.triplet_pool == "all" else "exclude"
    return {
        "primary": triplet_prompts(None, tpl, articles=settings.articles, pool=settings.triplet_pool),
        "verb": verb_prompts(VERBS, tpl, articles=settings.articles, null_policy=nulls),
    }


def frame_gt_keys(frame: GroundingFrame, task: str) -> list[str]:
    """Class keys of a frame's ground truth: normalised instrument labels or triplet names."""
    if task == "instrument":
        return frame.instruments
    return [triplet_key(INSTRUMENTS[c[0]], VERBS[c[1]], TARGETS[c[2]]) for c in frame.triplets]


def _skip(skipped: list, frame: GroundingFrame, reason: str, strict: bool) -> None:
    if strict:
        raise SurgkitError(f"{frame.where()}: frame {frame.key}: {reason}")
    skipped.append({"frame": frame.key, "reason": reason, "where": frame.where()})


def check_frames(
    frames: Sequence[GroundingFrame], settings: BenchSettings, prompts: dict[str, PromptSet]
) -> tuple[list[GroundingFrame], list[dict[str, str]]]:
    """Frames that can be scored, and the others with a reason.

    A GT instrument name missing from the prompt vocabulary is an error (it names the frame's
    source); a frame without annotations is skipped, and so is (triplet task, ``out_of_pool``
    ``exclude``) a frame whose GT triplets are all outside the pool, e.g. only null triplets.
    ``strict`` turns a skip into an error.
    """
    usable: list[GroundingFrame] = []
    skipped: list[dict[str, str]] = []
    primary = prompts["primary"]
    for f in frames:
        keys = frame_gt_keys(f, settings.task)
        if settings.task == "instrument":
            if not keys:
                _skip(skipped, f, "image without annotated instruments", settings.strict)
                continue
            for label in keys:
                primary.index(label, where=f"{f.where()}: frame {f.key}")
        elif not keys:
            _skip(skipped, f, "frame without triplet labels", settings.strict)
            continue
        elif settings.out_of_pool == "exclude" and all(primary.get(k) < 0 for k in keys):
            reason = f"GT triplets outside the {settings.triplet_pool} triplet pool ({'; '.join(keys)})"
            _skip(skipped, f, reason, settings.strict)
            continue
        usable.append(f)
    if settings.max_frames is not None:
        usable = usable[: settings.max_frames]
    return usable, skipped


class _Chooser:
    """Picks the text embeddings to explain from the normalised image embeddings (one forward pass):
    the explained class (:func:`~surgkit.grounding.scoring.explained_index`) and, for triplets,
    the secondary prompt of the predicted verb."""

    def __init__(self, settings: BenchSettings, prompts: dict[str, PromptSet], banks: dict[str, torch.Tensor],
                 frames: Sequence[GroundingFrame]):  # fmt: skip
        self.settings, self.prompts, self.banks = settings, prompts, banks
        primary = prompts["primary"]
        gt = [[primary.get(k) for k in frame_gt_keys(f, settings.task)] for f in frames]
        self.gt_indices = [[k for k in g if k >= 0] for g in gt]
        self.names = (
            [triplet_names(c.components) for c in primary.classes] if settings.task == "triplet" else None
        )
        self.scores = np.zeros((0, 0))
        self.pred = np.zeros(0, dtype=int)
        self.explained: list[int | None] = []
        self.verb_index = np.zeros(0, dtype=int)

    def __call__(self, img: torch.Tensor) -> list[torch.Tensor]:
        primary = self.banks["primary"]
        self.scores = cosine_scores(img, primary).cpu().numpy()
        self.pred = np.argmax(self.scores, axis=1)  # ties -> lowest index
        s = self.settings
        self.explained = [
            explained_index(s.task, s.heatmap_target, int(p), g, row, self.names)
            for p, g, row in zip(self.pred, self.gt_indices, self.scores, strict=True)
        ]
        # a frame without an explainable class still gets a map (of its prediction); it is not stored
        rows = [e if e is not None else int(p) for e, p in zip(self.explained, self.pred, strict=True)]
        targets = [primary[torch.as_tensor(rows)]]
        if s.task == "triplet":
            verbs = [
                normalise_label(VERBS[self.prompts["primary"].classes[int(p)].components[1]])
                for p in self.pred
            ]
            self.verb_index = np.asarray([self.prompts["verb"].index(v) for v in verbs])
            targets.append(self.banks["verb"][torch.as_tensor(self.verb_index)])
        return targets


def _quantise(m: torch.Tensor) -> np.ndarray:
    return np.round(m.detach().cpu().float().clamp(0, 1).numpy() * 255.0).astype(np.uint8)


def _load_images(frames: Sequence[GroundingFrame], offset: int) -> tuple[list, list[dict[str, Any]]]:
    loaded, failed = [], []
    for b, f in enumerate(frames):
        try:
            loaded.append((offset + b, f, f.load_image()))
        except SurgkitError as e:  # an unreadable image is reported; the rest of the batch goes on
            failed.append({"index": offset + b, "video": f.video, "frame": f.frame, "error": str(e)})
    return loaded, failed


def _process_batch(
    adapter: VLMAdapter,
    frames: Sequence[GroundingFrame],
    settings: BenchSettings,
    prompts: dict[str, PromptSet],
    banks: dict[str, torch.Tensor],
    offset: int,
) -> tuple[list[dict], dict[str, np.ndarray]]:
    loaded, failed = _load_images(frames, offset)
    if not loaded:
        return failed, {}
    images = [img for _, _, img in loaded]
    pixels, geoms = adapter.preprocess(images)
    chooser = _Chooser(settings, prompts, banks, [f for _, f, _ in loaded])
    _emb, maps = adapter.explain(pixels, chooser)
    primary = prompts["primary"]
    keys = primary.keys
    tau, rule = settings.tau, settings.threshold
    records, arrays = [], {}
    for b, ((idx, frame, img), geom) in enumerate(zip(loaded, geoms, strict=True)):
        pred, exp = int(chooser.pred[b]), chooser.explained[b]
        scores = chooser.scores[b]
        rec: dict[str, Any] = {
            "index": idx,
            "video": frame.video,
            "frame": frame.frame,
            "image": str(frame.image) if isinstance(frame.image, (str, Path)) else None,
            "geometry": geom.to_dict(),
            "boxes": {k: [list(map(float, bx)) for bx in v] for k, v in frame.boxes.items()},
            "box_unit": frame.unit,
            "top5": top_k(keys, scores),
            "pred_score": float(scores[pred]),
        }
        hw = img.shape[:2]
        if settings.task == "instrument":
            heat = to_frame(maps[0][b], geom)
            regions = frame.region_masks(hw, frame.regions)
            rec.update(instrument_record(frame.instruments, keys[pred], keys[exp], heat, regions, tau, rule))  # type: ignore[index]
        else:
            gt_comp = [tuple(c) for c in frame.triplets]
            pred_names = triplet_names(primary.classes[pred].components)
            match = match_triplet(pred_names, [triplet_names(c) for c in gt_comp], settings.validity)
            verb_heat = to_frame(maps[1][b], geom)
            boxes = frame.region_masks(hw, "boxes")  # ARS: B(instrument) is the GT box
            rec.update(triplet_record(frame_gt_keys(frame, "triplet"), [triplet_names(c) for c in gt_comp],
                                      keys[pred], pred_names, keys[exp] if exp is not None else None, match,
                                      verb_heat, boxes, tau, rule))  # fmt: skip
            rec["verb_prompt"] = prompts["verb"].keys[int(chooser.verb_index[b])]
            if settings.save_heatmaps:
                arrays[f"{idx}_verb"] = _quantise(maps[1][b])
        if settings.save_heatmaps and exp is not None:
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
    """Run the benchmark over ``frames``; returns (and writes) the summary. Resumable per shard.

    The adapter is configured with the settings' preprocessing and heatmap options first.
    """
    from surgkit.utils.lock import output_lock

    out = Path(out_dir)
    adapter.configure(settings.preprocessing, settings.heatmap_options())
    with output_lock(out, "surgkit ground bench"):
        return _run(adapter, frames, vocabulary, settings, out, dataset, extra_protocol or {}, progress)


def _run(adapter, frames, vocabulary, settings, out, dataset, extra_protocol, progress) -> dict[str, Any]:
    """The benchmark proper. Under ``accelerate launch``/``torchrun`` every process takes a contiguous run
    of the batch shards (``shards/NNNNN.json``, the same batches as one process) and the main process
    merges them: the outputs are identical to a one-process run."""
    from surgkit.utils.launch import process_state
    from surgkit.utils.progress import console, make_progress
    from surgkit.utils.runinfo import check_resume

    state = process_state()
    prompts = build_prompt_sets(settings, [normalise_label(v) for v in vocabulary])
    usable, skipped = check_frames(frames, settings, prompts)
    if not usable:
        reasons = sorted({s["reason"].split(" (")[0] for s in skipped})
        raise SurgkitError(
            f"no frame can be benchmarked for the {settings.task} task ({len(skipped)} skipped: {'; '.join(reasons)})"
        )
    protocol = {**settings.protocol(adapter), **extra_protocol}
    run_cfg = {
        "model": adapter.describe(),
        "weights": weights_checksum(adapter),
        "settings": settings.output_settings(),
        "frames": sha256_json([f.key for f in usable]),
        "dataset": dataset,
    }
    with state.main_process_first():  # the main process records the run and fills the text cache first
        check_resume(out, run_cfg, command="surgkit ground bench")
        if state.is_main_process:
            write_json(out / "run_config.json", {**run_cfg, "frames": len(usable), "protocol": protocol})
            write_json(out / "prompts.json", {name: p.to_dict() for name, p in prompts.items()})
        banks = {name: class_embeddings(adapter, p, cache_dir=out / "cache") for name, p in prompts.items()}
    if state.is_main_process:
        _report_skipped(console, skipped)

    bs = settings.batch_size
    n_shards = (len(usable) + bs - 1) // bs
    mine = np.array_split(np.arange(n_shards), state.num_processes)[state.process_index].tolist()
    if state.num_processes > 1 and state.is_main_process:
        console.print(f"{n_shards} batches over {state.num_processes} processes", highlight=False)
    with make_progress(disable=not (progress and state.is_main_process)) as bar:
        total = sum(len(usable[s * bs : (s + 1) * bs]) for s in mine)
        task = bar.add_task(f"{adapter.name} {settings.task}", total=total, unit="frames")
        for s in mine:
            shard = out / "shards" / f"{s:05d}.json"
            chunk = usable[s * bs : (s + 1) * bs]
            if not shard.is_file():
                records, arrays = _process_batch(adapter, chunk, settings, prompts, banks, s * bs)
                if settings.save_heatmaps:
                    _save_npz(out / "heatmaps" / f"{s:05d}.npz", arrays)
                write_json(shard, records)
            bar.advance(task, len(chunk))
    state.wait_for_everyone()
    if not state.is_main_process:  # the main process merges; the others return its summary
        state.wait_for_everyone()
        return json.loads((out / "summary.json").read_text())
    try:
        return _merge(adapter, usable, skipped, prompts, settings, out, dataset, protocol, n_shards, console)
    finally:
        state.wait_for_everyone()


def _merge(
    adapter, usable, skipped, prompts, settings, out, dataset, protocol, n_shards, console
) -> dict[str, Any]:
    """predictions.jsonl, summary.json and table.md from the batch shards (main process)."""
    records, errors = [], []
    for s in range(n_shards):
        for rec in json.loads((out / "shards" / f"{s:05d}.json").read_text()):
            (errors if "error" in rec else records).append(rec)
    for e in errors:
        console.print(
            f"[yellow]skipped[/] frame {escape(e['video'])}/{e['frame']}: {escape(e['error'])}",
            highlight=False,
        )
        skipped.append({"frame": f"{e['video']}/{e['frame']}", "reason": e["error"], "where": "image"})
    if not records:
        raise SurgkitError(f"no frame could be read ({len(errors)} unreadable images)")
    write_text(out / "predictions.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    summary = {
        "model": adapter.name,
        "dataset": dataset,
        "task": settings.task,
        "frames": len(records),
        "pool_size": len(prompts["primary"]),
        "skipped": skipped,
        "protocol": protocol,
        **summarise(records, settings.task, prompts["primary"].keys),
    }
    write_json(out / "summary.json", summary)
    from surgkit.grounding.tables import run_markdown

    write_text(out / "table.md", run_markdown([summary]))
    return summary


def _report_skipped(console: Any, skipped: list[dict[str, str]], shown: int = 3) -> None:
    """A few skipped frames with their source, then one count per reason (all are in summary.json)."""
    for s in skipped[:shown]:
        console.print(f"[yellow]skipped[/] {escape(s['where'])}: frame {escape(s['frame'])}: {escape(s['reason'])}",
                      highlight=False)  # fmt: skip
    if len(skipped) > shown:
        reasons: dict[str, int] = {}
        for s in skipped:
            key = s["reason"].split(" (")[0]
            reasons[key] = reasons.get(key, 0) + 1
        counts = "; ".join(f"{n} x {escape(r)}" for r, n in sorted(reasons.items()))
        console.print(
            f"[yellow]skipped[/] {len(skipped)} frames in all: {counts} (listed in summary.json)",
            highlight=False,
        )


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def best_constant(records: list[dict[str, Any]], pool: Sequence[str]) -> tuple[float, str | None]:
    """Accuracy of the best single constant prediction from the pool on these frames, and that class."""
    if not records:
        return float("nan"), None
    counts: dict[str, int] = {}
    for r in records:
        for key in set(r["gt"]):
            counts[key] = counts.get(key, 0) + 1
    allowed = set(pool)
    best = max(((c, k) for k, c in counts.items() if k in allowed), key=lambda ck: (ck[0], -pool.index(ck[1])),
               default=(0, None))  # fmt: skip
    return best[0] / len(records), best[1]


def _aggregate(records: list[dict[str, Any]], task: str, pool: Sequence[str]) -> dict[str, Any]:
    n = len(records)
    const_acc, const_class = best_constant(records, pool)
    out: dict[str, Any] = {
        "frames": n,
        "accuracy": _mean([float(r["correct"]) for r in records]),
        "best_constant_accuracy": const_acc,
        "best_constant_class": const_class,
        "uniform_guess_accuracy": 1.0 / len(pool) if pool else float("nan"),
    }
    if task == "instrument":
        ac = [r for r in records if r["tau_ac"] is not None]
        out.update(
            tau_ac=_mean([r["tau_ac"] for r in ac]),
            tau_ac_uniform=_mean([r["tau_ac_uniform"] for r in ac]),
            tau_aa=_mean([r["tau_aa"] for r in records]),
            tau_aa_uniform=_mean([r["tau_aa_uniform"] for r in records]),
            tau_ac_frames=len(ac),
            no_attention=sum(r["attended_fraction"] == 0 for r in records),
        )
        return out
    valid = [r for r in records if r["valid"]]
    scored = [r for r in valid if r["ars_status"] == "scored"]
    ars = [r["ars"] for r in scored]
    out.update(
        instrument_accuracy=_mean([float(r["instrument_correct"]) for r in records]),
        verb_accuracy=_mean([float(r["verb_correct"]) for r in records]),
        target_accuracy=_mean([float(r["target_correct"]) for r in records]),
        ars=_mean(ars),
        ars_uniform=_mean([r["ars_uniform"] for r in scored]),
        valid_frames=len(valid),
        ars_scored=len(scored),
        ars_no_box=sum(r["ars_status"] == "no_box_for_instrument" for r in valid),
        ars_null_verb=sum(r["ars_status"] == "null_verb" for r in valid),
        not_explained=sum(r["explained"] is None for r in records),
        v_over_t=100.0 * len(valid) / n if n else float("nan"),
        z_over_v=100.0 * sum(a == 0 for a in ars) / len(ars) if ars else float("nan"),
    )
    return out


def summarise(records: list[dict[str, Any]], task: str, pool: Sequence[str]) -> dict[str, Any]:
    """Per-video and overall metrics (overall = over all frames pooled, as in the seed's tables)."""
    videos: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        videos.setdefault(r["video"], []).append(r)
    return {
        "overall": _aggregate(records, task, pool),
        "videos": {v: _aggregate(rs, task, pool) for v, rs in sorted(videos.items())},
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
