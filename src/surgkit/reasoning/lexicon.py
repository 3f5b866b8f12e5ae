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
    "scissors": "pair of curved blades",
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

# CVS criteria as numbered in reasoning records (labels.cvs c1/c2/c3, answers "C1 yes, C2 no, C3 yes"):
# the Endoscapes2023 numbering (its annotation protocol: 1 = two-structure criterion, 2 = hepatocystic
# triangle criterion, 3 = cystic plate criterion), which Surg-R1's Endoscapes benchmark (Crit-1/2/3)
# uses. surgkit.vocab.CVS_CRITERIA is the Cholec80-CVS column order; builders map by name.
CVS_NUMBERING: dict[str, str] = {"c1": "two_structures", "c2": "hepatocystic_triangle", "c3": "cystic_plate"}

# Template clauses per criterion name: (met, not met).
CVS_CLAUSES: dict[str, tuple[str, str]] = {
    "two_structures": (
        "two tubular structures are seen entering the gallbladder",
        "two tubular structures entering the gallbladder are not yet clearly seen",
    ),
    "hepatocystic_triangle": (
        "the hepatocystic triangle is cleared of fat and fibrous tissue",
        "the hepatocystic triangle is not yet cleared of fat and fibrous tissue",
    ),
    "cystic_plate": (
        "the lower part of the gallbladder is separated from the cystic plate",
        "the lower part of the gallbladder is not yet separated from the cystic plate",
    ),
}


def readable(name: str) -> str:
    """'cystic_plate' -> 'cystic plate'; 'specimenbag' -> 'specimen bag'."""
    return "specimen bag" if name == "specimenbag" else name.replace("_", " ")


# ------------------------------------------------------------------------------ surface forms
# What the chain parser (statements.py) accepts as a mention of each entity, beyond its readable
# name. Generic words ("forceps", "vessel", "instrument") are deliberately absent: they name no
# particular entity. A phrase shared by two vocabularies (CholecT50 "bipolar", EndoVis
# "bipolar_forceps") resolves to both; a mention is true when either is present.
INSTRUMENT_FORMS: dict[str, tuple[str, ...]] = {
    "grasper": ("grasper", "graspers", "grasping forceps", "atraumatic grasper"),
    "bipolar": ("bipolar", "bipolar forceps", "bipolar grasper"),
    "hook": ("hook", "monopolar hook", "l hook", "electrocautery hook", "diathermy hook"),
    "scissors": ("scissors", "scissor", "laparoscopic scissors"),
    "clipper": ("clipper", "clip applier", "clip applicator", "clip applying forceps"),
    "irrigator": ("irrigator", "suction irrigator", "irrigation cannula", "aspirator", "suction irrigation"),
    "specimenbag": ("specimen bag", "specimenbag", "retrieval bag", "endobag"),
    "bipolar_forceps": ("bipolar forceps", "bipolar"),
    "prograsp_forceps": ("prograsp forceps", "prograsp"),
    "large_needle_driver": ("large needle driver", "needle driver", "needle holder"),
    "monopolar_curved_scissors": ("monopolar curved scissors", "curved scissors"),
    "ultrasound_probe": ("ultrasound probe", "ultrasound transducer"),
    "suction_instrument": ("suction instrument", "suction cannula"),
    "clip_applier": ("clip applier", "clip applicator"),
}
TISSUE_FORMS: dict[str, tuple[str, ...]] = {
    "gallbladder": ("gallbladder", "gall bladder"),
    "cystic_plate": ("cystic plate", "liver bed"),
    "cystic_duct": ("cystic duct",),
    "cystic_artery": ("cystic artery",),
    "cystic_pedicle": ("cystic pedicle",),
    "blood_vessel": ("blood vessel", "blood vessels"),
    "fluid": ("fluid", "blood pool", "bile"),
    "abdominal_wall_cavity": ("abdominal wall cavity", "abdominal wall"),
    "liver": ("liver",),
    "adhesion": ("adhesion", "adhesions"),
    "omentum": ("omentum",),
    "peritoneum": ("peritoneum",),
    "gut": ("gut", "bowel", "intestine"),
    "specimen_bag": ("specimen bag",),
    "kidney": ("kidney",),
}
# Verb -> the words that state it (inflections and plain synonyms). "acting" is not a verb here:
# "not acting" / "idle" is parsed as the null verb. Forms that are also common nouns ("clip",
# "clips", "pack") are left out: "loaded with metal clips" states no act.
VERB_FORMS: dict[str, tuple[str, ...]] = {
    "grasp": ("grasp", "grasps", "grasping", "grasped", "holding", "holds"),
    "retract": ("retract", "retracts", "retracting", "retracted", "retraction of", "pulling", "lifting"),
    "dissect": ("dissect", "dissects", "dissecting", "dissected", "dissection of"),
    "coagulate": (
        "coagulate",
        "coagulates",
        "coagulating",
        "coagulated",
        "coagulation of",
        "cauterizing",
        "cauterising",
        "cauterize",
    ),
    "clip": ("clipping", "clipped", "applying clips to", "applies clips to", "placing clips on"),
    "cut": ("cut", "cuts", "cutting", "dividing", "divides", "transecting", "transects"),
    "aspirate": ("aspirate", "aspirates", "aspirating", "aspirated", "suctioning", "sucking"),
    "irrigate": ("irrigate", "irrigates", "irrigating", "irrigated", "rinsing", "washing"),
    "pack": ("packs", "packing", "packed", "bagging"),
}
NULL_VERB_FORMS: tuple[str, ...] = (
    "visible but not acting",
    "not acting",
    "idle",
    "not interacting",
    "inactive",
)
# EndoVis18-VQLA instrument states (VQLA answer classes) and how a CholecT50 verb names the same act.
STATE_FORMS: dict[str, tuple[str, ...]] = {
    "Idle": ("idle",),
    "Grasping": ("grasping",),
    "Retraction": ("retraction", "retracting"),
    "Tissue_Manipulation": ("tissue manipulation", "manipulating tissue", "manipulating the tissue"),
    "Tool_Manipulation": ("tool manipulation", "manipulating a tool", "manipulating the tool"),
    "Cutting": ("cutting",),
    "Cauterization": ("cauterization", "cauterisation", "cauterizing"),
    "Suction": ("suction", "suctioning"),
    "Looping": ("looping",),
    "Suturing": ("suturing",),
    "Clipping": ("clipping",),
    "Staple": ("staple", "stapling"),
    "Ultrasound_Sensing": ("ultrasound sensing",),
}
# Critical-view-of-safety criteria by name (surgkit.vocab.CVS_CRITERIA) -> phrases that name them.
CVS_FORMS: dict[str, tuple[str, ...]] = {
    "two_structures": ("two tubular structures", "two structures", "only two structures"),
    "hepatocystic_triangle": (
        "hepatocystic triangle",
        "calot triangle",
        "calot's triangle",
        "triangle of calot",
    ),
    "cystic_plate": ("cystic plate", "lower part of the gallbladder", "lower third of the gallbladder"),
}
