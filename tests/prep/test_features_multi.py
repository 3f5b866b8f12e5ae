"""One backbone per modality (SurgFusion-Net: Video Swin for RGB and masks, I3D for 2-channel flow):
oracle features, the store's per-modality record, resume and the settings guard, the CLI path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from surgkit.backbones.i3d import I3DConfig, InceptionI3d
from surgkit.backbones.videoswin import VideoSwinConfig, VideoSwinModel
from surgkit.errors import SurgkitError
from surgkit.prep import features, masks
from surgkit.prep.flow import compute as flow_compute
from surgkit.prep.frames import extract
from surgkit.prep.seqstore import SequenceReader
from surgkit.prep.store import FeatureStore

from .conftest import make_video

SWIN = dict(embed_dim=8, depths=(2, 2), num_heads=(1, 2), window_size=(2, 3, 3), num_classes=0, num_frames=8,
            image_size=32)  # fmt: skip


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi")
    make_video(root / "v" / "a.mp4", 45, 30, "libx264", size=(64, 48))  # 15 frames at 10 fps
    make_video(root / "v" / "b.avi", 60, 60, "mpeg4", size=(64, 48))  # 10 frames at 10 fps
    assert extract(root / "v", root / "frames", fps=10, fmt="array", progress=False, workers=1).ok
    assert flow_compute(root / "frames", root / "flow", workers=1, progress=False).ok
    src = masks.ModelMasks(lambda x: torch.stack([-x[:, 1], x[:, 1]], 1), input_size=32)
    assert masks.compute(root / "frames", root / "masks", src, progress=False).ok
    torch.manual_seed(0)
    VideoSwinModel(VideoSwinConfig(**SWIN)).eval().save_pretrained(root / "swin")
    InceptionI3d(I3DConfig(in_channels=2, num_classes=0, num_frames=8, image_size=32)).eval().save_pretrained(
        root / "i3d-flow"
    )
    return root


def _run(prepared, out, **kw):
    return features.extract(
        out, prepared / "swin", backbones={"flow": prepared / "i3d-flow"}, frames_dir=prepared / "frames",
        flow_dir=prepared / "flow", masks_dir=prepared / "masks", segment_frames=8, progress=False, **kw,
    )  # fmt: skip


def test_each_modality_through_its_own_backbone(prepared, tmp_path):
    res = _run(prepared, tmp_path)
    assert res.ok, res.failed
    store = FeatureStore(tmp_path)
    a = store.load_all("a")
    assert {m: v.shape for m, v in a.items()} == {"rgb": (2, 16), "flow": (2, 1024), "mask": (2, 16)}
    assert (
        store.backbone_of("flow")["in_channels"] == 2
        and store.backbone_of("flow")["input_norm"] == "minus_one_one"
    )
    assert (
        store.backbone_of("rgb")["name"]
        == store.backbone_of("mask")["name"]
        == str((prepared / "swin").resolve())
    )
    assert store.backbone.startswith("flow=") and "rgb=" in store.backbone  # the summary names both
    # oracle, flow: x/y maps of segment 1 (frames 8..14, last field repeated, zero-padded to 8)
    i3d = InceptionI3d.from_pretrained(prepared / "i3d-flow").eval()
    maps = SequenceReader(prepared / "flow" / "a").read(0, 14)
    maps = np.concatenate([maps, maps[-1:]])[8:15]
    bound = float(SequenceReader(prepared / "flow" / "a").meta["bound"])
    import cv2

    from surgkit.prep.render import decode_flow

    f = np.stack([cv2.resize(m, (32, 32), interpolation=cv2.INTER_AREA) for m in maps]).astype(np.float32)
    x = torch.from_numpy(f / 127.5 - 1).permute(3, 0, 1, 2)[None]  # the paper's [-1, 1] x/y input
    x = torch.cat([x, torch.zeros(1, 2, 1, 32, 32)], 2)
    assert np.allclose(decode_flow(maps, bound) / bound, maps / 127.5 - 1, atol=1e-6)  # same scaling
    with torch.no_grad():
        np.testing.assert_allclose(a["flow"][1], i3d.features(x)[0].numpy(), rtol=1e-4, atol=1e-5)
    # oracle, rgb: ImageNet-normalised frames through the Video Swin feature (mean of the final map)
    swin = VideoSwinModel.from_pretrained(prepared / "swin").eval()
    rgb = SequenceReader(prepared / "frames" / "a").read(0, 8)
    im = (
        np.stack([cv2.resize(r, (32, 32), interpolation=cv2.INTER_AREA) for r in rgb]).astype(np.float32)
        / 255
    )
    im = (im - np.array(masks.IMAGENET_MEAN, np.float32)) / np.array(masks.IMAGENET_STD, np.float32)
    with torch.no_grad():
        want = swin.features(torch.from_numpy(im).permute(3, 0, 1, 2)[None])[0].numpy()
    np.testing.assert_allclose(a["rgb"][0], want, rtol=1e-4, atol=1e-5)
    inputs = store.index["extra"]["inputs"]
    assert "2 channels" in inputs["flow"] and "[-1, 1]" in inputs["flow"] and "ImageNet" in inputs["rgb"]


def test_resume_and_per_modality_guard(prepared, tmp_path):
    assert _run(prepared, tmp_path).ok
    again = _run(prepared, tmp_path)
    assert sorted(again.skipped) == ["a", "b"] and again.computed_items == {}
    with pytest.raises(SurgkitError, match="flow backbone: store has"):
        features.extract(tmp_path, prepared / "swin", backbones={"flow": prepared / "swin"},
                         flow_dir=prepared / "flow", segment_frames=8, progress=False)  # fmt: skip


def test_two_channel_backbone_refuses_images(prepared, tmp_path):
    res = features.extract(tmp_path, prepared / "i3d-flow", frames_dir=prepared / "frames", segment_frames=8,
                           progress=False)  # fmt: skip
    assert not res.ok and "2-channel backbone takes flow" in res.failed["a"]
    with pytest.raises(SurgkitError, match="no backbone for modality rgb"):
        features.extract(tmp_path, backbones={"flow": prepared / "i3d-flow"}, frames_dir=prepared / "frames")
    with pytest.raises(SurgkitError, match="unknown modality in backbones: depth"):
        features.extract(tmp_path, prepared / "swin", backbones={"depth": prepared / "swin"},
                         frames_dir=prepared / "frames")  # fmt: skip


def test_cli_convert_then_features(prepared, tmp_path, run_cli):
    """Published-layout checkpoints -> `surgkit backbones convert` -> `surgkit prep features` per modality."""
    from safetensors.torch import save_file

    swin = VideoSwinModel.from_pretrained(prepared / "swin")
    save_file(
        {k: v.contiguous() for k, v in swin.state_dict().items()},
        str(tmp_path / "swin_published.safetensors"),
    )
    flow = InceptionI3d.from_pretrained(prepared / "i3d-flow")
    torch.save(
        {k: v for k, v in flow.state_dict().items() if "num_batches" not in k}, tmp_path / "flow_imagenet.pt"
    )
    code, _, err = run_cli("backbones", "convert", tmp_path / "flow_imagenet.pt", "-o", tmp_path / "i3d")
    assert code == 2 and "--trust-pickle" in err
    code, out, err = run_cli("backbones", "convert", tmp_path / "flow_imagenet.pt", "-o", tmp_path / "i3d",
                             "--trust-pickle", "--num-frames", "8", "--image-size", "32")  # fmt: skip
    assert code == 0, err
    assert "I3D flow, 0 classes" in err
    code, out, err = run_cli("backbones", "info", tmp_path / "i3d")
    assert code == 0, err
    assert json.loads(out)["in_channels"] == 2
    code, _, err = run_cli("prep", "features", "-o", tmp_path / "feat", "--rgb-backbone",
                           tmp_path / "swin_published.safetensors", "--flow-backbone", tmp_path / "i3d",
                           "--frames", prepared / "frames", "--flow", prepared / "flow", "--segment-frames", "8",
                           "-q")  # fmt: skip
    assert code == 0, err
    store = FeatureStore(tmp_path / "feat")
    assert _run(prepared, tmp_path / "api").ok
    np.testing.assert_allclose(
        store.load("b", "flow"), FeatureStore(tmp_path / "api").load("b", "flow"), rtol=1e-5, atol=1e-6
    )
    # a published file used directly runs at the paper's clip: 32 frames of 224² (frames of the 8-frame
    # segment repeated), as `surgkit backbones convert` would without --num-frames/--image-size
    assert (
        store.backbone_of("rgb")["image_size"] == [224, 224] and store.backbone_of("rgb")["num_frames"] == 32
    )
