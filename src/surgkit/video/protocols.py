"""SurgVISTA downstream protocols: official recipes as presets, and the metrics each protocol reports.

Presets (``downstream/scripts/*/train_*_video.sh`` and the ``run_*_training.py`` defaults, spec §8):

==================  =====  =======  =========  =====  ======  ===========================================
preset              epochs warm-up  lr (×B/64) batch  frames  loss
==================  =====  =======  =========  =====  ======  ===========================================
``phase``           50     5        5e-4       32     16 × 4  soft-target CE, mixup 0.8 / cutmix 1.0, smoothing 0.1
``phase-m2cai16``   50     5        1e-4       32     16 × 4  as ``phase``
``triplet``         20     5        5e-4       32     16 × 4  BCE (100 triplets), no mixup
``cvs-endoscapes``  20     2        5e-5       16     8 × 4   4-class CE + mixup (frame task)
``cvs-cholec80``    500    50       5e-4       32     16 even 6-class CE + mixup (clip task)
``cvs-criteria``    20     2        5e-5       16     8 × 4   surgkit option: 3-criteria BCE (Endoscapes metrics)
``action``          500    50       1e-4       32     16 even CE + mixup (SurgicalActions160)
==================  =====  =======  =========  =====  ======  ===========================================

Every preset: AdamW (0.9, 0.999), weight decay 0.05, layer decay 0.75, ``min_lr 1e-6`` and the lr
scaled by ``global_batch/64``, drop path 0.1, fc dropout 0.5, RandAugment ``rand-m7-n4-mstd0.5-inc1``,
random resized crop [0.7, 1] + flip, random erasing 0.25; Cholec80 phase cuts the black margin.

Metrics (:func:`evaluate_predictions`), each output naming its protocol:

* phase — the strict per-video protocol (video-level accuracy, per-phase P/R/Jaccard, Main.m
  aggregation) **and** the relaxed Matlab protocol (10-s boundary tolerance) beside it, plus
  image-level (pooled) accuracy; the official repo itself reports pooled top-1 only;
* triplet — ivtmetrics ``compute_video_AP``: AP per video, nanmean over videos, mAP over classes,
  with the 6 null triplets 94–99 **excluded** from AP_IVT, and AP_I/V/T/IV/IT;
* CVS / action (single-label) — the official ``engine_for_clip.merge``: softmax averaged over
  duplicates, accuracy (= micro P = micro R) and mAP = ``np.mean`` over classes of one-vs-rest AP
  on all test clips pooled (a class absent from the test set counts 0);
* CVS ``criteria`` — the Endoscapes-CVS201 benchmark (per-criterion AP pooled, Brier, F1).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from surgkit.errors import SurgkitError

_COMMON = dict(weight_decay=0.05, layer_decay=0.75, min_lr=1e-6, drop_path_rate=0.1, fc_drop_rate=0.5,
               rand_augment="rand-m7-n4-mstd0.5-inc1", augment=True, rrc_scale=(0.7, 1.0),
               rrc_ratio=(0.75, 1.3333), hflip=True, reprob=0.25)  # fmt: skip
_MIX = dict(mixup=0.8, cutmix=1.0, label_smoothing=0.1)
_NO_MIX = dict(mixup=0.0, cutmix=0.0, label_smoothing=0.0)
PRESETS: dict[str, dict[str, Any]] = {
    "phase": {**_COMMON, **_MIX, "task": "phase", "epochs": 50, "warmup_epochs": 5, "base_lr": 5e-4,
              "batch_size": 32, "num_frames": 16, "interval": 4},
    "phase-m2cai16": {**_COMMON, **_MIX, "task": "phase", "epochs": 50, "warmup_epochs": 5, "base_lr": 1e-4,
                      "batch_size": 32, "num_frames": 16, "interval": 4},
    "triplet": {**_COMMON, **_NO_MIX, "task": "triplet", "epochs": 20, "warmup_epochs": 5, "base_lr": 5e-4,
                "batch_size": 32, "num_frames": 16, "interval": 4},
    "cvs-endoscapes": {**_COMMON, **_MIX, "task": "cvs", "cvs_form": "4class", "epochs": 20, "warmup_epochs": 2,
                       "base_lr": 5e-5, "batch_size": 16, "num_frames": 8, "interval": 4},
    "cvs-cholec80": {**_COMMON, **_MIX, "task": "cvs", "cvs_form": "6class", "epochs": 500, "warmup_epochs": 50,
                     "base_lr": 5e-4, "batch_size": 32, "num_frames": 16, "interval": 4},
    "cvs-criteria": {**_COMMON, **_NO_MIX, "task": "cvs", "cvs_form": "criteria", "epochs": 20, "warmup_epochs": 2,
                     "base_lr": 5e-5, "batch_size": 16, "num_frames": 8, "interval": 4},
    "action": {**_COMMON, **_MIX, "task": "action", "epochs": 500, "warmup_epochs": 50, "base_lr": 1e-4,
               "batch_size": 32, "num_frames": 16, "interval": 4},
}  # fmt: skip


def default_preset(task: str, dataset: str) -> str:
    """The official preset of a task on a dataset (the run scripts' per-dataset comments)."""
    if task == "phase":
        return "phase-m2cai16" if dataset.startswith("m2cai") else "phase"
    if task == "cvs":
        return "cvs-cholec80" if dataset.startswith("cholec80") else "cvs-endoscapes"
    if task in ("triplet", "action"):
        return task
    raise SurgkitError(f"unknown task '{task}' (phase, triplet, cvs or action)")


def preset_fields(name: str, dataset: str = "") -> dict[str, Any]:
    """The FinetuneSettings fields of preset ``name`` (Cholec80 phase: black margin cut, as the scripts)."""
    if name not in PRESETS:
        raise SurgkitError(f"unknown fine-tuning preset '{name}' (choose from {', '.join(PRESETS)})")
    fields = dict(PRESETS[name])
    if fields["task"] == "phase" and dataset == "cholec80":
        fields["cut_black"] = True
    return fields


def is_multi_label(task: str, cvs_form: str) -> bool:
    return task == "triplet" or (task == "cvs" and cvs_form == "criteria")


# ------------------------------------------------------------------------------------- metrics


def _phase(pred: dict[str, Any], num_classes: int, fps: float) -> dict[str, Any]:
    from surgkit.metrics import phase

    s, y, vids, frames = pred["scores"], pred["labels"], np.asarray(pred["video_ids"]), pred["frames"]
    order = list(dict.fromkeys(vids.tolist()))
    gs = [y[vids == v][np.argsort(frames[vids == v], kind="stable")] for v in order]
    ps = [s[vids == v].argmax(1)[np.argsort(frames[vids == v], kind="stable")] for v in order]
    strict = phase.evaluate(gs, ps, num_classes, protocol="strict", video_names=order)
    keys = ("image_accuracy", "video_accuracy", "video_accuracy_std", "precision", "recall", "jaccard", "f1")
    out: dict[str, Any] = {"primary": "video_accuracy", **{k: strict[k] for k in keys}}
    out["strict"] = {k: strict[k] for k in keys}
    notes = [f"strict: {strict['protocol']['reference']}"]
    variant = {7: "cholec80", 8: "m2cai16"}.get(num_classes)
    window = 10.0 * fps
    if variant is None:
        notes.append(f"relaxed: not defined for {num_classes} phases (Evaluate.m rules are for 7 or 8)")
    elif abs(window - round(window)) > 1e-9 or window < 1:
        notes.append(f"relaxed: the 10-s window is not a whole number of evaluated frames at {fps:g} fps")
    else:
        rel = phase.evaluate(
            gs, ps, num_classes, protocol="relaxed", fps=fps, variant=variant, video_names=order
        )
        out["relaxed"] = {k: rel[k] for k in ("video_accuracy", "video_accuracy_std", "precision", "recall",
                                               "jaccard", "f1", "relaxed_image_accuracy")}  # fmt: skip
        notes.append(
            f"relaxed: {rel['protocol']['reference']}, tail bug reproduced, window {round(window)} frames"
        )
    out["num_videos"] = len(order)
    out["protocol"] = {
        "name": "phase: strict + relaxed (Matlab)",
        "units": "fraction",
        "fps": fps,
        "notes": notes,
    }
    return out


def _triplet(pred: dict[str, Any]) -> dict[str, Any]:
    from surgkit.metrics import triplet

    s, y, vids, frames = pred["scores"], pred["labels"], np.asarray(pred["video_ids"]), pred["frames"]
    order = np.lexsort(
        (frames, vids)
    )  # grouped by video, sorted by frame (as unique_id in the official merge)
    m = triplet.evaluate(y[order] >= 0.5, s[order], video_ids=vids[order], mode="video", ignore_null=True)
    out = {
        "primary": "ivt",
        **{k: m[k] for k in ("i", "v", "t", "iv", "it", "ivt")},
        "num_videos": m["num_videos"],
    }
    out["protocol"] = {
        **m["protocol"],
        "ivt_classes": "0-93 (null triplets 94-99 excluded, as the official merge)",
    }
    return out


def _single_label(pred: dict[str, Any], primary: str, what: str) -> dict[str, Any]:
    from surgkit.metrics import classification

    s, y = pred["scores"], pred["labels"]
    clip_ids = [f"{v}@{int(f)}" for v, f in zip(pred["video_ids"], pred["frames"], strict=True)]
    m = classification.clip_metrics(
        s, y.astype(np.int64), clip_ids=clip_ids, from_logits=False, topk=(1, 3, 5)
    )
    out = {"primary": primary, **{k: v for k, v in m.items() if np.isscalar(v)}}
    out["protocol"] = {**m["protocol"], "task": what,
                       "accuracy": "accuracy_score = micro precision = micro recall (single-label)"}  # fmt: skip
    return out


def evaluate_predictions(task: str, pred: dict[str, Any], num_classes: int, cvs_form: str = "criteria",
                         fps: float = 1.0) -> dict[str, Any]:  # fmt: skip
    """Task metrics under the official protocol (module docstring) plus the name of the selection metric.

    ``pred``: ``scores`` (N × C probabilities: softmax, or sigmoid for multi-label), ``labels``,
    ``video_ids``, ``frames`` (one row per sample, each sample once). ``fps``: rate of the evaluated
    per-video sequences (1 / eval stride), for the relaxed phase window.
    """
    if task == "phase":
        return _phase(pred, num_classes, fps)
    if task == "triplet":
        return _triplet(pred)
    if task == "cvs" and cvs_form == "criteria":
        from surgkit.metrics import classification

        m = classification.cvs_metrics(pred["scores"], pred["labels"])
        return {"primary": "map", **{k: v for k, v in m.items() if np.isscalar(v)}, "protocol": m["protocol"]}
    if task == "cvs":
        return _single_label(pred, "map", f"CVS {cvs_form} (cross-entropy)")
    return _single_label(pred, "accuracy", "action")


def save_predictions(run_dir: Path, name: str, pred: dict[str, Any], label_names: tuple[str, ...]) -> None:
    """Per-sample predictions: CSV (video, frame, label, prediction) + all scores in safetensors."""
    import torch

    from surgkit.utils.io import save_tensors, write_text

    s, y = pred["scores"], pred["labels"]
    lines = ["video_id,frame,label,prediction"]
    for i, (v, f) in enumerate(zip(pred["video_ids"], pred["frames"], strict=True)):
        if y.ndim == 1:
            lines.append(f"{v},{int(f)},{int(y[i])},{int(s[i].argmax())}")
        else:
            on = " ".join(str(j) for j in np.flatnonzero(y[i] >= 0.5))
            lines.append(f"{v},{int(f)},{on},{' '.join(str(j) for j in np.flatnonzero(s[i] >= 0.5))}")
    write_text(run_dir / f"predictions_{name}.csv", "\n".join(lines) + "\n")
    save_tensors(run_dir / f"scores_{name}.safetensors",
                 {"scores": torch.from_numpy(np.ascontiguousarray(s, np.float32)),
                  "frames": torch.from_numpy(np.asarray(pred["frames"]).astype(np.int64))},
                 metadata={"video_ids": json.dumps(list(pred["video_ids"])), "classes": json.dumps(label_names)})  # fmt: skip
