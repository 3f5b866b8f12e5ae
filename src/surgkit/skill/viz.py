"""Interpretability (paper Fig. 4): the CSFB attention each modality receives over time.

In the CSFB of stage *i*, the query at each timestep attends over the modality tokens; the
head-averaged weights [L_i, N] show, per timestep, how much the fused representation draws on RGB,
flow and masks. The paper plots stage two. One stage-*i* step covers 2^i segments.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from surgkit.errors import SurgkitError
from surgkit.utils.io import atomic_path

COLORS = {"rgb": "#d62728", "flow": "#1f77b4", "mask": "#2ca02c"}


@torch.no_grad()
def csfb_attention(model, features: dict[str, np.ndarray], stage: int = 2) -> np.ndarray:
    """Head-averaged CSFB weights [L_stage, N] of one video (modalities in ``model.config.modalities``)."""
    cfg = model.config
    if cfg.strategy not in ("dra", "vanilla", "negative") or not cfg.use_csfb or cfg.csfb_kv != "tokens":
        raise SurgkitError(f"model strategy '{cfg.strategy}' has no per-modality CSFB attention")
    if stage not in (1, 2, 3):
        raise SurgkitError(f"stage must be 1, 2 or 3 (got {stage})")
    model.eval()
    device = next(model.parameters()).device
    x = {
        m: torch.from_numpy(np.ascontiguousarray(features[m])).unsqueeze(0).to(device) for m in cfg.modalities
    }
    return model(x).csfb_attention[stage - 1][0].float().cpu().numpy()


def plot_attention_curves(
    weights: np.ndarray,
    modalities: Sequence[str],
    path: str | Path,
    title: str = "",
    step_seconds: float | None = None,
    spans: Sequence[tuple[float, float, str, str]] = (),
) -> Path:
    """Write a PNG of the per-modality attention weights over time (matplotlib, Agg backend).

    ``spans``: (start, end, label, colour) intervals to shade, in the x unit (seconds with
    ``step_seconds``), e.g. known camera moves; each label appears once in the legend."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    weights = np.asarray(weights)
    steps = np.arange(weights.shape[0])
    x = (steps + 0.5) * step_seconds if step_seconds else steps
    fig, ax = plt.subplots(figsize=(7.0, 2.6), dpi=110)
    labelled: set[str] = set()
    for start, end, label, colour in spans:
        ax.axvspan(start, end, color=colour, alpha=0.18, label=None if label in labelled else label, lw=0)
        labelled.add(label)
    for j, m in enumerate(modalities):
        ax.plot(
            x, weights[:, j], label=m, color=COLORS.get(m), linewidth=1.8, marker="o" if len(x) < 30 else None
        )
    ax.set_ylim(0, 1)
    ax.set_xlabel("time (s)" if step_seconds else "stage step")
    ax.set_ylabel("attention weight")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=7, ncol=len(modalities) + len(labelled))
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def save_attention_figures(
    model,
    videos: Sequence,
    out_dir: str | Path,
    stage: int = 2,
    segment_seconds: float | None = None,
) -> list[Path]:
    """One PNG per video (``<id>_csfb_stage<stage>.png``); ``videos`` are ScoredVideo-like (id, features)."""
    out_dir = Path(out_dir)
    paths = []
    step = segment_seconds * 2 ** min(stage, 2) if segment_seconds else None
    for v in videos:
        w = csfb_attention(model, v.features, stage)
        title = f"{v.id}: CSFB stage {stage} attention per modality"
        paths.append(
            plot_attention_curves(
                w, model.config.modalities, out_dir / f"{v.id}_csfb_stage{stage}.png", title, step
            )
        )
    return paths
