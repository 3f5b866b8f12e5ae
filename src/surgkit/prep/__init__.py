"""surgkit.prep: streaming video preprocessing (see docs/prep.md).

* :mod:`surgkit.prep.frames` — decode, resample to a target fps (exact timestamps), crop/resize, write frames;
* :mod:`surgkit.prep.flow` — Farnebäck/DIS optical flow as invertible 8-bit x/y maps, parallel and deterministic;
* :mod:`surgkit.prep.masks` — tool masks from annotations, the synthetic world's ground truth or a model;
* :mod:`surgkit.prep.features` — per-segment features from a frozen video backbone;
* :mod:`surgkit.prep.store` — the per-segment feature store (``surgkit-features/1``) the skill models read.

Every step is resumable (``manifest.json``), writes atomically and fails bad videos one by one.
"""
