"""Video Swin against the golden outputs of the reference SwinTransformer3D, and strict loading of
full-size checkpoints written in the published MMAction2 layout."""

from __future__ import annotations

import json

import pytest
import torch

from surgkit.backbones.checkpoint import load_strict
from surgkit.backbones.published import load_published, model_from_state, videoswin_config
from surgkit.backbones.videoswin import PRESETS, VideoSwinConfig, VideoSwinModel, preset
from surgkit.errors import SurgkitError

from .conftest import DATA, filled_state, published_swin_shapes, reference_relative_index

FIXTURE_CFG = dict(
    embed_dim=16, depths=(2, 2, 2, 2), num_heads=(2, 4, 8, 16), window_size=(2, 3, 4), num_classes=10
)


def _fixture_model(weights, dtype=torch.float32):
    model = VideoSwinModel(VideoSwinConfig(**FIXTURE_CFG)).eval()
    load_strict(model, weights, "fixture")
    return model.to(dtype)


@pytest.mark.parametrize("case", ["main", "pad"])
def test_matches_reference_float32(swin_fixture, case):
    weights, inputs, outputs, _ = swin_fixture
    model = _fixture_model(weights)
    x = inputs[f"x_{case}"]
    with torch.no_grad():
        got = {"feat": model.backbone(x), "pooled": model.features(x), "logits": model(x)}
    for name, value in got.items():
        want = outputs[f"{name}_{case}"]
        assert value.shape == want.shape
        assert (value - want).abs().max().item() <= 1e-5, name  # README tolerance, float32


@pytest.mark.parametrize("case", ["main", "pad"])
def test_matches_reference_float64(swin_fixture, case):
    weights, inputs, _, outputs64 = swin_fixture
    model = _fixture_model(weights, torch.float64)
    x = inputs[f"x_{case}"].double()
    with torch.no_grad():
        assert (model.backbone(x) - outputs64[f"feat_{case}"]).abs().max().item() <= 1e-9
        assert (model(x) - outputs64[f"logits_{case}"]).abs().max().item() <= 1e-9


def test_clamped_window_uses_the_configured_index(swin_fixture):
    """The reference slices the index of the configured window; rebuilding it for the clamped
    window (stage 4 of 'main' is clamped to (2, 2, 2)) gives other outputs, so the fixture sees it."""
    from surgkit.backbones import videoswin

    weights, inputs, outputs, _ = swin_fixture
    model = _fixture_model(weights)
    for blk in model.backbone.layers[3].blocks:
        blk.attn.relative_position_index = videoswin.relative_position_index((2, 2, 2)).repeat(2, 2)[:24, :24]
    with torch.no_grad():
        assert (model.backbone(inputs["x_main"]) - outputs["feat_main"]).abs().max().item() > 1e-3


def test_published_layout_description_matches_fixture(swin_fixture):
    weights = swin_fixture[0]
    shapes = published_swin_shapes(16, (2, 2, 2, 2), (2, 4, 8, 16), (2, 3, 4), num_classes=10)
    assert {k: tuple(v.shape) for k, v in weights.items()} == shapes
    assert torch.equal(
        weights["backbone.layers.0.blocks.0.attn.relative_position_index"],
        reference_relative_index((2, 3, 4)),
    )
    model = VideoSwinModel(VideoSwinConfig(**FIXTURE_CFG))
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes


def test_config_inferred_from_fixture_weights(swin_fixture):
    cfg = videoswin_config(swin_fixture[0])
    args = json.loads((DATA / "videoswin" / "config.json").read_text())["constructor_args"]
    assert cfg.patch_size == tuple(args["patch_size"]) and cfg.embed_dim == args["embed_dim"]
    assert cfg.depths == tuple(args["depths"]) and cfg.num_heads == tuple(args["num_heads"])
    assert cfg.window_size == tuple(args["window_size"]) and cfg.mlp_ratio == args["mlp_ratio"]
    assert cfg.qkv_bias and cfg.patch_norm and cfg.num_classes == 10


@pytest.mark.parametrize("size", sorted(PRESETS))
def test_full_size_published_state_loads_strictly(size):
    want = preset(size)
    shapes = published_swin_shapes(want.embed_dim, want.depths, want.num_heads, (8, 7, 7))
    state = filled_state(shapes, window=(8, 7, 7))
    model = model_from_state(state, f"swin {size}")
    assert model.config == want  # every architecture field inferred from the tensors
    loaded = model.state_dict()
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)  # each tensor under its own name
    n = sum(p.numel() for p in model.parameters())
    assert n == sum(torch.Size(s).numel() for k, s in shapes.items() if not k.endswith("_index"))
    assert (
        abs(n / 1e6 - {"swin-t": 28.2, "swin-s": 49.8, "swin-b": 88.1}[size]) < 0.06
    )  # Video Swin paper, Table 1


def test_pth_in_the_published_container(tmp_path):
    """MMAction2 .pth: {'meta': {...}, 'state_dict': {...}}; read with weights_only, only when trusted."""
    shapes = published_swin_shapes(96, (2, 2, 6, 2), (3, 6, 12, 24), (8, 7, 7))
    state = filled_state(shapes, window=(8, 7, 7))
    path = tmp_path / "swin_tiny_patch244_window877_kinetics400_1k.pth"
    torch.save({"meta": {"mmcv_version": "1.3.1", "epoch": 30, "CLASSES": None}, "state_dict": state}, path)
    with pytest.raises(SurgkitError, match="--trust-pickle"):
        load_published(path)
    model = load_published(path, trust_pickle=True)
    assert model.config.checkpoint == path.name and model.config.depths == (2, 2, 6, 2)
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        assert model.features(x).shape == (1, 768) and model(x).shape == (1, 400)


def test_strict_loading_names_every_problem():
    shapes = published_swin_shapes(16, (2, 2, 2, 2), (2, 4, 8, 16), (2, 3, 4), num_classes=10)
    state = filled_state(shapes, window=(2, 3, 4))
    model = VideoSwinModel(VideoSwinConfig(**FIXTURE_CFG))
    bad = dict(state)
    del bad["backbone.layers.1.blocks.1.mlp.fc2.bias"]
    bad["backbone.layers.1.blocks.1.mlp.fc3.bias"] = torch.zeros(32)
    bad["backbone.norm.weight"] = torch.zeros(64)
    with pytest.raises(SurgkitError) as e:
        load_strict(model, bad, "ckpt.pth")
    msg = str(e.value)
    assert "ckpt.pth" in msg and "missing (1): backbone.layers.1.blocks.1.mlp.fc2.bias" in msg
    assert (
        "unexpected (1): backbone.layers.1.blocks.1.mlp.fc3.bias" in msg
        and "backbone.norm.weight (64,)" in msg
    )


def test_bare_backbone_state_dict_is_accepted(swin_fixture):
    weights, inputs, outputs, _ = swin_fixture
    bare = {k.removeprefix("backbone."): v for k, v in weights.items() if k.startswith("backbone.")}
    model = model_from_state(bare, "bare")
    assert model.cls_head is None
    with torch.no_grad():
        assert (model.features(inputs["x_main"]) - outputs["pooled_main"]).abs().max().item() <= 1e-5
