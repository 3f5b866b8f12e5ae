"""Fine-tuning: layer-wise lr decay, validation-only selection, metrics, predictions, tasks."""

from __future__ import annotations

import json

import pytest
import torch

from surgkit.video.config import classifier_config, preset
from surgkit.video.finetune import FinetuneSettings, finetune, layer_id, llrd_param_groups
from surgkit.video.model import SurgVistaForClassification

from .native_data import make_cholec80, make_cholect50

SMALL = {"img_size": 32, "depth": 1}


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


def test_phase_finetune_selects_on_validation(tmp_path, cholec80_root, run_cli):
    cfg = {"epochs": 2, "warmup_epochs": 0.5, "batch_size": 4, "model_overrides": SMALL, "num_frames": 4,
           "interval": 2, "device": "cpu", "torch_threads": 1, "train_samples_per_epoch": 32, "eval_frame_stride": 2}  # fmt: skip
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    code, out, err = run_cli("video", "finetune", "--task", "phase", "--dataset", "cholec80", "--root",
                             cholec80_root, "--run-dir", tmp_path / "run", "--config", tmp_path / "cfg.json")  # fmt: skip
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    # the official 32/8/40 split: video33 is validation, video41 the only test video
    assert summary["selection"]["metric"] == "video_accuracy" and summary["selection"]["epoch"] in (1, 2)
    assert all("val" in h for h in summary["history"])
    test = summary["test"]
    assert test["protocol"]["name"] == "strict" and 0.0 <= test["video_accuracy"] <= 1.0
    rows = (tmp_path / "run" / "predictions_test.csv").read_text().splitlines()
    assert rows[0] == "video_id,frame,label,prediction" and len(rows) == 1 + 12
    assert {r.split(",")[0] for r in rows[1:]} == {"video41"}
    assert [int(r.split(",")[1]) for r in rows[1:4]] == [
        0,
        50,
        100,
    ]  # every 2nd 1-fps label, as 25-fps source frames of the 1-fps labels
    # the model learns the colour-coded phases (far above the 1/3 chance level)
    assert test["image_accuracy"] > 0.6


def test_no_validation_split_warns_and_keeps_last_epoch(tmp_path, cholec80_root):
    s = FinetuneSettings(dataset="cholec80", root=str(cholec80_root), task="phase", run_dir=str(tmp_path / "r"),
                         split_variant="40/40", epochs=1, batch_size=4, model_overrides=SMALL, num_frames=4,
                         interval=2, device="cpu", torch_threads=1, train_samples_per_epoch=8, eval_frame_stride=4)  # fmt: skip
    summary = finetune(s, progress=False)
    assert summary["selection"] == "last epoch (no validation split)"
    assert any("NO VALIDATION SPLIT" in n for n in summary["notes"])
    assert not (tmp_path / "r" / "best").exists()


def test_triplet_finetune_multilabel(tmp_path):
    root = make_cholect50(tmp_path / "t50")
    s = FinetuneSettings(dataset="cholect50", root=str(root), task="triplet", run_dir=str(tmp_path / "r"),
                         epochs=1, batch_size=4, model_overrides=SMALL, num_frames=4, interval=1, device="cpu", torch_threads=1,
                         label_smoothing=0.0)  # fmt: skip
    summary = finetune(s, progress=False)
    assert summary["selection"]["metric"] == "ivt"  # challenge split: VID05 val, VID92 test
    assert 0.0 <= summary["test"]["ivt"] <= 1.0 and "i" in summary["test"]
    from safetensors import safe_open

    with safe_open(str(tmp_path / "r" / "scores_test.safetensors"), "pt") as f:
        assert f.get_tensor("scores").shape == (10, 100)
        assert json.loads(f.metadata()["video_ids"]) == ["VID92"] * 10


