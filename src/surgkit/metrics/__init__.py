"""surgkit.metrics: the field's evaluation metrics, equal to their reference implementations.

Pure numpy/scipy, one module per family (import the one you need; nothing heavy is imported here):

* :mod:`surgkit.metrics.ap` — the shared, vectorised average-precision primitive (sklearn-equal,
  NaN for classes without positives).
* :mod:`surgkit.metrics.phase` — phase recognition: strict, Cholec80/M2CAI Matlab relaxed
  (Evaluate.m + Main.m, tail bug reproduced or fixed), sklearn protocols, segmental F1 and edit.
* :mod:`surgkit.metrics.triplet` — CholecT50 triplet mAP (ivtmetrics 0.1.5 with sklearn < 1.6).
* :mod:`surgkit.metrics.skill` — Spearman, MAE, Fisher-z, RL2, cross-validation summaries.
* :mod:`surgkit.metrics.classification` — SurgVISTA clip accuracy/mAP and Endoscapes CVS metrics.
* :mod:`surgkit.metrics.vqla` — Surgical-VQLA accuracy, macro PRF, true and legacy mIoU.
* :mod:`surgkit.metrics.grounding` — SurgXBench τ-AC, τ-AA and action reasoning score.

All scores are fractions in [0, 1] (the Matlab scripts' percent / 100); every result dict carries
a ``protocol`` entry naming the reference, the options and any legacy quirk reproduced.
"""

__all__ = ["ap", "classification", "grounding", "phase", "skill", "triplet", "vqla"]
