"""Cholec80 layout (metrics_formats.md section 7.1) and Cholec80-Boxes CSV (section 7.10).

::

    cholec80/videos/video01.mp4                 H.264, 25 fps
    cholec80/phase_annotations/video01-phase.txt  "Frame<TAB>Phase" header, one row per frame, phase by name
    cholec80/tool_annotations/video01-tool.txt    "Frame<TAB>Grasper<TAB>...<TAB>SpecimenBag", every 25 frames
    cholec80_boxes/cholec80_boxes.csv            one row per visible tool box, every 25 frames
    cholec80_boxes/video01/Video_01_00025.png    the 1-Hz frames the rows refer to (<Dir>/<FrameName>)

Tool presence = at least one visible pixel of the instrument (synthetic videos never show a
specimen bag *tool*, so the SpecimenBag column is 0; the bag appears as a CholecT50 target).
Boxes use ``Video_NN_fffff.png`` names with fffff = the 25-fps frame number, top-left x, y plus
width and height in pixels of the rendered frame.
"""

from __future__ import annotations

from typing import Any

from surgkit.synth.writers.base import LayoutWriter, sampled
from surgkit.utils.io import write_text
from surgkit.vocab import CHOLEC80_PHASES, CHOLEC80_TOOLS, INSTRUMENTS

# CholecT50 instrument id -> Cholec80 tool column (same names, capitalised)
TOOL_COLUMN = {i: CHOLEC80_TOOLS.index(name.capitalize()) for i, name in enumerate(INSTRUMENTS)}
BOX_HEADER = "Surgery_num,Dir,FrameName,NumBBox_inFrame,ToolName,BBox_X,BBox_Y,BBox_Width,BBox_Height"


class Cholec80Writer(LayoutWriter):
    name = "cholec80"
    description = "Cholec80: videos/videoNN.mp4 (25 fps), phase_annotations/, tool_annotations/"

    def begin(self, plan) -> None:
        self.dir = self.root / "cholec80"
        self._write = self.open_video(
            self.dir / "videos" / f"{plan.name}.mp4", plan.fps, plan.width, plan.height
        )
        self.phase_rows = ["Frame\tPhase"]
        self.tool_rows = ["Frame\t" + "\t".join(CHOLEC80_TOOLS)]

    def frame(self, t, rgb, truth) -> None:
        self._write(rgb)
        self.phase_rows.append(f"{t}\t{CHOLEC80_PHASES[truth.phase]}")
        if sampled(t, self.plan_fps):
            present = [0] * len(CHOLEC80_TOOLS)
            for inst in truth.instruments:
                present[TOOL_COLUMN[inst.cls]] = 1
            self.tool_rows.append(f"{t}\t" + "\t".join(map(str, present)))

    @property
    def plan_fps(self) -> float:
        return self.world.preset.lap_fps

    def end(self, plan) -> None:
        self.close_video()
        self.put_text(
            self.dir / "phase_annotations" / f"{plan.name}-phase.txt", "\n".join(self.phase_rows) + "\n"
        )
        self.put_text(
            self.dir / "tool_annotations" / f"{plan.name}-tool.txt", "\n".join(self.tool_rows) + "\n"
        )
        self.count += 1

    def abort(self) -> None:
        self.close_video(RuntimeError("aborted"))

    def finish(self) -> dict[str, Any]:
        return {"path": "cholec80", "videos": self.count, "fps": self.plan_fps, "tool_every": 25}


class BoxesWriter(LayoutWriter):
    name = "boxes"
    description = "Cholec80-Boxes-style CSV: cholec80_boxes/cholec80_boxes.csv (1 Hz)"
    shared_state = (*LayoutWriter.shared_state, "rows")

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.rows = [BOX_HEADER]

    def begin(self, plan) -> None:
        self.number = plan.index + 1

    def frame(self, t, rgb, truth) -> None:
        if not sampled(t, self.world.preset.lap_fps):
            return
        fname = f"Video_{self.number:02d}_{t:05d}.png"
        self.put_png(self.root / "cholec80_boxes" / f"video{self.number:02d}" / fname, rgb)
        insts = sorted(truth.instruments, key=lambda i: (i.box[0], i.box[1]))
        for k, inst in enumerate(insts, 1):
            x1, y1, x2, y2 = inst.box
            tool = CHOLEC80_TOOLS[TOOL_COLUMN[inst.cls]]
            self.rows.append(
                f"{self.number},video{self.number:02d},{fname},{k},{tool},{x1},{y1},{x2 - x1},{y2 - y1}"
            )

    def end(self, plan) -> None:
        self.count += 1

    def finish(self) -> dict[str, Any]:
        write_text(self.root / "cholec80_boxes" / "cholec80_boxes.csv", "\n".join(self.rows) + "\n")
        return {
            "path": "cholec80_boxes/cholec80_boxes.csv",
            "videos": self.count,
            "boxes": len(self.rows) - 1,
        }
