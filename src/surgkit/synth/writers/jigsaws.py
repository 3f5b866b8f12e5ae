"""JIGSAWS layout (metrics_formats.md section 7.4, skill.md section 1)::

    jigsaws/<Task>/video/<Task>_<U><NNN>_capture1.avi          MPEG-4, 30 fps (left view only)
    jigsaws/<Task>/kinematics/AllGestures/<Task>_<U><NNN>.txt  76 whitespace-separated floats per frame
    jigsaws/<Task>/transcriptions/<Task>_<U><NNN>.txt          "start end Gk", 1-based frames
    jigsaws/<Task>/meta_file_<Task>.txt                        trial<TAB><TAB>N/I/E<TAB>GRS<TAB><TAB>6 items
    jigsaws/Experimental_setup/<Task>/unBalanced/GestureRecognition/{SuperTrialOut,UserOut}/<k>_Out/itr_1/{Train,Test}.txt

Users are letters B, C, ...; UserOut fold k holds out the k-th user (B = 1), SuperTrialOut fold k
the trials whose number ends in k. Split lines are ``<trial>_<start>_<end>.txt`` (6-digit 1-based
annotated frame range), 11 spaces, ``<trial>.txt``.

Kinematics (19 values per manipulator: tool-tip xyz in m, rotation matrix R (9, row-major),
linear velocity xyz, angular velocity xyz, gripper angle in rad), in the JIGSAWS order master left,
master right, slave left, slave right. Slave = the drawn tool tips (world px * 1e-4 m, depth = the
shaft's constant z); master = slave scaled by the 1:3 motion-scaling ratio.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from surgkit.synth.writers.base import LayoutWriter
from surgkit.utils.io import write_text

PX_TO_M = 1e-4
MOTION_SCALE = 3.0
SPACES = " " * 11


def kinematics(plan) -> np.ndarray:
    """(T, 76) kinematic rows from the plan's tool tips."""
    fps = plan.fps
    slaves = []
    for slot in plan.slots:
        tip = slot.tip.astype(np.float64) * PX_TO_M
        z = np.full((len(tip), 1), 0.05 + 0.01 * slot.depth)
        pos = np.hstack([tip, z])
        shaft = np.hstack([slot.tip - slot.port, np.full((len(tip), 1), -plan.world_size * 0.3)])
        ez = shaft / np.linalg.norm(shaft, axis=1, keepdims=True)
        ex = np.cross(ez, [0.0, 0.0, 1.0])
        ex /= np.maximum(np.linalg.norm(ex, axis=1, keepdims=True), 1e-9)
        ey = np.cross(ez, ex)
        rot = np.stack([ex, ey, ez], axis=2).reshape(len(tip), 9)
        vel = np.gradient(pos, axis=0) * fps
        ang = np.gradient(np.arctan2(ez[:, 1], ez[:, 0]))[:, None] * fps
        rot_vel = np.hstack([np.zeros((len(tip), 2)), ang])
        grip = (slot.jaw.astype(np.float64) * 1.2 - 0.3)[:, None]
        slaves.append(np.hstack([pos, rot, vel, rot_vel, grip]))
    masters = []
    for s in slaves:
        m = s.copy()
        m[:, 0:3] *= MOTION_SCALE
        m[:, 12:15] *= MOTION_SCALE
        masters.append(m)
    return np.hstack(masters + slaves)


def meta_line(plan) -> str:
    items = "\t".join(str(v) for v in plan.scores.osats.values())
    return f"{plan.name}\t\t{plan.surgeon.level}\t{plan.scores.grs}\t\t{items}"


class JigsawsWriter(LayoutWriter):
    name = "jigsaws"
    kinds = frozenset({"bench"})
    description = (
        "JIGSAWS: jigsaws/<Task>/{video,kinematics,transcriptions,meta_file}, jigsaws/Experimental_setup"
    )
    shared_state = (*LayoutWriter.shared_state, "trials", "meta")  # merged in trial order (generate.py)

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.dir = self.root / "jigsaws"
        self.trials: dict[
            str, list[tuple[str, str, int, int, int]]
        ] = {}  # task -> (trial, user, super, start, end)
        self.meta: dict[str, list[str]] = {}

    def begin(self, plan) -> None:
        task_dir = self.dir / plan.task
        self._write = self.open_video(
            task_dir / "video" / f"{plan.name}_capture1.avi", plan.fps, plan.width, plan.height
        )

    def frame(self, t, rgb, truth) -> None:
        self._write(rgb)

    def abort(self) -> None:
        self.close_video(RuntimeError("aborted"))

    def end(self, plan) -> None:
        self.close_video()
        task_dir = self.dir / plan.task
        rows = [f"{s + 1} {e + 1} {g}" for s, e, g in plan.gestures]
        self.put_text(task_dir / "transcriptions" / f"{plan.name}.txt", "\n".join(rows) + "\n")
        if not self.replay:
            kin = kinematics(plan)
            text = "\n".join("    ".join(f"{v:.6f}" for v in row) for row in kin) + "\n"
            write_text(task_dir / "kinematics" / "AllGestures" / f"{plan.name}.txt", text)
        self.meta.setdefault(plan.task, []).append(meta_line(plan))
        start, end = plan.gestures[0][0] + 1, plan.gestures[-1][1] + 1
        self.trials.setdefault(plan.task, []).append((plan.name, plan.surgeon.name, plan.trial, start, end))
        self.count += 1

    def finish(self) -> dict[str, Any]:
        letters = [s.name for s in self.world.jig_surgeons]
        for task, rows in self.meta.items():
            write_text(self.dir / task / f"meta_file_{task}.txt", "\n".join(rows) + "\n")
        for task, trials in self.trials.items():
            base = self.dir / "Experimental_setup" / task / "unBalanced" / "GestureRecognition"
            supers = sorted({s for _, _, s, _, _ in trials})
            for k in supers:
                self._fold(base / "SuperTrialOut" / f"{k}_Out" / "itr_1", trials, lambda tr, k=k: tr[2] == k)
            for k, letter in enumerate(letters, 1):
                if any(tr[1] == letter for tr in trials):
                    self._fold(
                        base / "UserOut" / f"{k}_Out" / "itr_1", trials, lambda tr, u=letter: tr[1] == u
                    )
        return {
            "path": "jigsaws",
            "trials": self.count,
            "tasks": sorted(self.trials),
            "users": letters,
            "fps": self.world.preset.jig_fps,
            "captures": ["capture1"],
        }

    @staticmethod
    def _fold(folder, trials, is_test) -> None:
        def line(tr):
            name, _, _, s, e = tr
            return f"{name}_{s:06d}_{e:06d}.txt{SPACES}{name}.txt"

        write_text(folder / "Train.txt", "".join(line(tr) + "\n" for tr in trials if not is_test(tr)))
        write_text(folder / "Test.txt", "".join(line(tr) + "\n" for tr in trials if is_test(tr)))
