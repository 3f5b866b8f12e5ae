"""SAM 2 tool masks through transformers' Sam2VideoModel (tiny random configuration): prompts, streaming
equal to transformers' own propagation, bounded memory, the CLI, and Dice on the synthetic world."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from surgkit.errors import DataFormatError, SurgkitError
from surgkit.prep import masks
from surgkit.prep.frames import extract
from surgkit.prep.sam2 import Prompt, Sam2Masks, parse_prompts, prompts_from_labels, tiny_sam2
from surgkit.prep.seqstore import SequenceReader

from .conftest import make_video


def test_prompt_file_errors_name_the_key(tmp_path):
    ok = {"videos": {"v": [{"frame": 3, "object": 2, "class": 4, "box": [1, 2, 10, 12]},
                           {"frame": 0, "object": 1, "points": [[5, 5], [9, 9]], "labels": [1, 0]}]}}  # fmt: skip
    got = parse_prompts(ok, "p.json")["v"]
    assert [p.frame for p in got] == [0, 3]  # sorted by frame
    assert got[1] == Prompt(frame=3, object=2, cls=4, box=(1.0, 2.0, 10.0, 12.0))
    assert got[0].points == ((5.0, 5.0), (9.0, 9.0)) and got[0].labels == (1, 0) and got[0].cls == 1
    bad = [
        (
            {"videos": {"v": [{"frame": 0, "object": 1, "box": [5, 5, 2, 9]}]}},
            r"videos\.v\[0\]\.box: expected",
        ),
        ({"videos": {"v": [{"object": 1, "box": [0, 0, 2, 2]}]}}, r"videos\.v\[0\]\.frame: missing key"),
        ({"videos": {"v": [{"frame": 0, "object": 1}]}}, r"videos\.v\[0\]: a prompt needs a box or points"),
        (
            {"videos": {"v": [{"frame": 0, "object": 1, "points": [[1, 2]], "labels": [1, 1]}]}},
            "2 labels for 1",
        ),
        ({"videos": {"v": [{"frame": -1, "object": 1, "box": [0, 0, 2, 2]}]}}, r"frame: -1 out of range"),
        (
            {"videos": {"v": [{"frame": 0, "object": 1, "box": [0, 0, 2, "x"]}]}},
            r"box\[3\]: expected a number",
        ),
    ]
    for data, match in bad:
        with pytest.raises(DataFormatError, match=match):
            parse_prompts(data, "p.json")


def test_boxes_from_labels():
    labels = np.zeros((10, 12), np.uint8)
    labels[2:5, 3:7] = 2
    labels[8, 0] = 1  # below min_pixels
    assert prompts_from_labels(labels, 7) == [Prompt(frame=7, object=2, cls=2, box=(3.0, 2.0, 7.0, 5.0))]


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    root = tmp_path_factory.mktemp("sam2")
    make_video(root / "v" / "clip.mp4", 66, 30, "libx264", size=(64, 48))  # 22 frames at 10 fps
    assert extract(root / "v", root / "frames", fps=10, fmt="array", progress=False, workers=1).ok
    return root


PROMPTS = [
    Prompt(frame=2, object=1, cls=1, box=(5, 5, 30, 30)),
    Prompt(frame=2, object=7, cls=3, points=((40, 20),)),
]


def _reference_propagation(model, video: np.ndarray, source: Sam2Masks) -> np.ndarray:
    """transformers' own offline path: the whole video in the session, propagate_in_video_iterator."""
    from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

    tracker = source.tracker("clip", *video.shape[1:3], len(video))
    pixels = torch.stack([tracker._pixels(f) for f in video])
    session = Sam2VideoInferenceSession(
        video=pixels, video_height=video.shape[1], video_width=video.shape[2], dtype=torch.float32
    )
    for p in PROMPTS:  # coordinates scaled to the model input as Sam2VideoProcessor does: x·S/W, y·S/H
        sx, sy = model.config.image_size / video.shape[2], model.config.image_size / video.shape[1]
        pts = (
            ([(p.box[0] * sx, p.box[1] * sy), (p.box[2] * sx, p.box[3] * sy)], [2, 3]) if p.box else ([], [])
        )
        pts = (pts[0] + [(x * sx, y * sy) for x, y in p.points], pts[1] + list(p.labels))
        idx = session.obj_id_to_idx(p.object)
        session.add_point_inputs(idx, p.frame, {"point_coords": torch.tensor(pts[0]).view(1, 1, -1, 2),
                                                "point_labels": torch.tensor(pts[1], dtype=torch.int32).view(1, 1, -1)})  # fmt: skip
    session.obj_with_new_inputs = [p.object for p in PROMPTS]
    out = np.zeros(video.shape[:3], np.uint8)
    cls = {p.object: p.cls for p in PROMPTS}
    with torch.inference_mode():
        for res in model.propagate_in_video_iterator(session, start_frame_idx=2):
            logits = torch.nn.functional.interpolate(res.pred_masks, video.shape[1:3], mode="bilinear")[:, 0]
            best, which = logits.max(0)
            labels = torch.tensor([cls[o] for o in res.object_ids], dtype=torch.uint8)[which]
            out[res.frame_idx] = torch.where(best > 0, labels, 0).numpy()
    return out


