"""Round trip: the synthetic world's writers -> surgkit.data readers -> the world's exact ground truth.

The truth comes from the world's own ``truth/<video>.safetensors/.json`` (written from the renderer,
independently of the native-layout writers), so a reader or writer bug shows up as a mismatch.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from surgkit.data import cholec80, cholec80_boxes, cholect50, endoscapes, endovis18_vqla, jigsaws
from surgkit.data.leakage import compare_sets, fingerprint_set
from surgkit.data.splits import jigsaws_setup_folds, make_splits
from surgkit.vocab import CHOLEC80_TOOLS, INSTRUMENTS


@pytest.fixture
def world(synth_world):
    return synth_world


def truth(root, name):
    return load_file(str(root / "truth" / f"{name}.safetensors")), json.loads(
        (root / "truth" / f"{name}.json").read_text()
    )


def test_cholec80_phases_and_tools(world):
    root, manifest = world
    ds = cholec80.load(root / "cholec80", label_fps=25)
    assert sorted(ds.videos) == [v["name"] for v in manifest["videos"]] and not ds.skipped
    tool_col = {i: CHOLEC80_TOOLS.index(n.capitalize()) for i, n in enumerate(INSTRUMENTS)}
    for vid in ds.videos:
        arr, meta = truth(root, vid)
        assert np.array_equal(ds.phases[vid].phases, arr["phase"].astype(np.int64))
        assert ds.videos[vid].num_frames == meta["frames"]
        tools = ds.tools[vid]
        for row, f in enumerate(tools.frames):
            expected = np.zeros(7, np.uint8)
            for k in np.flatnonzero(arr["slot_visible"][f]):
                expected[tool_col[int(arr["slot_class"][f, k])]] = 1
            assert np.array_equal(tools.presence[row], expected), (vid, f)
    one_fps = cholec80.load(root / "cholec80")
    assert all((p.frames % 25 == 0).all() for p in one_fps.phases.values())


def test_cholect50_triplets(world):
    root, _ = world
    ds = cholect50.load(root / "cholect50")
    assert not ds.skipped
    for vid, labels in ds.triplets.items():
        arr, meta = truth(root, f"video{int(vid[3:]):02d}")
        for row, k in enumerate(labels.frames):
            f = int(k) * 25  # 1-fps frame k = 25-fps frame 25k
            expected = sorted({int(t) for t in arr["slot_triplet"][f] if t >= 0})
            assert labels.ids(row) == expected, (vid, k)
            assert labels.phases[row] == arr["phase"][f]


def test_jigsaws_scores_gestures_and_folds(world):
    root, manifest = world
    ds = jigsaws.load(root / "jigsaws")
    assert sorted(ds.videos) == sorted(t["name"] for t in manifest["trials"])
    for trial, score in ds.skill.items():
        _, meta = truth(root, trial)
        assert score.score == meta["grs"] and score.items == {k: float(v) for k, v in meta["osats"].items()}
        assert ds.videos[trial].subject == meta["surgeon"] and score.level == meta["self_proclaimed"]
        got = [(g.start, g.end, g.label) for g in ds.segments if g.video_id == trial]
        assert got == [(s["start"], s["end"], s["gesture"]) for s in meta["gesture_segments"]]
    louo = make_splits(ds, "LOUO", task="Suturing")
    assert [f.name for f in louo] == [f"user {u}" for u in manifest["layouts"]["jigsaws"]["users"]]
    for f in louo:
        assert not {ds.videos[t].subject for t in f.train} & {ds.videos[t].subject for t in f.test}
    # the world's Experimental_setup files give the same folds as the trial names
    for scheme in ("LOUO", "LOSO"):
        from_files = jigsaws_setup_folds(root / "jigsaws", "Suturing", scheme)
        derived = make_splits(ds, scheme, task="Suturing")
        assert [(sorted(a.train), sorted(a.test)) for a in from_files] == [
            (sorted(b.train), sorted(b.test)) for b in derived
        ]


def test_endoscapes_cvs_and_splits(world):
    root, manifest = world
    ds = endoscapes.load(root / "endoscapes")
    assert ds.cvs
    for c in ds.cvs:
        arr, _ = truth(root, f"video{int(c.video_id):02d}")
        assert np.allclose(c.criteria, arr["cvs"][c.start], atol=1e-4), (c.video_id, c.start)
    (split,) = make_splits(ds, "official")
    for part in ("train", "val", "test"):
        expected = [str(int(v[5:])) for v in manifest["splits"]["lap"][part]]
        assert sorted(getattr(split, part)) == sorted(v for v in expected if v in ds.videos)


def test_boxes_and_vqla(world):
    root, _ = world
    ds = cholec80_boxes.load(root / "cholec80_boxes")
    for vid in ds.videos:
        arr, _ = truth(root, vid)
        got = sorted((b.frame, b.xywh) for b in ds.boxes if b.video_id == vid)
        expected = sorted(
            (f, tuple(float(v) for v in (x1, y1, x2 - x1, y2 - y1)))
            for f in range(0, len(arr["phase"]), 25)
            for k in np.flatnonzero(arr["slot_visible"][f])
            for x1, y1, x2, y2 in [arr["slot_box"][f, k]]
        )
        assert got == expected
    vqla_root = next((root / "endovis18_vqla").iterdir())
    vq = endovis18_vqla.load(vqla_root)
    assert len(vq.vqa) > 0 and all(r.answer_id is not None for r in vq.vqa)


def test_leakage_no_false_positives_on_world_videos(world):
    root, _ = world
    items = {f"lap:{p.stem}": (p, None) for p in sorted((root / "cholec80" / "videos").glob("*.mp4"))}
    items |= {
        f"jig:{p.stem}": (p, None) for p in sorted((root / "jigsaws" / "Suturing" / "video").glob("*.avi"))
    }
    prints, missing = fingerprint_set(items, progress=False)
    assert not missing and len(prints) >= 8
    assert compare_sets(prints, prints, same_set=True) == []
