"""CholecT50 layout (metrics_formats.md section 7.3).

::

    cholect50/videos/VID01/000000.png     1 fps frames (index = second), out-of-body frames do not occur
    cholect50/labels/VID01.json           categories + annotations keyed by frame id (string)
    cholect50/label_mapping.txt           maps.txt: "# IVT, I, V, T, IV, IT" then one row per triplet

Each annotation is a list of 15-element instance vectors
``[triplet, instrument, score, x, y, w, h, verb, target, score, x, y, w, h, phase]``: one per visible
instrument (an idle one carries its null triplet 94..99 with null_verb/null_target), boxes
normalised by the frame width/height (top-left x, y, w, h; the public release has -1 there):
surgkit fills the instrument box (its visible mask) and the target box (the target's visible
pixels, not under a tool; -1 with score -1 for null_target or fewer than 20 visible pixels).
A frame with no visible instrument carries one vector of -1 with the phase at index 14.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from surgkit.synth.writers.base import LayoutWriter, sampled
from surgkit.utils.io import write_text
from surgkit.vocab import (
    CHOLECT50_PHASES,
    INSTRUMENTS,
    TARGETS,
    TRIPLET_COMPONENTS,
    TRIPLET_NAMES,
    VERBS,
    triplet_map,
)


def categories() -> dict[str, dict[str, str]]:
    return {
        "triplet": {str(k): n for k, n in enumerate(TRIPLET_NAMES)},
        "instrument": {str(k): n for k, n in enumerate(INSTRUMENTS)},
        "verb": {str(k): n for k, n in enumerate(VERBS)},
        "target": {str(k): n for k, n in enumerate(TARGETS)},
        "phase": {str(k): n for k, n in enumerate(CHOLECT50_PHASES)},
    }


MIN_TARGET_PIXELS = 20


def _norm_box(x: int, y: int, w: int, h: int, width: int, height: int) -> list[float]:
    return [round(x / width, 6), round(y / height, 6), round(w / width, 6), round(h / height, 6)]


def target_box(truth, target: int, width: int, height: int) -> list[float]:
    """Normalised (x, y, w, h) of the target's visible pixels (not under a tool), or four -1."""
    if TARGETS[target] == "null_target":
        return [-1, -1, -1, -1]
    region = ((truth.anatomy_mask == target + 1) & (truth.instance_mask == 0)).astype(np.uint8)
    if int(region.sum()) < MIN_TARGET_PIXELS:
        return [-1, -1, -1, -1]
    return _norm_box(*cv2.boundingRect(region), width, height)


def instance_vectors(truth, width: int, height: int) -> list[list[float]]:
    """The 15-element vectors of one frame."""
    if not truth.instruments:
        return [[-1] * 14 + [truth.phase]]
    rows = []
    for inst in sorted(truth.instruments, key=lambda i: (i.triplet, i.slot)):
        i, v, t = TRIPLET_COMPONENTS[inst.triplet]
        x1, y1, x2, y2 = inst.box
        box = _norm_box(x1, y1, x2 - x1, y2 - y1, width, height)
        tbox = target_box(truth, t, width, height)
        rows.append([inst.triplet, i, 1, *box, v, t, 1 if tbox[0] >= 0 else -1, *tbox, truth.phase])
    return rows


class CholecT50Writer(LayoutWriter):
    name = "cholect50"
    description = "CholecT50: videos/VIDnn/000000.png (1 fps), labels/VIDnn.json, label_mapping.txt"

    def begin(self, plan) -> None:
        self.number = plan.index + 1
        self.dir = self.root / "cholect50"
        self.annotations: dict[str, list] = {}
        self.fps = plan.fps

    def frame(self, t, rgb, truth) -> None:
        if not sampled(t, self.fps):
            return
        k = len(self.annotations)
        self.put_png(self.dir / "videos" / f"VID{self.number:02d}" / f"{k:06d}.png", rgb)
        self.annotations[str(k)] = instance_vectors(truth, rgb.shape[1], rgb.shape[0])

    def end(self, plan) -> None:
        doc = {
            "video": self.number,
            "fps": 1,
            "num_frames": len(self.annotations),
            "categories": categories(),
            "annotations": self.annotations,
            "info": {"description": f"surgkit synthetic world, {plan.name}", "source_fps": plan.fps},
            "licenses": [{"name": "CC0 (synthetic)"}],
        }
        self.put_json(self.dir / "labels" / f"VID{self.number:02d}.json", doc, indent=None)
        self.count += 1

    def finish(self) -> dict[str, Any]:
        rows = ["# IVT, I, V, T, IV, IT"] + [",".join(str(int(v)) for v in row) for row in triplet_map()]
        write_text(self.root / "cholect50" / "label_mapping.txt", "\n".join(rows) + "\n")
        return {"path": "cholect50", "videos": self.count, "fps": 1}
