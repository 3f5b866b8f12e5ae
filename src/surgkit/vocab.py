"""Label vocabularies of the surgical datasets surgkit supports.

These are dataset facts (class names, orders, component maps) shared by the synthetic world,
the readers and the metrics. Orders matter: every id below is the one the datasets use.
"""

from __future__ import annotations

import numpy as np

# Cholec80 phases (0-based ids as in Cholec80/TeCNO/SurgVISTA; the Matlab protocol uses id + 1).
CHOLEC80_PHASES: tuple[str, ...] = (
    "Preparation",
    "CalotTriangleDissection",
    "ClippingCutting",
    "GallbladderDissection",
    "GallbladderPackaging",
    "CleaningCoagulation",
    "GallbladderRetraction",
)

# M2CAI16-workflow phases (8 classes, TrocarPlacement first).
M2CAI16_PHASES: tuple[str, ...] = ("TrocarPlacement",) + CHOLEC80_PHASES

# Cholec80 tool annotation columns, in file order.
CHOLEC80_TOOLS: tuple[str, ...] = (
    "Grasper",
    "Bipolar",
    "Hook",
    "Scissors",
    "Clipper",
    "Irrigator",
    "SpecimenBag",
)

# CholecT50 components.
INSTRUMENTS: tuple[str, ...] = ("grasper", "bipolar", "hook", "scissors", "clipper", "irrigator")
VERBS: tuple[str, ...] = (
    "grasp",
    "retract",
    "dissect",
    "coagulate",
    "clip",
    "cut",
    "aspirate",
    "irrigate",
    "pack",
    "null_verb",
)
TARGETS: tuple[str, ...] = (
    "gallbladder",
    "cystic_plate",
    "cystic_duct",
    "cystic_artery",
    "cystic_pedicle",
    "blood_vessel",
    "fluid",
    "abdominal_wall_cavity",
    "liver",
    "adhesion",
    "omentum",
    "peritoneum",
    "gut",
    "specimen_bag",
    "null_target",
)
# CholecT50 phase names as spelled in the label JSON files.
CHOLECT50_PHASES: tuple[str, ...] = (
    "preparation",
    "carlot-triangle-dissection",
    "clipping-and-cutting",
    "gallbladder-dissection",
    "gallbladder-packaging",
    "cleaning-and-coagulation",
    "gallbladder-extraction",
)

NULL_VERB = VERBS.index("null_verb")
NULL_TARGET = TARGETS.index("null_target")

# Triplet id -> (instrument, verb, target), ids 0..99; 94..99 are the null triplets of each instrument.
# Same content as CholecT50's label_mapping.txt / ivtmetrics maps.txt (IV = 10*I + V, IT = 15*I + T).
TRIPLET_COMPONENTS: tuple[tuple[int, int, int], ...] = (
    (0, 2, 1),
    (0, 2, 0),
    (0, 2, 10),
    (0, 0, 3),
    (0, 0, 2),
    (0, 0, 4),
    (0, 0, 1),
    (0, 0, 0),
    (0, 0, 12),
    (0, 0, 8),
    (0, 0, 10),
    (0, 0, 11),
    (0, 0, 13),
    (0, 8, 0),
    (0, 1, 2),
    (0, 1, 4),
    (0, 1, 1),
    (0, 1, 0),
    (0, 1, 12),
    (0, 1, 8),
    (0, 1, 10),
    (0, 1, 11),
    (1, 3, 7),
    (1, 3, 5),
    (1, 3, 3),
    (1, 3, 2),
    (1, 3, 4),
    (1, 3, 1),
    (1, 3, 0),
    (1, 3, 8),
    (1, 3, 10),
    (1, 3, 11),
    (1, 2, 9),
    (1, 2, 3),
    (1, 2, 2),
    (1, 2, 1),
    (1, 2, 0),
    (1, 2, 10),
    (1, 0, 1),
    (1, 0, 8),
    (1, 0, 13),
    (1, 1, 2),
    (1, 1, 4),
    (1, 1, 0),
    (1, 1, 8),
    (1, 1, 10),
    (2, 3, 5),
    (2, 3, 3),
    (2, 3, 2),
    (2, 3, 4),
    (2, 3, 1),
    (2, 3, 0),
    (2, 3, 8),
    (2, 3, 10),
    (2, 5, 5),
    (2, 5, 11),
    (2, 2, 5),
    (2, 2, 3),
    (2, 2, 2),
    (2, 2, 1),
    (2, 2, 0),
    (2, 2, 10),
    (2, 2, 11),
    (2, 1, 0),
    (2, 1, 8),
    (3, 3, 10),
    (3, 5, 9),
    (3, 5, 5),
    (3, 5, 3),
    (3, 5, 2),
    (3, 5, 1),
    (3, 5, 8),
    (3, 5, 10),
    (3, 5, 11),
    (3, 2, 1),
    (3, 2, 0),
    (3, 2, 10),
    (4, 4, 5),
    (4, 4, 3),
    (4, 4, 2),
    (4, 4, 4),
    (4, 4, 1),
    (5, 6, 6),
    (5, 2, 2),
    (5, 2, 4),
    (5, 2, 1),
    (5, 2, 0),
    (5, 2, 10),
    (5, 7, 7),
    (5, 7, 4),
    (5, 7, 8),
    (5, 1, 0),
    (5, 1, 8),
    (5, 1, 10),
    (0, 9, 14),
    (1, 9, 14),
    (2, 9, 14),
    (3, 9, 14),
    (4, 9, 14),
    (5, 9, 14),
)
NUM_TRIPLETS = len(TRIPLET_COMPONENTS)
NULL_TRIPLETS: tuple[int, ...] = tuple(range(94, 100))


