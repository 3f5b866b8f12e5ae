"""Checkpoint interop both ways: official checkpoint-*.pth (argparse.Namespace), DeepSpeed, surgkit, HF.

Each pair is round-tripped on the official golden weights (../shared/fixtures/surgvista) and compared
bit-exactly (weights) and against the official outputs; the full-size layout is checked on the
key/shape table of spec §7 (strict load, no memory for the weights).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from surgkit.errors import SurgkitError
from surgkit.video.checkpoints import read_checkpoint
from surgkit.video.convert import (
    convert_official,
    infer_official_config,
    load_official,
    save_official,
    to_official_state,
)
from surgkit.video.hf import load_hf_folder, load_hf_videomae, save_hf_folder
from surgkit.video.layers import sincos_3d_table

from .conftest import FIXTURES, assert_close

HEADS = dict(img_size=32, num_frames=4, num_heads=4, decoder_num_heads=2, distill_num_heads=2)


def _official_state():
    return load_file(str(FIXTURES / "encoder_official.safetensors"))


def _official_checkpoint(path, state, **args):
    """A checkpoint-*.pth as the official utils.save_model writes it (args = argparse.Namespace)."""
    ns = argparse.Namespace(model="pretrain_masked_video_student_base_patch16_224", input_size=32, num_frames=4,
                            lr=1.5e-4, opt_betas=[0.9, 0.95], pretrained_datasets=["Cholec80"], tubelet_size=2,
                            window_size=(2, 4, 4), feat_decoder_num_heads=None, output_dir="/x", **args)  # fmt: skip
    optimizer = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(2)}},
                 "param_groups": [{"lr": 1e-3, "params": [0]}]}  # fmt: skip
    torch.save({"model": state, "optimizer": optimizer, "epoch": 200, "scaler": {"scale": 65536.0},
                "args": ns}, path)  # fmt: skip
    return path


def _max_diff(a: dict, b: dict) -> float:
    assert set(a) == set(b), sorted(set(a) ^ set(b))[:5]
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def test_official_pth_with_namespace_needs_trust_and_round_trips(tmp_path, golden):
    inp, out = golden
    state = _official_state()
    pth = _official_checkpoint(tmp_path / "checkpoint-200.pth", state)
    with pytest.raises(SurgkitError, match="--trust-pickle"):
        load_official(pth, **HEADS)
    ckpt = read_checkpoint(pth, trust_pickle=True)  # the Namespace is allow-listed, nothing else
    assert ckpt.layout == "official-pth" and ckpt.args["input_size"] == 32 and ckpt.meta["epoch"] == 200
    model, report = load_official(
        pth, trust_pickle=True, num_heads=4, decoder_num_heads=2, distill_num_heads=2
    )
    assert report.file_layout == "official-pth" and model.config.img_size == 32  # frame size from the args
    with torch.no_grad():
        res = model.eval()(inp["video"], inp["mask"], inp["teacher_features"])
    assert_close(res.loss, out["loss_total"], 1e-4, 1e-4)
    back = tmp_path / "back.pth"
    save_official(model, back)  # surgkit → official, both decoders and the three tables
    again = torch.load(back, weights_only=True)["model"]  # loads without any allow-list
    assert _max_diff(again, state) <= 1e-6  # tables recomputed; every weight bit-exact:
    assert all(torch.equal(again[k], state[k]) for k in state if not k.startswith("pos_embed"))


def test_other_pickled_classes_stay_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save(
        {"model": {"x": torch.zeros(1)}, "args": argparse.Namespace(a=1), "evil": Evil()}, tmp_path / "e.pth"
    )
    with pytest.raises(SurgkitError, match="weights_only"):
        read_checkpoint(tmp_path / "e.pth", trust_pickle=True)


def test_deepspeed_fp16_checkpoint_folder(tmp_path, golden, fixture_cfgs):
    inp, out = golden
    fp32 = load_file(str(FIXTURES / "finetune_official.safetensors"))
    sd = {k: v.half() for k, v in fp32.items()}  # DeepSpeed fp16 engine stores fp16 module weights
    folder = tmp_path / "checkpoint-best"
    folder.mkdir()
    torch.save({"module": sd, "buffer_names": [], "optimizer": None, "lr_scheduler": None,
                "param_shapes": [collections.OrderedDict((k, v.shape) for k, v in sd.items())],
                "frozen_param_shapes": None, "shared_params": {}, "frozen_param_fragments": None,
                "sparse_tensor_module_names": set(), "skipped_steps": 0, "global_steps": 40, "global_samples": 2560,
                "dp_world_size": 2, "mp_world_size": 1, "ds_config": {"fp16": {"enabled": True}},
                "ds_version": "0.14.0", "epoch": 19}, folder / "mp_rank_00_model_states.pt")  # fmt: skip
    model, report = load_official(folder, trust_pickle=True, img_size=32, num_frames=4, num_heads=4)
    assert report.file_layout == "deepspeed" and report.layout == "finetune"
    assert all(p.dtype == torch.float32 for p in model.parameters())
    ref = dataclasses.replace(fixture_cfgs[1], attn_implementation="sdpa")
    from surgkit.video.model import SurgVistaForClassification

    expected = SurgVistaForClassification(ref)
    expected.load_state_dict(convert_official({k: v.float() for k, v in sd.items()}, ref)[0])
    with torch.no_grad():
        assert_close(model.eval()(inp["video"]), expected.eval()(inp["video"]), 1e-6, 1e-6)
        assert_close(model(inp["video"]), out["finetune_logits"], 2e-2, 2e-2)  # fp16 weights
    save_official(model, tmp_path / "export", layout="deepspeed")
    back = read_checkpoint(tmp_path / "export", trust_pickle=True)
    assert back.layout == "deepspeed"
    assert _max_diff(back.state, {k: v.float() for k, v in sd.items()}) == 0.0


def test_pretraining_model_through_hf_keeps_both_decoders(tmp_path, golden, fixture_cfgs):
    inp, out = golden
    cfg = dataclasses.replace(fixture_cfgs[0], attn_implementation="eager")
    from surgkit.video.model import SurgVistaForPretraining

    model = SurgVistaForPretraining(cfg)
    model.load_state_dict(convert_official(_official_state(), cfg)[0])
    model.eval()
    folder = save_hf_folder(model, tmp_path / "hf")
    back = load_hf_folder(folder)  # surgkit → HF → surgkit: every tensor, decoders included
    assert isinstance(back, SurgVistaForPretraining)
    assert _max_diff(back.state_dict(), model.state_dict()) == 0.0
    # HF's own VideoMAEForPreTraining (+ the re-applied bias, eps and tables) reproduces the official x_vid
    hf = load_hf_videomae(folder)
    with torch.no_grad():
        hf_out = hf(inp["video"].permute(0, 2, 1, 3, 4), bool_masked_pos=inp["mask"])
    assert_close(hf_out.logits, out["x_vid"], 1e-5, 1e-5)
    assert_close(hf_out.loss, out["loss_rec"], 1e-5, 1e-5)
    # HF → official: the official state dict again (both decoders, tables)
    assert _max_diff(to_official_state(back), _official_state()) <= 1e-6


def test_full_size_layout_heads_inferred_or_refused():
    """The base checkpoint of spec §7 (255 entries) loads strictly; heads come from the builder widths."""
    from surgkit.video.model import SurgVistaForPretraining

    shapes = {"pos_embed": (1, 1568, 768), "patch_embed.proj.weight": (768, 3, 2, 16, 16),
              "patch_embed.proj.bias": (768,), "norm.weight": (768,), "norm.bias": (768,)}  # fmt: skip

    def block(prefix, d):
        return {f"{prefix}.norm1.weight": (d,), f"{prefix}.norm1.bias": (d,), f"{prefix}.attn.qkv.weight": (3 * d, d),
                f"{prefix}.attn.q_bias": (d,), f"{prefix}.attn.v_bias": (d,), f"{prefix}.attn.proj.weight": (d, d),
                f"{prefix}.attn.proj.bias": (d,), f"{prefix}.norm2.weight": (d,), f"{prefix}.norm2.bias": (d,),
                f"{prefix}.mlp.fc1.weight": (4 * d, d), f"{prefix}.mlp.fc1.bias": (4 * d,),
                f"{prefix}.mlp.fc2.weight": (d, 4 * d), f"{prefix}.mlp.fc2.bias": (d,)}  # fmt: skip

    for i in range(12):
        shapes.update(block(f"blocks.{i}", 768))
    for tag, depth, out_dim in (("vid", 4, 1536), ("img", 2, 1024)):
        shapes.update({f"down_{tag}.weight": (384, 768), f"down_{tag}.bias": (384,), f"mask_token_{tag}": (1, 1, 384),
                       f"pos_embed_{tag}": (1, 1568, 384), f"decoder_{tag}.norm.weight": (384,),
                       f"decoder_{tag}.norm.bias": (384,), f"decoder_{tag}.head.weight": (out_dim, 384),
                       f"decoder_{tag}.head.bias": (out_dim,)})  # fmt: skip
        for i in range(depth):
            shapes.update(block(f"decoder_{tag}.blocks.{i}", 384))
    assert len(shapes) == 255  # spec §7
    tables = {"pos_embed": sincos_3d_table(768, 8, 14, 14), "pos_embed_vid": sincos_3d_table(384, 8, 14, 14),
              "pos_embed_img": sincos_3d_table(384, 8, 14, 14)}  # fmt: skip
    state = {k: tables.get(k, torch.empty(s, device="meta")) for k, s in shapes.items()}
    cfg = infer_official_config(state)  # no heads given: the official base builder widths give 12 / 6 / 6
    assert (cfg.num_heads, cfg.decoder_num_heads, cfg.distill_num_heads) == (12, 6, 6)
    assert (cfg.embed_dim, cfg.depth, cfg.decoder_depth, cfg.distill_depth, cfg.distill_target_dim) == (
        768,
        12,
        4,
        2,
        1024,
    )
    converted, report = convert_official(state, cfg)
    assert report.consumed == set(state)
    with torch.device("meta"):
        model = SurgVistaForPretraining(cfg)
    model.load_state_dict(converted, strict=True, assign=True)  # every shape fits
    back = {k: tuple(v.shape) for k, v in _official_names(model).items()}
    assert back == {k: tuple(v) for k, v in shapes.items()}
    # a width no official builder has is refused, never assumed (and the message says what to pass)
    odd = {**state, "patch_embed.proj.weight": torch.empty(96, 3, 2, 16, 16, device="meta")}
    with pytest.raises(SurgkitError, match="--num-heads"):
        infer_official_config({k: v for k, v in odd.items() if not k.startswith(("down_", "decoder_"))})
    # the run's args win over the width table; a builder name only counts when its widths match
    from surgkit.video.convert import ConversionReport

    report = ConversionReport("pretrain")
    args = {"model": "pretrain_masked_video_student_base_patch16_224", "feat_decoder_num_heads": 3}
    cfg = infer_official_config(state, args=args, report=report)
    assert (cfg.num_heads, cfg.decoder_num_heads, cfg.distill_num_heads) == (12, 6, 3)
    assert (
        "args.model" in report.heads["num_heads"]
        and "feat_decoder_num_heads" in report.heads["distill_num_heads"]
    )
    large = infer_official_config(state, args={"model": "pretrain_masked_video_student_large_patch16_224"})
    assert large.num_heads == 12  # the large builder's 16 heads do not apply to width-768 weights


def _official_names(model) -> dict[str, torch.Tensor]:
    """Shapes of to_official_state on a meta model (to_official_state moves to CPU, so rebuild names here)."""
    out = {"pos_embed": model.encoder.pos_embed}
    out.update(model.encoder.state_dict())
    for tag, dec in (("vid", model.decoder_vid), ("img", model.decoder_img)):
        out[f"mask_token_{tag}"], out[f"pos_embed_{tag}"] = dec.mask_token, dec.pos_embed
        for k, v in dec.state_dict().items():
            if k != "mask_token":
                out[f"down_{tag}.{k[5:]}" if k.startswith("down.") else f"decoder_{tag}.{k}"] = v
    return out


def test_tiny_checkpoint_without_heads_is_refused(tmp_path):
    pth = _official_checkpoint(tmp_path / "checkpoint-1.pth", _official_state(), unknown=1)
    with pytest.raises(SurgkitError, match="width 64.*--num-heads"):
        load_official(pth, trust_pickle=True)  # base builder name in args, but width 64 ≠ base: refused
    # and width 64 with the base builder's 12 heads would not divide: the args are not trusted blindly


def test_cli_round_trip_official_surgkit_hf_official(tmp_path, run_cli):
    pth = _official_checkpoint(tmp_path / "checkpoint-200.pth", _official_state())
    heads = ["--num-heads", "4", "--decoder-num-heads", "2", "--distill-num-heads", "2"]
    code, _, err = run_cli("video", "convert", "official", pth, tmp_path / "sk", "--trust-pickle", *heads)
    assert code == 0, err
    assert run_cli("video", "convert", "to-hf", tmp_path / "sk", tmp_path / "hf")[0] == 0
    assert run_cli("video", "convert", "from-hf", tmp_path / "hf", tmp_path / "sk2")[0] == 0
    code, _, err = run_cli("video", "convert", "to-official", tmp_path / "sk2", tmp_path / "out.pth")
    assert code == 0, err
    state = torch.load(tmp_path / "out.pth", weights_only=True)["model"]
    assert _max_diff(state, _official_state()) <= 1e-6
    code, _, err = run_cli("video", "convert", "official", pth, tmp_path / "x")  # no trust flag: exit 2
    assert code == 2 and "--trust-pickle" in err
