"""``World``: a seeded collection of synthetic surgeons, cholecystectomy videos and JIGSAWS trials.

Every random draw comes from ``numpy.random.default_rng`` seeded with ``[seed, stream, ...]``, so
a video's plan depends only on (seed, preset, its index), not on which other videos were made.
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Iterator

import numpy as np

from surgkit.errors import SurgkitError
from surgkit.synth.bench import plan_bench_trial
from surgkit.synth.lap import plan_lap_video
from surgkit.synth.plan import VideoPlan
from surgkit.synth.render import Renderer
from surgkit.synth.skill import SkillProfile, Surgeon, make_surgeons

JIGSAWS_LETTERS = string.ascii_uppercase[1:]  # B..Z, as JIGSAWS users start at B


@dataclasses.dataclass(frozen=True)
class Preset:
    """Sizes of a world. ``lap_*``: cholecystectomy videos; ``jig_*``: JIGSAWS trials."""

    name: str
    lap_videos: int
    lap_seconds: float  # nominal length; the surgeon's pace changes it
    lap_size: tuple[int, int]  # (width, height)
    lap_tempo: float  # scales the time spent acting (small presets act briefly)
    lap_surgeons: int
    jig_tasks: tuple[str, ...]
    jig_surgeons: int
    jig_trials: int  # super-trials per surgeon (1..5)
    jig_repeats: int  # stitches / knots per trial
    jig_size: tuple[int, int]
    jig_tempo: float = 1.0  # scales the time spent acting in each gesture
    lap_short: bool = False  # one clip per structure, one action minimum per phase
    pace: float = 1.0  # > 1 speeds up all motion (tiny only: short test videos; skill scores then run high)
    lap_fps: float = 25.0
    jig_fps: float = 30.0
    # fixed JIGSAWS trial lengths (s): each surgeon's trials take these lengths in a per-surgeon random
    # order, so length carries no skill (None: a trial lasts until its stitches are done)
    jig_seconds: tuple[float, ...] | None = None


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        "tiny",
        2,
        10.0,
        (128, 128),
        0.25,
        2,
        ("Suturing",),
        3,
        2,
        3,
        (160, 120),
        jig_tempo=0.4,
        lap_short=True,
        pace=2.0,
        jig_seconds=(6.0, 8.0),
    ),
    "demo": Preset(
        "demo",
        6,
        70.0,
        (224, 224),
        0.8,
        4,
        ("Suturing",),
        8,
        5,
        6,
        (320, 240),
        jig_seconds=(20.0, 25.0, 30.0, 35.0, 40.0),
    ),
    "small": Preset(
        "small",
        10,
        120.0,
        (224, 224),
        1.0,
        5,
        ("Suturing", "Knot_Tying", "Needle_Passing"),
        8,
        5,
        6,
        (320, 240),
        jig_seconds=(20.0, 25.0, 30.0, 35.0, 40.0),
    ),
    "full": Preset(
        "full",
        40,
        300.0,
        (320, 240),
        1.0,
        12,
        ("Suturing", "Knot_Tying", "Needle_Passing"),
        8,
        5,
        10,
        (320, 240),
        jig_seconds=(45.0, 60.0, 75.0, 90.0, 105.0),
    ),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise SurgkitError(f"unknown preset '{name}' (choose from {', '.join(PRESETS)})")
    return PRESETS[name]


@dataclasses.dataclass(frozen=True)
class TrialSpec:
    """One JIGSAWS trial to generate."""

    task: str
    surgeon: Surgeon
    trial: int

    @property
    def name(self) -> str:
        return f"{self.task}_{self.surgeon.name}{self.trial:03d}"


class World:
    """A synthetic surgical world: ``World(seed=0, preset="demo")``.

    * ``world.lap_plan(i)`` / ``world.lap_plans()``: cholecystectomy video plans (``video01``...);
    * ``world.trials()`` / ``world.bench_plan(spec)`` / ``world.bench_plans()``: JIGSAWS trials;
    * ``World.render(plan)``: a lazy :class:`~surgkit.synth.render.Renderer` yielding (frame, truth).
    """

    def __init__(
        self,
        seed: int = 0,
        preset: str | Preset = "demo",
        videos: int | None = None,
        jigsaws_surgeons: int | None = None,
    ):
        if int(seed) < 0:
            raise SurgkitError(f"--seed must be a non-negative integer (got {seed})")
        self.seed = int(seed)
        self.preset = get_preset(preset) if isinstance(preset, str) else preset
        if videos is not None:
            if videos < 1:
                raise SurgkitError(f"--videos must be at least 1 (got {videos})")
            self.preset = dataclasses.replace(self.preset, lap_videos=int(videos))
        if jigsaws_surgeons is not None:
            self.preset = dataclasses.replace(self.preset, jig_surgeons=int(jigsaws_surgeons))
        pr = self.preset
        if pr.jig_surgeons > len(JIGSAWS_LETTERS):
            raise SurgkitError(f"at most {len(JIGSAWS_LETTERS)} JIGSAWS surgeons (user letters B..Z)")
        if not 1 <= pr.jig_trials <= 9:
            raise SurgkitError("JIGSAWS trials per surgeon must be 1..9 (the super-trial digit)")
        self.lap_surgeons = make_surgeons(np.random.default_rng([self.seed, 0]), pr.lap_surgeons)
        self.jig_surgeons = make_surgeons(
            np.random.default_rng([self.seed, 1]), pr.jig_surgeons, list(JIGSAWS_LETTERS[: pr.jig_surgeons])
        )

    # -- cholecystectomy videos --------------------------------------------------------------
    def lap_name(self, i: int) -> str:
        return f"video{i + 1:02d}"

    def lap_plan(self, i: int) -> VideoPlan:
        """Plan of cholecystectomy video ``i`` (0-based; named ``video{i+1:02d}``)."""
        pr = self.preset
        surgeon = self.lap_surgeons[i % len(self.lap_surgeons)]
        rng = np.random.default_rng([self.seed, 2, i])
        return plan_lap_video(
            i,
            self.lap_name(i),
            surgeon,
            pr.lap_seconds,
            rng,
            *pr.lap_size,
            fps=pr.lap_fps,
            tempo=pr.lap_tempo,
            pace=pr.pace,
        )

    def lap_plans(self) -> Iterator[VideoPlan]:
        for i in range(self.preset.lap_videos):
            yield self.lap_plan(i)

    # -- JIGSAWS trials ----------------------------------------------------------------------
    def trials(self) -> list[TrialSpec]:
        pr = self.preset
        return [
            TrialSpec(task, s, k)
            for task in pr.jig_tasks
            for s in self.jig_surgeons
            for k in range(1, pr.jig_trials + 1)
        ]

    def skill_profile(self, surgeon: Surgeon) -> SkillProfile:
        """A JIGSAWS surgeon's persistent skill components (the same in every task and trial)."""
        return SkillProfile.of_surgeon(surgeon, np.random.default_rng([self.seed, 4, surgeon.index]))

    def trial_seconds(self, spec: TrialSpec) -> float | None:
        """Length of a fixed-length trial: the preset's levels in a per-(task, surgeon) random order,
        jittered by ±0.5 s; None when the preset has no fixed lengths."""
        levels = self.preset.jig_seconds
        if not levels:
            return None
        ti = ("Suturing", "Knot_Tying", "Needle_Passing").index(spec.task)
        rng = np.random.default_rng([self.seed, 5, ti, spec.surgeon.index])
        order = rng.permutation(len(levels))
        jitter = rng.uniform(-0.5, 0.5, len(levels))
        k = (spec.trial - 1) % len(levels)
        return float(levels[order[k]] + jitter[k])

    def bench_plan(self, spec: TrialSpec) -> VideoPlan:
        pr = self.preset
        ti = ("Suturing", "Knot_Tying", "Needle_Passing").index(spec.task)
        rng = np.random.default_rng([self.seed, 3, ti, spec.surgeon.index, spec.trial])
        return plan_bench_trial(
            spec.surgeon.index,
            spec.task,
            spec.surgeon,
            spec.trial,
            pr.jig_repeats,
            rng,
            *pr.jig_size,
            fps=pr.jig_fps,
            tempo=pr.jig_tempo,
            pace=pr.pace,
            seconds=self.trial_seconds(spec),
            profile=self.skill_profile(spec.surgeon),
        )

    def bench_plans(self) -> Iterator[VideoPlan]:
        for spec in self.trials():
            yield self.bench_plan(spec)

    @staticmethod
    def render(plan: VideoPlan, truth: bool = True) -> Renderer:
        return Renderer(plan, truth=truth)
