"""SurgicalActions160, CoPESD, EndoVis18/17-VQLA and the generic clinical skill format."""

from __future__ import annotations

import json

import pytest

from surgkit.data import clinical_skill, copesd, endovis17_vqla, endovis18_vqla, surgicalactions160
from surgkit.data.splits import make_splits
from surgkit.errors import DataFormatError
from surgkit.vocab import MGEARS_ITEMS, VQLA_ANSWERS

from .helpers import write

QA = """What organ is being operated?|kidney|1, 1, 640, 512
What is the state of bipolar_forceps?|Tissue_Manipulation|410, 220, 780, 690

Where is monopolar_curved_scissors located?|right-top|700, 60, 1180, 430
"""


def test_surgicalactions160_names_and_lists(tmp_path):
    for name in ("05_07", "01_01", "16_10"):
        write(tmp_path / f"{name}.mp4", "not empty")
    write(tmp_path / "notes.txt", "x")
    write(tmp_path / "train.txt", "05_07\n0-01_01\n")
    ds = surgicalactions160.load(tmp_path)
    assert {k: c.label for k, c in ds.clips.items()} == {"01_01": 0, "05_07": 4, "16_10": 15}
    assert ds.split_files["train"] == ["05_07", "01_01"] and [s.item for s in ds.skipped] == ["notes.txt"]
    write(tmp_path / "17_01.mp4", "not empty")
    with pytest.raises(DataFormatError, match="class 17 outside 1..16"):
        surgicalactions160.load(tmp_path)


def make_vqla18(root, seqs=(1, 2), text=QA):
    for s in seqs:
        write(root / f"seq_{s}" / "vqla" / "label" / "frame000_QA.txt", text)
        write(root / f"seq_{s}" / "left_frames" / "frame000.png", "png")
    return root


def test_endovis18_vqla(tmp_path):
    ds = endovis18_vqla.load(make_vqla18(tmp_path, seqs=(1, 2, 16)))
    assert len(ds.vqa) == 9 and ds.vqa[0].frame == "frame000" and ds.vqa[0].video_id == "seq_1"
    r = ds.vqa[2]
    assert (r.answer, r.answer_id, r.box_xyxy) == (
        "right-top",
        VQLA_ANSWERS.index("right-top"),
        (700, 60, 1180, 430),
    )
    (s,) = make_splits(ds, "official")
    assert s.train == ["seq_2"] and s.test == ["seq_1", "seq_16"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("Where is it?|left-top|1, 2, 3", "box must have 4 integers"),
        ("Where is it?|top-left|1, 2, 3, 4", "unknown VQLA answer 'top-left'"),
        ("Where is it?|left-top", r"expected 'question\|answer\|x1, y1, x2, y2' \(3 fields\), found 2"),
        ("Where is it?|left-top|10, 2, 3, 4", r"box \(10, 2, 3, 4\) has x2 < x1"),
    ],
)
def test_vqla_bad_lines(tmp_path, line, message):
    make_vqla18(tmp_path, seqs=(1,), text=QA + line + "\n")
    with pytest.raises(DataFormatError, match=r"frame000_QA.txt:5: " + message):
        endovis18_vqla.load(tmp_path)


def test_endovis17_vqla(tmp_path):
    write(tmp_path / "vqla" / "label" / "seq1_frame10.txt", QA)
    with pytest.raises(DataFormatError, match="missing frame image"):
        endovis17_vqla.load(tmp_path)
    ds = endovis17_vqla.load(tmp_path, require_media=False)
    assert len(ds.vqa) == 3 and ds.vqa[0].frame == "seq1" and ds.skipped
    (s,) = make_splits(ds, "official")
    assert s.test == ["endovis17"] and s.train == []


COPESD = [
    {
        "image": "frames/000123/0042.jpg",
        "conversations": [
            {"from": "human", "value": "Use the Forceps together with the Knife to lift the mucosal flap."},
            {
                "from": "gpt",
                "value": "Move the Forceps[0.15, 0.36, 0.55, 0.78] to the flap edge and lift it with the Knife[0.62, 0.47, 0.83, 0.77].",
            },
        ],
    }
]


