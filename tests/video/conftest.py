"""Shared helpers for the SurgVISTA tests: the golden fixtures of the official implementation."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import SHARED

FIXTURES = SHARED / "fixtures" / "surgvista"  # golden outputs of the official code, read in place


def fixture_configs():
    """The tiny official model of config.json as surgkit configs (pretraining + classifier)."""
    from surgkit.video.config import SurgVistaClassifierConfig, SurgVistaConfig

    cfg = json.loads((FIXTURES / "config.json").read_text())
    p, f = cfg["pretrain_model"], cfg["finetune_model"]
    enc = dict(
        img_size=p["img_size"], patch_size=p["patch_size"], num_frames=p["num_frames"],
        tubelet_size=p["tubelet_size"], in_chans=p["in_chans"], embed_dim=p["encoder_embed_dim"],
        depth=p["encoder_depth"], num_heads=p["encoder_num_heads"], mlp_ratio=p["mlp_ratio"],
        qkv_bias=p["qkv_bias"], layer_norm_eps=p["layer_norm_eps"], drop_path_rate=p["drop_path_rate"],
    )  # fmt: skip
    pre = SurgVistaConfig(
        **enc,
        decoder_embed_dim=p["decoder_embed_dim"], decoder_depth=p["decoder_depth_video"],
        decoder_num_heads=p["decoder_num_heads"], distill_embed_dim=p["feat_decoder_embed_dim"],
        distill_depth=p["decoder_depth_image"], distill_num_heads=p["feat_decoder_num_heads"],
        distill_target_dim=p["target_feature_dim"], mask_ratio=cfg["masking"]["mask_ratio"],
        recon_loss_weight=cfg["targets_and_losses"]["weights"]["video_reconstruction_loss_weight"],
        distill_loss_weight=cfg["targets_and_losses"]["weights"]["image_teacher_loss_weight"],
    )  # fmt: skip
    cls = SurgVistaClassifierConfig(
        **{**enc, "drop_path_rate": f["drop_path_rate"]},
        num_classes=f["num_classes"],
        fc_drop_rate=f["fc_drop_rate"],
    )
    return pre, cls


@pytest.fixture(scope="session")
def golden():
    """(inputs, outputs) tensors of the official run."""
    from safetensors.torch import load_file

    return load_file(str(FIXTURES / "inputs.safetensors")), load_file(str(FIXTURES / "outputs.safetensors"))


@pytest.fixture
def fixture_cfgs():
    return fixture_configs()


def assert_close(
    actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-5
) -> None:
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol)
