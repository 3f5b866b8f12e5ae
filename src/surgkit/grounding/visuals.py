"""Overlays of heatmaps on frames, and the per-model grid of the seed's Figure 2.

Each panel shows the frame, the heatmap (jet, semi-transparent), the thresholded attended region
A_tau (white contour, tau = 0.5 by default) and the ground-truth boxes (green) and masks (cyan
contour), titled with the prediction and whether it is correct. Figures are PNG, written atomically.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from surgkit.errors import SurgkitError
from surgkit.grounding.benchmark import load_heatmap, load_records, load_summary
from surgkit.grounding.frames import rasterise_box
from surgkit.utils.io import atomic_path


def _rgb(path: str | None) -> np.ndarray | None:
    if not path:
        return None
    import cv2

    img = cv2.imread(path, cv2.IMREAD_COLOR)
    return None if img is None else img[:, :, ::-1]


def draw_overlay(
    ax: Any,
    image: np.ndarray,
    heatmap: np.ndarray | None,
    boxes: Mapping[str, Sequence[Sequence[float]]] | None = None,
    unit: str = "pixel",
    tau: float = 0.5,
    title: str = "",
    masks: Mapping[str, np.ndarray] | None = None,
    rule: str = ">=",
) -> None:
    """One panel: frame, heatmap, attended region contour (the run's τ and rule), GT boxes and masks."""
    from matplotlib.patches import Rectangle

    h, w = image.shape[:2]
    ax.imshow(image)
    if heatmap is not None:
        ax.imshow(heatmap, cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
        attended = (heatmap >= tau if rule == ">=" else heatmap > tau) & (heatmap.max() > 0)
        if attended.any() and not attended.all():
            ax.contour(attended.astype(float), levels=[0.5], colors="white", linewidths=1.2)
    for label, bxs in (boxes or {}).items():
        for box in bxs:
            x0, y0, x1, y1 = box
            if unit == "normalized":
                x0, x1, y0, y1 = x0 * w, x1 * w, y0 * h, y1 * h
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="lime", linewidth=1.5))
            ax.text(x0, y0, label, color="lime", fontsize=6, va="bottom")
    for m in (masks or {}).values():
        if np.any(m):
            ax.contour(np.asarray(m, float), levels=[0.5], colors="cyan", linewidths=1.0)
    ax.set_title(title, fontsize=7)
    ax.set_axis_off()


def _save(fig: Any, out: str | Path) -> Path:
    import matplotlib.pyplot as plt

    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def pick_frames(records_per_run: Sequence[list[dict[str, Any]]], n: int) -> list[tuple[str, int]]:
    """Up to ``n`` frames present in every run, spread evenly over the common frames."""
    common = None
    for recs in records_per_run:
        keys = {(r["video"], r["frame"]) for r in recs if r.get("image")}
        common = keys if common is None else common & keys
    ordered = sorted(common or [])
    if len(ordered) <= n:
        return ordered
    picks = np.linspace(0, len(ordered) - 1, n).round().astype(int)
    return [ordered[i] for i in picks]


def grid_figure(
    runs: Sequence[str | Path],
    out: str | Path,
    frames: Sequence[tuple[str, int]] | None = None,
    n: int = 4,
    kind: str = "primary",
    tau: float | None = None,
) -> Path:
    """Rows = models (runs), columns = the same frames: overlays as in the seed's Figure 2.

    ``kind`` is ``primary`` (instrument/triplet prompt) or ``verb`` (the secondary ARS prompt); the
    attended contour uses each run's τ and threshold rule unless ``tau`` is given.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not runs:
        raise SurgkitError("no runs given for the figure")
    summaries = [load_summary(r) for r in runs]
    records = [load_records(r) for r in runs]
    chosen = list(frames) if frames is not None else pick_frames(records, n)
    if not chosen:
        raise SurgkitError("the runs share no frame with an image file to draw")
    fig, axes = plt.subplots(
        len(runs), len(chosen), figsize=(2.4 * len(chosen), 2.4 * len(runs)), squeeze=False
    )
    for i, (run, summ, recs) in enumerate(zip(runs, summaries, records, strict=True)):
        index = {(r["video"], r["frame"]): r for r in recs}
        for j, key in enumerate(chosen):
            ax = axes[i][j]
            rec = index.get(tuple(key))
            image = _rgb(rec.get("image")) if rec else None
            if rec is None or image is None:
                ax.set_axis_off()
                continue
            heat = load_heatmap(run, rec, kind)
            mark = "✓" if rec.get("correct") else "✗"
            pred = textwrap.shorten(str(rec["pred"]).replace(",", ", "), width=34, placeholder="…")
            title = f"{summ['model']} | {key[0]}/{key[1]}\npred: {pred} {mark}"
            if kind == "verb" and rec.get("ars") is not None:
                title += f" ARS={rec['ars']:.2f}"
            elif rec.get("tau_aa") is not None:
                title += f" τ-AA={rec['tau_aa']:.2f}"
            protocol = summ.get("protocol", {})
            run_tau = float(tau if tau is not None else protocol.get("tau", 0.5))
            draw_overlay(ax, image, heat, rec.get("boxes"), rec.get("box_unit", "pixel"), run_tau, title,
                         rule=protocol.get("threshold", ">="))  # fmt: skip
    return _save(fig, out)


def region_overlay(
    image: np.ndarray, heatmap: np.ndarray, boxes: Mapping[str, Sequence[Sequence[float]]], out: str | Path,
    unit: str = "pixel", tau: float = 0.5, title: str = "",
) -> Path:  # fmt: skip
    """A single overlay PNG (frame, heatmap, attended region, GT boxes rasterised as masks too)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4))
    masks = {
        k: np.any([rasterise_box(b, image.shape[:2], unit) for b in v], axis=0) for k, v in boxes.items() if v
    }
    draw_overlay(ax, image, heatmap, boxes, unit, tau, title, masks)
    return _save(fig, out)
