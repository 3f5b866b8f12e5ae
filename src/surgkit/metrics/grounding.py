"""Grounding metrics for VLM explanation heatmaps (SurgXBench, Cheng et al., arXiv 2505.10764; spec §5).

For one image, the heatmap M (already resized to the image) is min-max normalised,
M̃ = (M − min M)/(max M − min M) (M̃ ≡ 0 when max − min < 1e−7), and the attended set is
A_τ = {M̃ ≥ τ} (τ = 0.5; "≥" is the pinned choice, ``rule=">"`` gives {M̃ > τ}). Then

* τ-AC  = |A_τ ∩ G_all| / |A_τ| — attention on any annotated instrument (G_all = union mask);
* τ-AA  = |A_τ ∩ G_ĉ| / |A_τ| if the predicted class ĉ is present in the image, else 0;
* ARS   = |A_τ(verb) ∩ B(instr)| / |A_τ(verb)| — action reasoning score, defined only for samples
  whose instrument *and* verb predictions are correct (others are excluded, not scored 0).

Pinned defaults (spec §5.2, configurable where noted): an all-constant heatmap has an empty
A_τ and scores 0 *and is counted* ("no attention"); a sample without any annotated instrument
(empty G_all) is excluded from τ-AC (NaN per sample, counted in ``excluded_empty_gt``).

Chance level: a *uniform* heatmap gives no attention under the rule above, so the reference a
grounding score must beat is the score of attending the whole image, A = every pixel:
τ-AC = |G_all| / |image| (the area fraction of the annotated regions, :func:`uniform_score`),
τ-AA = |G_ĉ| / |image|, ARS = |B(instr)| / |image|.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from surgkit.errors import SurgkitError

__all__ = [
    "action_reasoning_score",
    "attended_set",
    "evaluate",
    "normalize_heatmap",
    "tau_aa",
    "tau_ac",
    "uniform_score",
]

RULES = (">=", ">")

FLAT_EPS = 1e-7


def normalize_heatmap(heatmap) -> np.ndarray:
    """Min-max normalise to [0, 1]; a (near-)constant map (max − min < 1e−7) becomes all zeros."""
    m = np.asarray(heatmap, dtype=np.float64)
    if m.ndim != 2:
        raise SurgkitError(f"heatmap must be 2-D (H, W), got shape {m.shape}")
    bad = np.argwhere(~np.isfinite(m))
    if bad.size:
        raise SurgkitError(f"heatmap has a non-finite value at pixel {tuple(int(i) for i in bad[0])}")
    lo, hi = m.min(), m.max()
    if hi - lo < FLAT_EPS:
        return np.zeros_like(m)
    return (m - lo) / (hi - lo)


def check_threshold(tau: float, rule: str = ">=") -> None:
    """τ in (0, 1] and a known comparison rule (``>=`` or ``>``)."""
    if not 0.0 < tau <= 1.0:
        raise SurgkitError(f"tau must be in (0, 1], got {tau}")
    if rule not in RULES:
        raise SurgkitError(f"unknown threshold rule {rule!r} (choose from {', '.join(RULES)})")


def attended_set(heatmap, tau: float = 0.5, rule: str = ">=") -> np.ndarray:
    """A_τ = {normalised heatmap ≥ τ} (or ``> τ`` with ``rule=">"``) as a bool mask; empty for a
    constant heatmap."""
    check_threshold(tau, rule)
    m = normalize_heatmap(heatmap)
    if not m.any():
        return np.zeros(m.shape, dtype=bool)
    return m >= tau if rule == ">=" else m > tau


def _mask(mask, shape: tuple[int, ...], name: str) -> np.ndarray:
    g = np.asarray(mask)
    if g.shape != shape:
        raise SurgkitError(f"{name} has shape {g.shape} but the heatmap has shape {shape}")
    return g.astype(bool)


def _fraction_in(attended: np.ndarray, region: np.ndarray) -> float:
    n = int(attended.sum())
    return 0.0 if n == 0 else float(np.count_nonzero(attended & region) / n)


def uniform_score(region_mask) -> float:
    """The score of a uniform heatmap that attends every pixel: |region| / |image| (chance level)."""
    g = np.asarray(region_mask).astype(bool)
    if g.size == 0:
        raise SurgkitError("region mask is empty (size 0)")
    return float(np.count_nonzero(g) / g.size)


def tau_ac(heatmap, gt_union_mask, tau: float = 0.5, rule: str = ">=") -> float:
    """τ-AC = |A_τ ∩ G_all| / |A_τ|; 0 for an empty A_τ; NaN (excluded) when G_all is empty."""
    a = attended_set(heatmap, tau, rule)
    g = _mask(gt_union_mask, a.shape, "gt_union_mask")
    if not g.any():
        return float("nan")
    return _fraction_in(a, g)


def tau_aa(heatmap, class_masks, predicted_class, tau: float = 0.5, rule: str = ">=") -> float:
    """τ-AA = |A_τ ∩ G_ĉ| / |A_τ| if class ĉ is present in the image, else 0.

    ``class_masks``: a mapping class → mask, or an array (C, H, W); a class is "present" when its
    mask is non-empty.
    """
    a = attended_set(heatmap, tau, rule)
    if isinstance(class_masks, Mapping):
        region = class_masks.get(predicted_class)
    else:
        masks = np.asarray(class_masks)
        if masks.ndim != 3:
            raise SurgkitError(f"class_masks must be a mapping or a (C, H, W) array, got shape {masks.shape}")
        if not 0 <= int(predicted_class) < masks.shape[0]:
            raise SurgkitError(f"predicted_class {predicted_class} outside 0..{masks.shape[0] - 1}")
        region = masks[int(predicted_class)]
    if region is None:
        return 0.0
    g = _mask(region, a.shape, f"mask of class {predicted_class!r}")
    return _fraction_in(a, g) if g.any() else 0.0


def action_reasoning_score(heatmap, instrument_box_mask, tau: float = 0.5, rule: str = ">=") -> float:
    """ARS = |A_τ(verb) ∩ B(instr)| / |A_τ(verb)| from the verb prompt's heatmap; 0 for an empty A_τ.

    Only meaningful for samples with correct instrument and verb predictions; :func:`evaluate`
    applies that eligibility rule.
    """
    a = attended_set(heatmap, tau, rule)
    return _fraction_in(a, _mask(instrument_box_mask, a.shape, "instrument_box_mask"))


def evaluate(samples: Iterable[Mapping], tau: float = 0.5, rule: str = ">=") -> dict:
    """Dataset-level τ-AC, τ-AA and ARS with counts (spec §5.1).

    Each sample is a mapping with ``heatmap``, ``gt_union_mask``, ``class_masks``,
    ``predicted_class`` and, for ARS, ``verb_heatmap``, ``instrument_box_mask``,
    ``instrument_correct``, ``verb_correct`` (ARS is computed only when both are True).
    τ-AC and τ-AA are means over all samples (τ-AC skips samples with empty G_all); ARS is the
    mean over the eligible samples.
    """
    ac, aa, ars = [], [], []
    no_attention = 0
    for i, s in enumerate(samples):
        try:
            heat = s["heatmap"]
            no_attention += int(not attended_set(heat, tau, rule).any())
            ac.append(tau_ac(heat, s["gt_union_mask"], tau, rule))
            aa.append(tau_aa(heat, s["class_masks"], s["predicted_class"], tau, rule))
            if s.get("instrument_correct") and s.get("verb_correct"):
                ars.append(action_reasoning_score(s["verb_heatmap"], s["instrument_box_mask"], tau, rule))
        except KeyError as e:
            raise SurgkitError(f"grounding sample {i} lacks the field {e.args[0]!r}") from None
        except SurgkitError as e:
            raise SurgkitError(f"grounding sample {i}: {e}") from None
    if not aa:
        raise SurgkitError("no grounding samples to evaluate")
    ac_arr = np.array(ac)
    valid_ac = ac_arr[~np.isnan(ac_arr)]
    return {
        "tau_ac": float(valid_ac.mean()) if valid_ac.size else float("nan"),
        "tau_aa": float(np.mean(aa)),
        "ars": float(np.mean(ars)) if ars else float("nan"),
        "num_samples": len(aa),
        "num_tau_ac": int(valid_ac.size),
        "excluded_empty_gt": int(ac_arr.size - valid_ac.size),
        "num_ars_eligible": len(ars),
        "no_attention": no_attention,
        "protocol": {
            "name": "surgxbench-grounding",
            "reference": "SurgXBench (arXiv 2505.10764) definitions; no public code",
            "tau": tau,
            "threshold": f"{rule} tau after min-max normalisation",
            "empty_attention": "scores 0 and is counted",
            "units": "fraction",
        },
    }
