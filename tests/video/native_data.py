"""Tiny datasets in native layouts (Cholec80 videos + phase files, CholecT50 frames + JSON) for the tests.

Content is made learnable on purpose: the colour of a frame encodes its label.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np

from surgkit.vocab import CHOLEC80_PHASES, TRIPLET_COMPONENTS


def make_cholec80(
    root: Path, numbers=(1, 2, 33, 41), seconds: int = 24, size: int = 32, fps: int = 25
) -> Path:
    """videos/videoNN.mp4 (25 fps) + phase_annotations/videoNN-phase.txt with 3 phases in order."""
    (root / "videos").mkdir(parents=True, exist_ok=True)
    (root / "phase_annotations").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for n in numbers:
        vid = f"video{n:02d}"
        count = seconds * fps
        phases = np.minimum((np.arange(count) * 3) // count, 2)
        with av.open(str(root / "videos" / f"{vid}.mp4"), "w") as c:
            s = c.add_stream("mpeg4", rate=fps)
            s.width = s.height = size
            s.pix_fmt = "yuv420p"
            for i in range(count):
                img = np.zeros((size, size, 3), np.uint8)
                img[..., phases[i]] = 200
                img = np.clip(img + rng.integers(0, 40, img.shape), 0, 255).astype(np.uint8)
                for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
        lines = ["Frame\tPhase"] + [f"{i}\t{CHOLEC80_PHASES[p]}" for i, p in enumerate(phases)]
        (root / "phase_annotations" / f"{vid}-phase.txt").write_text("\n".join(lines) + "\n")
    return root


def make_cholect50(root: Path, numbers=(1, 2, 5, 92), frames: int = 10, size: int = 32) -> Path:
    """videos/VIDnn/%06d.png (1 fps) + labels/VIDnn.json; triplet 17 or 60 by frame colour."""
    for n in numbers:
        vid = f"VID{n:02d}"
        (root / "videos" / vid).mkdir(parents=True, exist_ok=True)
        ann = {}
        for f in range(frames):
            tid = 17 if (f + n) % 2 else 60
            img = np.full((size, size, 3), 40, np.uint8)
            img[..., 0 if tid == 17 else 2] = 220
            cv2.imwrite(str(root / "videos" / vid / f"{f:06d}.png"), img)
            i, v, t = TRIPLET_COMPONENTS[tid][:3]
            ann[str(f)] = [[tid, i, 1, -1, -1, -1, -1, v, t, 1, -1, -1, -1, -1, 0]]
        (root / "labels").mkdir(exist_ok=True)
        (root / "labels" / f"{vid}.json").write_text(json.dumps({"video": n, "fps": 1, "num_frames": frames,
                                                                 "annotations": ann}))  # fmt: skip
    return root


def make_surgicalactions160(root: Path, per_class: int = 3, frames: int = 5, size: int = 32) -> Path:
    """videos/<class>_<clip>/ frame folders of 2 colour-coded classes + train.txt/test.txt (last clip = test)."""
    train, test = [], []
    for c in (1, 2):
        for k in range(per_class):
            d = root / "videos" / f"{c:02d}_clip{k}"
            d.mkdir(parents=True)
            for f in range(frames):
                img = np.full((size, size, 3), 40, np.uint8)
                img[..., c] = 200
                cv2.imwrite(str(d / f"{f:03d}.jpg"), img)
            (test if k == per_class - 1 else train).append(f"{c - 1}-{d.name}")
    (root / "train.txt").write_text("\n".join(train) + "\n")
    (root / "test.txt").write_text("\n".join(test) + "\n")
    return root


def make_endoscapes(root: Path, frames: int = 6, size: int = 32) -> Path:
    """{train,val,test}/<vid>_<frame>.jpg + annotation_ds_coco.json (CVS criteria means) + *_vids.txt."""
    parts = {"train": (1, 2), "val": (3,), "test": (4,)}
    for split, vids in parts.items():
        images, folder = [], root / split
        folder.mkdir(parents=True)
        for v in vids:
            for k in range(frames):
                crit = [
                    float(k >= 2),
                    float(k >= 3),
                    1.0 / 3 if k == 5 else 0.0,
                ]  # CVS reached late in the clip
                img = np.full((size, size, 3), 30 + 35 * k, np.uint8)
                name = f"{v}_{k * 5}.jpg"
                cv2.imwrite(str(folder / name), img)
                images.append({"id": len(images) + 1, "file_name": name, "ds": crit})
        (folder / "annotation_ds_coco.json").write_text(json.dumps({"images": images, "annotations": [],
                                                                    "categories": []}))  # fmt: skip
        (root / f"{split}_vids.txt").write_text("\n".join(str(v) for v in vids) + "\n")
    return root
