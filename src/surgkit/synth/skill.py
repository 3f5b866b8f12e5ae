"""Synthetic surgeons and their skill scores.

Each surgeon has a latent skill ``s`` in [0, 1]. A trial is performed at ``s + N(0, 0.04)``
(day-to-day variation), which sets the :class:`~surgkit.synth.motion.MotionStyle`. The scores are
then derived from the **motion actually generated** (:class:`SkillMetrics`), not from ``s``:

* each metric m is turned into a goodness ``g_m`` in [0, 1] by a fixed linear ramp between a
  "novice" and an "expert" reference value (:data:`METRIC_REFS`, calibrated on the generator);
* each OSATS item (JIGSAWS order, :data:`surgkit.vocab.OSATS_ITEMS`) averages the goodness of the
  metrics a rater would look at, e.g. *time and motion* = mean(g_time, g_path);
* a rater's score is ``clip(round(1 + 4 g + N(0, 0.35)), 1, 5)``; the GRS is the sum (6..30);
* M-GEARS items (:data:`surgkit.vocab.MGEARS_ITEMS`) are derived the same way with their own
  metric groups (sum 5..25);
* the self-proclaimed level N/I/E follows the latent skill with some mismatch, as in JIGSAWS.

**Bench (JIGSAWS) trials** use a :class:`SkillProfile`: four components of motion quality, each the
surgeon's latent skill plus a persistent per-surgeon deviation (sd :data:`COMPONENT_SD`), so that a
surgeon can be fast but rough, or smooth but hesitant:

* ``economy``: transit speed, detours, time spent per gesture (path length, time and motion);
* ``smoothness``: overshoot + corrective sub-movements and tremor (jerk, corrections);
* ``flow``: idle pauses before moves and wandering out of the view (idle time, out-of-view time);
* ``handling``: slips and tissue tears, which leave visible damage on the pad (errors, respect for tissue).

Their rater items (:data:`BENCH_OSATS_GROUPS`) each look at a few of these, so the GRS needs all of
them, while RGB (damage on the pad, tools), flow (speed, jerk, idle) and tool masks (positions at 1 fps,
out-of-view, idle) each see only part of them. Bench trials are fixed-duration recordings whose length
does not depend on skill (see :mod:`surgkit.synth.bench`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from surgkit.vocab import MGEARS_ITEMS, OSATS_ITEMS

RATER_SD = 0.35
TRIAL_SD = 0.04
COMPONENT_SD = 0.22  # per-surgeon deviation of each bench skill component from the latent skill
BENCH_TRIAL_SD = 0.1  # day-to-day variation of each component of a bench trial (independent per component)
COMPONENTS = ("economy", "smoothness", "flow", "handling")

# kind -> metric -> (novice value, expert value); goodness = linear ramp between them, clipped to [0, 1].
# Calibrated on the generator: about the mean metric of surgeons with s < 0.2 and s > 0.8.
METRIC_REFS: dict[str, dict[str, tuple[float, float]]] = {
    "bench": {
        "seconds_per_goal": (4.5, 0.7),
        "path_ratio": (13.0, 2.6),
        "log_jerk": (11.5, 10.0),
        "tremor": (0.0156, 0.0033),
        "idle_fraction": (0.07, 0.0),
        "out_of_view_fraction": (0.145, 0.02),
        "errors_per_goal": (0.54, 0.02),
        "corrections_per_goal": (1.77, 0.85),
        "damage_per_minute": (4.9, 1.2),
    },
    "lap": {
        "seconds_per_goal": (3.7, 0.9),
        "path_ratio": (5.0, 1.3),
        "log_jerk": (10.0, 8.7),
        "tremor": (0.0099, 0.0034),
        "idle_fraction": (0.12, 0.0),
        "out_of_view_fraction": (0.25, 0.18),
        "errors_per_goal": (0.39, 0.0),
        "corrections_per_goal": (3.1, 0.95),
    },
}
METRICS = tuple(METRIC_REFS["lap"])

OSATS_GROUPS: dict[str, tuple[str, ...]] = {
    "respect_for_tissue": ("errors_per_goal", "tremor"),
    "suture_needle_handling": ("log_jerk", "corrections_per_goal", "errors_per_goal"),
    "time_and_motion": ("seconds_per_goal", "path_ratio"),
    "flow_of_operation": ("idle_fraction", "out_of_view_fraction", "corrections_per_goal"),
    "overall_performance": METRICS,
    "quality_of_final_product": ("errors_per_goal", "path_ratio", "log_jerk"),
}
MGEARS_GROUPS: dict[str, tuple[str, ...]] = {
    "depth_perception": ("out_of_view_fraction", "corrections_per_goal"),
    "bimanual_dexterity": ("idle_fraction", "path_ratio"),
    "efficiency": ("seconds_per_goal", "path_ratio"),
    "force_sensitivity": ("errors_per_goal", "tremor"),
    "robotic_control": ("log_jerk", "out_of_view_fraction"),
}
# Bench trials: each item looks at a few metrics, and the metrics come from different skill components.
BENCH_OSATS_GROUPS: dict[str, tuple[str, ...]] = {
    "respect_for_tissue": ("damage_per_minute", "errors_per_goal"),
    "suture_needle_handling": ("errors_per_goal", "corrections_per_goal", "log_jerk"),
    "time_and_motion": ("seconds_per_goal", "path_ratio"),
    "flow_of_operation": ("idle_fraction", "out_of_view_fraction"),
    "overall_performance": tuple(METRIC_REFS["bench"]),
    "quality_of_final_product": ("damage_per_minute", "tremor", "corrections_per_goal"),
}
BENCH_MGEARS_GROUPS: dict[str, tuple[str, ...]] = {
    "depth_perception": ("out_of_view_fraction", "corrections_per_goal"),
    "bimanual_dexterity": ("idle_fraction", "path_ratio"),
    "efficiency": ("seconds_per_goal", "path_ratio"),
    "force_sensitivity": ("damage_per_minute", "errors_per_goal"),
    "robotic_control": ("log_jerk", "tremor"),
}
assert tuple(OSATS_GROUPS) == OSATS_ITEMS and tuple(MGEARS_GROUPS) == MGEARS_ITEMS
assert tuple(BENCH_OSATS_GROUPS) == OSATS_ITEMS and tuple(BENCH_MGEARS_GROUPS) == MGEARS_ITEMS


@dataclasses.dataclass(frozen=True)
class Surgeon:
    """A synthetic surgeon: id letter/name, latent skill, self-proclaimed level."""

    index: int
    name: str  # e.g. "B" (JIGSAWS user letter) or "S07"
    skill: float
    level: str  # N / I / E


def make_surgeons(rng: np.random.Generator, count: int, names: list[str] | None = None) -> list[Surgeon]:
    """``count`` surgeons with skills spread over [0.05, 0.95] (stratified, shuffled)."""
    edges = np.linspace(0.05, 0.95, count + 1)
    skills = rng.uniform(edges[:-1], edges[1:])
    rng.shuffle(skills)
    names = names or [f"S{k + 1:02d}" for k in range(count)]
    out = []
    for k in range(count):
        s = float(skills[k])
        claimed = s + rng.normal(0, 0.1)
        level = "N" if claimed < 0.4 else ("I" if claimed < 0.7 else "E")
        out.append(Surgeon(k, names[k], round(s, 4), level))
    return out


@dataclasses.dataclass(frozen=True)
class SkillProfile:
    """Skill components of one surgeon (or one trial) in [0, 1]; see the module docstring."""

    economy: float
    smoothness: float
    flow: float
    handling: float

    @classmethod
    def uniform(cls, skill: float) -> SkillProfile:
        """Every component equal to ``skill`` (what :meth:`MotionStyle.from_skill` assumes)."""
        return cls(skill, skill, skill, skill)

    @classmethod
    def of_surgeon(cls, surgeon: Surgeon, rng: np.random.Generator) -> SkillProfile:
        """The surgeon's persistent profile: latent skill + N(0, COMPONENT_SD) per component, clipped."""
        dev = rng.normal(0.0, COMPONENT_SD, len(COMPONENTS))
        return cls(*(float(np.clip(surgeon.skill + d, 0.0, 1.0)) for d in dev))

    def trial(self, rng: np.random.Generator, sd: float = BENCH_TRIAL_SD) -> SkillProfile:
        """This profile on one day: an independent N(0, sd) offset per component, clipped."""
        d = rng.normal(0.0, sd, len(COMPONENTS))
        return SkillProfile(*(float(np.clip(v + e, 0.0, 1.0)) for v, e in zip(self.values(), d, strict=True)))

    def values(self) -> tuple[float, ...]:
        return tuple(getattr(self, c) for c in COMPONENTS)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values()))


