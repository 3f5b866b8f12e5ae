"""Cholec80-CVS, Endoscapes2023 and Cholec80-Boxes readers on hand-written fixtures."""

from __future__ import annotations

import builtins
import json

import pytest

from surgkit.data import cholec80_boxes, cholec80_cvs, endoscapes
from surgkit.data.splits import make_splits
from surgkit.errors import DataFormatError

from .helpers import write

CVS_HEADER = "video,initial_minute,initial_second,final_minute,final_second,two_structures,cystic_plate,hepatocystic_triangle\n"


def test_cholec80_cvs_spec_table(tmp_path):
    write(
        tmp_path / "surgeons_annotations.csv",
        CVS_HEADER + "3,12,5,13,40,1,0,1\n3,13,41,15,2,2,1,2\n41,1,0,0,59,1,1,1\n41,2,0,2,30,2,2,2\n",
    )
    ds = cholec80_cvs.load(tmp_path)
    a, b, c = ds.cvs
    assert (c.video_id, c.start, c.end) == ("video41", 3000, 3750)
    assert (a.video_id, a.start, a.end, a.criteria) == (
        "video03",
        (12 * 60 + 5) * 25,
        (13 * 60 + 40) * 25,
        (1.0, 0.0, 1.0),
    )
    assert (b.start, b.end, b.criteria) == ((13 * 60 + 41) * 25, (15 * 60 + 2) * 25, (2.0, 1.0, 2.0))
    # the known data issue (final < initial) is skipped and reported, not dropped silently
    assert (
        len(ds.skipped) == 1
        and "ends before it starts" in ds.skipped[0].reason
        and "line 4" in ds.skipped[0].item
    )
    (s,) = make_splits(ds, "official")
    assert s.train == ["video03"] and s.test == ["video41"]


def test_cholec80_cvs_errors(tmp_path):
    path = write(tmp_path / "surgeons_annotations.csv", CVS_HEADER + "3,12,5,13,40,3,0,1\n")
    with pytest.raises(
        DataFormatError, match=r"surgeons_annotations.csv:2: two_structures = 3 out of range \[0, 2\]"
    ):
        cholec80_cvs.load(tmp_path)
    path.write_text(CVS_HEADER + "3,12,5,13,40,1,0\n")
    with pytest.raises(DataFormatError, match=r"surgeons_annotations.csv:2: expected 8 columns, found 7"):
        cholec80_cvs.load(tmp_path)
    path.write_text(CVS_HEADER.replace(",cystic_plate", "") + "3,12,5,13,40,1,1\n")
    with pytest.raises(DataFormatError, match=r":1: missing column\(s\) cystic_plate"):
        cholec80_cvs.load(tmp_path)


