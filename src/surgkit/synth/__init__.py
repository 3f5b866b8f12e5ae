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

from importlib import import_module
from typing import Any

# Lazy exports: ``surgkit --help`` imports surgkit.synth.cli, which must not pull in OpenCV/SciPy.
_EXPORTS = {
    "LAYOUTS": "surgkit.synth.generate",
    "generate_world": "surgkit.synth.generate",
    "VideoPlan": "surgkit.synth.plan",
    "FrameTruth": "surgkit.synth.render",
    "InstrumentTruth": "surgkit.synth.render",
    "Renderer": "surgkit.synth.render",
    "SkillMetrics": "surgkit.synth.skill",
    "SkillScores": "surgkit.synth.skill",
    "Surgeon": "surgkit.synth.skill",
    "PRESETS": "surgkit.synth.world",
    "Preset": "surgkit.synth.world",
    "TrialSpec": "surgkit.synth.world",
    "World": "surgkit.synth.world",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'surgkit.synth' has no attribute {name!r}")
