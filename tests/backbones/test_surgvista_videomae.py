"""prep features on surgkit.video models: a surgkit-exported HF VideoMAE folder gives the features
of the surgkit folder it was exported from (3-D sin-cos table, LayerNorm eps, fc_norm restored)."""

from __future__ import annotations

import pytest
import torch

from surgkit.backbones import VideoMAEBackbone, load_backbone

TINY = dict(img_size=32, patch_size=16, num_frames=4, tubelet_size=2, embed_dim=16, depth=1, num_heads=2,
            drop_path_rate=0.0)  # fmt: skip


def _randomise_norms(model: torch.nn.Module) -> None:
    """Non-trivial LayerNorm weights, so that a wrong eps or a missing fc_norm would show."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.LayerNorm):
            m.weight.data = 1 + 0.5 * torch.randn(m.weight.shape, generator=g)
            m.bias.data = 0.1 * torch.randn(m.bias.shape, generator=g)


def _export(model, tmp_path):
    from surgkit.video.hf import save_hf_folder

    model.eval().save_pretrained(tmp_path / "surgkit")
    save_hf_folder(model, tmp_path / "hf")
    return tmp_path / "surgkit", tmp_path / "hf"


@pytest.mark.parametrize("kind", ["encoder", "classifier"])
def test_surgkit_exported_hf_folder_gives_surgkit_features(tmp_path, kind):
    from transformers import VideoMAEModel

    from surgkit.video.config import SurgVistaClassifierConfig, SurgVistaEncoderConfig
    from surgkit.video.model import SurgVistaEncoder, SurgVistaForClassification

    torch.manual_seed(0)
    if kind == "encoder":
        model = SurgVistaEncoder(SurgVistaEncoderConfig(**TINY))
    else:
        model = SurgVistaForClassification(SurgVistaClassifierConfig(**TINY, num_classes=3))
    _randomise_norms(model)
    sk_dir, hf_dir = _export(model, tmp_path)
    ours, hf = load_backbone(sk_dir), load_backbone(hf_dir)
    assert isinstance(hf, VideoMAEBackbone)
    assert (hf.num_frames, hf.image_size, hf.feature_dim) == (
        ours.num_frames,
        ours.image_size,
        ours.feature_dim,
    )
    clips = torch.randn(3, 4, 3, 32, 32)  # [B, T, C, H, W] as prep passes them
    want = ours.encode(clips)
    torch.testing.assert_close(hf.encode(clips), want, atol=1e-5, rtol=1e-5)
    # the oracle is surgkit's own model: the exported weights under HF's default 1-D table are wrong
    bare = VideoMAEModel.from_pretrained(str(hf_dir)).eval()
    with torch.no_grad():
        wrong = bare(pixel_values=clips).last_hidden_state.mean(1)
    assert (wrong - want).abs().max() > 1e-2
    # the fingerprint covers the position table: the bare load is not confused with the export
    assert hf.sha256 != VideoMAEBackbone(bare).sha256


def test_cli_features_from_surgkit_folder_and_its_hf_export_agree(tmp_path, run_cli):
    """``surgkit prep features`` on a tiny synthetic world, backbone given as the surgkit SurgVISTA
    folder and as its ``surgkit video convert to-hf`` export: both run and give the same features."""
    from safetensors.torch import load_file

    from surgkit.video.config import SurgVistaEncoderConfig
    from surgkit.video.model import SurgVistaEncoder

    code, _, err = run_cli("synth", "-o", tmp_path / "world", "--preset", "tiny", "--videos", "1",
                           "--layouts", "cholec80", "-q")  # fmt: skip
    assert code == 0, err
    code, _, err = run_cli("prep", "frames", tmp_path / "world" / "cholec80" / "videos", "-o", tmp_path / "frames",
                           "--fps", "5", "--transform", "resize=32x32", "-q")  # fmt: skip
    assert code == 0, err
    torch.manual_seed(0)
    model = SurgVistaEncoder(SurgVistaEncoderConfig(**TINY))
    _randomise_norms(model)
    model.save_pretrained(tmp_path / "surgkit")
    code, _, err = run_cli("video", "convert", "to-hf", str(tmp_path / "surgkit"), str(tmp_path / "hf"))
    assert code == 0, err
    stores = {}
    for name in ("surgkit", "hf"):
        code, _, err = run_cli("prep", "features", "-o", tmp_path / f"feat_{name}", "--backbone", tmp_path / name,
                               "--frames", tmp_path / "frames", "--segment-frames", "8", "-q")  # fmt: skip
        assert code == 0, err
        files = sorted((tmp_path / f"feat_{name}" / "rgb").glob("*.safetensors"))
        assert len(files) == 1
        stores[name] = load_file(str(files[0]))["features"]
    assert stores["surgkit"].shape[0] >= 2 and stores["surgkit"].shape[1] == 16
    torch.testing.assert_close(stores["hf"], stores["surgkit"], atol=1e-5, rtol=1e-5)
