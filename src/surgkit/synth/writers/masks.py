"""Per-frame masks as PNG at 1 fps::

    masks/video01/000025_instance.png   uint8, 0 background, k + 1 for instrument slot k
    masks/video01/000025_class.png      uint8, 0 background, CholecT50 instrument id + 1
    masks/video01/000025_anatomy.png    uint8, 0 outside the view, CholecT50 target id + 1 (under the tools)

File names carry the 25-fps frame number. Bench (JIGSAWS) trials are written under
``masks/<trial>/`` with frame numbers at 30 fps; their anatomy values index ``BENCH_LABELS``.
"""

from __future__ import annotations

from typing import Any

from surgkit.synth.writers.base import LayoutWriter, sampled, write_png


class MasksWriter(LayoutWriter):
    name = "masks"
    kinds = frozenset({"lap", "bench"})
    description = (
        "instance/class/anatomy masks as PNG at 1 fps: masks/<video>/<frame>_{instance,class,anatomy}.png"
    )

    def begin(self, plan) -> None:
        self.dir = self.root / "masks" / plan.name
        self.fps = plan.fps
        self.frames = 0

    def frame(self, t, rgb, truth) -> None:
        if self.replay or not sampled(t, self.fps):
            return
        write_png(self.dir / f"{t:06d}_instance.png", truth.instance_mask)
        write_png(self.dir / f"{t:06d}_class.png", truth.class_mask)
        write_png(self.dir / f"{t:06d}_anatomy.png", truth.anatomy_mask)
        self.frames += 1

    def end(self, plan) -> None:
        self.count += 1

    def finish(self) -> dict[str, Any]:
        return {"path": "masks", "videos": self.count, "fps": 1}
