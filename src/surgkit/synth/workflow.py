"""Workflow grammars: Cholec80 phases with their actions, and JIGSAWS gesture sequences.

**Phases.** The seven Cholec80 phases run in order 0 → 4; the tail is one of
``5, 6`` (most videos), ``6, 5`` or ``6`` alone, as in Cholec80 where cleaning/coagulation and
gallbladder retraction swap or cleaning is skipped. Relative phase lengths follow the Cholec80
mean phase durations (Twinanda et al., EndoNet, 2017: about 125, 954, 168, 857, 98, 178 and 83 s),
with per-video log-normal jitter, subject to a minimum number of actions per phase.

**Actions.** Each phase has a table of triplets for the operating (right) hand and for the
assisting (left) hand, taken from the 100 CholecT50 triplets (:data:`surgkit.vocab.TRIPLET_COMPONENTS`).
Clipping and cutting is scripted: two clips on the duct, two on the artery, then the cuts.

**Gestures.** JIGSAWS gestures G1..G15 (Gao et al., 2014) with a per-task grammar.
"""

from __future__ import annotations

import numpy as np

from surgkit.vocab import INSTRUMENTS, TARGETS, TRIPLET_ID, VERBS

PHASE_MEAN_SECONDS = (125.0, 954.0, 168.0, 857.0, 98.0, 178.0, 83.0)
PHASE_TAILS: tuple[tuple[tuple[int, ...], float], ...] = (((5, 6), 0.7), ((6, 5), 0.15), ((6,), 0.15))
ALLOWED_TRANSITIONS: frozenset[tuple[int, int]] = frozenset(
    {(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (4, 6), (6, 5)}
)
MIN_ACTIONS = (1, 2, 6, 2, 1, 2, 1)


def triplet(instrument: str, verb: str, target: str) -> int:
    """CholecT50 triplet id of named components (KeyError if the triplet is not one of the 100)."""
    key = (INSTRUMENTS.index(instrument), VERBS.index(verb), TARGETS.index(target))
    return TRIPLET_ID[key]


def _t(spec: str) -> int:
    return triplet(*spec.split(","))


# Operating hand (right port) and assisting hand (left port) triplets per phase.
RIGHT_ACTIONS: tuple[tuple[int, ...], ...] = (
    (_t("hook,dissect,omentum"), _t("hook,dissect,peritoneum")),
    (
        _t("hook,dissect,cystic_duct"),
        _t("hook,dissect,cystic_artery"),
        _t("hook,dissect,cystic_plate"),
        _t("hook,dissect,gallbladder"),
        _t("hook,coagulate,cystic_artery"),
    ),
    (),  # scripted, see CLIPPING_SCRIPT
    (
        _t("hook,dissect,gallbladder"),
        _t("hook,dissect,cystic_plate"),
        _t("hook,coagulate,liver"),
        _t("hook,coagulate,blood_vessel"),
    ),
    (_t("grasper,pack,gallbladder"),),
    (
        _t("bipolar,coagulate,liver"),
        _t("bipolar,coagulate,blood_vessel"),
        _t("irrigator,aspirate,fluid"),
        _t("irrigator,irrigate,liver"),
    ),
    (_t("grasper,grasp,specimen_bag"),),
)
LEFT_ACTIONS: tuple[tuple[int, ...], ...] = (
    (_t("grasper,retract,gallbladder"), _t("grasper,retract,omentum"), _t("grasper,grasp,gallbladder")),
    (_t("grasper,retract,gallbladder"), _t("grasper,grasp,cystic_pedicle"), _t("grasper,retract,liver")),
    (_t("grasper,retract,gallbladder"), _t("grasper,grasp,gallbladder")),
    (_t("grasper,retract,gallbladder"), _t("grasper,retract,liver")),
    (_t("grasper,grasp,specimen_bag"),),
    (_t("grasper,retract,liver"), _t("grasper,retract,omentum")),
    (),
)
CLIPPING_SCRIPT: tuple[int, ...] = (
    _t("clipper,clip,cystic_duct"),
    _t("clipper,clip,cystic_duct"),
    _t("clipper,clip,cystic_artery"),
    _t("clipper,clip,cystic_artery"),
    _t("scissors,cut,cystic_duct"),
    _t("scissors,cut,cystic_artery"),
)
# one clip per structure: used by the tiny preset to keep test videos short
SHORT_CLIPPING_SCRIPT: tuple[int, ...] = CLIPPING_SCRIPT[1:3] + CLIPPING_SCRIPT[4:]
SHORT_MIN_ACTIONS = (1, 1, 4, 1, 1, 1, 1)

# How each verb moves the tip while acting: (pattern, amplitude as a fraction of the world size).
VERB_MOTION: dict[str, tuple[str, float]] = {
    "grasp": ("close", 0.0),
    "retract": ("pull", 0.025),
    "dissect": ("stroke", 0.01),
    "coagulate": ("stroke", 0.004),
    "clip": ("close", 0.0),
    "cut": ("close", 0.0),
    "aspirate": ("static", 0.0),
    "irrigate": ("stroke", 0.004),
    "pack": ("pull", 0.02),
    "null_verb": ("static", 0.0),
}
SMOKE_VERBS = frozenset({VERBS.index("dissect"), VERBS.index("coagulate")})
SMOKE_INSTRUMENTS = frozenset({INSTRUMENTS.index("hook"), INSTRUMENTS.index("bipolar")})


def phase_sequence(rng: np.random.Generator) -> tuple[int, ...]:
    """One draw of the phase grammar: 0,1,2,3,4 then a tail."""
    tails, probs = zip(*PHASE_TAILS, strict=False)
    tail = tails[int(rng.choice(len(tails), p=np.asarray(probs)))]
    return (0, 1, 2, 3, 4) + tail


def is_valid_phase_order(phases: np.ndarray) -> bool:
    """True if a per-frame phase sequence follows the grammar (each phase once, allowed transitions)."""
    runs = [int(phases[0])] + [int(b) for a, b in zip(phases[:-1], phases[1:], strict=False) if a != b]
    if len(set(runs)) != len(runs) or runs[0] != 0:
        return False
    return all((a, b) in ALLOWED_TRANSITIONS for a, b in zip(runs[:-1], runs[1:], strict=False))


def phase_action_counts(
    rng: np.random.Generator,
    phases: tuple[int, ...],
    seconds: float,
    action_seconds: float,
    minimum: tuple[int, ...] = MIN_ACTIONS,
) -> dict[int, int]:
    """Operating-hand action count per phase, proportional to jittered Cholec80 mean durations."""
    w = np.array([PHASE_MEAN_SECONDS[p] for p in phases]) * rng.lognormal(0, 0.3, len(phases))
    budget = seconds / action_seconds
    return {p: max(minimum[p], int(round(budget * wi / w.sum()))) for p, wi in zip(phases, w, strict=False)}


# ---------------------------------------------------------------------------------------------
# JIGSAWS gestures (Gao et al. 2014, JIGSAWS); G7 is unused in the released data.
GESTURES: dict[str, str] = {
    "G1": "Reaching for needle with right hand",
    "G2": "Positioning needle",
    "G3": "Pushing needle through tissue",
    "G4": "Transferring needle from left to right",
    "G5": "Moving to center with needle in grip",
    "G6": "Pulling suture with left hand",
    "G8": "Orienting needle",
    "G9": "Using right hand to help tighten suture",
    "G10": "Loosening more suture",
    "G11": "Dropping suture at end and moving to end points",
    "G12": "Reaching for needle with left hand",
    "G13": "Making C loop around right hand",
    "G14": "Reaching for suture with right hand",
    "G15": "Pulling suture with both hands",
}


def gesture_sequence(task: str, rng: np.random.Generator, repeats: int) -> list[tuple[str, int]]:
    """Gestures of one trial as (gesture, stitch index) pairs."""
    seq: list[tuple[str, int]] = []
    if task in ("Suturing", "Needle_Passing"):
        seq += [("G1", 0), ("G5", 0), ("G8", 0)]
        for k in range(repeats):
            seq += [("G2", k), ("G3", k), ("G6", k), ("G4", k)]
            if task == "Suturing" and rng.random() < 0.3:
                seq.append(("G9", k))
            if k < repeats - 1 and rng.random() < 0.4:
                seq.append(("G8", k + 1))
        seq.append(("G11", repeats - 1))
    elif task == "Knot_Tying":
        seq.append(("G1", 0))
        for k in range(repeats):
            seq += [("G12", k), ("G13", k), ("G14", k), ("G15", k)]
        seq.append(("G11", repeats - 1))
    else:
        raise ValueError(f"unknown JIGSAWS task {task!r}")
    return seq
