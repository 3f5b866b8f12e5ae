"""A few frames in the native Cholec80-boxes and CholecT50 layouts (drawn rectangles as instruments)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# (tool name in Cholec80-boxes, CholecT50 triplet id, colour, box x, y, w, h)
TOOLS = (
    ("Grasper", 17, (230, 230, 230), 6, 8, 30, 20),  # grasper,retract,gallbladder
    ("Hook", 60, (60, 90, 255), 52, 30, 34, 24),  # hook,dissect,gallbladder
)


def write_mini_world(root: Path, videos=(1, 2, 3), frames: int = 4, hw=(64, 96), seed: int = 0) -> Path:
    import cv2

    rng = np.random.default_rng(seed)
    boxes_dir, t50 = root / "cholec80_boxes", root / "cholect50"
    rows = ["Surgery_num,Dir,FrameName,NumBBox_inFrame,ToolName,BBox_X,BBox_Y,BBox_Width,BBox_Height"]
    for v in videos:
        (boxes_dir / f"video{v:02d}").mkdir(parents=True, exist_ok=True)
        (t50 / "videos" / f"VID{v:02d}").mkdir(parents=True, exist_ok=True)
        (t50 / "labels").mkdir(parents=True, exist_ok=True)
        ann = {}
        for f in range(frames):
            img = np.zeros((*hw, 3), np.uint8)
            img[..., 0] = 120 + rng.integers(0, 40, hw)
            img[..., 1] = 30
            img[..., 2] = 30
            present = [TOOLS[(f + v) % 2]] if f % 3 else list(TOOLS)
            vecs = []
            for k, (name, trip, colour, x, y, w, h) in enumerate(present, 1):
                img[y : y + h, x : x + w] = colour
                rows.append(f"{v},video{v:02d},Video_{v:02d}_{f:05d}.png,{k},{name},{x},{y},{w},{h}")
                comp = {17: (0, 1, 0), 60: (2, 2, 0)}[trip]
                vecs.append([trip, comp[0], 1, -1, -1, -1, -1, comp[1], comp[2], 1, -1, -1, -1, -1, 1])
            ann[str(f)] = vecs
            bgr = np.ascontiguousarray(img[:, :, ::-1])
            cv2.imwrite(str(boxes_dir / f"video{v:02d}" / f"Video_{v:02d}_{f:05d}.png"), bgr)
            cv2.imwrite(str(t50 / "videos" / f"VID{v:02d}" / f"{f:06d}.png"), bgr)
        (t50 / "labels" / f"VID{v:02d}.json").write_text(
            json.dumps({"video": v, "fps": 1, "num_frames": frames, "annotations": ann})
        )
    (boxes_dir / "boxes.csv").write_text("\n".join(rows) + "\n")
    return root
