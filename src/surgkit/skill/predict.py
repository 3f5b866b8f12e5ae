"""Scoring new videos with a trained model folder (fusion model or single unimodal branch).

A trained model folder (``<run>/<task>/<fold>/fusion`` or ``.../unimodal/<m>``) holds
``config.json`` + ``model.safetensors`` (save_pretrained) and ``train_state.json`` with the label
scale, so scores come back in the dataset's units; models trained with ``target=items`` also give
the per-item breakdown (e.g. the six OSATS items), the global score being their sum.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from surgkit.errors import SurgkitError
from surgkit.prep.store import FeatureStore
from surgkit.skill.data import LabelScale, resample
from surgkit.skill.model import SurgFusionNet, UnimodalBranch
from surgkit.skill.train import STATE_NAME


def load_trained(folder: str | Path, device: str = "cpu") -> tuple[Any, LabelScale]:
    """(model in eval mode, label scale) from a trained model folder (see :func:`inference_settings`)."""
    folder = Path(folder)
    cfg_path, state_path = folder / "config.json", folder / STATE_NAME
    if not cfg_path.is_file() or not state_path.is_file():
        raise SurgkitError(
            f"{folder}: not a trained surgkit skill model (needs config.json and {STATE_NAME})"
        )
    model_type = json.loads(cfg_path.read_text()).get("model_type")
    cls = {"surgfusion": SurgFusionNet, "surgfusion-unimodal": UnimodalBranch}.get(model_type)
    if cls is None:
        raise SurgkitError(f"{cfg_path}: model_type '{model_type}' is not a skill model")
    state = json.loads(state_path.read_text())
    if "label_scale" not in state:
        raise SurgkitError(f"{state_path}: no label_scale recorded")
    s = state["label_scale"]
    scale = LabelScale(tuple(s["score_range"]), tuple(s["item_names"]), tuple(s["item_range"]), s["target"])
    return cls.from_pretrained(folder, map_location=device).eval(), scale


def inference_settings(folder: str | Path) -> dict[str, Any]:
    """How the model saw a video at evaluation: ``length_policy`` (``resample`` brings every video to
    ``resample_length`` segments, as training did) and ``drop_partial_tail``. Read from the model's
    train_state.json; for folders saved before these were recorded, from the run's experiment.json."""
    folder = Path(folder)
    state = json.loads((folder / STATE_NAME).read_text())
    if "length_policy" in state:
        return {k: state[k] for k in ("length_policy", "resample_length", "drop_partial_tail") if k in state}
    for parent in list(folder.parents)[:4]:
        exp = parent / "experiment.json"
        if exp.is_file():
            train = json.loads(exp.read_text()).get("experiment", {}).get("train", {})
            return {
                k: train[k] for k in ("length_policy", "resample_length", "drop_partial_tail") if k in train
            }
    return {"length_policy": "pad"}


def model_modalities(model: Any) -> tuple[str, ...]:
    cfg = model.config
    return tuple(cfg.modalities) if hasattr(cfg, "modalities") else (cfg.modality,)


@torch.no_grad()
def predict_features(
    checkpoint: str | Path,
    features_dir: str | Path,
    video_ids: Sequence[str] | None = None,
    device: str = "cpu",
    drop_partial_tail: bool | None = None,
) -> list[dict[str, Any]]:
    """Score every video of a feature store (or ``video_ids``); one dict per video.

    Keys: ``video``, ``score`` (score units), ``segments`` and, for item-trained models, ``items``;
    fusion models also report each unimodal branch's score under ``unimodal``.
    """
    model, scale = load_trained(checkpoint, device)
    settings = inference_settings(checkpoint)
    resample_to = int(settings["resample_length"]) if settings.get("length_policy") == "resample" else None
    if drop_partial_tail is None:  # as the run did
        drop_partial_tail = bool(settings.get("drop_partial_tail", True))
    store = FeatureStore(features_dir)
    mods = model_modalities(model)
    ids = list(video_ids) if video_ids else store.video_ids
    out = []
    for vid in ids:
        feats = store.load_all(vid, mods)
        if drop_partial_tail:
            valid = store.load_valid(vid, mods[0])
            if valid.any() and not valid.all():
                feats = {m: a[: int(valid.sum())] for m, a in feats.items()}
        segments = int(len(feats[mods[0]]))
        if resample_to is not None:  # the run evaluated (and trained) on resampled videos
            feats = {m: resample(a, resample_to) for m, a in feats.items()}
        x = {m: torch.from_numpy(np.ascontiguousarray(a)).unsqueeze(0).to(device) for m, a in feats.items()}
        res = model(x)
        pred = res.score.float().cpu().numpy()
        row: dict[str, Any] = {
            "video": vid,
            "score": float(scale.to_score(pred)[0]),
            "segments": segments,
        }
        if scale.target == "items":
            row["items"] = dict(
                zip(scale.item_names, (float(v) for v in scale.to_items(pred)[0]), strict=True)
            )
        if hasattr(res, "unimodal_scores") and len(mods) > 1:
            row["unimodal"] = {
                m: float(scale.to_score(s.float().cpu().numpy())[0]) for m, s in res.unimodal_scores.items()
            }
        out.append(row)
    return out


def evaluate_checkpoint(
    checkpoint: str | Path,
    data_dir: str | Path,
    features_dir: str | Path,
    tasks: Sequence[str] | None = None,
    dataset: str = "auto",
    view: str = "capture1",
    device: str = "cpu",
) -> dict[str, Any]:
    """SCC and MAE (score points) of a trained model on every labelled video with features.

    Meant for external test sets; evaluating on the model's own training videos is not a result.
    """
    from surgkit.skill import interop
    from surgkit.skill.data import resolve_store_id

    labels = interop.load_labels(data_dir, dataset, view)
    store = FeatureStore(features_dir)
    out: dict[str, Any] = {"checkpoint": str(checkpoint), "tasks": {}}
    for task in tasks or labels.tasks:
        items = labels.for_task(task)
        if not items:
            raise SurgkitError(f"no labelled videos for task '{task}' in {data_dir}")
        ids = [resolve_store_id(store, it.id, view) for it in items]
        preds = predict_features(checkpoint, features_dir, ids, device)
        pred = np.array([p["score"] for p in preds])
        true = np.array([it.score for it in items])
        out["tasks"][task] = {"n": len(items), "scc": interop.spearman(pred, true), "mae": interop.mae(pred, true),
                              "videos": [it.id for it in items], "pred": pred.tolist(), "true": true.tolist()}  # fmt: skip
    return out