@dataclasses.dataclass
class SkillMetrics:
    """Motion metrics measured on the generated trajectories of one video."""

    seconds_per_goal: float
    path_ratio: float
    log_jerk: float
    tremor: float  # RMS high-frequency residual, as a fraction of the world size
    idle_fraction: float
    out_of_view_fraction: float
    errors_per_goal: float
    corrections_per_goal: float
    errors: int
    kind: str = "lap"

    def goodness(self) -> dict[str, float]:
        """Per metric, 0 at the novice reference value, 1 at the expert one (clipped)."""
        g = {}
        for name, (bad, good) in METRIC_REFS[self.kind].items():
            g[name] = float(np.clip((getattr(self, name) - bad) / (good - bad), 0.0, 1.0))
        return g


@dataclasses.dataclass
class BenchMetrics(SkillMetrics):
    """Bench-trial metrics: the common ones plus the damage left on the pad."""

    damage_per_minute: float = 0.0  # stains (slips + tears) per minute of trial
    damage: int = 0
    kind: str = "bench"


@dataclasses.dataclass
class SkillScores:
    """Rater-like scores of one trial."""

    osats: dict[str, int]
    grs: int
    mgears: dict[str, int]
    mgears_total: int


def _rate(
    goodness: dict[str, float], groups: dict[str, tuple[str, ...]], rng: np.random.Generator
) -> dict[str, int]:
    out = {}
    for item, metrics in groups.items():
        g = float(np.mean([goodness[m] for m in metrics]))
        out[item] = int(np.clip(np.round(1 + 4 * g + rng.normal(0, RATER_SD)), 1, 5))
    return out