def test_cholec80_cvs_xlsx_without_openpyxl(tmp_path, monkeypatch):
    write(tmp_path / "surgeons_annotations.xlsx", "not really a workbook")
    real_import = builtins.__import__

    def no_openpyxl(name, *args, **kwargs):
        if name == "openpyxl":
            raise ImportError("No module named 'openpyxl'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_openpyxl)
    with pytest.raises(DataFormatError, match="reading .xlsx needs openpyxl.*export the sheet to CSV"):
        cholec80_cvs.load(tmp_path)


def _coco(images, annotations=(), categories=({"id": 1, "name": "cystic_plate"}, {"id": 6, "name": "tool"})):
    return json.dumps(
        {"images": list(images), "annotations": list(annotations), "categories": list(categories)}
    )


def make_endoscapes(root):
    img = {"id": 7, "file_name": "12_34575.jpg", "height": 480, "width": 854, "video_id": 12, "frame_id": 1383,
           "is_det_keyframe": False, "is_ds_keyframe": True, "ds": [0.6667, 0.0, 0.3333]}  # fmt: skip
    img2 = dict(img, id=8, file_name="12_34700.jpg", frame_id=1388, is_det_keyframe=True, ds=[1.0, 1.0, 0.0])
    write(root / "train" / "annotation_ds_coco.json", _coco([img, img2]))
    ann = {"id": 3, "image_id": 8, "category_id": 6, "bbox": [10.5, 20.0, 100.0, 50.0]}
    write(root / "train" / "annotation_coco.json", _coco([img2], [ann]))
    for f in ("12_34575.jpg", "12_34700.jpg"):
        write(root / "train" / f, "jpg")
    write(root / "train_vids.txt", "1.200000000000000000e+01\n")
    write(root / "val_vids.txt", "2.000000000000000000e+00\n")
    write(root / "test_vids.txt", "3.0\n")
    return root


def test_endoscapes_coco_and_scientific_vids(tmp_path):
    ds = endoscapes.load(make_endoscapes(tmp_path))
    assert ds.split_files == {"train": ["12"], "val": ["2"], "test": ["3"]}
    # ds is C1 two structures, C2 hepatocystic triangle, C3 cystic plate (Endoscapes numbering);
    # criteria come out in CVS_CRITERIA order (two structures, cystic plate, hepatocystic triangle)
    assert [(c.video_id, c.start, c.criteria) for c in ds.cvs] == [
        ("12", 34575, (0.6667, 0.3333, 0.0)),
        ("12", 34700, (1.0, 0.0, 1.0)),
    ]
    assert ds.cvs[0].extra["frame_id"] == 1383
    (box,) = ds.boxes
    assert (box.video_id, box.frame, box.label, box.xywh, box.xyxy) == (
        "12",
        34700,
        "tool",
        (10.5, 20.0, 100.0, 50.0),
        (10.5, 20.0, 110.5, 70.0),
    )
    assert sorted(ds.videos["12"].extra["frames"]) == [34575, 34700]
    (s,) = make_splits(ds, "official")
    assert s.train == ["12"] and s.val == [] and "1 val id(s) listed but without data" in s.notes[0]


def test_endoscapes_bad_inputs(tmp_path):
    make_endoscapes(tmp_path)
    write(tmp_path / "val_vids.txt", "2.5e+00\n")
    with pytest.raises(DataFormatError, match=r"val_vids.txt:1: video id: '2.5e\+00' is not a whole number"):
        endoscapes.load(tmp_path)
    write(tmp_path / "val_vids.txt", "2\n")
    (tmp_path / "train" / "12_34575.jpg").unlink()
    with pytest.raises(DataFormatError, match="missing frame image 12_34575.jpg"):
        endoscapes.load(tmp_path)
    ds = endoscapes.load(tmp_path, require_media=False)
    assert [s.item for s in ds.skipped] == ["12_34575"]
    text = (tmp_path / "train" / "annotation_coco.json").read_text()
    write(tmp_path / "train" / "annotation_coco.json", text.replace('"category_id": 6', '"category_id": 9'))
    with pytest.raises(DataFormatError, match="annotation 3: unknown category id 9"):
        endoscapes.load(tmp_path, require_media=False)
    write(tmp_path / "train" / "annotation_coco.json", text[:-20])
    with pytest.raises(DataFormatError, match=r"annotation_coco.json:1: malformed or truncated JSON"):
        endoscapes.load(tmp_path, require_media=False)


def test_endoscapes_metadata_csv(tmp_path):
    make_endoscapes(tmp_path)
    write(
        tmp_path / "all_metadata.csv",
        "vid,frame,C1,C2,C3,is_ds_keyframe\n12,34575,0.6667,0,0.3333,True\n12,34600,1,1,0,False\n",
    )
    ds = endoscapes.load(tmp_path, cvs_source="metadata")
    assert ds.meta["roi_frames"] == 2 and [c.start for c in ds.cvs] == [34575, 34600]
    assert ds.cvs[0].criteria == (0.6667, 0.3333, 0.0)  # C2 = hepatocystic triangle -> third in CVS_CRITERIA
    write(tmp_path / "all_metadata.csv", "vid,frame,C1,C2,C3\n12,34575,1.5,0,0\n")
    with pytest.raises(DataFormatError, match=r"all_metadata.csv:2: C1 = 1.5 out of range"):
        endoscapes.load(tmp_path)


BOX_CSV = """Surgery_num,Dir,FrameName,NumBBox_inFrame,ToolName,BBox_X,BBox_Y,BBox_Width,BBox_Height
3,video03,Video_03_00125.png,1,Grasper,402,88,131,97
3,video03,Video_03_00125.png,2,Hook,120,210,96,140
"""


def test_cholec80_boxes_spec_example(tmp_path):
    write(tmp_path / "boxes.csv", BOX_CSV)
    ds = cholec80_boxes.load(tmp_path)
    assert [(b.video_id, b.frame, b.label, b.xywh, b.instance) for b in ds.boxes] == [
        ("video03", 125, "Grasper", (402.0, 88.0, 131.0, 97.0), 1),
        ("video03", 125, "Hook", (120.0, 210.0, 96.0, 140.0), 2),
    ]
    assert ds.skipped[0].item == "video03"  # no frame folder: reported
    write(tmp_path / "boxes.csv", BOX_CSV.replace("Hook", "Stapler"))
    with pytest.raises(DataFormatError, match=r"boxes.csv:3: unknown tool 'stapler'"):
        cholec80_boxes.load(tmp_path)
    write(tmp_path / "boxes.csv", BOX_CSV.replace(",96,140", ",96"))
    with pytest.raises(DataFormatError, match=r"boxes.csv:3: expected 9 columns, found 8"):
        cholec80_boxes.load(tmp_path)
