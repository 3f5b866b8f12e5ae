"""surgkit's own exact ground truth: ``truth/<name>.safetensors`` + ``truth/<name>.json`` per video.

Format ``surgkit-synth-truth/1`` (T frames, K instrument slots; -1 = absent/none):

safetensors arrays (numpy dtypes):
    phase        int8   (T,)       Cholec80 phase id (-1 for bench trials)
    gesture      int8   (T,)       JIGSAWS gesture number k of "Gk" (-1 outside gestures / lap videos)
    camera       float32 (T, 3)    camera centre x, y in world px and zoom
    smoke        float32 (T,)      smoke opacity in [0, 1]
    cvs          float32 (T, 3)    CVS criteria, mean of 3 annotators ({0, 1/3, 2/3, 1})
    exposure     float32 (T, 3)    visible exposure of the 3 CVS regions in [0, 1]
    slot_class   int8   (T, K)     inserted instrument class (CholecT50 id), -1 not inserted
    slot_visible uint8  (T, K)     1 if any pixel of the instrument is visible
    slot_box     int32  (T, K, 4)  x1, y1, x2, y2 (exclusive x2, y2) of the visible mask, -1 if not visible
    slot_area    int32  (T, K)     visible mask pixels
    slot_tip     float32 (T, K, 2) tip in screen px (may be outside the frame)
    slot_triplet int16  (T, K)     triplet performed (or the null triplet of a visible idle instrument), -1
    slot_acting  uint8  (T, K)     1 if the slot performs its planned action in contact with the target
    tip_world    float32 (T, K, 2) tip in world px

The JSON sidecar holds the video summary (surgeon, latent skill, OSATS/GRS, M-GEARS, motion
metrics), slot names, phase segments, gestures and error events. Masks are not stored per frame:
``World(seed, preset).render(plan)`` regenerates them exactly (and the ``masks`` layout writes them
at 1 fps as PNG).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from surgkit.synth.writers.base import LayoutWriter
from surgkit.utils.io import save_tensors

FORMAT = "surgkit-synth-truth/1"


class TruthWriter(LayoutWriter):
    name = "truth"
    kinds = frozenset({"lap", "bench"})
    description = "exact per-frame ground truth (safetensors + JSON) for every video"

    def begin(self, plan) -> None:
        n, k = plan.frames, len(plan.slots)
        self.plan = plan
        self.visible = np.zeros((n, k), np.uint8)
        self.box = np.full((n, k, 4), -1, np.int32)
        self.area = np.zeros((n, k), np.int32)
        self.tip = np.full((n, k, 2), np.nan, np.float32)
        self.triplet = np.full((n, k), -1, np.int16)
        self.acting = np.zeros((n, k), np.uint8)
        self.gesture = np.full(n, -1, np.int8)

    def frame(self, t, rgb, truth) -> None:
        for inst in truth.instruments:
            s = inst.slot
            self.visible[t, s] = 1
            self.box[t, s] = inst.box
            self.area[t, s] = inst.area
            self.triplet[t, s] = inst.triplet
            self.acting[t, s] = inst.acting
        if truth.gesture is not None:
            self.gesture[t] = int(truth.gesture[1:])

    def end(self, plan) -> None:
        aff = plan.affines()
        tips_world = np.stack([s.tip for s in plan.slots], 1).astype(np.float64)
        tips = np.einsum("tij,tkj->tki", aff[:, :, :2], tips_world) + aff[:, None, :, 2]
        arrays = {
            "phase": plan.phase.astype(np.int8),
            "gesture": self.gesture,
            "camera": plan.camera.astype(np.float32),
            "smoke": plan.smoke.astype(np.float32),
            "cvs": plan.cvs.astype(np.float32),
            "exposure": plan.exposure.astype(np.float32),
            "slot_class": np.stack([s.cls for s in plan.slots], 1).astype(np.int8),
            "slot_visible": self.visible,
            "slot_box": self.box,
            "slot_area": self.area,
            "slot_tip": tips.astype(np.float32),
            "slot_triplet": self.triplet,
            "slot_acting": self.acting,
            "tip_world": tips_world.astype(np.float32),
        }
        if not self.replay:
            save_tensors(
                self.root / "truth" / f"{plan.name}.safetensors", arrays, metadata={"format": FORMAT}
            )
        self.put_json(self.root / "truth" / f"{plan.name}.json", truth_json(plan))
        self.count += 1

    def finish(self) -> dict[str, Any]:
        return {"path": "truth", "format": FORMAT, "videos": self.count}


def phase_segments(phase: np.ndarray) -> list[dict[str, int]]:
    """Runs of equal phase as {phase, start, end} (end inclusive)."""
    out, start = [], 0
    for t in range(1, len(phase) + 1):
        if t == len(phase) or phase[t] != phase[start]:
            out.append({"phase": int(phase[start]), "start": start, "end": t - 1})
            start = t
    return out


def truth_json(plan) -> dict[str, Any]:
    out = {"format": FORMAT, **plan.summary()}
    out["slots"] = [
        {"index": k, "name": s.name, "depth": s.depth, "port_world": [float(v) for v in s.port]}
        for k, s in enumerate(plan.slots)
    ]
    out["world_size"] = plan.world_size
    if plan.kind == "lap":
        out["phases"] = phase_segments(plan.phase)
    else:
        out["gesture_segments"] = [{"gesture": g, "start": s, "end": e} for s, e, g in plan.gestures]
    out["events"] = plan.events
    return out
