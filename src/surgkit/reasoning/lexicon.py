"""Fixed lexicons behind the deterministic chains of thought (spec reasoning §1.3).

Every sentence of a template chain is derived from a frame's annotations through these tables;
nothing else is invented. The tables are domain knowledge (appearance of instruments and tissues,
typical evidence per Cholec80 phase) written for surgkit, not copied from any paper.
"""

from __future__ import annotations

from surgkit.vocab import CHOLEC80_PHASES, INSTRUMENTS, TARGETS

# EndoVis-18 instrument names as they appear in the VQLA questions.
ENDOVIS_INSTRUMENTS: tuple[str, ...] = (
    "bipolar_forceps",
    "prograsp_forceps",
    "large_needle_driver",
    "monopolar_curved_scissors",
    "ultrasound_probe",
    "suction_instrument",
    "clip_applier",
)
ALL_INSTRUMENTS: tuple[str, ...] = INSTRUMENTS + ("specimenbag",) + ENDOVIS_INSTRUMENTS

INSTRUMENT_APPEARANCE: dict[str, str] = {
    "grasper": "jawed atraumatic instrument",
    "bipolar": "two-tipped insulated forceps",
    "hook": "L-shaped monopolar electrode",
    "scissors": "curved cutting blade pair",
    "clipper": "applicator loaded with metal clips",
    "irrigator": "blunt suction-irrigation cannula",
    "specimenbag": "translucent retrieval pouch",
    "bipolar_forceps": "two-tipped insulated forceps",
    "prograsp_forceps": "fenestrated robotic jaws",
    "large_needle_driver": "robotic needle holder",
    "monopolar_curved_scissors": "curved robotic blades",
    "ultrasound_probe": "flat drop-in transducer",
    "suction_instrument": "slim suction cannula",
    "clip_applier": "robotic applicator loaded with clips",
}

TISSUE_APPEARANCE: dict[str, str] = {
    "gallbladder": "distended greenish-white sac",
    "cystic_plate": "pale fibrous bed",
    "cystic_duct": "narrow tubular structure",
    "cystic_artery": "thin pulsating vessel",
    "cystic_pedicle": "bundle of duct and artery",
    "blood_vessel": "small red vessel",
    "fluid": "pooled fluid",
    "abdominal_wall_cavity": "inner abdominal wall",
    "liver": "dark red-brown surface",
    "adhesion": "fine fibrous band",
    "omentum": "fatty yellow tissue",
    "peritoneum": "thin glistening membrane",
    "gut": "pink bowel loop",
    "specimen_bag": "retrieval pouch",
    "kidney": "smooth brownish-red parenchyma",
}
TISSUES: tuple[str, ...] = tuple(t for t in TARGETS if t != "null_target") + ("kidney",)

VERB_ING: dict[str, str] = {
    "grasp": "grasping",
    "retract": "retracting",
    "dissect": "dissecting",
    "coagulate": "coagulating",
    "clip": "clipping",
    "cut": "cutting",
    "aspirate": "aspirating",
    "irrigate": "irrigating",
    "pack": "packing",
}

# Typical evidence per Cholec80 phase: instruments, verbs, targets.
PHASE_KNOWLEDGE: dict[str, dict[str, frozenset[str]]] = {
    "Preparation": {
        "instruments": frozenset({"grasper", "hook"}),
        "verbs": frozenset({"grasp", "retract"}),
        "targets": frozenset({"omentum", "adhesion", "liver", "gut"}),
    },
    "CalotTriangleDissection": {
        "instruments": frozenset({"hook", "bipolar"}),
        "verbs": frozenset({"dissect", "coagulate"}),
        "targets": frozenset({"cystic_duct", "cystic_artery", "cystic_pedicle", "blood_vessel"}),
    },
    "ClippingCutting": {
        "instruments": frozenset({"clipper", "scissors"}),
        "verbs": frozenset({"clip", "cut"}),
        "targets": frozenset({"cystic_duct", "cystic_artery"}),
    },
    "GallbladderDissection": {
        "instruments": frozenset({"hook"}),
        "verbs": frozenset({"dissect"}),
        "targets": frozenset({"cystic_plate", "gallbladder"}),
    },
    "GallbladderPackaging": {
        "instruments": frozenset({"specimenbag"}),
        "verbs": frozenset({"pack"}),
        "targets": frozenset({"specimen_bag"}),
    },
    "CleaningCoagulation": {
        "instruments": frozenset({"irrigator", "bipolar"}),
        "verbs": frozenset({"aspirate", "irrigate", "coagulate"}),
        "targets": frozenset({"fluid", "abdominal_wall_cavity", "blood_vessel"}),
    },
    "GallbladderRetraction": {
        "instruments": frozenset({"specimenbag"}),
        "verbs": frozenset({"retract"}),
        "targets": frozenset({"specimen_bag"}),
    },
}
assert set(PHASE_KNOWLEDGE) == set(CHOLEC80_PHASES)

PHASE_READABLE: dict[str, str] = {
    "Preparation": "preparation",
    "CalotTriangleDissection": "Calot triangle dissection",
    "ClippingCutting": "clipping and cutting",
    "GallbladderDissection": "gallbladder dissection",
    "GallbladderPackaging": "gallbladder packaging",
    "CleaningCoagulation": "cleaning and coagulation",
    "GallbladderRetraction": "gallbladder retraction",
}

# CVS clauses per criterion (surgkit.vocab.CVS_CRITERIA order: c1, c2, c3).
CVS_CLAUSES: dict[str, tuple[str, str]] = {
    "c1": (
        "two tubular structures are seen entering the gallbladder",
        "two tubular structures entering the gallbladder are not yet clearly seen",
    ),
    "c2": (
        "the lower part of the gallbladder is separated from the cystic plate",
        "the lower part of the gallbladder is not yet separated from the cystic plate",
    ),
    "c3": (
        "the hepatocystic triangle is cleared of fat and fibrous tissue",
        "the hepatocystic triangle is not yet cleared of fat and fibrous tissue",
    ),
}


def readable(name: str) -> str:
    """'cystic_plate' -> 'cystic plate'; 'specimenbag' -> 'specimen bag'."""
    return "specimen bag" if name == "specimenbag" else name.replace("_", " ")