def test_streaming_equals_transformers_propagation(frames, tmp_path):
    model = tiny_sam2(64, num_maskmem=3, max_object_pointers=4)  # memory of 3 frames: pruning is exercised
    source = Sam2Masks(model, {"clip": PROMPTS})
    res = masks.compute(frames / "frames", tmp_path / "m", source, fmt="array", chunk_size=4, progress=False)
    assert res.ok, res.failed
    got = SequenceReader(tmp_path / "m" / "clip").read(0, 22)
    video = SequenceReader(frames / "frames" / "clip").read(0, 22)
    want = _reference_propagation(model, video, source)
    assert got.shape == (22, 48, 64) and (got[:2] == 0).all()  # forward tracking: nothing before the prompt
    assert set(np.unique(got[2:])) <= {0, 1, 3} and (got[2:] > 0).any()
    np.testing.assert_array_equal(got, want)
    meta = SequenceReader(tmp_path / "m" / "clip").meta
    assert meta["mask_source"]["source"] == "sam2" and meta["mask_source"]["memory_frames"] == 3
    source.keep = 2  # one frame less memory than the model attends to: no longer the same masks
    assert not (source.tracker("clip", 48, 64, 22).predict(video) == want).all()


def test_memory_stays_bounded_and_chunking_does_not_matter(frames):
    model = tiny_sam2(64, num_maskmem=3, max_object_pointers=4)
    source = Sam2Masks(model, {"clip": PROMPTS})
    video = SequenceReader(frames / "frames" / "clip").read(0, 22)
    tracker = source.tracker("clip", 48, 64, 22)
    chunked = np.concatenate([tracker.predict(video[i : i + 3]) for i in range(0, 22, 3)])
    assert len(tracker.session.processed_frames) <= source.keep
    assert all(
        len(o["non_cond_frame_outputs"]) <= source.keep for o in tracker.session.output_dict_per_obj.values()
    )
    np.testing.assert_array_equal(chunked, source.tracker("clip", 48, 64, 22).predict(video))
    with pytest.raises(SurgkitError, match="has 10 frames, prompts at frames"):
        Sam2Masks(model, {"clip": [Prompt(frame=12, object=1, box=(0, 0, 5, 5))]}).tracker("clip", 48, 64, 10)
    with pytest.raises(SurgkitError, match="no SAM 2 prompts for video 'other'"):
        source.tracker("other", 48, 64, 22)


