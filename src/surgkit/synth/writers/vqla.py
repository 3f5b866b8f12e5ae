"""EndoVis18-VQLA layout (metrics_formats.md section 7.8)::

    endovis18_vqla/EndoVis-18-VQA/seq_<n>/left_frames/frame000.png          1 fps frames of video n
    endovis18_vqla/EndoVis-18-VQA/seq_<n>/vqla/label/frame000_QA.txt        "question|answer|x1, y1, x2, y2"

Answers are the 18 Surgical-VQLA classes (:data:`surgkit.vocab.VQLA_ANSWERS`): per visible
instrument a *state* question (its action mapped to the VQLA class, e.g. clip -> Clipping,
hook dissect -> Cauterization, idle -> Idle) and a *location* question (quadrant of the box centre).
Instrument names in questions are the CholecT50 names (the EndoVis18 tools do not occur here).

Box convention: integer pixels, 1-based inclusive, **in the 1280x1024 EndoVis18 frame convention**:
a box (x1, y1, x2, y2) on the W x H rendered frame (exclusive x2, y2) is written as
``(floor(x1 * 1280 / W) + 1, floor(y1 * 1024 / H) + 1, ceil(x2 * 1280 / W), ceil(y2 * 1024 / H))``,
so the legacy metric's normalisation by (1280, 1024) yields the box's true normalised extent.
Frames without any visible instrument get no label file. Splits: world.json ``splits.lap``
(val videos are listed with train: EndoVis18 has train/test only).
"""

from __future__ import annotations

import math
from typing import Any

from surgkit.synth.writers.base import LayoutWriter, sampled
from surgkit.vocab import INSTRUMENTS, TRIPLET_COMPONENTS, VERBS, VQLA_ANSWERS

VQLA_SIZE = (1280, 1024)
VERB_STATE = {
    "grasp": "Grasping",
    "retract": "Retraction",
    "dissect": "Tissue_Manipulation",
    "coagulate": "Cauterization",
    "clip": "Clipping",
    "cut": "Cutting",
    "aspirate": "Suction",
    "irrigate": "Tool_Manipulation",
    "pack": "Tissue_Manipulation",
    "null_verb": "Idle",
}
assert set(VERB_STATE.values()) <= set(VQLA_ANSWERS)


def state_of(triplet: int) -> str:
    i, v, _ = TRIPLET_COMPONENTS[triplet]
    if INSTRUMENTS[i] == "hook" and VERBS[v] == "dissect":
        return "Cauterization"  # monopolar hook dissection is electro-cautery
    return VERB_STATE[VERBS[v]]


def quadrant(box: tuple[int, int, int, int], width: int, height: int) -> str:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return f"{'left' if cx < width / 2 else 'right'}-{'top' if cy < height / 2 else 'bottom'}"


def vqla_box(box: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int]:
    sx, sy = VQLA_SIZE[0] / width, VQLA_SIZE[1] / height
    return (
        math.floor(box[0] * sx) + 1,
        math.floor(box[1] * sy) + 1,
        math.ceil(box[2] * sx),
        math.ceil(box[3] * sy),
    )


def qa_lines(truth, width: int, height: int) -> list[str]:
    lines = []
    for inst in sorted(truth.instruments, key=lambda i: i.slot):
        name = INSTRUMENTS[inst.cls]
        b = ", ".join(str(v) for v in vqla_box(inst.box, width, height))
        lines.append(f"What is the state of {name}?|{state_of(inst.triplet)}|{b}")
        lines.append(f"Where is {name} located?|{quadrant(inst.box, width, height)}|{b}")
    return lines


class VqlaWriter(LayoutWriter):
    name = "vqla"
    description = "EndoVis18-VQLA: endovis18_vqla/EndoVis-18-VQA/seq_<n>/{left_frames,vqla/label}"
    shared_state = (*LayoutWriter.shared_state, "pairs")

    pairs = 0

    def begin(self, plan) -> None:
        self.seq = plan.index + 1
        self.dir = self.root / "endovis18_vqla" / "EndoVis-18-VQA" / f"seq_{self.seq}"
        self.fps = plan.fps
        self.k = 0

    def frame(self, t, rgb, truth) -> None:
        if not sampled(t, self.fps):
            return
        k, self.k = self.k, self.k + 1
        lines = qa_lines(truth, rgb.shape[1], rgb.shape[0])
        if not lines:
            return
        self.put_png(self.dir / "left_frames" / f"frame{k:03d}.png", rgb)
        self.put_text(self.dir / "vqla" / "label" / f"frame{k:03d}_QA.txt", "\n".join(lines) + "\n")
        self.pairs += len(lines)

    def end(self, plan) -> None:
        self.count += 1

    def finish(self) -> dict[str, Any]:
        train = self.splits.get("train", []) + self.splits.get("val", [])
        return {
            "path": "endovis18_vqla/EndoVis-18-VQA",
            "sequences": self.count,
            "qa_pairs": self.pairs,
            "train_sequences": train,
            "test_sequences": self.splits.get("test", []),
            "box_convention": "1-based inclusive pixels scaled to 1280x1024",
        }
