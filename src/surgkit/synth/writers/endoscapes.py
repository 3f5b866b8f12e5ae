"""Endoscapes2023-style CVS + detection + segmentation layout (metrics_formats.md section 7.6).

::

    endoscapes/{train,val,test}/<vid>_<frame>.jpg            ROI frames at 1 fps (frame = 25-fps number)
    endoscapes/{train,val,test}/annotation_coco.json         detection keyframes with boxes
    endoscapes/{train,val,test}/annotation_ds_coco.json      CVS keyframes (every 5 s)
    endoscapes/{train,val,test}/annotation_coco_vid.json     all ROI frames (boxes on keyframes)
    endoscapes/semseg/<vid>_<frame>.png                      class id replicated in 3 channels (keyframes)
    endoscapes/all_metadata.csv                              vid,frame,C1,C2,C3,cvs_annotator_1..3,is_ds_keyframe
    endoscapes/{train,val,test}_vids.txt                     video ids as "%.18e" floats (the real quirk)
    endoscapes/seg_label_map.txt                             "<id> <name>" per line

ROI = the Calot-triangle-dissection phase (before the first clip), as in Endoscapes. ``ds`` is the
per-criterion mean of 3 annotators ({0, 1/3, 2/3, 1}), computed from what is visible (fat cover).
Detection classes: cystic_plate, calot_triangle, cystic_artery, cystic_duct, gallbladder, tool; an
anatomy box is the bounding box of the region's visible pixels (tools excluded), kept if >= 20 px.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from surgkit.synth.writers.base import LayoutWriter, sampled
from surgkit.utils.io import write_json, write_text
from surgkit.vocab import TARGETS

ENDOSCAPES_INDEX = (0, 2, 1)  # CVS_CRITERIA positions of Endoscapes' C1, C2, C3
CLASSES = ("cystic_plate", "calot_triangle", "cystic_artery", "cystic_duct", "gallbladder", "tool")
KEYFRAME_SECONDS = 5
MIN_PIXELS = 20
ROI_PHASE = 1


def coco_categories() -> list[dict[str, Any]]:
    return [
        {"id": k + 1, "name": n, "supercategory": "tool" if n == "tool" else "anatomy"}
        for k, n in enumerate(CLASSES)
    ]


def semantic_mask(truth, calot: np.ndarray) -> np.ndarray:
    """Endoscapes class id per pixel (0 background), tools on top."""
    out = np.zeros(truth.anatomy_mask.shape, np.uint8)
    for k, name in enumerate(CLASSES[:-1]):
        region = calot if name == "calot_triangle" else truth.anatomy_mask == TARGETS.index(name) + 1
        out[region] = k + 1
    out[truth.instance_mask > 0] = len(CLASSES)
    return out


class EndoscapesWriter(LayoutWriter):
    name = "endoscapes"
    description = "Endoscapes2023-style CVS/boxes/semseg: endoscapes/{train,val,test}/, all_metadata.csv"
    shared_state = (*LayoutWriter.shared_state, "images", "boxes", "meta", "next_image", "next_ann")

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.dir = self.root / "endoscapes"
        self.images: dict[str, list] = {s: [] for s in ("train", "val", "test")}
        self.boxes: dict[str, list] = {s: [] for s in ("train", "val", "test")}
        self.meta = ["vid,frame,C1,C2,C3,cvs_annotator_1,cvs_annotator_2,cvs_annotator_3,is_ds_keyframe"]
        self.next_image = {s: 1 for s in self.images}
        self.next_ann = {s: 1 for s in self.images}

    def begin(self, plan) -> None:
        self.plan = plan
        self.vid = plan.index + 1
        self.split = self.split_of(self.vid)

    def _calot(self, t: int) -> np.ndarray:
        p = self.plan
        x0, y0, cw, ch = p.crop(t)
        crop = p.scene.calot[y0 : y0 + ch, x0 : x0 + cw].astype(np.uint8)
        m = cv2.resize(crop, (p.width, p.height), interpolation=cv2.INTER_NEAREST_EXACT).astype(bool)
        m[self._outside(p)] = False
        return m

    def _outside(self, p) -> np.ndarray:
        if not hasattr(self, "_out") or self._out.shape != (p.height, p.width):
            from surgkit.synth.texture import vignette

            self._out = ~vignette(p.width, p.height, True)[1]
        return self._out

    def frame(self, t, rgb, truth) -> None:
        p = self.plan
        if truth.phase != ROI_PHASE or not sampled(t, p.fps):
            return
        second = t // int(round(p.fps))
        key = second % KEYFRAME_SECONDS == 0
        fname = f"{self.vid}_{t}.jpg"
        self.put_jpg(self.dir / self.split / fname, rgb)
        # truth.cvs is in surgkit.vocab.CVS_CRITERIA order; Endoscapes writes C1 two structures,
        # C2 hepatocystic triangle, C3 cystic plate (the reader maps it back by name)
        ds = [round(float(truth.cvs[k]), 4) for k in ENDOSCAPES_INDEX]
        image_id = self.next_image[self.split]
        self.next_image[self.split] += 1
        self.images[self.split].append(
            {
                "id": image_id,
                "file_name": fname,
                "height": p.height,
                "width": p.width,
                "video_id": self.vid,
                "frame_id": second,
                "is_det_keyframe": key,
                "is_ds_keyframe": key,
                "ds": ds,
            }
        )
        votes = p.cvs_votes[t]  # (criterion, annotator)
        annot = ['"[' + ", ".join(str(int(votes[k, a])) for k in ENDOSCAPES_INDEX) + ']"' for a in range(3)]
        self.meta.append(f"{self.vid},{t},{ds[0]},{ds[1]},{ds[2]},{','.join(annot)},{key}")
        if key:
            sem = semantic_mask(truth, self._calot(t))
            self.put_png(self.dir / "semseg" / f"{self.vid}_{t}.png", np.repeat(sem[..., None], 3, axis=2))
            self._add_boxes(image_id, sem)

    def _add_boxes(self, image_id: int, sem: np.ndarray) -> None:
        for k in range(1, len(CLASSES) + 1):
            m = (sem == k).astype(np.uint8)
            area = int(m.sum())
            if area < MIN_PIXELS:
                continue
            x, y, w, h = cv2.boundingRect(m)
            self.boxes[self.split].append(
                {
                    "id": self.next_ann[self.split],
                    "image_id": image_id,
                    "category_id": k,
                    "bbox": [x, y, w, h],
                    "area": area,
                    "iscrowd": 0,
                    "segmentation": [],
                }
            )
            self.next_ann[self.split] += 1

    def end(self, plan) -> None:
        self.count += 1

    def merge_state(self, state: dict[str, Any]) -> None:
        """A worker numbered its video's images and boxes from 1 per split: continue the numbering."""
        for split, images in state["images"].items():
            image_offset, box_offset = self.next_image[split] - 1, self.next_ann[split] - 1
            for image in images:
                image["id"] += image_offset
            for box in state["boxes"][split]:
                box["id"] += box_offset
                box["image_id"] += image_offset
        super().merge_state(state)

    def finish(self) -> dict[str, Any]:
        cats = coco_categories()
        for split, images in self.images.items():
            keys = {im["id"] for im in images if im["is_det_keyframe"]}
            det = [im for im in images if im["id"] in keys]
            ds = [im for im in images if im["is_ds_keyframe"]]
            anns = self.boxes[split]
            base = self.dir / split
            write_json(
                base / "annotation_coco.json", {"images": det, "annotations": anns, "categories": cats}, None
            )
            write_json(
                base / "annotation_ds_coco.json",
                {"images": ds, "annotations": anns, "categories": cats},
                None,
            )
            write_json(
                base / "annotation_coco_vid.json",
                {"images": images, "annotations": anns, "categories": cats},
                None,
            )
            ids = np.asarray(self.splits.get(split, []), np.float64)
            write_text(self.dir / f"{split}_vids.txt", "".join(f"{v:.18e}\n" for v in ids))
        write_text(self.dir / "all_metadata.csv", "\n".join(self.meta) + "\n")
        write_text(
            self.dir / "seg_label_map.txt",
            "0 background\n" + "".join(f"{k + 1} {n}\n" for k, n in enumerate(CLASSES)),
        )
        return {
            "path": "endoscapes",
            "videos": self.count,
            "frames": sum(len(v) for v in self.images.values()),
            "roi_phase": "CalotTriangleDissection",
            "keyframe_seconds": KEYFRAME_SECONDS,
        }