def test_finetune_from_pretrained_folder_loads_encoder(tmp_path, fixture_cfgs):
    from surgkit.video.finetune import build_classifier
    from surgkit.video.model import SurgVistaForPretraining

    pre = SurgVistaForPretraining(fixture_cfgs[0])
    pre.save_pretrained(tmp_path / "pre")
    s = FinetuneSettings(dataset="x", root="x", init=str(tmp_path / "pre"), num_frames=4)
    model, note = build_classifier(s, 7, tuple("abcdefg"))
    assert "encoder from" in note
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(v, pre.encoder.state_dict()[k]), k
    assert isinstance(model.encoder.norm, torch.nn.Identity)


def test_action_clip_task_short_clips_padded(tmp_path):
    from .native_data import make_surgicalactions160

    root = make_surgicalactions160(tmp_path / "sa160", frames=3)  # 3-frame clips for a 4-frame model: padded
    s = FinetuneSettings(dataset="surgicalactions160", root=str(root), task="action", run_dir=str(tmp_path / "r"),
                         epochs=1, batch_size=2, model_overrides=SMALL, num_frames=4, device="cpu", torch_threads=1)  # fmt: skip
    summary = finetune(s, progress=False)
    assert summary["selection"] == "last epoch (no validation split)"  # SA160 has train/test lists only
    assert summary["test"]["num_clips"] == 2 and summary["test"]["protocol"]["name"] == "surgvista-clip-merge"


def test_finetune_kill_and_resume_equals_uninterrupted(tmp_path, cholec80_root):
    def settings(run):
        return FinetuneSettings(dataset="cholec80", root=str(cholec80_root), task="phase", run_dir=str(tmp_path / run),
                                epochs=2, batch_size=4, model_overrides=SMALL, num_frames=4, interval=2,
                                device="cpu", torch_threads=1, train_samples_per_epoch=8, eval_frame_stride=6,
                                frame_cache=str(tmp_path / "frames"))  # fmt: skip

    full = finetune(settings("full"), progress=False)
    cut = finetune(settings("cut"), progress=False, stop_after=1)
    assert not cut["finished"] and "test" not in cut  # an interrupted run never looks at test
    resumed = finetune(settings("cut"), progress=False)
    assert [h["train_loss"] for h in resumed["history"]] == pytest.approx([h["train_loss"] for h in full["history"]],
                                                                          rel=1e-5)  # fmt: skip
    assert resumed["test"]["image_accuracy"] == pytest.approx(full["test"]["image_accuracy"])


def test_cvs_criteria_finetune(tmp_path):
    from .native_data import make_endoscapes

    root = make_endoscapes(tmp_path / "endoscapes")
    s = FinetuneSettings(dataset="endoscapes", root=str(root), task="cvs", run_dir=str(tmp_path / "r"), epochs=1,
                         batch_size=4, model_overrides=SMALL, num_frames=4, interval=1, device="cpu", torch_threads=1,
                         label_smoothing=0.0)  # fmt: skip
    summary = finetune(s, progress=False)
    assert summary["selection"]["metric"] == "map" and summary["history"][0]["val"]["primary"] == "map"
    assert 0.0 <= summary["test"]["map"] <= 1.0  # Endoscapes official CVS metrics (surgkit.metrics)
    rows = (tmp_path / "r" / "predictions_test.csv").read_text().splitlines()
    assert len(rows) == 1 + 6 and rows[1].startswith("4,0,")


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


def test_cholec80_cvs_scores_become_bce_targets():
    from pathlib import Path

    from surgkit.data.model import CVSLabel, Dataset
    from surgkit.video.finetune import _cvs_to_unit_interval

    ds = Dataset("cholec80_cvs", Path("."))
    ds.cvs = [CVSLabel("3", 0, 10, (2.0, 1.0, 0.0), scale="0-2"), CVSLabel("4", 5, 5, (1.0, 0.0, 1 / 3))]
    _cvs_to_unit_interval(ds)
    assert ds.cvs[0].criteria == (1.0, 0.5, 0.0) and ds.cvs[1].criteria == (1.0, 0.0, 1 / 3)
    assert any("divided by 2" in n for n in ds.notes)
