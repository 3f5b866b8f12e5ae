"""The prep demo's mask check: a small SegFormer fine-tuned on the annotated frames of some users'
videos, scored by Dice against the exact masks of held-out users' videos, beside the baselines a
skeptic names (the best colour threshold fitted on the same training frames; the per-pixel
majority class)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from surgkit.demo import learning_entry


def user_split(videos: list[str], held_out_users: int = 2) -> tuple[list[str], list[str]]:
    """JIGSAWS ids ``<Task>_<U><NNN>_captureK``: the last ``held_out_users`` users are held out."""
    users = sorted({v.split("_")[1][0] for v in videos})
    test_users = set(users[-held_out_users:]) if len(users) > held_out_users else set(users[-1:])
    test = [v for v in videos if v.split("_")[1][0] in test_users]
    return [v for v in videos if v not in test], test


def mask_dice(
    frames_dir: Path, world: Path, videos: list[str], out: Path, steps: int, seed: int
) -> dict[str, Any]:
    """Train, predict the held-out annotated frames, score; returns metrics, learning entries, notes."""
    from surgkit.metrics.segmentation import dice_scores
    from surgkit.prep import masks
    from surgkit.prep.segmenter import (
        annotated_pairs,
        apply_colour_threshold,
        fit_colour_threshold,
        train_segmenter,
    )

    train, test = user_split(videos)
    if not train or not test:
        return {"metrics": {}, "learning": {}, "notes": ["Mask Dice: skipped (fewer than two users)."]}
    truth = masks.synth_masks(world, missing="error")
    x, y = annotated_pairs(frames_dir, truth, train)
    xt, yt = annotated_pairs(frames_dir, truth, test)
    k = max(2, int(max(y.max(), yt.max())) + 1)
    folder = train_segmenter(x, y, out, num_labels=k, image_size=64, steps=steps, lr=3e-3, seed=seed)
    pred = masks.ModelMasks(folder, input_size=64, batch_size=32).predict(xt)
    model = dice_scores(zip(pred, yt, strict=True), k)
    rule = fit_colour_threshold(x, y)
    colour = dice_scores(zip(apply_colour_threshold(xt, rule), (yt > 0).astype(np.uint8), strict=True), 2)
    prior = np.stack([(y == c).mean(0) for c in range(k)]).argmax(0)
    majority = dice_scores(((prior, t) for t in yt), k)
    kind = f"best colour threshold on the training frames ({rule['feature']} {'>' if rule['sign'] > 0 else '<'} {rule['threshold']})"
    return {
        "metrics": {
            "mask_dice_tool": round(model["binary_dice"], 4),
            "mask_dice_mean": round(model["mean_dice"], 4),
            "mask_dice_colour_threshold": round(colour["binary_dice"], 4),
            "mask_dice_majority_pixel": round(majority["binary_dice"], 4),
            "mask_dice_frames": len(yt),
        },
        "learning": {"mask_dice": learning_entry(model["binary_dice"], colour["binary_dice"], kind, len(yt))},
        "notes": [
            f"Mask Dice: a SegFormer (0.5 M parameters, 64² input) fine-tuned for {steps} steps on the {len(y)} "
            f"exactly annotated frames of {len(train)} videos, scored on the {len(yt)} annotated frames of "
            f"{len(test)} held-out users' videos against the world's exact masks: tool Dice "
            f"{model['binary_dice']:.3f}; best colour threshold {colour['binary_dice']:.3f}; per-pixel majority "
            f"class {majority['binary_dice']:.3f}. The feature store still uses the world's masks.",
        ],
    }
