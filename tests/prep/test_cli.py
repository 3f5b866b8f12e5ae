"""The four CLI commands chained on a real video, through the real entry point."""

from __future__ import annotations

import torch

from surgkit.prep.store import FeatureStore

from .conftest import make_video


def test_prep_commands_chain(tmp_path, run_cli):
    make_video(tmp_path / "v" / "Knot_Tying_C002_capture1.avi", 40, 30, "mpeg4", size=(64, 48))
    code, _, err = run_cli("prep", "frames", tmp_path / "v", "-o", tmp_path / "f", "--fps", "10", "--format",
                           "array", "--transform", "resize=32x32", "-q")  # fmt: skip
    assert code == 0, err
    code, _, err = run_cli("prep", "flow", tmp_path / "f", "-o", tmp_path / "fl", "--method", "dis", "-q")
    assert code == 0, err
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, VideoMAEConfig, VideoMAEModel

    torch.manual_seed(0)
    SegformerForSemanticSegmentation(
        SegformerConfig(num_encoder_blocks=1, depths=[1], sr_ratios=[1], hidden_sizes=[8], patch_sizes=[3],
                        strides=[2], num_attention_heads=[1], mlp_ratios=[2], decoder_hidden_size=8, num_labels=2)
    ).save_pretrained(tmp_path / "seg")  # fmt: skip
    code, _, err = run_cli("prep", "masks", tmp_path / "f", "-o", tmp_path / "m", "--model", tmp_path / "seg",
                           "--input-size", "32", "-q")  # fmt: skip
    assert code == 0, err
    code, _, err = run_cli("prep", "masks", tmp_path / "f", "-o", tmp_path / "m2", "-q")
    assert code == 2 and "exactly one mask source" in err
    VideoMAEModel(VideoMAEConfig(image_size=32, patch_size=16, num_frames=2, tubelet_size=2, hidden_size=16,
                                 num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
                  ).save_pretrained(tmp_path / "bb")  # fmt: skip
    code, out, err = run_cli("prep", "features", "-o", tmp_path / "feat", "--backbone", tmp_path / "bb",
                             "--frames", tmp_path / "f", "--flow", tmp_path / "fl", "--masks", tmp_path / "m",
                             "--segment-frames", "4", "-q")  # fmt: skip
    assert code == 0, err
    store = FeatureStore(tmp_path / "feat")
    feats = store.load_all("Knot_Tying_C002_capture1")
    assert {k: v.shape for k, v in feats.items()} == {"rgb": (4, 16), "flow": (4, 16), "mask": (4, 16)}
