"""CholecT50/T45 readers (both layouts of spec §7.3) and their official splits."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from surgkit.data import cholect45, cholect50
from surgkit.data.splits import CHOLECT50_CROSSVAL, make_splits
from surgkit.errors import DataFormatError
from surgkit.vocab import TRIPLET_COMPONENTS

from .helpers import write

# The spec's example file, verbatim in content.
SPEC_JSON = {
    "video": 1,
    "fps": 1,
    "num_frames": 3,
    "categories": {
        "instrument": {"0": "grasper", "2": "hook"},
        "verb": {"1": "retract", "2": "dissect"},
        "target": {"0": "gallbladder"},
        "phase": {"0": "preparation", "1": "carlot-triangle-dissection"},
        "triplet": {"17": "grasper,retract,gallbladder", "60": "hook,dissect,gallbladder"},
    },
    "annotations": {
        "0": [[-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0]],
        "2": [
            [17, 0, 1, -1, -1, -1, -1, 1, 0, 1, -1, -1, -1, -1, 1],
            [60, 2, 1, -1, -1, -1, -1, 2, 0, 1, -1, -1, -1, -1, 1],
        ],
        "1": [[17, 0, 1, -1, -1, -1, -1, 1, 0, 1, -1, -1, -1, -1, 1]],
    },
}


def make_t50(root, data=SPEC_JSON, vid="VID01", frames=3):
    write(root / "labels" / f"{vid}.json", json.dumps(data))
    for i in range(frames):
        (root / "videos" / vid).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "videos" / vid / f"{i:06d}.png"), np.full((8, 8, 3), i, np.uint8))
    return root


def test_spec_example(tmp_path):
    ds = cholect50.load(make_t50(tmp_path))
    t = ds.triplets["VID01"]
    assert t.frames.tolist() == [0, 1, 2]  # keys sorted numerically
    assert [t.ids(r) for r in range(3)] == [[], [17], [17, 60]]
    assert t.phases.tolist() == [0, 1, 1]
    # components via maps.txt: 17 = grasper,retract,gallbladder; 60 = hook,dissect,gallbladder
    assert TRIPLET_COMPONENTS[17] == (0, 1, 0) and TRIPLET_COMPONENTS[60] == (2, 2, 0)
    assert np.flatnonzero(t.instruments[2]).tolist() == [0, 2] and np.flatnonzero(t.verbs[2]).tolist() == [
        1,
        2,
    ]
    assert np.flatnonzero(t.targets[2]).tolist() == [0] and t.instruments[0].sum() == 0
    assert ds.videos["VID01"].num_frames == 3 and ds.boxes == []


def test_truncated_json(tmp_path):
    make_t50(tmp_path)
    path = tmp_path / "labels" / "VID01.json"
    path.write_text(json.dumps(SPEC_JSON, indent=1)[:200])
    with pytest.raises(DataFormatError, match=r"VID01.json:\d+: malformed or truncated JSON"):
        cholect50.load(tmp_path)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(num_frames=4), "frame count mismatch: num_frames = 4 but 3 annotated frames"),
        (lambda d: d["annotations"]["1"][0].pop(), "instance vector must have 15 values, got 14"),
        (lambda d: d["annotations"]["1"][0].__setitem__(0, 60), r"triplet 60 is hook,dissect,gallbladder"),
        (lambda d: d["annotations"]["2"][1].__setitem__(14, 2), "disagree on the phase"),
        (lambda d: d["categories"]["verb"].__setitem__("1", "pull"), r"categories.verb\[1\] = 'pull'"),
    ],
)
def test_invalid_json_content(tmp_path, mutate, message):
    data = json.loads(json.dumps(SPEC_JSON))
    mutate(data)
    make_t50(tmp_path, data)
    with pytest.raises(DataFormatError, match=message):
        cholect50.load(tmp_path)


def test_frame_folder_count_mismatch(tmp_path):
    make_t50(tmp_path, frames=2)
    with pytest.raises(DataFormatError, match="frame count mismatch: 2 images"):
        cholect50.load(tmp_path)


def test_cholect45_txt_layout(tmp_path):
    rows_t, rows_i, rows_v, rows_tg = [], [], [], []
    for f, trip in enumerate([[], [17], [17, 60]]):
        t = np.zeros(100, int)
        t[trip] = 1
        i, v, g = np.zeros(6, int), np.zeros(10, int), np.zeros(15, int)
        for k in trip:
            i[TRIPLET_COMPONENTS[k][0]] = v[TRIPLET_COMPONENTS[k][1]] = g[TRIPLET_COMPONENTS[k][2]] = 1
        for rows, arr in ((rows_t, t), (rows_i, i), (rows_v, v), (rows_tg, g)):
            rows.append(",".join(map(str, [f, *arr])))
    for comp, rows in (("triplet", rows_t), ("instrument", rows_i), ("verb", rows_v), ("target", rows_tg)):
        write(tmp_path / comp / "VID02.txt", "\n".join(rows) + "\n")
    ds = cholect45.load(tmp_path, require_media=False)
    t = ds.triplets["VID02"]
    assert [t.ids(r) for r in range(3)] == [[], [17], [17, 60]] and ds.meta["layout"] == "txt"
    assert np.flatnonzero(t.instruments[2]).tolist() == [0, 2] and (t.phases == -1).all()
    assert ds.split_scheme == "cholect45-crossval"
    write(tmp_path / "verb" / "VID02.txt", "\n".join(rows_v[:2]) + "\n")
    with pytest.raises(DataFormatError, match=r"verb/VID02.txt: frame count mismatch"):
        cholect45.load(tmp_path, require_media=False)
    write(tmp_path / "verb" / "VID02.txt", "\n".join(rows_v[:2] + [rows_v[2] + ",0"]) + "\n")
    with pytest.raises(DataFormatError, match=r"verb/VID02.txt:3: expected 11 columns, found 12"):
        cholect45.load(tmp_path, require_media=False)


def _ids(nums):
    return [f"VID{n:02d}" for n in nums]


def _labels_only_dataset(tmp_path, numbers, name):
    for n in numbers:
        data = {"video": n, "fps": 1, "num_frames": 1, "annotations": {"0": [[-1] * 14 + [0]]}}
        write(tmp_path / "labels" / f"VID{n:02d}.json", json.dumps(data))
    return (cholect45 if name == "cholect45" else cholect50).load(tmp_path, require_media=False)


def test_official_splits(tmp_path):
    all_nums = sorted(n for f in CHOLECT50_CROSSVAL for n in f)
    assert len(all_nums) == 50 == len(set(all_nums))
    ds = _labels_only_dataset(tmp_path, all_nums, "cholect50")
    (ch,) = make_splits(ds, "official")  # default: cholect50-challenge
    assert set(ch.val) == set(_ids([5, 18, 36, 65, 74])) and set(ch.test) == set(
        _ids([92, 96, 103, 110, 111])
    )
    assert len(ch.train) == 40 and not ch.notes
    (rdv,) = make_splits(ds, "official", variant="cholect50")
    assert len(rdv.test) == 10 and len(rdv.val) == 5 and len(rdv.train) == 35
    cv = make_splits(ds, "official", variant="cholect50-crossval")
    assert [len(s.test) for s in cv] == [10] * 5 and sorted(v for s in cv for v in s.test) == sorted(
        ds.videos
    )
    # fold 1: validation = last 5 of folds 2..5 concatenated = the last 5 of fold 5
    assert cv[0].val == _ids([1, 56, 4, 13, 92]) and len(cv[0].train) == 35
    assert cv[4].val == _ids([75, 22, 49, 12, 110])
    cv45 = make_splits(ds, "official", variant="cholect45-crossval")
    assert [len(s.test) for s in cv45] == [9] * 5 and "VID111" not in cv45[0].test
    assert cv45[0].val == _ids([74, 1, 56, 4, 13])
    for s in cv + cv45 + [ch, rdv]:
        s.check_disjoint()
