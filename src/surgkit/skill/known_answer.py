"""Fig. 4 with a known answer: CSFB attention against what the synthetic world says each modality sees.

The synthetic world's truth files (``<world>/truth/<trial>.json`` + ``.safetensors``, format
``surgkit-synth-truth/1``) say when the camera is being re-positioned (``camera_move`` events: optical
flow is dominated by the camera, frames blur) and when a tool is out of the view (``slot_visible``).
The paper reads its Fig. 4 this way: flow weights fall during camera adjustments, mask weights fall
when tools leave the field. Here that reading can be checked: per CSFB step, the fraction of its
frames inside a camera move / with a tool out of view, and the modality weights in such steps versus
calm ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from surgkit.errors import SurgkitError


def trial_truth(world: str | Path, trial: str) -> dict[str, Any]:
    """``fps``, ``frames``, per-frame ``camera_moving`` and ``tool_hidden`` (bool arrays) of one trial."""
    from safetensors.numpy import load_file

    base = Path(world) / "truth" / trial
    meta_path, arrays_path = base.with_suffix(".json"), base.with_suffix(".safetensors")
    if not meta_path.is_file() or not arrays_path.is_file():
        raise SurgkitError(
            f"{meta_path}: no truth files for trial '{trial}' (generate the world with the truth layout)"
        )
    meta = json.loads(meta_path.read_text())
    frames = int(meta["frames"])
    moving = np.zeros(frames, bool)
    for e in meta.get("events", []):
        if e.get("type") == "camera_move":
            moving[int(e["frame"]) : int(e["end"]) + 1] = True
    visible = load_file(str(arrays_path))["slot_visible"].astype(bool)  # [T, K]
    return {
        "fps": float(meta["fps"]),
        "frames": frames,
        "camera_moving": moving,
        "tool_hidden": ~visible.all(1),
    }


def step_fractions(truth: dict[str, Any], steps: int, step_seconds: float, key: str) -> np.ndarray:
    """Fraction of each attention step's frames where ``truth[key]`` holds; step j spans
    [j·step_seconds, (j+1)·step_seconds)."""
    flags = truth[key]
    t = np.arange(len(flags)) / truth["fps"]
    step = np.minimum((t // step_seconds).astype(int), steps)
    out = np.zeros(steps)
    for j in range(steps):
        sel = step == j
        out[j] = flags[sel].mean() if sel.any() else 0.0
    return out


def spans(flags: np.ndarray, fps: float) -> list[tuple[float, float]]:
    """(start_s, end_s) runs of True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(int), [0]])))
    return [(a / fps, b / fps) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def known_answer_statistics(records: list[dict[str, Any]], modalities: tuple[str, ...]) -> dict[str, Any]:
    """Mean flow weight in camera-move steps (≥ half the step) vs steps without any move, and mean mask
    weight in steps with a tool out of view (≥ half) vs steps with every tool in view, over ``records``
    (each: ``weights`` [L, N], ``camera`` and ``hidden`` fractions [L])."""
    out: dict[str, Any] = {}
    w = np.concatenate([r["weights"] for r in records]) if records else np.zeros((0, len(modalities)))
    cam = np.concatenate([r["camera"] for r in records]) if records else np.zeros(0)
    hid = np.concatenate([r["hidden"] for r in records]) if records else np.zeros(0)
    for name, modality, frac in (("camera_move", "flow", cam), ("tool_out_of_view", "mask", hid)):
        if modality not in modalities:
            continue
        col = w[:, modalities.index(modality)]
        during, calm = col[frac >= 0.5], col[frac == 0]
        out[name] = {
            "modality": modality,
            "weight_during": float(during.mean()) if len(during) else None,
            "weight_otherwise": float(calm.mean()) if len(calm) else None,
            "steps_during": int(len(during)),
            "steps_otherwise": int(len(calm)),
        }
        if len(during) and len(calm):
            out[name]["drops"] = bool(during.mean() < calm.mean())
    return out
