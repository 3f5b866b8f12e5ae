"""Fine-tuning: layer-wise lr decay, validation-only selection, metrics, predictions, tasks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from surgkit.video.config import classifier_config, preset
from surgkit.video.finetune import FinetuneSettings, finetune, layer_id, llrd_param_groups
from surgkit.video.model import SurgVistaForClassification

from .native_data import make_cholec80, make_cholect50

SMALL = {"img_size": 32, "depth": 1}
# CPU-sized runs; RandAugment / mixup off where a test asserts that the model learns the colour code
FAST = dict(batch_size=4, model_overrides=SMALL, num_frames=4, interval=2, device="cpu", torch_threads=1,
            rand_augment=None, mixup=0.0, cutmix=0.0, drop_path_rate=0.0, warmup_epochs=0.5)  # fmt: skip


def _scores(run_dir):
    from safetensors import safe_open

    with safe_open(str(run_dir / "scores_test.safetensors"), "pt") as f:
        return f.get_tensor("scores").numpy(), json.loads(f.metadata()["video_ids"])


def _csv(run_dir):
    rows = (run_dir / "predictions_test.csv").read_text().splitlines()[1:]
    return [r.split(",") for r in rows]


@pytest.fixture(scope="module")
def cholec80_root(tmp_path_factory):
    return make_cholec80(tmp_path_factory.mktemp("c80"))


def test_layer_decay_matches_official_rule():
    model = SurgVistaForClassification(
        classifier_config(preset("base", img_size=32, num_frames=4, embed_dim=64, num_heads=4), 7)
    )
    assert layer_id("encoder.patch_embed.proj.weight", 12) == 0
    assert layer_id("encoder.blocks.0.attn.qkv.weight", 12) == 1
    assert layer_id("encoder.blocks.11.mlp.fc2.bias", 12) == 12
    assert layer_id("head.weight", 12) == layer_id("fc_norm.bias", 12) == 13
    groups = llrd_param_groups(model, 0.05, 0.75)
    scale = {id(p): (g["lr_scale"], g["weight_decay"]) for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert scale[id(named["encoder.patch_embed.proj.weight"])] == (0.75**13, 0.05)
    assert scale[id(named["encoder.blocks.11.attn.qkv.weight"])] == (0.75**1, 0.05)
    assert scale[id(named["encoder.blocks.3.attn.q_bias"])] == (0.75**9, 0.0)  # 1-D: no weight decay
    assert scale[id(named["head.weight"])] == (1.0, 0.05)
    assert torch.count_nonzero(model.head.weight) == 0  # zero-initialised head (init_scale 0)


def test_phase_finetune_selects_on_validation_and_reports_both_protocols(tmp_path, cholec80_root, run_cli):
    from surgkit.metrics import phase

    cfg = {**FAST, "epochs": 2, "train_samples_per_epoch": 32, "eval_frame_stride": 2}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    code, out, err = run_cli("video", "finetune", "--task", "phase", "--dataset", "cholec80", "--root",
                             cholec80_root, "--run-dir", tmp_path / "run", "--config", tmp_path / "cfg.json")  # fmt: skip
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    # the official 32/8/40 split: video33 is validation, video41 the only test video
    assert summary["selection"]["metric"] == "video_accuracy" and summary["selection"]["epoch"] in (1, 2)
    assert all("val" in h for h in summary["history"])
    assert summary["preset"] == "phase" and summary["recipe"]["cut_black"]  # Cholec80: the official black cut
    test = summary["test"]
    assert set(test["strict"]) >= {"video_accuracy", "jaccard", "precision", "recall"}
    assert set(test["relaxed"]) >= {"video_accuracy", "jaccard"}  # 10-s window = 5 frames at stride 2
    rows = _csv(tmp_path / "run")
    assert len(rows) == 12 and {r[0] for r in rows} == {"video41"}
    assert [int(r[1]) for r in rows[:3]] == [0, 50, 100]  # every 2nd 1-fps label, as 25-fps source frames
    g, p = np.array([int(r[2]) for r in rows]), np.array([int(r[3]) for r in rows])
    ref = phase.evaluate([g], [p], 7, protocol="relaxed", fps=0.5)
    for k in (
        "video_accuracy",
        "precision",
        "jaccard",
    ):  # Jaccard: NaN with 4 of 7 phases absent (Main.m mean)
        assert test["relaxed"][k] == pytest.approx(ref[k], nan_ok=True), k
    assert test["video_accuracy"] == pytest.approx(np.mean(g == p))
    assert test["image_accuracy"] > 0.6  # the model learns the colour-coded phases (chance 1/3)


def test_official_recipe_runs_end_to_end(tmp_path, cholec80_root):
    s = FinetuneSettings.from_preset("phase", "cholec80", str(cholec80_root), run_dir=str(tmp_path / "r"), epochs=1,
                                     batch_size=4, model_overrides=SMALL, num_frames=4, interval=2, device="cpu",
                                     torch_threads=1, train_samples_per_epoch=8, eval_frame_stride=6)  # fmt: skip
    assert s.rand_augment == "rand-m7-n4-mstd0.5-inc1" and s.mixup == 0.8 and s.reprob == 0.25
    summary = finetune(s, progress=False)
    assert np.isfinite(summary["history"][0]["train_loss"])
    assert (
        summary["recipe"]["loss"].startswith("soft-target CE") and summary["recipe"]["random_erasing"] == 0.25
    )


def test_no_validation_split_warns_and_keeps_last_epoch(tmp_path, cholec80_root):
    s = FinetuneSettings(dataset="cholec80", root=str(cholec80_root), task="phase", run_dir=str(tmp_path / "r"),
                         split_variant="40/40", epochs=1, train_samples_per_epoch=8, eval_frame_stride=4, **FAST)  # fmt: skip
    summary = finetune(s, progress=False)
    assert summary["selection"] == "last epoch (no validation split)"
    assert any("NO VALIDATION SPLIT" in n for n in summary["notes"])
    assert not (tmp_path / "r" / "best").exists()


def test_triplet_ap_from_saved_scores_equals_ivtmetrics(tmp_path, monkeypatch):
    import warnings

    import ivtmetrics
    import ivtmetrics.recognition as ivt_recognition

    from ..metrics.test_triplet import _pre16_average_precision

    monkeypatch.setattr(ivt_recognition, "average_precision_score", _pre16_average_precision)
    root = make_cholect50(tmp_path / "t50")
    s = FinetuneSettings.from_preset("triplet", "cholect50", str(root), run_dir=str(tmp_path / "r"), epochs=3,
                                     **{**FAST, "interval": 1, "batch_size": 4})  # fmt: skip
    summary = finetune(s, progress=False)
    assert (
        summary["selection"]["metric"] == "ivt" and summary["recipe"]["loss"] == "BCE"
    )  # VID05 val, VID92 test
    scores, vids = _scores(tmp_path / "r")
    assert scores.shape == (10, 100) and vids == ["VID92"] * 10
    labels = np.zeros((10, 100), int)
    for k, r in enumerate(_csv(tmp_path / "r")):
        labels[k, [int(t) for t in r[2].split()]] = 1
    rec = ivtmetrics.Recognition(num_class=100)
    rec.update(labels, scores)
    rec.video_end()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for c in ("i", "v", "t", "ivt"):
            assert summary["test"][c] == pytest.approx(rec.compute_video_AP(c, ignore_null=True)["mAP"]), c
    assert summary["test"]["ivt"] > 0.75  # triplets 17 / 60 are colour-coded (chance AP ≈ 0.5)


def test_finetune_from_pretrained_folder_loads_encoder(tmp_path, fixture_cfgs):
    from surgkit.video.finetune import build_classifier
    from surgkit.video.model import SurgVistaForPretraining

    pre = SurgVistaForPretraining(fixture_cfgs[0])
    pre.save_pretrained(tmp_path / "pre")
    s = FinetuneSettings(dataset="x", root="x", init=str(tmp_path / "pre"), num_frames=4,
                         model_overrides={"drop_path_rate": 0.2})  # fmt: skip
    model, note = build_classifier(s, 7, tuple("abcdefg"))
    assert "encoder from" in note and model.config.drop_path_rate == 0.2  # an override, not a TypeError
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(v, pre.encoder.state_dict()[k]), k
    assert isinstance(model.encoder.norm, torch.nn.Identity)


def test_action_clip_task_accuracy_and_map_match_sklearn(tmp_path):
    from sklearn.metrics import accuracy_score, average_precision_score

    from .native_data import make_surgicalactions160

    root = make_surgicalactions160(tmp_path / "sa160", frames=3)  # 3-frame clips for a 4-frame model: padded
    s = FinetuneSettings.from_preset("action", "surgicalactions160", str(root), run_dir=str(tmp_path / "r"),
                                     epochs=2, **{**FAST, "batch_size": 2})  # fmt: skip
    summary = finetune(s, progress=False)
    assert summary["selection"] == "last epoch (no validation split)"  # SA160 has train/test lists only
    scores, _ = _scores(tmp_path / "r")
    labels = np.array([int(r[2]) for r in _csv(tmp_path / "r")])
    assert summary["test"]["num_clips"] == 2 and summary["test"]["protocol"]["name"] == "surgvista-clip-merge"
    assert summary["test"]["accuracy"] == pytest.approx(accuracy_score(labels, scores.argmax(1)))
    ref = np.mean([average_precision_score(labels == k, scores[:, k]) for k in range(scores.shape[1])])
    assert summary["test"]["map"] == pytest.approx(ref)


def test_finetune_kill_and_resume_equals_uninterrupted(tmp_path, cholec80_root):
    def settings(run):
        return FinetuneSettings.from_preset("phase", "cholec80", str(cholec80_root), run_dir=str(tmp_path / run),
                                            epochs=2, batch_size=4, model_overrides=SMALL, num_frames=4, interval=2,
                                            device="cpu", torch_threads=1, train_samples_per_epoch=8,
                                            eval_frame_stride=6, frame_cache=str(tmp_path / "frames"))  # fmt: skip

    full = finetune(
        settings("full"), progress=False
    )  # official recipe: RandAugment, mixup, erasing, drop path
    cut = finetune(settings("cut"), progress=False, stop_after=1)
    assert not cut["finished"] and "test" not in cut  # an interrupted run never looks at test
    resumed = finetune(settings("cut"), progress=False)
    assert [h["train_loss"] for h in resumed["history"]] == pytest.approx([h["train_loss"] for h in full["history"]],
                                                                          rel=1e-5)  # fmt: skip
    assert resumed["test"]["image_accuracy"] == pytest.approx(full["test"]["image_accuracy"])


@pytest.mark.parametrize("form", ["4class", "criteria"])
def test_cvs_endoscapes(tmp_path, form):
    from sklearn.metrics import accuracy_score, average_precision_score

    from .native_data import make_endoscapes

    root = make_endoscapes(tmp_path / "endoscapes")
    preset = "cvs-endoscapes" if form == "4class" else "cvs-criteria"
    s = FinetuneSettings.from_preset(preset, "endoscapes", str(root), run_dir=str(tmp_path / "r"), epochs=1,
                                     **{**FAST, "interval": 1})  # fmt: skip
    summary = finetune(s, progress=False)
    assert summary["selection"]["metric"] == "map"
    rows = _csv(tmp_path / "r")
    assert len(rows) == 6 and rows[0][:2] == ["4", "0"]
    scores, _ = _scores(tmp_path / "r")
    if form == "4class":  # CE over the number of criteria met; accuracy + mAP as engine_for_clip.merge
        labels = np.array([int(r[2]) for r in rows])
        assert labels.tolist() == [0, 0, 1, 2, 2, 2]  # criteria (k>=2, k>=3, 1/3 at k=5) → count met
        assert summary["test"]["accuracy"] == pytest.approx(accuracy_score(labels, scores.argmax(1)))
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = np.mean([average_precision_score(labels == k, scores[:, k]) for k in range(4)])
        assert summary["test"]["map"] == pytest.approx(ref)
    else:
        assert summary["test"]["protocol"]["name"] == "endoscapes-cvs201" and 0 <= summary["test"]["map"] <= 1


def test_split_file_matches_ids_by_video_number(tmp_path):
    from surgkit.errors import SurgkitError
    from surgkit.video.finetune import split_from_file

    world = tmp_path / "world.json"  # a synth world.json names videos 'videoNN'; CholecT50 calls them 'VIDNN'
    world.write_text(
        json.dumps({"splits": {"lap": {"train": ["video01", "video02"], "val": [], "test": ["video05"]}}})
    )
    split = split_from_file(world, ["VID01", "VID02", "VID05"])
    assert (split.train, split.val, split.test) == (["VID01", "VID02"], [], ["VID05"])
    with pytest.raises(SurgkitError, match="not in the dataset"):
        split_from_file(world, ["VID01", "VID02"])
