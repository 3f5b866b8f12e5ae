"""The teacher registry: official / timm / MAE teacher checkpoints, HF folders, precision, refusals.

Oracle: an HF ``ViTModel`` (pre-norm ViT with class token, learned positions, q/k/v with bias, exact
GELU) is the same network as the timm/MAE ViT and — with a zero class-token position — as the
official SurgVISTA teacher (positions on the patches only). Its weights are written in each
published key layout; the teacher loaded from that file must give HF's last-layer patch tokens.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from surgkit.errors import SurgkitError
from surgkit.video.teacher import ImageViT, autocast_for, load_teacher, teacher_tokens


@pytest.fixture(scope="module")
def hf_vit():
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=256, layer_norm_eps=1e-6, hidden_act="gelu")  # fmt: skip
    model = ViTModel(cfg, add_pooling_layer=False).eval()
    with torch.no_grad():
        for p in model.parameters():  # random everything (biases and LN affine included)
            p.add_(torch.randn_like(p) * 0.05)
    return model


def _hf_blocks(hf, fused: bool) -> dict[str, torch.Tensor]:
    out = {}
    for i, layer in enumerate(
        hf.layers
    ):  # transformers 5 ViT names: q_proj/k_proj/v_proj/o_proj, mlp.fc1/fc2
        a = layer.attention
        p = f"blocks.{i}."
        if fused:
            out[p + "attn.qkv.weight"] = torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])
            out[p + "attn.qkv.bias"] = torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias])
        else:
            for n, lin in (("q", a.q_proj), ("k", a.k_proj), ("v", a.v_proj)):
                out[p + f"attn.{n}.weight"], out[p + f"attn.{n}.bias"] = lin.weight, lin.bias
        out[p + "attn.proj.weight"], out[p + "attn.proj.bias"] = a.o_proj.weight, a.o_proj.bias
        for ours, theirs in (("norm1", layer.layernorm_before), ("norm2", layer.layernorm_after)):
            out[p + ours + ".weight"], out[p + ours + ".bias"] = theirs.weight, theirs.bias
        out[p + "mlp.fc1.weight"], out[p + "mlp.fc1.bias"] = layer.mlp.fc1.weight, layer.mlp.fc1.bias
        out[p + "mlp.fc2.weight"], out[p + "mlp.fc2.bias"] = layer.mlp.fc2.weight, layer.mlp.fc2.bias
    emb = hf.embeddings
    out["patch_embed.proj.weight"] = emb.patch_embeddings.projection.weight
    out["patch_embed.proj.bias"] = emb.patch_embeddings.projection.bias
    out["cls_token"] = emb.cls_token
    out["norm.weight"], out["norm.bias"] = hf.layernorm.weight, hf.layernorm.bias
    return {k: v.detach().clone() for k, v in out.items()}


def _hf_last_block(hf, frames):
    with torch.no_grad():
        return hf(pixel_values=frames, output_hidden_states=True).hidden_states[-1][:, 1:]


def test_timm_mae_layout_with_decoder_and_head(tmp_path, hf_vit):
    state = _hf_blocks(hf_vit, fused=True)
    state["pos_embed"] = hf_vit.embeddings.position_embeddings.detach().clone()  # 1 × (1+16) × 64, class slot
    state.update({"head.weight": torch.zeros(5, 64), "head.bias": torch.zeros(5), "mask_token": torch.zeros(1, 1, 32),
                  "decoder_embed.weight": torch.zeros(32, 64), "decoder_pred.bias": torch.zeros(8)})  # fmt: skip
    torch.save({"model": {f"backbone.{k}": v for k, v in state.items()}}, tmp_path / "mae.pth")
    with pytest.raises(SurgkitError, match="--trust-pickle"):
        load_teacher(str(tmp_path / "mae.pth"))
    with pytest.raises(SurgkitError, match="width-64 ViT.*--teacher-num-heads"):
        load_teacher(str(tmp_path / "mae.pth"), trust_pickle=True)
    teacher = load_teacher(str(tmp_path / "mae.pth"), trust_pickle=True, num_heads=4)
    assert isinstance(teacher, ImageViT) and teacher.config.pos_embed_class_slot
    assert teacher.config.layer_norm_eps == 1e-6  # timm/MAE ViTs
    frames = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(teacher(frames), _hf_last_block(hf_vit, frames), atol=1e-5, rtol=1e-5)


def test_official_surgvista_teacher_layout(tmp_path, hf_vit):
    from transformers import ViTModel

    hf = ViTModel(hf_vit.config, add_pooling_layer=False).eval()
    hf.load_state_dict(hf_vit.state_dict())
    hf.config.layer_norm_eps = 1e-5
    for m in hf.modules():
        if isinstance(m, torch.nn.LayerNorm):
            m.eps = 1e-5  # the official teacher's blocks use PyTorch's default eps
    with torch.no_grad():
        hf.embeddings.position_embeddings[:, 0] = 0  # class token without a position, as MaskedAutoencoderViT
    state = _hf_blocks(hf, fused=False)
    state["pos_embed"] = (
        hf.embeddings.position_embeddings[:, 1:].detach().clone()
    )  # 1 × 16 × 64, no class slot
    from safetensors.torch import save_file

    save_file(state, str(tmp_path / "vit_surgery.safetensors"))
    teacher = load_teacher(str(tmp_path / "vit_surgery.safetensors"), num_heads=4)  # safetensors: no pickle
    assert not teacher.config.pos_embed_class_slot and teacher.config.layer_norm_eps == 1e-5
    frames = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(teacher(frames), _hf_last_block(hf, frames), atol=1e-5, rtol=1e-5)
    # the student's distillation target: frame 2t of tubelet t, arranged b (t l) c
    video = torch.randn(2, 3, 4, 32, 32)
    tokens = teacher_tokens(teacher, video, tubelet=2, grid_hw=(4, 4))
    torch.testing.assert_close(
        tokens[1, 16:], _hf_last_block(hf, video[1, :, 2][None])[0], atol=1e-5, rtol=1e-5
    )


def test_unknown_teacher_key_refused_and_cli_conversion(tmp_path, hf_vit, run_cli):
    state = _hf_blocks(hf_vit, fused=True)
    state["pos_embed"] = hf_vit.embeddings.position_embeddings.detach().clone()
    torch.save({**state, "rel_pos_bias": torch.zeros(3)}, tmp_path / "odd.pth")
    with pytest.raises(SurgkitError, match="unknown key 'rel_pos_bias'"):
        load_teacher(str(tmp_path / "odd.pth"), trust_pickle=True, num_heads=4)
    torch.save(state, tmp_path / "ok.pth")
    code, _, err = run_cli("video", "convert", "teacher", tmp_path / "ok.pth", tmp_path / "t", "--trust-pickle",
                           "--num-heads", "4")  # fmt: skip
    assert code == 0, err
    folder_teacher = load_teacher(str(tmp_path / "t"))  # a surgkit folder: safetensors, no trust flag needed
    frames = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            folder_teacher(frames), _hf_last_block(hf_vit, frames), atol=1e-5, rtol=1e-5
        )


def test_hf_folder_teacher_uses_last_layer_hook(tmp_path, hf_vit):
    hf_vit.save_pretrained(tmp_path / "vit")
    teacher = load_teacher(str(tmp_path / "vit"))
    frames = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = teacher(frames)  # (the folder loads with HF's default attention kernel: float rounding only)
        torch.testing.assert_close(out, _hf_last_block(hf_vit, frames), atol=2e-4, rtol=1e-4)
        assert not torch.allclose(
            out, hf_vit(pixel_values=frames).last_hidden_state[:, 1:], atol=1e-3
        )  # no final LN
    assert not any(p.requires_grad for p in teacher.parameters())
    with pytest.raises(SurgkitError, match="not found"):
        load_teacher(str(tmp_path / "missing.pth"))


def test_precision_modes():
    assert isinstance(
        autocast_for("auto", "cpu"), type(autocast_for("fp32", "cuda"))
    )  # CPU: fp32 (no autocast)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "CUDA is not available": only the mode is checked here
        gpu = autocast_for("auto", "cuda")  # GPU: fp16 autocast as the official teacher forward
    assert isinstance(gpu, torch.autocast) and gpu.fast_dtype == torch.float16
    with pytest.raises(SurgkitError, match="unknown teacher precision"):
        autocast_for("fp8", "cpu")
    teacher = load_teacher("random", img_size=32, patch_size=8)
    video = torch.randn(1, 3, 4, 32, 32)
    full = teacher_tokens(teacher, video, 2, (4, 4), "fp32")
    half = teacher_tokens(teacher, video, 2, (4, 4), "bf16")
    assert half.dtype == torch.float32 and not torch.equal(full, half)
    torch.testing.assert_close(full, half, atol=0.1, rtol=0.1)


def test_mae_teacher_training_learns_and_feeds_pretraining(tmp_path, run_cli):
    """The MAE teacher's loss falls, its folder loads as a teacher, and pretraining distils it."""
    from .test_pretrain import _settings, make_frame_folders

    data = make_frame_folders(tmp_path / "frames", videos=2, frames=12)
    code, out, err = run_cli("video", "teacher", "train", "--data", data, "--run-dir", tmp_path / "t", "--img-size", "32",
                             "--steps", "30", "--batch-size", "8", "--base-lr", "0.05", "--device", "cpu")  # fmt: skip
    assert code == 0, err
    summary = json.loads((tmp_path / "t" / "summary.json").read_text())
    assert np.mean(summary["history"][-5:]) < 0.8 * np.mean(
        summary["history"][:5]
    )  # it learns to reconstruct
    teacher = load_teacher(str(tmp_path / "t" / "teacher"))
    assert isinstance(teacher, ImageViT) and "MAE" in teacher.config.source
    from surgkit.video.pretrain import pretrain

    run = pretrain(
        _settings(data, tmp_path / "pre", teacher=str(tmp_path / "t" / "teacher"), steps=2), progress=False
    )
    assert run["teacher"] == str(tmp_path / "t" / "teacher") and run["history"][0]["loss_distill"] > 0
