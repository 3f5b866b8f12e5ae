"""End-to-end runner on the native layouts, per-frame metrics against surgkit.metrics.grounding, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from surgkit.errors import SurgkitError
from surgkit.grounding.benchmark import BenchSettings, load_heatmap, load_records, run_benchmark
from surgkit.grounding.frames import GroundingFrame, join_frames, rasterise_box
from surgkit.grounding.sources import load_frames
from surgkit.metrics.grounding import action_reasoning_score, tau_aa, tau_ac
from surgkit.vocab import CHOLEC80_TOOLS, TRIPLET_COMPONENTS

from .miniworld import write_mini_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return write_mini_world(tmp_path_factory.mktemp("world"))


def test_join_reports_counts(world):
    root, boxes_root = world / "cholect50", world / "cholec80_boxes"
    src = load_frames("cholect50", root, "triplet", boxes_root=boxes_root)  # auto: 25-fps numbers seen
    assert len(src.frames) == 12 and src.join["kept"] == 12 and src.join["frame_map"] == "div25"
    assert any("multiples of 25" in n for n in src.notes)
    assert src.frames[1].image == world / "cholect50" / "videos" / "VID01" / "000001.png"
    explicit = load_frames("cholect50", root, "triplet", boxes_root=boxes_root, frame_map="div25")
    assert [f.key for f in explicit.frames] == [f.key for f in src.frames]
    unmapped = load_frames("cholect50", root, "triplet", boxes_root=boxes_root, frame_map="identity")
    assert unmapped.join["kept"] == 3  # only frame 0 of each video coincides
    boxes = load_frames("cholec80_boxes", boxes_root, "instrument").frames
    left = [f for f in boxes if f.video != "video03"]
    trip = [GroundingFrame("VID02", k, None, triplets=[TRIPLET_COMPONENTS[17]]) for k in (1, 2, 9)]
    joined, report = join_frames(left, trip, frame_map=lambda f: f // 25)
    assert [(f.video, f.frame) for f in joined] == [("video02", 25), ("video02", 50)]
    assert report.per_video[2] == (4, 3, 2) and report.per_video[1] == (4, 0, 0)
    assert joined[0].boxes and joined[0].triplets == [TRIPLET_COMPONENTS[17]]
    shifted, rep2 = join_frames(left, trip, frame_map=lambda f: f // 25 + 8)
    assert rep2.kept == 1 and shifted[0].frame == 25


def test_instrument_run_metrics_match_metrics_module(world, tiny_clip, tmp_path):
    src = load_frames("synth", world, "instrument")
    summary = run_benchmark(
        tiny_clip, src.frames, src.vocabulary, BenchSettings(batch_size=5), tmp_path / "run"
    )
    records = load_records(tmp_path / "run")
    assert summary["frames"] == 12 and len(records) == 12
    assert set(summary["videos"]) == {"video01", "video02", "video03"}
    frames = {(f.video, f.frame): f for f in src.frames}
    for rec in records:
        frame = frames[(rec["video"], rec["frame"])]
        heat = load_heatmap(tmp_path / "run", rec)
        assert heat.shape == (64, 96)
        regions = frame.region_masks((64, 96))
        union = np.any(list(regions.values()), axis=0)
        # heatmaps are stored as uint8: metrics recomputed from them agree up to quantisation
        assert abs(tau_ac(heat, union) - rec["tau_ac"]) < 0.05
        assert abs(tau_aa(heat, regions, rec["pred"]) - rec["tau_aa"]) < 0.05
        assert rec["correct"] == (rec["pred"] in frame.instruments)
    best = max(np.mean([lb in r["gt"] for r in records]) for lb in ("grasper", "hook"))
    assert summary["overall"]["best_constant_accuracy"] == pytest.approx(best)
    ac = np.mean([r["tau_ac"] for r in records])
    assert summary["overall"]["tau_ac"] == pytest.approx(ac)
    v1 = [r for r in records if r["video"] == "video01"]
    assert summary["videos"]["video01"]["accuracy"] == pytest.approx(np.mean([r["correct"] for r in v1]))
    prompts = json.loads((tmp_path / "run" / "prompts.json").read_text())["primary"]["classes"]
    assert prompts[0]["prompts"] == ["an image showing a grasper in use"]
    assert "specimen bag" in [c["key"] for c in prompts]
    protocol = summary["protocol"]
    assert protocol["tau"] == 0.5 and protocol["heatmap"]["method"] == "chefer_rollout"
    assert protocol["preprocessing"] == "official" and protocol["preprocess"]["mode"] == "shorter_crop"
    assert protocol["heatmap"]["blocks"] == "all" and protocol["heatmap_target"] == "pred"
    assert json.loads((tmp_path / "run" / "run_config.json").read_text())["protocol"] == protocol
    table = (tmp_path / "run" / "table.md").read_text()
    assert (
        table.count("| tiny-clip |") == 2 and "preprocessing official" in table and "Chefer rollout" in table
    )


def _biased_to(adapter, prompt: str, strength: float = 20.0):
    """Make the image embedding point at ``prompt`` (a large bias, small random weights), so every frame
    predicts that class while Grad-CAM still sees a non-constant, image-dependent score."""
    with torch.no_grad():
        t = torch.nn.functional.normalize(adapter.encode_text([prompt])[0], dim=0)
        adapter.model.image.proj.weight.mul_(1e-3)
        adapter.model.image.proj.bias.copy_(strength * t)
    return adapter


def test_triplet_run_ars_and_rates(world, tiny_surgvlp, tmp_path):
    src = load_frames("synth", world, "triplet")
    adapter = _biased_to(tiny_surgvlp, "I use a grasper to retract the gallbladder")
    s = run_benchmark(
        adapter, src.frames, src.vocabulary, BenchSettings(task="triplet", batch_size=6), tmp_path / "r"
    )
    records = load_records(tmp_path / "r")
    assert {r["pred"] for r in records} == {"grasper,retract,gallbladder"}
    valid = [r for r in records if r["valid"]]
    with_grasper = [r for r in records if "grasper,retract,gallbladder" in r["gt"]]
    assert len(valid) == len(with_grasper) == 9  # the ARS and Z/V checks below do run
    assert s["overall"]["v_over_t"] == pytest.approx(100 * 9 / 12)
    for rec in valid:
        frame = next(f for f in src.frames if (f.video, f.frame) == (rec["video"], rec["frame"]))
        box = frame.region_masks((64, 96), "boxes")["grasper"]
        verb_heat = load_heatmap(tmp_path / "r", rec, "verb")
        assert rec["ars_status"] == "scored" and rec["verb_prompt"] == "retract"
        assert abs(action_reasoning_score(verb_heat, box) - rec["ars"]) < 0.05
        assert rec["ars_uniform"] == pytest.approx(box.mean())
    for rec in records:
        assert rec["valid"] == any(g.split(",")[:2] == rec["pred"].split(",")[:2] for g in rec["gt"])
        assert rec["valid"] == (rec["instrument_correct"] and rec["verb_correct"])
    zeros = sum(r["ars"] == 0 for r in valid)
    assert s["overall"]["z_over_v"] == pytest.approx(100 * zeros / len(valid))
    assert s["overall"]["ars"] == pytest.approx(np.mean([r["ars"] for r in valid]))
    assert (
        s["overall"]["accuracy"] == pytest.approx(9 / 12)
        and s["protocol"]["heatmap"]["layer"] == "image.trunk.layer4"
    )


def test_resume_skips_finished_shards_and_refuses_other_settings(world, tiny_clip, tmp_path):
    src = load_frames("synth", world, "instrument")
    out = tmp_path / "run"
    first = run_benchmark(tiny_clip, src.frames, src.vocabulary, BenchSettings(batch_size=4), out)
    shard = out / "shards" / "00001.json"
    shard.write_text(shard.read_text().replace('"video": "video', '"video": "marked'))
    again = run_benchmark(tiny_clip, src.frames, src.vocabulary, BenchSettings(batch_size=4), out)
    assert any(v.startswith("marked") for v in again["videos"])  # the finished shard was reused
    assert again["frames"] == first["frames"]
    with pytest.raises(SurgkitError, match=r"settings\.tau=0\.5, this run has settings\.tau=0\.6"):
        run_benchmark(tiny_clip, src.frames, src.vocabulary, BenchSettings(batch_size=4, tau=0.6), out)


def test_bad_inputs_give_clear_errors(tiny_clip, tmp_path):
    img = np.zeros((32, 32, 3), np.uint8)
    empty = GroundingFrame("video01", 3, img, source="boxes.csv:7")
    with pytest.raises(
        SurgkitError, match=r"boxes.csv:7: frame video01/3: image without annotated instruments"
    ):
        run_benchmark(tiny_clip, [empty], CHOLEC80_TOOLS, BenchSettings(strict=True), tmp_path / "a")
    ok = GroundingFrame("video01", 4, img, boxes={"grasper": [(0, 0, 8, 8)]})
    summary = run_benchmark(tiny_clip, [empty, ok], CHOLEC80_TOOLS, BenchSettings(), tmp_path / "b")
    assert summary["frames"] == 1 and summary["skipped"][0]["frame"] == "video01/3"
    alien = GroundingFrame("video01", 5, img, boxes={"trocar": [(0, 0, 8, 8)]}, source="boxes.csv:9")
    with pytest.raises(
        SurgkitError, match=r"boxes.csv:9: frame video01/5: class 'trocar' is not in the instrument"
    ):
        run_benchmark(tiny_clip, [alien], CHOLEC80_TOOLS, BenchSettings(), tmp_path / "c")


def test_mask_regions_on_the_synthetic_layout(world, tiny_clip, tmp_path):
    src = load_frames("synth", world, "instrument", regions="masks")
    frame = src.frames[0]
    assert frame.regions == "masks" and set(frame.masks) == set(frame.boxes)
    masks, boxes = frame.region_masks((64, 96), "masks"), frame.region_masks((64, 96), "boxes")
    for label in frame.boxes:
        assert masks[label].sum() == boxes[label].sum() - 2 * 2 * 20 - (
            0 if label == "grasper" else 2 * 2 * 4
        )
        assert not (masks[label] & ~boxes[label]).any()
    s = run_benchmark(
        tiny_clip, src.frames, src.vocabulary, BenchSettings(batch_size=6), tmp_path / "m", progress=False
    )
    assert s["frames"] == 12
    with pytest.raises(SurgkitError, match="synthetic world only"):
        load_frames("cholec80_boxes", world / "cholec80_boxes", "instrument", regions="masks")


def test_rasterise_box_pixel_centres():
    m = rasterise_box((1.0, 2.0, 3.0, 4.0), (5, 6))
    expected = np.zeros((5, 6), bool)
    expected[2:4, 1:3] = True
    assert np.array_equal(m, expected)
    assert np.array_equal(
        rasterise_box((1 / 6, 0.4, 0.5, 0.8), (5, 6), "normalized"),
        np.pad(np.ones((2, 2), bool), ((2, 1), (1, 3))),
    )


def test_cli_bench_table_figure(world, tiny_clip_dir, tmp_path, run_cli):
    code, out, err = run_cli("ground", "bench", "--model", tiny_clip_dir, "--dataset", "synth", "--root", world,
                             "--task", "triplet", "--out", tmp_path / "r1", "--batch-size", "6")  # fmt: skip
    assert code == 0, err
    assert "ARS" in out
    code, out, err = run_cli("ground", "table", tmp_path / "r1", "--markdown", tmp_path / "t.md")
    assert code == 0 and "V/T" in (tmp_path / "t.md").read_text()
    code, out, err = run_cli(
        "ground", "figure", tmp_path / "r1", "--out", tmp_path / "f.png", "--kind", "verb"
    )
    assert code == 0 and (tmp_path / "f.png").stat().st_size > 1000
    code, out, err = run_cli(
        "ground", "bench", "--model", tiny_clip_dir, "--dataset", "nope", "--root", world
    )
    assert code == 2 and "instrument task needs boxes" in err
    code, out, err = run_cli("ground", "table", tmp_path / "missing")
    assert code == 2 and "summary.json" in err


def test_copesd_frames_use_normalised_boxes_and_vqa_images(tmp_path, tiny_clip):
    import cv2

    (tmp_path / "frames" / "000123").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "frames" / "000123" / "0042.png"), np.full((40, 50, 3), 90, np.uint8))
    answer = "Move the Forceps[0.10, 0.20, 0.50, 0.60] to the flap and lift it with the Knife[0.60, 0.50, 0.90, 0.80]."
    sample = {
        "image": "frames/000123/0042.png",
        "conversations": [{"from": "human", "value": "Lift the flap."}, {"from": "gpt", "value": answer}],
    }
    (tmp_path / "copesd.json").write_text(json.dumps([sample, sample]))  # the same frame twice
    src = load_frames("copesd", tmp_path, "instrument")
    assert len(src.frames) == 1 and src.vocabulary == ["forceps", "knife"]
    frame = src.frames[0]
    assert frame.unit == "normalized" and frame.boxes["forceps"] == [(0.1, 0.2, 0.5, 0.6)]
    masks = frame.region_masks((40, 50))
    assert masks["knife"].sum() == 15 * 12  # x in [30, 45), y in [20, 32)
    s = run_benchmark(
        tiny_clip, src.frames, src.vocabulary, BenchSettings(), tmp_path / "run", progress=False
    )
    assert s["frames"] == 1 and s["overall"]["accuracy"] in (0.0, 1.0)


def test_unreadable_image_is_skipped_and_named(tiny_clip, tmp_path):
    good = GroundingFrame("video01", 1, np.zeros((32, 32, 3), np.uint8), boxes={"hook": [(0, 0, 8, 8)]})
    bad = GroundingFrame("video01", 2, tmp_path / "missing.png", boxes={"hook": [(0, 0, 8, 8)]})
    s = run_benchmark(tiny_clip, [bad, good], CHOLEC80_TOOLS, BenchSettings(), tmp_path / "r", progress=False)
    assert s["frames"] == 1
    assert s["skipped"] == [
        {
            "frame": "video01/2",
            "reason": f"{tmp_path / 'missing.png'}: missing or unreadable image for frame video01/2",
            "where": "image",
        }
    ]
    assert [r["frame"] for r in load_records(tmp_path / "r")] == [1]
    assert load_heatmap(tmp_path / "r", load_records(tmp_path / "r")[0]) is not None
