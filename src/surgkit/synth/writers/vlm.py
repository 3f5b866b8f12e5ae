"""Image-caption pairs and VQA records for vision-language work::

    vlm/images/video01_000050.png      sampled frames (every ``VLM_EVERY_SECONDS``; 25-fps frame number)
    vlm/captions.jsonl                 {"image", "video", "frame", "split", "caption", "phase", "triplets", "instruments"}
    vlm/vqa.jsonl                      {"image", "video", "frame", "split", "question", "answer", "answer_type", "box"}

Captions are templated from the exact ground truth (phase, triplets, smoke). VQA answer types:
``phase`` (Cholec80 phase name), ``count``, ``presence`` (yes/no), ``instruments`` (comma-separated
sorted names or "none"), ``verb`` and ``target`` (CholecT50 names) and ``location`` (VQLA quadrant,
with the instrument box normalised to [0, 1] as [x1, y1, x2, y2]), ``cvs`` (yes/no, Calot phase).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from surgkit.synth.writers.base import LayoutWriter, sampled
from surgkit.synth.writers.vqla import quadrant
from surgkit.utils.io import to_json, write_text
from surgkit.vocab import CHOLEC80_PHASES, INSTRUMENTS, TARGETS, TRIPLET_COMPONENTS, TRIPLET_NAMES, VERBS

VLM_EVERY_SECONDS = 2
PHASE_WORDS = (
    "preparation",
    "Calot triangle dissection",
    "clipping and cutting",
    "gallbladder dissection",
    "gallbladder packaging",
    "cleaning and coagulation",
    "gallbladder retraction",
)
VERB_ING = {
    "grasp": "grasps",
    "retract": "retracts",
    "dissect": "dissects",
    "coagulate": "coagulates",
    "clip": "clips",
    "cut": "cuts",
    "aspirate": "aspirates",
    "irrigate": "irrigates",
    "pack": "packs",
}


def _words(name: str) -> str:
    return name.replace("_", " ")


def caption(truth, rng: np.random.Generator) -> str:
    """A one- or two-sentence description of the frame from its ground truth."""
    phase = PHASE_WORDS[truth.phase]
    acts, idle = [], []
    for inst in sorted(truth.instruments, key=lambda i: i.slot):
        i, v, t = TRIPLET_COMPONENTS[inst.triplet]
        if VERBS[v] == "null_verb":
            idle.append(f"the {INSTRUMENTS[i]}")
        else:
            acts.append(f"the {INSTRUMENTS[i]} {VERB_ING[VERBS[v]]} the {_words(TARGETS[t])}")
    opener = ("Laparoscopic cholecystectomy during", "Endoscopic view of", "Cholecystectomy,")[
        int(rng.integers(3))
    ]
    text = f"{opener} {phase}"
    if acts:
        text += ": " + " and ".join(acts)
    elif not truth.instruments:
        text += ", no instrument in view"
    text += "."
    if idle:
        text += f" {' and '.join(idle).capitalize()} {'is' if len(idle) == 1 else 'are'} idle."
    if truth.smoke > 0.3:
        text += " Surgical smoke obscures part of the view."
    return text


def vqa_records(truth, width: int, height: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    names = sorted({INSTRUMENTS[i.cls] for i in truth.instruments})
    recs = [
        {
            "question": "What surgical phase is shown?",
            "answer": CHOLEC80_PHASES[truth.phase],
            "answer_type": "phase",
        },
        {
            "question": "How many instruments are visible?",
            "answer": str(len(truth.instruments)),
            "answer_type": "count",
        },
        {
            "question": "Which instruments are visible?",
            "answer": ", ".join(names) or "none",
            "answer_type": "instruments",
        },
    ]
    probe = INSTRUMENTS[int(rng.integers(len(INSTRUMENTS)))]
    recs.append(
        {
            "question": f"Is a {probe} visible?",
            "answer": "yes" if probe in names else "no",
            "answer_type": "presence",
        }
    )
    for inst in sorted(truth.instruments, key=lambda i: i.slot):
        _, v, t = TRIPLET_COMPONENTS[inst.triplet]
        name = INSTRUMENTS[inst.cls]
        x1, y1, x2, y2 = inst.box
        box = [round(x1 / width, 4), round(y1 / height, 4), round(x2 / width, 4), round(y2 / height, 4)]
        recs.append(
            {"question": f"What is the {name} doing?", "answer": VERBS[v], "answer_type": "verb", "box": box}
        )
        recs.append(
            {
                "question": f"Which structure is the {name} acting on?",
                "answer": TARGETS[t],
                "answer_type": "target",
                "box": box,
            }
        )
        recs.append(
            {
                "question": f"Where is the {name} located?",
                "answer": quadrant(inst.box, width, height),
                "answer_type": "location",
                "box": box,
            }
        )
    if truth.phase == 1:
        ok = bool(np.all(np.asarray(truth.cvs) >= 0.5))
        recs.append(
            {
                "question": "Is the critical view of safety achieved?",
                "answer": "yes" if ok else "no",
                "answer_type": "cvs",
            }
        )
    for r in recs:
        r.setdefault("box", None)
    return recs


class VlmWriter(LayoutWriter):
    name = "vlm"
    description = "image-caption pairs and VQA records: vlm/{images/,captions.jsonl,vqa.jsonl}"
    shared_state = (*LayoutWriter.shared_state, "captions", "vqa")

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.captions: list[str] = []
        self.vqa: list[str] = []

    def begin(self, plan) -> None:
        self.plan = plan
        self.split = self.split_of(plan.index + 1)

    def frame(self, t, rgb, truth) -> None:
        p = self.plan
        if not sampled(t, p.fps, 1.0 / VLM_EVERY_SECONDS):
            return
        image = f"images/{p.name}_{t:06d}.png"
        self.put_png(self.root / "vlm" / image, rgb)
        rng = np.random.default_rng([self.world.seed, 11, p.index, t])
        base = {"image": image, "video": p.name, "frame": t, "split": self.split}
        self.captions.append(
            to_json(
                {
                    **base,
                    "caption": caption(truth, rng),
                    "phase": CHOLEC80_PHASES[truth.phase],
                    "triplets": [TRIPLET_NAMES[k] for k in truth.triplets],
                    "instruments": sorted({INSTRUMENTS[i.cls] for i in truth.instruments}),
                },
                indent=None,
            )
        )
        for rec in vqa_records(truth, rgb.shape[1], rgb.shape[0], rng):
            self.vqa.append(to_json({**base, **rec}, indent=None))

    def end(self, plan) -> None:
        self.count += 1

    def finish(self) -> dict[str, Any]:
        write_text(self.root / "vlm" / "captions.jsonl", "".join(s + "\n" for s in self.captions))
        write_text(self.root / "vlm" / "vqa.jsonl", "".join(s + "\n" for s in self.vqa))
        return {
            "path": "vlm",
            "videos": self.count,
            "captions": len(self.captions),
            "vqa": len(self.vqa),
            "every_seconds": VLM_EVERY_SECONDS,
        }