def triplet_name(triplet_id: int) -> str:
    """CholecT50 triplet name, e.g. grasper,retract,gallbladder for id 17."""
    i, v, t = TRIPLET_COMPONENTS[triplet_id]
    return f"{INSTRUMENTS[i]},{VERBS[v]},{TARGETS[t]}"


TRIPLET_NAMES: tuple[str, ...] = tuple(triplet_name(k) for k in range(NUM_TRIPLETS))
TRIPLET_ID: dict[tuple[int, int, int], int] = {c: k for k, c in enumerate(TRIPLET_COMPONENTS)}


def triplet_map() -> np.ndarray:
    """The maps.txt table as an int array of shape (100, 6): columns IVT, I, V, T, IV, IT."""
    comp = np.asarray(TRIPLET_COMPONENTS, dtype=np.int64)
    ivt = np.arange(NUM_TRIPLETS, dtype=np.int64)
    iv = 10 * comp[:, 0] + comp[:, 1]
    it = 15 * comp[:, 0] + comp[:, 2]
    return np.column_stack([ivt, comp, iv, it])


# JIGSAWS modified-OSATS items, in meta-file column order; each scored 1-5, GRS = sum (6-30).
JIGSAWS_TASKS: tuple[str, ...] = ("Suturing", "Knot_Tying", "Needle_Passing")
OSATS_ITEMS: tuple[str, ...] = (
    "respect_for_tissue",
    "suture_needle_handling",
    "time_and_motion",
    "flow_of_operation",
    "overall_performance",
    "quality_of_final_product",
)
GRS_RANGE: tuple[int, int] = (6, 30)

# M-GEARS (modified Global Evaluative Assessment of Robotic Skills) domains, each 1-5.
MGEARS_ITEMS: tuple[str, ...] = (
    "depth_perception",
    "bimanual_dexterity",
    "efficiency",
    "force_sensitivity",
    "robotic_control",
)
MGEARS_RANGE: tuple[int, int] = (5, 25)

# Critical view of safety criteria (Strasberg), in the Cholec80-CVS column order. Endoscapes numbers them
# C1 two structures, C2 hepatocystic triangle, C3 cystic plate; its reader maps them here by name.
CVS_CRITERIA: tuple[str, ...] = ("two_structures", "cystic_plate", "hepatocystic_triangle")

# Surgical-VQLA (EndoVis18/17-VQLA) answer classes; index = class id.
VQLA_ANSWERS: tuple[str, ...] = (
    "kidney",
    "Idle",
    "Grasping",
    "Retraction",
    "Tissue_Manipulation",
    "Tool_Manipulation",
    "Cutting",
    "Cauterization",
    "Suction",
    "Looping",
    "Suturing",
    "Clipping",
    "Staple",
    "Ultrasound_Sensing",
    "left-top",
    "right-top",
    "left-bottom",
    "right-bottom",
)
