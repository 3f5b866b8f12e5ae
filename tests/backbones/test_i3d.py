"""I3D against the golden outputs of the reference InceptionI3d (RGB and 2-channel flow, full width),
and strict loading of checkpoints in the layout of the public rgb_imagenet.pt / flow_imagenet.pt."""

from __future__ import annotations

import pytest
import torch

from surgkit.backbones.checkpoint import load_strict
from surgkit.backbones.i3d import I3DConfig, InceptionI3d, same_padding
from surgkit.backbones.published import load_published, model_from_state
from surgkit.errors import SurgkitError


@pytest.fixture(scope="module")
def models(i3d_fixture):
    rgb_state, flow_state = i3d_fixture[:2]
    out = {}
    for name, state in (("rgb", rgb_state), ("flow", flow_state)):
        model = InceptionI3d(I3DConfig(in_channels=3 if name == "rgb" else 2)).eval()
        load_strict(model, state, f"fixture {name}")
        out[name] = model
    return out


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("stream", ["rgb", "flow"])
def test_matches_reference_float32(models, i3d_fixture, stream, fused):
    model = models[stream].fuse() if fused else models[stream].unfuse()
    inputs, outputs = i3d_fixture[2], i3d_fixture[3]
    x = inputs[f"x_{stream}"]
    with torch.inference_mode():
        if stream == "rgb":  # intermediate endpoint: README tolerance 2e-4
            assert (model.mixed_5c(x) - outputs["rgb_Mixed_5c"]).abs().max().item() <= 2e-4
        pooled, logits = model.pooled(x), model(x)
    assert pooled.shape == (1, 1024, 1, 1, 1) and logits.shape == (1, 400, 1)
    assert (pooled - outputs[f"{stream}_pooled"]).abs().max().item() <= 5e-5
    assert (logits - outputs[f"{stream}_logits"]).abs().max().item() <= 5e-5
    model.unfuse()


@pytest.mark.parametrize("stream", ["rgb"])  # the flow stream differs only in its stem (float32 above)
def test_matches_reference_float64(models, i3d_fixture, stream):
    model = models[stream].unfuse().double()
    try:
        x = i3d_fixture[2][f"x_{stream}"].double()
        with torch.inference_mode():
            assert (model.pooled(x) - i3d_fixture[4][f"{stream}_pooled"]).abs().max().item() <= 1e-9
            assert (model(x) - i3d_fixture[4][f"{stream}_logits"]).abs().max().item() <= 1e-9
    finally:
        model.float()


def test_same_padding_rule():
    # README: pad = max(k - s, 0) if n % s == 0 else max(k - n % s, 0); front = pad // 2
    assert same_padding(10, 7, 2) == (2, 3)  # 10 % 2 == 0: pad 5
    assert same_padding(9, 7, 2) == (3, 3)  # 9 % 2 == 1: pad 6
    assert same_padding(5, 3, 2) == (1, 1)  # T 5 -> 3 in MaxPool3d_4a (README: T 5->3->2)
    assert same_padding(3, 2, 2) == (0, 1)  # T 3 -> 2 in MaxPool3d_5a: uneven front/back
    assert same_padding(7, 1, 1) == (0, 0)


def test_published_layout_is_the_fixture_layout(i3d_fixture):
    """The fixture's weights_rgb holds exactly the keys of the public checkpoints (README)."""
    rgb = i3d_fixture[0]
    model = InceptionI3d(I3DConfig())
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == {
        k: tuple(v.shape) for k, v in rgb.items()
    }


def test_full_size_pth_without_counters_loads_strictly(tmp_path, i3d_fixture):
    """2018-style plain state dict (no wrapper, no num_batches_tracked), flow stream: strict load."""
    flow = {k: v for k, v in i3d_fixture[1].items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "flow_imagenet.pt"
    torch.save(flow, path)
    model = load_published(path, trust_pickle=True)
    assert model.config.in_channels == 2 and model.config.num_classes == 400
    state = model.state_dict()
    assert all(torch.equal(state[k], flow[k]) for k in flow)
    assert int(state["Conv3d_1a_7x7.bn.num_batches_tracked"]) == 0
    x = i3d_fixture[2]["x_flow"]
    with torch.inference_mode():
        assert (model(x) - i3d_fixture[3]["flow_logits"]).abs().max().item() <= 5e-5


def test_strict_loading_refuses_layout_mistakes(i3d_fixture):
    rgb = dict(i3d_fixture[0])
    missing = {k: v for k, v in rgb.items() if k != "Mixed_4d.b2b.bn.running_var"}
    with pytest.raises(SurgkitError, match=r"missing \(1\): Mixed_4d\.b2b\.bn\.running_var"):
        model_from_state(missing, "rgb_imagenet.pt")
    extra = {**rgb, "Mixed_4d.b3a.conv3d.weight": torch.zeros(1)}
    with pytest.raises(SurgkitError, match=r"unexpected \(1\): Mixed_4d\.b3a\.conv3d\.weight"):
        model_from_state(extra, "rgb_imagenet.pt")
    swapped = {**rgb, "Mixed_3b.b1b.conv3d.weight": rgb["Mixed_3b.b2b.conv3d.weight"]}
    with pytest.raises(SurgkitError, match=r"shape mismatch \(1\): Mixed_3b\.b1b\.conv3d\.weight"):
        model_from_state(swapped, "rgb_imagenet.pt")


def test_features_average_the_pooled_map_over_time(models):
    """Paper: Mixed_5c average-pooled, then averaged over its temporal outputs (32 frames: Mixed_5c
    has 4 time steps, the pool of temporal size 2 gives 3; at 64² the 7x7 kernel is clamped to 2x2)."""
    model = models["rgb"].fuse()
    x = torch.randn(1, 3, 32, 64, 64)
    with torch.inference_mode():
        pooled = model.pooled(x)
        feats = model.features(x)
    assert pooled.shape == (1, 1024, 3, 1, 1)
    torch.testing.assert_close(feats, pooled.mean(dim=(2, 3, 4)))
    model.unfuse()


def test_narrow_width_keeps_the_key_layout():
    """width < 1 (demos) scales every channel count; keys stay those of the published layout and the
    width is read back from the stem when such a state dict is loaded."""
    full = InceptionI3d(I3DConfig(in_channels=2, num_classes=0)).state_dict()
    narrow = InceptionI3d(I3DConfig(in_channels=2, num_classes=0, width=0.125)).eval()
    assert set(narrow.state_dict()) == set(full)
    assert (
        narrow.config.feature_dim
        == 48 + 48 + 16 + 16
        == sum(  # Mixed_5c branches 384, 384, 128, 128 / 8
            narrow.state_dict()[f"Mixed_5c.{b}.conv3d.weight"].shape[0] for b in ("b0", "b1b", "b2b", "b3b")
        )
    )
    again = model_from_state(narrow.state_dict(), "narrow")
    assert again.config.width == 0.125
    x = torch.randn(1, 2, 16, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(again.features(x), narrow.features(x))
        assert narrow.features(x).shape == (1, 48 + 48 + 16 + 16)
