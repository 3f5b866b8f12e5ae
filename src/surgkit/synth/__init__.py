"""``surgkit.synth``: a procedural, seeded synthetic surgical world with exact ground truth.

The real datasets (Cholec80, CholecT50, Endoscapes, EndoVis-VQLA, JIGSAWS) are gated, so surgkit
ships this world: laparoscopic cholecystectomy videos and JIGSAWS-like bench-top trials, written in
the **native layouts** of the real datasets so that the same readers serve real and synthetic data.

Python API (no files needed)::

    from surgkit.synth import World

    world = World(seed=0, preset="demo")          # presets: tiny, demo, small, full
    plan = world.lap_plan(0)                       # VideoPlan of "video01": phases, tracks, skill, CVS
    for frame, truth in world.render(plan):        # lazy: one frame at a time
        frame                                      # uint8 (H, W, 3) RGB
        truth.phase, truth.triplets                # Cholec80 phase id, CholecT50 triplet ids
        truth.instance_mask, truth.class_mask      # exact masks of the drawn instruments
        [i.box for i in truth.instruments]         # (x1, y1, x2, y2), exclusive x2/y2
    trial = world.bench_plan(world.trials()[0])    # a JIGSAWS trial, e.g. Suturing_B001
    trial.scores.grs, trial.scores.osats, trial.surgeon.skill

Writing files: :func:`generate_world` (CLI ``surgkit synth``). Formats and known differences from
real data: docs/synth.md.
"""

from surgkit.synth.generate import LAYOUTS, generate_world
from surgkit.synth.plan import VideoPlan
from surgkit.synth.render import FrameTruth, InstrumentTruth, Renderer
from surgkit.synth.skill import SkillMetrics, SkillScores, Surgeon
from surgkit.synth.world import PRESETS, Preset, TrialSpec, World

__all__ = [
    "LAYOUTS",
    "PRESETS",
    "FrameTruth",
    "InstrumentTruth",
    "Preset",
    "Renderer",
    "SkillMetrics",
    "SkillScores",
    "Surgeon",
    "TrialSpec",
    "VideoPlan",
    "World",
    "generate_world",
]