def test_copesd_inline_boxes(tmp_path):
    write(tmp_path / "train.json", json.dumps(COPESD))
    ds = copesd.load(tmp_path)
    (rec,) = ds.vqa
    assert rec.video_id == "000123" and rec.frame == "0042"
    assert rec.extra["boxes"] == [("Forceps", (0.15, 0.36, 0.55, 0.78)), ("Knife", (0.62, 0.47, 0.83, 0.77))]
    assert [b.label for b in ds.boxes] == ["Forceps", "Knife"] and ds.boxes[0].xywh == pytest.approx(
        (0.15, 0.36, 0.40, 0.42)
    )
    assert ds.skipped and "image file missing" in ds.skipped[0].reason
    bad = json.loads(json.dumps(COPESD))
    bad[0]["conversations"][1]["value"] = "Move the Forceps[0.55, 0.36, 0.15, 0.78]."
    write(tmp_path / "train.json", json.dumps(bad))
    with pytest.raises(DataFormatError, match=r"train.json: element 0: box Forceps"):
        copesd.load(tmp_path)


def _items(v):
    return dict(zip(MGEARS_ITEMS, v, strict=True))


def clinical_json(root):
    data = {
        "format": "surgkit-clinical-skill/1",
        "videos": [
            {"id": "rah_001", "path": "videos/rah_001.mp4", "surgeon": "S1", "procedure": "vaginal_vault_closure",
             "segments": [
                 {"name": "suturing_1", "start": 10, "end": 70,
                  "ratings": [{"rater": "R1", "items": _items([3, 3, 3, 3, 3]), "score": 15},
                              {"rater": "R2", "items": _items([4, 4, 4, 4, 5])}]},
                 {"name": "suturing_2", "start": 80, "end": 150, "ratings": [{"rater": "R1", "items": _items([2, 2, 2, 2, 2])}]}]},
            {"id": "rah_002", "path": "videos/rah_002.mp4", "surgeon": "S2", "segments": []},
        ],
    }  # fmt: skip
    write(root / "videos" / "rah_001.mp4", "")
    write(root / "videos" / "rah_002.mp4", "")
    write(root / "skill.json", json.dumps(data))
    return data


def test_clinical_skill_json(tmp_path):
    data = clinical_json(tmp_path)
    ds = clinical_skill.load(tmp_path)
    s = ds.skill["rah_001"]
    # segment 1: mean(15, 21) = 18; segment 2: 10; video = mean(18, 10) = 14
    assert [seg.score for seg in s.segments] == [18.0, 10.0] and s.score == 14.0 and s.scale == "M-GEARS"
    assert s.items["efficiency"] == pytest.approx((3 + 4 + 2) / 3) and ds.videos["rah_001"].subject == "S1"
    assert "rah_002" not in ds.skill and ds.skipped[0].item == "rah_002"
    data["videos"][0]["segments"][0]["ratings"][0]["score"] = 16
    write(tmp_path / "skill.json", json.dumps(data))
    with pytest.raises(DataFormatError, match=r"segments\[0\].ratings\[0\]: score 16 != sum of items 15"):
        clinical_skill.load(tmp_path)
    data["videos"][0]["segments"][0]["ratings"][0]["items"]["efficiency"] = 7
    write(tmp_path / "skill.json", json.dumps(data))
    with pytest.raises(DataFormatError, match=r"efficiency = 7 out of range \[1, 5\]"):
        clinical_skill.load(tmp_path)


def test_clinical_skill_csv_and_kfold(tmp_path):
    rows = ["id,path,surgeon,procedure"] + [f"v{k},videos/v{k}.mp4,S{k % 4},rarp" for k in range(12)]
    write(tmp_path / "videos.csv", "\n".join(rows) + "\n")
    header = "video,segment,start,end,rater," + ",".join(MGEARS_ITEMS)
    ratings = [header] + [f"v{k},anastomosis,1.5,60,R1,{1 + k % 5},2,3,4,5" for k in range(12)]
    write(tmp_path / "ratings.csv", "\n".join(ratings) + "\n")
    with pytest.raises(DataFormatError, match=r"videos.csv:2: video 'v0': missing media"):
        clinical_skill.load(tmp_path)
    ds = clinical_skill.load(tmp_path, require_media=False)
    assert ds.skill["v3"].score == 4 + 2 + 3 + 4 + 5 and ds.skill["v3"].segments[0].start_s == 1.5
    folds = make_splits(ds, "kfold", k=3, seed=1)
    assert sorted(v for f in folds for v in f.test) == sorted(ds.videos)
    for f in folds:
        assert not {ds.videos[v].subject for v in f.train} & {ds.videos[v].subject for v in f.test}
    assert [f.test for f in make_splits(ds, "kfold", k=3, seed=1)] == [f.test for f in folds]
    write(tmp_path / "ratings.csv", "\n".join(ratings[:2] + ["v1,anastomosis,1.5,60,R1,2,2,3"]) + "\n")
    with pytest.raises(DataFormatError, match=r"ratings.csv:3: expected 10 columns, found 8"):
        clinical_skill.load(tmp_path, require_media=False)
