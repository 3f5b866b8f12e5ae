"""Conversion round trips: surgkit ↔ HF VideoMAE folders, official files, the CLI, pickle safety."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from surgkit.errors import SurgkitError
from surgkit.video.convert import convert_official, load_state_dict_file
from surgkit.video.hf import load_hf_folder, load_hf_videomae, save_hf_folder
from surgkit.video.model import SurgVistaEncoder, SurgVistaForClassification, SurgVistaForPretraining

from .conftest import FIXTURES, assert_close


def _official_pretrain(cfg):
    model = SurgVistaForPretraining(dataclasses.replace(cfg, attn_implementation="eager"))
    model.load_state_dict(convert_official(load_file(str(FIXTURES / "encoder_official.safetensors")), cfg)[0])
    return model.eval()


def _official_classifier(cfg):
    model = SurgVistaForClassification(dataclasses.replace(cfg, attn_implementation="eager"))
    model.load_state_dict(
        convert_official(load_file(str(FIXTURES / "finetune_official.safetensors")), cfg)[0]
    )
    return model.eval()


def _bit_equal(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


def test_encoder_round_trip_through_hf(tmp_path, golden, fixture_cfgs):
    inp, out = golden
    model = _official_pretrain(fixture_cfgs[0])
    folder = save_hf_folder(model.encoder, tmp_path / "hf")  # the encoder alone → VideoMAEModel
    hf = load_hf_videomae(folder)  # HF's own from_pretrained + the re-applied 3-D table
    with torch.no_grad():
        hf_tokens = hf(inp["video"].permute(0, 2, 1, 3, 4), bool_masked_pos=inp["mask"]).last_hidden_state
        ours = model.encoder(inp["video"], inp["mask"])
    assert_close(hf_tokens, ours, 1e-6, 1e-6)
    assert_close(hf_tokens, out["encoder_visible_tokens"])  # and both equal the official code
    back = load_hf_folder(folder)
    assert isinstance(back, SurgVistaEncoder)
    _bit_equal(back.state_dict(), model.encoder.state_dict())


def test_classifier_round_trip_through_hf(tmp_path, golden, fixture_cfgs):
    inp, out = golden
    model = _official_classifier(fixture_cfgs[1])
    folder = save_hf_folder(model, tmp_path / "hf_cls")
    hf = load_hf_videomae(folder)
    assert hf.fc_norm.eps == 1e-6 and hf.config.layer_norm_eps == 1e-6
    with torch.no_grad():
        logits = hf(inp["video"].permute(0, 2, 1, 3, 4)).logits
    assert_close(logits, model(inp["video"]), 1e-6, 1e-6)
    assert_close(logits, out["finetune_logits"])
    back = load_hf_folder(folder)
    assert back.config.fc_norm_eps == 1e-6 and back.config.num_classes == 7
    _bit_equal(back.state_dict(), model.state_dict())
    # and surgkit → surgkit folder → HF → surgkit keeps the weights bit-exact too
    model.save_pretrained(tmp_path / "sk")
    again = SurgVistaForClassification.from_pretrained(tmp_path / "sk")
    _bit_equal(again.state_dict(), model.state_dict())


def test_plain_hf_from_pretrained_needs_the_table(tmp_path, golden, fixture_cfgs):
    # negative control: HF's own 1-D table (what a bare from_pretrained gives) changes the output
    from transformers import VideoMAEModel

    inp, out = golden
    folder = save_hf_folder(_official_pretrain(fixture_cfgs[0]).encoder, tmp_path / "hf")
    bare = VideoMAEModel.from_pretrained(str(folder), attn_implementation="eager").eval()
    with torch.no_grad():
        tokens = bare(inp["video"].permute(0, 2, 1, 3, 4), bool_masked_pos=inp["mask"]).last_hidden_state
    assert (tokens - out["encoder_visible_tokens"]).abs().max() > 0.1


def test_genuine_videomae_folder_keeps_its_1d_table(tmp_path):
    from transformers import VideoMAEConfig, VideoMAEModel

    cfg = VideoMAEConfig(image_size=32, patch_size=8, num_frames=4, hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=64, use_mean_pooling=False)  # fmt: skip
    hf = VideoMAEModel(cfg).eval()
    hf.save_pretrained(tmp_path / "vm")
    ours = load_hf_folder(tmp_path / "vm").eval()
    assert ours.config.position_table == "1d-sincos" and ours.config.layer_norm_eps == 1e-12
    video = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        assert_close(ours(video), hf(video.permute(0, 2, 1, 3, 4)).last_hidden_state, 1e-5, 1e-5)


def test_pickle_needs_trust_and_weights_only(tmp_path):
    state = load_file(str(FIXTURES / "finetune_official.safetensors"))
    pth = tmp_path / "ckpt.pth"
    torch.save({"module": state, "epoch": 3}, pth)
    with pytest.raises(SurgkitError, match="--trust-pickle"):
        load_state_dict_file(pth)
    loaded = load_state_dict_file(pth, trust_pickle=True)  # DeepSpeed 'module' wrapper unwrapped
    _bit_equal(loaded, state)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"model": {"x": torch.zeros(1)}, "evil": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(SurgkitError, match="weights_only"):
        load_state_dict_file(tmp_path / "evil.pth", trust_pickle=True)


def test_cli_convert_official_and_hf(tmp_path, run_cli, golden):
    inp, out = golden
    src = FIXTURES / "finetune_official.safetensors"
    args = ["--img-size", "32", "--num-frames", "4", "--num-heads", "4"]
    code, _, err = run_cli("video", "convert", "official", str(src), str(tmp_path / "sk"), *args)
    assert code == 0, err
    model = SurgVistaForClassification.from_pretrained(tmp_path / "sk").eval()
    with torch.no_grad():
        assert_close(model(inp["video"]), out["finetune_logits"], 1e-4, 1e-4)
    code, _, err = run_cli("video", "convert", "to-hf", str(tmp_path / "sk"), str(tmp_path / "hf"))
    assert code == 0, err
    code, _, err = run_cli("video", "convert", "from-hf", str(tmp_path / "hf"), str(tmp_path / "sk2"))
    assert code == 0, err
    back = SurgVistaForClassification.from_pretrained(tmp_path / "sk2")
    _bit_equal(back.state_dict(), model.state_dict())
    code, _, err = run_cli("video", "convert", "official", str(tmp_path / "missing.pth"), str(tmp_path / "x"))
    assert code == 2 and "not found" in err