def score(metrics: SkillMetrics, rng: np.random.Generator) -> SkillScores:
    """OSATS items + GRS and M-GEARS items + total from measured metrics, with rater noise."""
    g = metrics.goodness()
    bench = isinstance(metrics, BenchMetrics)
    osats = _rate(g, BENCH_OSATS_GROUPS if bench else OSATS_GROUPS, rng)
    mgears = _rate(g, BENCH_MGEARS_GROUPS if bench else MGEARS_GROUPS, rng)
    return SkillScores(osats, sum(osats.values()), mgears, sum(mgears.values()))


def measure(
    tips: list[np.ndarray],
    present: list[np.ndarray],
    fps: float,
    world_size: float,
    goals: int,
    stats: list,
    out_of_view: float,
    acting: np.ndarray,
    kind: str,
) -> SkillMetrics:
    """Metrics from per-slot tip paths (world px) and the builders' stats.

    * seconds_per_goal: time not spent acting (transits, pauses, errors, tool changes) per goal,
      where ``acting`` marks the frames in which the driving hand(s) perform the planned action;
    * path_ratio: travelled tip path of the inserted instruments / straight goal-to-goal distance;
    * log_jerk: log10 of the mean squared third derivative of the tip path (px/s^3)^2;
    * tremor: RMS of the path minus its 5-frame moving average, over the world size;
    * idle_fraction, errors, corrections: from the builders' records.
    """
    frames = max(len(tips[0]), 1)
    path, jerk, trem = 0.0, [], []
    kernel = np.ones(5) / 5
    for tip, on in zip(tips, present, strict=False):
        p = tip[on].astype(np.float64)
        if len(p) < 8:
            continue
        d = np.diff(p, axis=0)
        path += float(np.linalg.norm(d, axis=1).sum())
        j = np.diff(p, n=3, axis=0) * fps**3
        jerk.append(float((j**2).sum(1).mean()))
        smooth = np.stack([np.convolve(p[:, k], kernel, mode="same") for k in range(2)], 1)
        trem.append(float(np.sqrt(((p - smooth)[3:-3] ** 2).sum(1).mean())))
    straight = max(sum(s.straight for s in stats), 1e-6)
    goals = max(goals, 1)
    return SkillMetrics(
        seconds_per_goal=float((~acting).sum()) / fps / goals,
        path_ratio=path / straight,
        log_jerk=float(np.log10(max(np.mean(jerk) if jerk else 1.0, 1.0))),
        tremor=float(np.mean(trem) if trem else 0.0) / world_size,
        idle_fraction=sum(s.pause_frames for s in stats) / (frames * len(stats)),
        out_of_view_fraction=float(out_of_view),
        errors_per_goal=sum(s.errors for s in stats) / goals,
        corrections_per_goal=sum(s.corrections + s.detours for s in stats) / goals,
        errors=int(sum(s.errors for s in stats)),
        kind=kind,
    )
