"""Segment features: segmenting rule, rendering, oracle VideoMAE call, shared T, resume, store contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from surgkit.backbones import load_backbone, register_backbone
from surgkit.errors import SurgkitError
from surgkit.prep import features, masks
from surgkit.prep.flow import compute as flow_compute
from surgkit.prep.frames import extract
from surgkit.prep.render import render_flow, render_masks, voc_palette
from surgkit.prep.seqstore import SequenceReader
from surgkit.prep.store import FeatureStore

from .conftest import make_video


def test_segment_rule_pad_and_drop():
    assert features.segment_starts(70, 32, 32, "pad") == [0, 32, 64]  # T = ceil(70/32)
    assert features.segment_starts(70, 32, 32, "drop") == [0, 32]  # T = floor(70/32), the paper's
    assert features.segment_starts(64, 32, 32, "pad") == [0, 32]
    assert features.segment_starts(70, 32, 16, "pad") == [0, 16, 32, 48]  # last one covers the end
    assert features.segment_starts(20, 32, 32, "drop") == []
    assert features.temporal_index(32, 16, "split") == [list(range(16)), list(range(16, 32))]
    assert features.temporal_index(8, 4, "subsample") == [[1, 3, 5, 7]]
    assert features.temporal_index(6, 4, "split") == [[0, 2, 3, 5]]  # falls back to subsampling


def test_palette_and_flow_rendering():
    pal = voc_palette()
    assert pal[:6].tolist() == [
        [0, 0, 0],
        [128, 0, 0],
        [0, 128, 0],
        [128, 128, 0],
        [0, 0, 128],
        [128, 0, 128],
    ]
    assert pal[15].tolist() == [192, 128, 128]  # VOC 'person'
    labels = np.array([[0, 1], [2, 3]], np.uint8)
    assert render_masks(labels, 2)[..., 0].tolist() == [[0, 255], [255, 255]]
    assert render_masks(labels, 4)[1, 1].tolist() == [128, 128, 0]
    maps = np.array([[[128, 128], [255, 128]]], np.uint8)  # ~zero flow, +20 px in x
    out = render_flow(maps, 20.0)
    step = 128 * 40 / 255 - 20  # 128 decodes to +0.078 px (0 px is 127.5, not representable)
    assert out[0, 0].tolist() == [128, 128, round(255 * np.hypot(step, step) / 20)] == [128, 128, 1]
    assert out[0, 1].tolist() == [255, 128, 255]  # magnitude clipped at the bound


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("feat")
    make_video(root / "v" / "a.mp4", 45, 30, "libx264", size=(64, 48))  # 15 frames at 10 fps
    make_video(root / "v" / "b.avi", 60, 60, "mpeg4", size=(64, 48))  # 10 frames at 10 fps
    assert extract(root / "v", root / "frames", fps=10, fmt="array", progress=False, workers=1).ok
    assert flow_compute(root / "frames", root / "flow", workers=1, progress=False).ok
    src = masks.ModelMasks(lambda x: torch.stack([-x[:, 1], x[:, 1]], 1), input_size=32)
    assert masks.compute(root / "frames", root / "masks", src, progress=False).ok
    from transformers import VideoMAEConfig, VideoMAEModel

    cfg = VideoMAEConfig(image_size=32, patch_size=16, num_frames=4, tubelet_size=2, hidden_size=24,
                         num_hidden_layers=1, num_attention_heads=2, intermediate_size=48)  # fmt: skip
    torch.manual_seed(0)
    VideoMAEModel(cfg).save_pretrained(root / "backbone")
    return root


def _oracle_feature(model, images: np.ndarray, pad_to: int) -> np.ndarray:
    """By hand: resize (area), /255, ImageNet mean/std, zero-pad, split into 4-frame clips, mean of token means."""
    import cv2

    x = (
        np.stack([cv2.resize(im, (32, 32), interpolation=cv2.INTER_AREA) for im in images]).astype(np.float32)
        / 255
    )
    x = (x - np.array(masks.IMAGENET_MEAN, np.float32)) / np.array(masks.IMAGENET_STD, np.float32)
    x = torch.from_numpy(x).permute(0, 3, 1, 2)
    x = torch.cat([x, torch.zeros(pad_to - len(x), *x.shape[1:])])
    clips = x.reshape(pad_to // 4, 4, *x.shape[1:])
    with torch.no_grad():
        return model(pixel_values=clips).last_hidden_state.mean(1).mean(0).numpy()


def test_features_match_oracle_and_share_T(prepared, tmp_path):
    from transformers import VideoMAEModel

    res = features.extract(tmp_path, prepared / "backbone", frames_dir=prepared / "frames",
                           flow_dir=prepared / "flow", masks_dir=prepared / "masks", segment_frames=8,
                           progress=False)  # fmt: skip
    assert res.ok, res.failed
    store = FeatureStore(tmp_path)
    assert store.video_ids == ["a", "b"] and store.modalities == ["rgb", "flow", "mask"]
    assert store.segment_frames == 8 and store.stride_frames == 8 and store.fps == 10.0
    a = store.load_all("a")
    assert {k: v.shape for k, v in a.items()} == {"rgb": (2, 24), "flow": (2, 24), "mask": (2, 24)}
    assert store.load_valid("a", "rgb").tolist() == [True, False]  # 15 frames: second segment padded
    assert store.info("b")["num_segments"] == 2 and store.info("b")["num_frames"] == 10
    model = VideoMAEModel.from_pretrained(prepared / "backbone").eval()
    rgb = SequenceReader(prepared / "frames" / "a").read(0, 15)
    np.testing.assert_allclose(a["rgb"][0], _oracle_feature(model, rgb[:8], 8), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a["rgb"][1], _oracle_feature(model, rgb[8:], 8), rtol=1e-4, atol=1e-5)
    flow = SequenceReader(prepared / "flow" / "a").read(0, 14)
    flow_imgs = render_flow(np.concatenate([flow, flow[-1:]]), 20.0)  # MAQA: last field repeated
    np.testing.assert_allclose(a["flow"][1], _oracle_feature(model, flow_imgs[8:], 8), rtol=1e-4, atol=1e-5)
    assert store.index["backbone_sha256"] == load_backbone(prepared / "backbone").sha256


def test_drop_tail_resume_and_settings_guard(prepared, tmp_path):
    kw = dict(frames_dir=prepared / "frames", segment_frames=8, tail="drop", progress=False)
    first = features.extract(tmp_path, prepared / "backbone", **kw)
    assert first.computed_items == {"a": 1, "b": 1}  # floor(15/8) = floor(10/8) = 1
    again = features.extract(tmp_path, prepared / "backbone", **kw)
    assert sorted(again.skipped) == ["a", "b"] and again.computed_items == {}
    with pytest.raises(SurgkitError, match="other settings"):
        features.extract(tmp_path, prepared / "backbone", frames_dir=prepared / "frames", segment_frames=4,
                         progress=False)  # fmt: skip


def test_custom_backbone_adapter_plugs_in(prepared, tmp_path):
    class MeanColour:
        name, num_frames, image_size, feature_dim, sha256 = "mean-colour", 2, (8, 8), 3, None

        def encode(self, clips):
            return clips.mean(dim=(1, 3, 4))

    register_backbone("unused-test-type", lambda path, device: MeanColour())
    res = features.extract(
        tmp_path, MeanColour(), frames_dir=prepared / "frames", segment_frames=5, progress=False
    )
    assert res.ok
    got = FeatureStore(tmp_path).load("b", "rgb")
    assert got.shape == (2, 3) and FeatureStore(tmp_path).backbone == "mean-colour"


def test_surgvista_encoder_folder_plugs_in(tmp_path):
    """surgkit.video's SurgVISTA encoder folder is opened by model_type; features = mean over tokens."""
    from surgkit.video.config import SurgVistaEncoderConfig
    from surgkit.video.model import SurgVistaEncoder

    torch.manual_seed(0)
    cfg = SurgVistaEncoderConfig(img_size=32, patch_size=16, num_frames=4, tubelet_size=2, embed_dim=16, depth=1,
                                 num_heads=2, drop_path_rate=0.0)  # fmt: skip
    encoder = SurgVistaEncoder(cfg).eval()
    encoder.save_pretrained(tmp_path / "sv")
    backbone = load_backbone(tmp_path / "sv")
    assert (backbone.num_frames, backbone.image_size, backbone.feature_dim) == (4, (32, 32), 16)
    clips = torch.randn(2, 4, 3, 32, 32)  # [B, T, C, H, W] as prep passes them
    with torch.no_grad():
        want = encoder(clips.permute(0, 2, 1, 3, 4)).mean(1)
    torch.testing.assert_close(backbone.encode(clips), want)
