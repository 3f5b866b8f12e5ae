"""Synthetic JIGSAWS-format skill data with per-segment features of known content.

Used by the tests, the benchmark and as a quick way to try the CLI without a video pipeline. Each
surgeon has a latent skill s ∈ [0, 1]; each trial's six OSATS items are noisy roundings of
1 + 4·s (GRS = their sum). Segment features (dimension D) are:

- flow: s·u_flow + time-varying noise (motion economy shows in the motion modality);
- mask: s·u_mask + noise, with a weaker signal;
- rgb:  ``rgb_signal``·s·u_rgb + a large random per-video camera-motion offset + noise, i.e. RGB is
  corrupted by camera motion (the situation SurgFusion-Net targets).

With ``complementary=True`` skill has three components instead (one per modality, e.g. tissue handling /
economy of motion / instrument use), each a per-surgeon level (independent permutations of the same
grid) plus per-trial noise of sd ``component_noise``, clipped to [0, 1]: modality m's features carry only
its component s_m, the GRS items are roundings of 1 + 4·mean(s_m). Each modality then sees a third of
the skill, and only a model that combines them can rank the trials well (the learning test of fusion
against the single modalities).

The generator is fixed by its arguments and seed; nothing in it depends on the models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from surgkit.prep.store import FeatureStoreWriter
from surgkit.utils.io import write_text

USERS = "BCDEFGHI"


def make_synthetic_skill_data(
    root: str | Path,
    *,
    task: str | tuple[str, ...] = "Suturing",
    users: int = 5,
    trials_per_user: int = 4,
    dim: int = 16,
    length: tuple[int, int] = (12, 24),
    flow_signal: float = 1.0,
    mask_signal: float = 0.6,
    rgb_signal: float = 0.1,
    camera_motion: float = 3.0,
    noise: float = 1.0,
    seed: int = 0,
    view: str = "capture1",
    complementary: bool = False,
    component_noise: float = 0.25,
) -> tuple[Path, Path]:
    """Write ``<root>/jigsaws/<task>/meta_file_<task>.txt`` and a feature store ``<root>/features``.

    ``task``: one JIGSAWS task or several (each gets the same surgeons, with its own trials).
    Returns (data_dir, features_dir). Store ids are ``<trial>_<view>`` as for JIGSAWS videos.
    """
    tasks = (task,) if isinstance(task, str) else tuple(task)
    if not 1 <= users <= len(USERS):
        raise ValueError(f"users must be in 1..{len(USERS)}")
    rng = np.random.default_rng(seed)
    root = Path(root)
    data_dir, feat_dir = root / "jigsaws", root / "features"
    directions = {m: _unit(rng.normal(size=dim)) for m in ("rgb", "flow", "mask")}
    gains = {"flow": flow_signal, "mask": mask_signal, "rgb": rgb_signal}
    skills = np.linspace(0.05, 0.95, users)[rng.permutation(users)]
    modalities = ("rgb", "flow", "mask")
    parts = (
        {m: np.linspace(0.05, 0.95, users)[rng.permutation(users)] for m in modalities}
        if complementary
        else {}
    )
    lines: dict[str, list[str]] = {t: [] for t in tasks}
    with FeatureStoreWriter(feat_dir, backbone="synthetic", fps=10.0, segment_frames=32) as writer:
        for task, u in ((t, u) for t in tasks for u in range(users)):
            for trial in range(1, trials_per_user + 1):
                trial_id = f"{task}_{USERS[u]}{trial:03d}"
                if complementary:
                    own = {
                        m: float(np.clip(parts[m][u] + rng.normal(0, component_noise), 0, 1)) for m in parts
                    }
                    s = float(np.mean(list(own.values())))
                else:
                    s = float(np.clip(skills[u] + rng.normal(0, 0.08), 0, 1))
                    own = dict.fromkeys(modalities, s)
                items = np.clip(np.rint(1 + 4 * s + rng.normal(0, 0.4, size=6)), 1, 5).astype(int)
                level = "N" if s < 0.4 else ("I" if s < 0.7 else "E")
                lines[task].append(
                    f"{trial_id}\t\t{level}\t{int(items.sum())}\t\t" + "\t".join(map(str, items))
                )
                t = int(rng.integers(length[0], length[1] + 1))
                camera = _unit(rng.normal(size=dim)) * camera_motion * rng.uniform(0.5, 1.5)
                for m in ("rgb", "flow", "mask"):
                    base = gains[m] * (2 * own[m] - 1) * directions[m]
                    drift = np.cumsum(rng.normal(0, 0.2, size=(t, dim)), axis=0) if m == "rgb" else 0.0
                    feats = base + rng.normal(0, noise, size=(t, dim))
                    if m == "rgb":
                        feats = feats + camera + drift
                    writer.write(
                        f"{trial_id}_{view}",
                        m,
                        feats.astype(np.float32),
                        num_frames=t * 32,
                        source="synthetic",
                    )
    for task in tasks:
        write_text(data_dir / task / f"meta_file_{task}.txt", "\n".join(lines[task]) + "\n")
    return data_dir, feat_dir


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)
