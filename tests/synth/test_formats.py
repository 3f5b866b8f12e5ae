"""The written layouts parse back and agree with the exact ground truth (format checks per spec section 7)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import av
import cv2
import numpy as np
from safetensors.numpy import load_file

from surgkit.vocab import CHOLEC80_PHASES, CHOLEC80_TOOLS, TRIPLET_COMPONENTS, VQLA_ANSWERS


def _decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_world_manifest(tiny_world):
    root, manifest = tiny_world
    on_disk = json.loads((root / "world.json").read_text())
    assert on_disk["format"] == "surgkit-synth-world/1"
    assert on_disk["preset"] == "tiny" and on_disk["seed"] == 0
    assert set(on_disk["layouts"]) == {
        "truth",
        "cholec80",
        "cholect50",
        "endoscapes",
        "boxes",
        "masks",
        "vqla",
        "vlm",
        "copesd",
        "jigsaws",
        "corpus",
    }
    assert [v["name"] for v in on_disk["videos"]] == ["video01", "video02"]
    assert len(on_disk["trials"]) == 6
    assert "generation_seconds" not in on_disk  # timing would break byte-identical manifests


def test_cholec80_phase_and_tool_files(tiny_world):
    root, manifest = tiny_world
    for v in manifest["videos"]:
        name = v["name"]
        frames = _decode(root / "cholec80" / "videos" / f"{name}.mp4")
        assert len(frames) == v["frames"] and frames[0].shape == (v["height"], v["width"], 3)
        with av.open(str(root / "cholec80" / "videos" / f"{name}.mp4")) as c:
            assert float(c.streams.video[0].average_rate) == 25.0
        lines = (root / "cholec80" / "phase_annotations" / f"{name}-phase.txt").read_text().splitlines()
        assert lines[0] == "Frame\tPhase"
        rows = [ln.split("\t") for ln in lines[1:]]
        assert [int(r[0]) for r in rows] == list(range(v["frames"]))
        truth = load_file(str(root / "truth" / f"{name}.safetensors"))
        assert [CHOLEC80_PHASES.index(r[1]) for r in rows] == truth["phase"].tolist()
        tool = (root / "cholec80" / "tool_annotations" / f"{name}-tool.txt").read_text().splitlines()
        assert tool[0].split("\t") == ["Frame", *CHOLEC80_TOOLS]
        for line in tool[1:]:
            f, *flags = (int(x) for x in line.split("\t"))
            assert f % 25 == 0 and len(flags) == 7 and set(flags) <= {0, 1}
            visible = {
                int(c) for c, vis in zip(truth["slot_class"][f], truth["slot_visible"][f], strict=True) if vis
            }
            assert {k for k, x in enumerate(flags) if x} == visible  # CholecT50 ids 0..5 = first 6 columns
        assert len(tool) - 1 == (v["frames"] + 24) // 25


def test_cholect50_labels(tiny_world):
    root, manifest = tiny_world
    maps = np.loadtxt(root / "cholect50" / "label_mapping.txt", delimiter=",", skiprows=1, dtype=int)
    import ivtmetrics  # oracle: the maps.txt shipped with ivtmetrics

    ref = np.loadtxt(Path(ivtmetrics.__file__).parent / "maps.txt", delimiter=",", skiprows=1, dtype=int)
    np.testing.assert_array_equal(maps, ref)
    doc = json.loads((root / "cholect50" / "labels" / "VID01.json").read_text())
    assert set(doc) >= {"video", "fps", "num_frames", "categories", "annotations", "info", "licenses"}
    assert doc["fps"] == 1 and doc["video"] == 1
    assert set(doc["categories"]) == {"triplet", "instrument", "verb", "target", "phase"}
    assert doc["categories"]["phase"]["1"] == "carlot-triangle-dissection"
    pngs = sorted((root / "cholect50" / "videos" / "VID01").glob("*.png"))
    assert len(pngs) == doc["num_frames"] == len(doc["annotations"])
    assert pngs[0].name == "000000.png"
    truth = load_file(str(root / "truth" / "video01.safetensors"))
    target_boxes = 0
    for key, vectors in doc["annotations"].items():
        t = int(key) * 25
        for vec in vectors:
            assert len(vec) == 15 and vec[14] == truth["phase"][t]
            if vec[0] == -1:
                assert not truth["slot_visible"][t].any()
                continue
            assert list(TRIPLET_COMPONENTS[vec[0]]) == [vec[1], vec[7], vec[8]]
            assert 0 <= vec[3] <= 1 and 0 < vec[5] <= 1
            if vec[8] == 14:  # null target: no target box
                assert vec[9:14] == [-1, -1, -1, -1, -1]
            elif vec[9] == 1:
                x, y, w, h = vec[10:14]
                assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= 1 + 1e-6 and y + h <= 1 + 1e-6
                target_boxes += 1
        assert sorted(v[0] for v in vectors if v[0] >= 0) == sorted(
            int(x) for x in truth["slot_triplet"][t] if x >= 0
        )
    assert target_boxes > 0


def test_jigsaws_layout(tiny_world):
    root, manifest = tiny_world
    base = root / "jigsaws" / "Suturing"
    meta = (base / "meta_file_Suturing.txt").read_text().splitlines()
    assert len(meta) == 6
    by_name = {t["name"]: t for t in manifest["trials"]}
    for line in meta:
        assert re.fullmatch(r"Suturing_[B-Z]\d{3}\t\t[NIE]\t\d+\t\t\d(\t\d){5}", line), repr(line)
        name, level, grs, *items = line.split()
        assert int(grs) == sum(map(int, items)) and 6 <= int(grs) <= 30
        assert int(grs) == by_name[name]["grs"] and level == by_name[name]["self_proclaimed"]
        frames = _decode(base / "video" / f"{name}_capture1.avi")
        assert len(frames) == by_name[name]["frames"] and frames[0].shape == (120, 160, 3)
        kin = np.loadtxt(base / "kinematics" / "AllGestures" / f"{name}.txt")
        assert kin.shape == (len(frames), 76)
        rot = kin[:, 41:50].reshape(-1, 3, 3)  # slave left rotation matrix
        np.testing.assert_allclose(
            rot @ rot.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rot.shape), atol=1e-4
        )
        segs = [ln.split() for ln in (base / "transcriptions" / f"{name}.txt").read_text().splitlines()]
        starts = [int(s) for s, _, _ in segs]
        ends = [int(e) for _, e, _ in segs]
        assert all(re.fullmatch(r"G\d{1,2}", g) for _, _, g in segs)
        assert starts[0] >= 1 and ends[-1] <= len(frames)
        assert all(s <= e for s, e in zip(starts, ends, strict=True))
        assert all(e < s for e, s in zip(ends[:-1], starts[1:], strict=True))
    setup = root / "jigsaws" / "Experimental_setup" / "Suturing" / "unBalanced" / "GestureRecognition"
    trials = {t["name"] for t in manifest["trials"]}
    for scheme, folds in (("SuperTrialOut", 2), ("UserOut", 3)):
        tested = []
        for k in range(1, folds + 1):
            d = setup / scheme / f"{k}_Out" / "itr_1"
            test = d.joinpath("Test.txt").read_text().splitlines()
            train = d.joinpath("Train.txt").read_text().splitlines()
            for line in test + train:
                assert re.fullmatch(r"(Suturing_[B-Z]\d{3})_\d{6}_\d{6}\.txt {11}\1\.txt", line), repr(line)
            test_trials = {ln.split()[1][:-4] for ln in test}
            train_trials = {ln.split()[1][:-4] for ln in train}
            assert test_trials and not test_trials & train_trials and test_trials | train_trials == trials
            if scheme == "SuperTrialOut":
                assert all(t.endswith(str(k)) for t in test_trials)
            else:
                assert {t.split("_")[1][0] for t in test_trials} == {"BCD"[k - 1]}
            tested += sorted(test_trials)
        assert sorted(tested) == sorted(trials)  # every trial is tested exactly once


def test_endoscapes_layout(tiny_world):
    root, _ = tiny_world
    base = root / "endoscapes"
    ids = {
        s: [int(float(x)) for x in (base / f"{s}_vids.txt").read_text().split()]
        for s in ("train", "val", "test")
    }
    assert ids["train"] == [1] and ids["test"] == [2]
    assert (base / "train_vids.txt").read_text().startswith("1.000000000000000000e+00")
    thirds = np.array([0, 1 / 3, 2 / 3, 1])
    n_boxes = 0
    for split in ("train", "test"):
        vid = json.loads((base / split / "annotation_coco_vid.json").read_text())
        det = json.loads((base / split / "annotation_coco.json").read_text())
        assert [c["name"] for c in det["categories"]][-1] == "tool"
        assert all(im["is_det_keyframe"] for im in det["images"])
        images = {im["id"]: im for im in vid["images"]}
        for im in vid["images"]:
            assert (base / split / im["file_name"]).is_file()
            assert np.isclose(thirds[:, None], np.array(im["ds"])[None], atol=1e-3).any(axis=0).all()
            assert im["file_name"] == f"{im['video_id']}_{im['frame_id'] * 25}.jpg"
        for ann in det["annotations"]:
            im = images[ann["image_id"]]
            x, y, w, h = ann["bbox"]
            assert (
                x >= 0 and y >= 0 and x + w <= im["width"] and y + h <= im["height"] and ann["area"] <= w * h
            )
            sem = cv2.imread(str(base / "semseg" / im["file_name"].replace(".jpg", ".png")))
            assert (sem[..., 0] == sem[..., 1]).all() and (sem[..., 1] == sem[..., 2]).all()
            region = sem[y : y + h, x : x + w, 0] == ann["category_id"]
            assert region.sum() == ann["area"]  # the box holds every pixel of its class
            n_boxes += 1
    assert n_boxes > 0
    with open(base / "all_metadata.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and set(rows[0]) >= {"vid", "frame", "C1", "C2", "C3", "cvs_annotator_1", "is_ds_keyframe"}
    for r in rows:
        votes = np.array([json.loads(r[f"cvs_annotator_{a}"]) for a in (1, 2, 3)])
        np.testing.assert_allclose(votes.mean(0), [float(r["C1"]), float(r["C2"]), float(r["C3"])], atol=1e-3)


def test_vqla_files(tiny_world):
    root, _ = tiny_world
    labels = sorted((root / "endovis18_vqla" / "EndoVis-18-VQA").glob("seq_*/vqla/label/*_QA.txt"))
    assert labels
    pattern = re.compile(r"([^|]+\?)\|([^|]+)\|(\d+), ?(\d+), ?(\d+), ?(\d+)")
    for path in labels:
        frame_id = path.name.split("_")[0]
        assert (path.parents[2] / "left_frames" / f"{frame_id}.png").is_file()
        for line in path.read_text().splitlines():
            m = pattern.fullmatch(line)
            assert m, line
            assert m.group(2) in VQLA_ANSWERS
            x1, y1, x2, y2 = (int(m.group(k)) for k in range(3, 7))
            assert 1 <= x1 <= x2 <= 1280 and 1 <= y1 <= y2 <= 1024


def test_boxes_csv_matches_truth(tiny_world):
    root, _ = tiny_world
    with open(root / "cholec80_boxes" / "cholec80_boxes.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == [
        "Surgery_num",
        "Dir",
        "FrameName",
        "NumBBox_inFrame",
        "ToolName",
        "BBox_X",
        "BBox_Y",
        "BBox_Width",
        "BBox_Height",
    ]
    truth = load_file(str(root / "truth" / "video01.safetensors"))
    for r in rows:
        if r["Dir"] != "video01":
            continue
        t = int(r["FrameName"].split("_")[2][:-4])
        assert (root / "cholec80_boxes" / r["Dir"] / r["FrameName"]).is_file()
        box = [
            int(r["BBox_X"]),
            int(r["BBox_Y"]),
            int(r["BBox_X"]) + int(r["BBox_Width"]),
            int(r["BBox_Y"]) + int(r["BBox_Height"]),
        ]
        assert box in truth["slot_box"][t].tolist()
        assert r["ToolName"] in CHOLEC80_TOOLS


def test_masks_and_truth_files_match_the_renderer(tiny_world, tiny):
    root, _ = tiny_world
    plan = tiny.lap_plan(0)
    truth = load_file(str(root / "truth" / "video01.safetensors"))
    assert truth["phase"].shape == (plan.frames,) and truth["slot_box"].shape == (plan.frames, 3, 4)
    meta = json.loads((root / "truth" / "video01.json").read_text())
    labels = json.loads((root / "cholect50" / "labels" / "VID01.json").read_text())
    assert meta["format"] == "surgkit-synth-truth/1" and meta["grs"] == plan.scores.grs
    r = tiny.render(plan)
    for t in (0, 250, 500):
        _, tr = r.render(t)
        inst = cv2.imread(str(root / "masks" / "video01" / f"{t:06d}_instance.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(inst, tr.instance_mask)
        for i in tr.instruments:
            assert truth["slot_box"][t, i.slot].tolist() == list(i.box)
            assert truth["slot_triplet"][t, i.slot] == i.triplet
        # CholecT50 target boxes = tight box of the target's visible pixels (not under a tool)
        for vec in labels["annotations"][str(t // 25)]:
            if vec[9] != 1:
                continue
            ys, xs = np.nonzero((tr.anatomy_mask == vec[8] + 1) & (tr.instance_mask == 0))
            h, w = tr.anatomy_mask.shape
            expected = [
                xs.min() / w,
                ys.min() / h,
                (xs.max() + 1 - xs.min()) / w,
                (ys.max() + 1 - ys.min()) / h,
            ]
            np.testing.assert_allclose(vec[10:14], expected, atol=1e-5)


def test_vlm_jsonl(tiny_world):
    root, _ = tiny_world
    caps = [json.loads(x) for x in (root / "vlm" / "captions.jsonl").read_text().splitlines()]
    vqa = [json.loads(x) for x in (root / "vlm" / "vqa.jsonl").read_text().splitlines()]
    assert caps and vqa
    for c in caps:
        assert (root / "vlm" / c["image"]).is_file() and c["caption"].endswith(".")
        assert c["phase"] in CHOLEC80_PHASES
    types = {q["answer_type"] for q in vqa}
    assert {"phase", "count", "instruments", "verb", "target", "location"} <= types
    for q in vqa:
        if q["box"] is not None:
            x1, y1, x2, y2 = q["box"]
            assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1


def test_copesd_json(tiny_world):
    root, _ = tiny_world
    samples = json.loads((root / "copesd" / "copesd.json").read_text())
    assert isinstance(samples, list) and samples
    box = re.compile(r"([A-Z][a-z]+)\[(\d\.\d\d), (\d\.\d\d), (\d\.\d\d), (\d\.\d\d)\]")
    for s in samples:
        assert (root / "copesd" / s["image"]).is_file()
        human, gpt = s["conversations"]
        assert human["from"] == "human" and gpt["from"] == "gpt"
        found = box.findall(gpt["value"])
        assert found
        for name, *xyxy in found:
            x1, y1, x2, y2 = map(float, xyxy)
            assert name.lower() in human["value"].lower()
            assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1
