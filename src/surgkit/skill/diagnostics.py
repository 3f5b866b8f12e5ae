"""What a trained fusion model's attention does: the statistics the DRA defaults are judged by.

For a trained :class:`~surgkit.skill.model.SurgFusionNet` and some videos (held-out ones, normally):

* the range of the head-averaged CSFB weights per modality (sharp attention reaches near 0 and 1;
  a softmax over probabilities kept them near 1/N);
* the DRA diversity factor γ per head (``divergence``: κ·(1 − cos(a_h, m)), per timestep) and κ;
* the mixing factor λ per head;
* the PolicyNet temperature τ and how often a training-mode choice equals the evaluation choice,
  E[P(draw = argmax π)] (exact expectation, no sampling): P = max softmax(π/τ) for the annealed,
  scaled policy, max softmax(π) for MAQA's unscaled hard Gumbel draw (which τ does not change);
* the histogram of the evaluation choices k* (how many FusionNets the prefix mask enables).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from surgkit.skill.attention import DivergenceRegulatedAttention


def _hook_details(modules: list[tuple[str, DivergenceRegulatedAttention]], store: dict[str, list]) -> list:
    """Capture λ and γ of every DRA call (``forward`` again with ``return_details``; no hook recursion)."""
    handles = []
    for block, attn in modules:

        def hook(module, args, output, name=block):
            with torch.no_grad():
                _, det = module.forward(*args, return_details=True)
            if det.lam is not None:
                store.setdefault(f"{name}_lambda", []).append(det.lam.flatten(2).mean(-1).cpu().numpy())
            if det.gamma is not None:
                g = det.gamma.expand(det.mixed.shape[0], -1, det.mixed.shape[2], 1)
                store.setdefault(f"{name}_gamma", []).append(g.flatten(2).mean(-1).cpu().numpy())

        handles.append(attn.register_forward_hook(hook))
    return handles


@torch.no_grad()
def attention_statistics(model, videos: Sequence[dict[str, np.ndarray]]) -> dict[str, Any]:
    """Statistics of ``model`` (eval mode) over ``videos`` (modality → [T, D] arrays). See module doc."""
    from surgkit.skill.model import _pool_half, masked_mean

    model.eval()
    cfg = model.config
    device = next(model.parameters()).device
    dras = []
    for stage in model.stages:
        for block in ("csfb", "dfb"):
            part = getattr(stage, block)
            if part is not None and isinstance(part.attn, DivergenceRegulatedAttention):
                dras.append((block, part.attn))
    captured: dict[str, list] = {}
    handles = _hook_details(dras, captured)
    weights, agree, chosen = [], [], []
    try:
        for feats in videos:
            x = {
                m: torch.from_numpy(np.ascontiguousarray(feats[m])).unsqueeze(0).to(device)
                for m in cfg.modalities
            }
            out = model(x)
            weights += [w[0].cpu().numpy() for w in out.csfb_attention]
            chosen += [c.flatten().cpu().numpy() for c in out.policy_choice]
            if model.tau is None:
                continue
            branch = {m: model.branches[m](x[m]) for m in cfg.modalities}
            for i, stage in enumerate(model.stages, start=1):
                dfb = stage.dfb
                pool = _pool_half if i < 3 else (lambda t: masked_mean(t, None))
                logits = dfb.policy_logits([branch[m].features[i - 1] for m in cfg.modalities], pool)
                scaled = logits / model.tau if dfb.scaled_policy else logits
                agree.append(torch.softmax(scaled, 1).max(1).values.flatten().cpu().numpy())
    finally:
        for h in handles:
            h.remove()
    stats: dict[str, Any] = {}
    if weights:
        w = np.concatenate([a.reshape(-1, a.shape[-1]) for a in weights])
        stats["csfb_weight_min"] = float(w.min())
        stats["csfb_weight_max"] = float(w.max())
        stats["csfb_weight_p05_p95"] = [float(np.quantile(w, 0.05)), float(np.quantile(w, 0.95))]
        stats["csfb_weight_mean_per_modality"] = dict(
            zip(cfg.modalities, w.mean(0).round(4).tolist(), strict=True)
        )
    for key in sorted(captured):
        v = np.concatenate([a.reshape(-1) for a in captured[key]])
        stats[key] = {"min": float(v.min()), "mean": float(v.mean()), "max": float(v.max())}
    kappa = [
        torch.nn.functional.softplus(a.rho).cpu().numpy()
        for _, a in dras
        if getattr(a, "rho", None) is not None
    ]
    if kappa:
        k = np.concatenate(kappa)
        stats["gamma_scale_kappa"] = {"min": float(k.min()), "mean": float(k.mean()), "max": float(k.max())}
    if model.tau is not None:
        stats["policy_tau"] = float(model.tau)
        stats["policy_tau_mode"] = cfg.policy_tau
    if agree:
        stats["train_eval_choice_agreement"] = float(np.concatenate(agree).mean())
    if chosen:
        stats["eval_choice_histogram"] = np.bincount(
            np.concatenate(chosen), minlength=cfg.num_fusionnets
        ).tolist()
    return stats


def merge_statistics(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Combine per-fold statistics: min of minima, max of maxima, mean of means and agreements."""
    parts = [p for p in parts if p]
    if not parts:
        return {}
    out: dict[str, Any] = {}
    for key in parts[0]:
        vals = [p[key] for p in parts if key in p]
        first = vals[0]
        if key.endswith("_min"):
            out[key] = float(min(vals))
        elif key.endswith("_max"):
            out[key] = float(max(vals))
        elif isinstance(first, dict) and "min" in first:
            out[key] = {"min": min(v["min"] for v in vals), "mean": float(np.mean([v.get("mean", np.nan) for v in vals])),
                        "max": max(v["max"] for v in vals)}  # fmt: skip
        elif isinstance(first, (int, float)) and not isinstance(first, bool):
            out[key] = float(np.mean(vals))
        elif key == "eval_choice_histogram":
            out[key] = np.sum(vals, axis=0).tolist()
        elif key == "csfb_weight_mean_per_modality":
            out[key] = {m: float(np.mean([v[m] for v in vals])) for m in first}
        elif key == "csfb_weight_p05_p95":
            out[key] = [float(min(v[0] for v in vals)), float(max(v[1] for v in vals))]
        else:
            out[key] = first
    return out