def test_cli_sam2_masks(frames, tmp_path, run_cli):
    tiny_sam2(64).save_pretrained(tmp_path / "sam2")
    prompts = {"videos": {"clip": [{"frame": 0, "object": 1, "box": [5, 5, 30, 30]}]}}
    (tmp_path / "p.json").write_text(json.dumps(prompts))
    code, _, err = run_cli(
        "prep", "masks", frames / "frames", "-o", tmp_path / "m", "--sam2", tmp_path / "sam2", "-q"
    )
    assert code == 2 and "--sam2 and --prompts go together" in err
    code, _, err = run_cli("prep", "masks", frames / "frames", "-o", tmp_path / "m", "--sam2", tmp_path / "sam2",
                           "--prompts", tmp_path / "p.json", "--chunk-size", "8", "-q")  # fmt: skip
    assert code == 0, err
    assert SequenceReader(tmp_path / "m" / "clip").num_items == 22
    (tmp_path / "bad.json").write_text('{"videos": {"clip": [{"frame": 0, "object": 1, "box": [5, 5]}]}}')
    code, _, err = run_cli("prep", "masks", frames / "frames", "-o", tmp_path / "m2", "--sam2", tmp_path / "sam2",
                           "--prompts", tmp_path / "bad.json", "-q")  # fmt: skip
    assert code == 2 and "bad.json: videos.clip[0].box: expected [x0, y0, x1, y1]" in err


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from surgkit.cli import main

    root = tmp_path_factory.mktemp("world")
    with pytest.raises(SystemExit) as e:
        main(["synth", "-o", str(root / "w"), "--preset", "tiny", "--layouts", "jigsaws,masks", "-q"])
    assert e.value.code in (0, None)
    vids = sorted((root / "w" / "jigsaws").glob("*/video/*.avi"))[:2]
    assert extract(vids, root / "frames", fps=5, fmt="array", progress=False, workers=1).ok
    return root


def test_dice_on_the_synthetic_world(world, tmp_path):
    """Box prompts from the world's exact masks at the first frame, tiny random SAM 2, Dice against the
    exact masks of every annotated frame. A random SAM 2 does not segment: this measures the plumbing
    (frame alignment, prompt scaling, propagation over chunks, scoring), checked against a direct count."""
    truth = masks.synth_masks(world / "w", missing="error")
    prompts = {}
    for vid in ("Suturing_B001_capture1", "Suturing_B002_capture1"):
        src0 = int(SequenceReader(world / "frames" / vid).meta["source_index"][0])
        shape = SequenceReader(world / "frames" / vid).meta["item_shape"][:2]
        prompts[vid] = prompts_from_labels(truth.load(vid, src0, tuple(shape))[0], 0)
        assert prompts[vid], "the world shows tools in the first frame"
    source = Sam2Masks(tiny_sam2(64), prompts)
    assert masks.compute(
        world / "frames", tmp_path / "m", source, fmt="array", chunk_size=16, progress=False
    ).ok
    k = 1 + max(p.cls for ps in prompts.values() for p in ps)
    scores = masks.evaluate(tmp_path / "m", world / "frames", truth, num_classes=max(k, 2))
    # by hand: pool tool-vs-background counts over the annotated frames
    inter = total = n = 0
    for vid in prompts:
        frames_meta = SequenceReader(world / "frames" / vid).meta
        pred = SequenceReader(tmp_path / "m" / vid)
        for i, s in enumerate(frames_meta["source_index"]):
            path = world / "w" / "masks" / vid.removesuffix("_capture1") / f"{int(s):06d}_class.png"
            if path.is_file():
                t = cv2.resize(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), pred.meta["item_shape"][::-1],
                               interpolation=cv2.INTER_NEAREST) > 0  # fmt: skip
                p = pred.read(i, i + 1)[0] > 0
                inter, total, n = inter + (p & t).sum(), total + p.sum() + t.sum(), n + 1
    assert scores["frames"] == n > 2 and scores["videos"] == 2
    assert scores["binary_dice"] == pytest.approx(2 * inter / total)
    assert 0.0 <= scores["mean_dice"] <= 1.0
