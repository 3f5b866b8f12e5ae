"""Demo step: the metrics on synthetic predictions, showing how protocols and legacy quirks move numbers."""

from __future__ import annotations

import numpy as np

from surgkit.demo import DemoContext, DemoSection


def _phase_videos(rng: np.random.Generator, n_videos: int, mean_len: int):
    """Cholec80-like 1-fps phase sequences and predictions with boundary jitter and flicker."""
    labels, preds = [], []
    for _ in range(n_videos):
        lengths = rng.integers(mean_len // 2, mean_len * 3 // 2, 7)
        g = np.repeat(np.arange(7), lengths)
        p = g.copy()
        for b in np.cumsum(lengths)[:-1]:  # predicted transitions a few seconds early or late
            shift = int(rng.integers(-8, 9))
            lo, hi = sorted((b, b + shift))
            p[lo:hi] = g[b - 1] if shift > 0 else g[b]
        flicker = rng.random(g.size) < 0.04
        p[flicker] = np.clip(g[flicker] + rng.choice([-1, 1], flicker.sum()), 0, 6)
        labels.append(g)
        preds.append(p)
    return labels, preds


def _triplet_videos(rng: np.random.Generator, n_videos: int, frames: int):
    ys, ss = [], []
    prevalence = rng.uniform(0.0, 0.08, 100) * (rng.random(100) < 0.6)
    for _ in range(n_videos):
        y = (rng.random((frames, 100)) < prevalence).astype(int)
        ss.append(1 / (1 + np.exp(-(rng.normal(-1.5, 1, (frames, 100)) + 2.5 * y))))
        ys.append(y)
    return ys, ss


def demo_step(ctx: DemoContext) -> DemoSection:
    """Phase (strict vs relaxed, tail bug on/off), triplet (video vs global mAP), VQLA (true vs legacy mIoU)."""
    from surgkit.metrics import phase, triplet, vqla

    rng = np.random.default_rng(ctx.seed)
    n_videos, mean_len, frames = (3, 60, 120) if ctx.tiny else (8, 300, 1000)
    labels, preds = _phase_videos(rng, n_videos, mean_len)
    runs = {
        "strict": phase.evaluate(labels, preds, 7, "strict"),
        "relaxed (Evaluate.m, tail bug)": phase.evaluate(labels, preds, 7, "relaxed"),
        "relaxed, relaxed_fixed=True": phase.evaluate(labels, preds, 7, "relaxed", relaxed_fixed=True),
        "sklearn-per-video": phase.evaluate(labels, preds, 7, "sklearn-per-video"),
    }
    phase_rows = [
        [name, r["video_accuracy"], r["precision"], r["recall"], r["jaccard"], r.get("f1", float("nan"))]
        for name, r in runs.items()
    ]
    seg = phase.segmental_f1(labels, preds)

    ys, ss = _triplet_videos(rng, n_videos, frames)
    video = triplet.evaluate(ys, ss, mode="video")
    glob = triplet.evaluate(ys, ss, mode="global")
    trip_rows = [[c, video[c], glob[c]] for c in triplet.COMPONENTS]

    corners = rng.random((2, 200, 2, 2))  # two random corners per box, normalised coordinates
    a, b = (np.concatenate([x.min(axis=1), x.max(axis=1)], axis=1) for x in corners)
    true_miou, legacy_miou = vqla.miou(a, b), vqla.miou_legacy(a, b)

    relaxed, fixed = runs["relaxed (Evaluate.m, tail bug)"], runs["relaxed, relaxed_fixed=True"]
    return DemoSection(
        key="metrics",
        title="Metrics: reference protocols and their quirks",
        summary=(
            f"Synthetic predictions for {n_videos} videos. The relaxed Matlab protocol lifts video accuracy from "
            f"{runs['strict']['video_accuracy']:.3f} (strict) to {relaxed['video_accuracy']:.3f}; fixing the "
            f"Evaluate.m tail bug would give {fixed['video_accuracy']:.3f}. Random box pairs score a legacy "
            f"Surgical-VQLA mIoU of {legacy_miou:.3f} against a true mIoU of {true_miou:.3f}."
        ),
        metrics={
            "phase_video_accuracy_strict": runs["strict"]["video_accuracy"],
            "phase_video_accuracy_relaxed": relaxed["video_accuracy"],
            "phase_video_accuracy_relaxed_fixed": fixed["video_accuracy"],
            "phase_segmental_f1@0.50": seg["f1@0.50"],
            "triplet_ivt_video_map": video["ivt"],
            "triplet_ivt_global_map": glob["ivt"],
            "vqla_miou_true_random_boxes": true_miou,
            "vqla_miou_legacy_random_boxes": legacy_miou,
        },
        tables=[
            (
                "Phase metrics (fractions) under each protocol",
                ["protocol", "video acc", "precision", "recall", "jaccard", "F1"],
                phase_rows,
            ),
            (
                "Triplet mAP, video-wise vs global (ivtmetrics 0.1.5, sklearn<1.6 NaN rule)",
                ["component", "video", "global"],
                trip_rows,
            ),
        ],
        notes=[
            "Relaxed = TMRNet/Surgformer Evaluate.m + Main.m (variant cholec80, 10 s window); its tail bug is "
            "reproduced by default (relaxed_fixed=False).",
            "Main.m aggregation: J and R are plain means over phases, P a nanmean; their ± is across phases, "
            "accuracy's across videos (N-1).",
            "Triplet AP: classes without positives are NaN and skipped (ivtmetrics 0.1.5 with scikit-learn<1.6); "
            "ivtmetrics 0.1.5 with scikit-learn>=1.6 would count them as 0.",
            f"Segmental F1@0.50 = {seg['f1@0.50']:.3f} (MS-TCN, pooled): single-frame flicker in the predictions "
            "creates many short segments, which frame metrics hardly see.",
            "VQLA legacy mIoU reproduces the Surgical-VQLA reference (+1 on normalised coordinates, no clamp); "
            "it is not an IoU.",
        ],
    )
