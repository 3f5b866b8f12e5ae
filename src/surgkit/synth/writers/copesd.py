"""CoPESD-style instruction data (metrics_formats.md section 7.9)::

    copesd/copesd.json                         LLaVA-style JSON array
    copesd/frames/<video>/<frame>.jpg          the referenced frames (path relative to copesd/)

One sample per sampled frame (every 2 s) with at least one acting instrument. The human turn is a
motion instruction, the gpt turn names each acting instrument followed by its normalised box
``Name[x1, y1, x2, y2]`` (2 decimals), e.g.
``Move the Hook[0.41, 0.37, 0.93, 0.62] to the cystic duct and dissect it.``
Instrument names are the capitalised CholecT50 names (CoPESD's ESD tools do not occur here).
"""

from __future__ import annotations

from typing import Any

from surgkit.synth.writers.base import LayoutWriter, sampled
from surgkit.utils.io import write_json
from surgkit.vocab import INSTRUMENTS, TARGETS, TRIPLET_COMPONENTS, VERBS

EVERY_SECONDS = 2


def _box(inst, width: int, height: int) -> str:
    x1, y1, x2, y2 = inst.box
    return f"[{x1 / width:.2f}, {y1 / height:.2f}, {x2 / width:.2f}, {y2 / height:.2f}]"


def sample(truth, image: str, width: int, height: int) -> dict[str, Any] | None:
    acting = [i for i in sorted(truth.instruments, key=lambda i: i.slot) if i.acting]
    if not acting:
        return None
    asks, answers = [], []
    for inst in acting:
        _, v, t = TRIPLET_COMPONENTS[inst.triplet]
        name, verb, target = INSTRUMENTS[inst.cls].capitalize(), VERBS[v], TARGETS[t].replace("_", " ")
        asks.append(f"use the {name} to {verb} the {target}")
        answers.append(f"Move the {name}{_box(inst, width, height)} to the {target} and {verb} it.")
    human = " and ".join(asks)
    return {
        "image": image,
        "conversations": [
            {"from": "human", "value": human[0].upper() + human[1:] + "."},
            {"from": "gpt", "value": " ".join(answers)},
        ],
    }


class CopesdWriter(LayoutWriter):
    name = "copesd"
    description = "CoPESD-style LLaVA JSON with inline instrument boxes: copesd/copesd.json, copesd/frames/"
    shared_state = (*LayoutWriter.shared_state, "samples")

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.samples: list[dict[str, Any]] = []

    def begin(self, plan) -> None:
        self.plan = plan

    def frame(self, t, rgb, truth) -> None:
        p = self.plan
        if not sampled(t, p.fps, 1.0 / EVERY_SECONDS):
            return
        image = f"frames/{p.name}/{t:06d}.jpg"
        rec = sample(truth, image, rgb.shape[1], rgb.shape[0])
        if rec is not None:
            self.put_jpg(self.root / "copesd" / image, rgb)
            self.samples.append(rec)

    def end(self, plan) -> None:
        self.count += 1

    def finish(self) -> dict[str, Any]:
        write_json(self.root / "copesd" / "copesd.json", self.samples, indent=None)
        return {"path": "copesd/copesd.json", "videos": self.count, "samples": len(self.samples)}
