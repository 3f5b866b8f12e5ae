"""A few frames laid out like the synthetic world (``surgkit synth``): Cholec80-boxes CSV with 25-fps
frame numbers, CholecT50 labels + 1-fps PNG frames, and ``masks/<video>/<frame>_class.png``.
Instruments are drawn as rectangles, so boxes and masks are exact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# (tool name in Cholec80-boxes, CholecT50 triplet id, instrument id, colour, box x, y, w, h)
TOOLS = (
    ("Grasper", 17, 0, (230, 230, 230), 6, 8, 30, 20),  # grasper,retract,gallbladder
    ("Hook", 60, 2, (60, 90, 255), 52, 30, 34, 24),  # hook,dissect,gallbladder
)
FPS = 25


def write_mini_world(root: Path, videos=(1, 2, 3), frames: int = 4, hw=(64, 96), seed: int = 0) -> Path:
    import cv2

    rng = np.random.default_rng(seed)
    boxes_dir, t50 = root / "cholec80_boxes", root / "cholect50"
    boxes_dir.mkdir(parents=True, exist_ok=True)
    (t50 / "labels").mkdir(parents=True, exist_ok=True)
    rows = ["Surgery_num,Dir,FrameName,NumBBox_inFrame,ToolName,BBox_X,BBox_Y,BBox_Width,BBox_Height"]
    for v in videos:
        (t50 / "videos" / f"VID{v:02d}").mkdir(parents=True, exist_ok=True)
        (root / "masks" / f"video{v:02d}").mkdir(parents=True, exist_ok=True)
        ann = {}
        for f in range(frames):
            img = np.zeros((*hw, 3), np.uint8)
            img[..., 0] = 120 + rng.integers(0, 40, hw)
            img[..., 1:] = 30
            cls = np.zeros(hw, np.uint8)
            present = [TOOLS[(f + v) % 2]] if f % 3 else list(TOOLS)
            vecs = []
            for k, (name, trip, inst, colour, x, y, w, h) in enumerate(present, 1):
                img[y : y + h, x + 2 : x + w - 2] = colour  # the mask is a bit narrower than the box
                cls[y : y + h, x + 2 : x + w - 2] = inst + 1
                rows.append(f"{v},video{v:02d},Video_{v:02d}_{f * FPS:05d}.png,{k},{name},{x},{y},{w},{h}")
                verb, target = {17: (1, 0), 60: (2, 0)}[trip]
                vecs.append([trip, inst, 1, -1, -1, -1, -1, verb, target, 1, -1, -1, -1, -1, 1])
            ann[str(f)] = vecs
            cv2.imwrite(
                str(t50 / "videos" / f"VID{v:02d}" / f"{f:06d}.png"), np.ascontiguousarray(img[:, :, ::-1])
            )
            cv2.imwrite(str(root / "masks" / f"video{v:02d}" / f"{f * FPS:06d}_class.png"), cls)
        (t50 / "labels" / f"VID{v:02d}.json").write_text(
            json.dumps({"video": v, "fps": 1, "num_frames": frames, "annotations": ann})
        )
    (boxes_dir / "cholec80_boxes.csv").write_text("\n".join(rows) + "\n")
    return root
