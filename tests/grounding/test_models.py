"""Model oracles: SurgVLP checkpoint round trip, the reference text pooling, HF CLIP loading."""

from __future__ import annotations

import pytest
import torch

from surgkit.errors import SurgkitError
from surgkit.grounding.surgvlp import (
    SurgicalVLM,
    load_reference_checkpoint,
    remap_reference_keys,
    save_reference_checkpoint,
    to_reference_keys,
)

from .conftest import tiny_surgvlp_config


def _embeddings(adapter, pixels, prompts):
    with torch.no_grad():
        return adapter.encode_image(pixels), adapter.encode_text(prompts)


def test_reference_layout_has_original_key_names(tiny_surgvlp):
    keys = to_reference_keys(tiny_surgvlp.model)
    assert "backbone_img.model.layer4.0.downsample.1.running_var" in keys
    assert "backbone_img.model.bn1.num_batches_tracked" in keys
    assert "backbone_img.global_embedder.weight" in keys
    assert "backbone_text.model.encoder.layer.4.attention.self.query.weight" in keys
    assert "backbone_text.model.embeddings.position_ids" in keys
    assert not any(k.startswith(("image.", "text.")) for k in keys)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_checkpoint_round_trip_in_original_layout(tiny_surgvlp, tmp_path, suffix):
    path = save_reference_checkpoint(
        tiny_surgvlp.model, tmp_path / f"SurgVLP{suffix}", module_prefix=(suffix == ".pth"), position_ids=True
    )
    fresh = SurgicalVLM(tiny_surgvlp_config())
    load_reference_checkpoint(fresh, path, trust_checkpoint=True)
    from surgkit.grounding.surgvlp import SurgicalVLMAdapter

    other = SurgicalVLMAdapter(fresh, tiny_surgvlp.tokenizer)
    x = torch.randn(2, 3, 64, 64)
    prompts = ["an image showing a grasper in use", "I use a clipper to clip the cystic duct"]
    img_a, txt_a = _embeddings(tiny_surgvlp, x, prompts)
    img_b, txt_b = _embeddings(other, x, prompts)
    assert torch.equal(img_a, img_b)
    assert torch.equal(txt_a, txt_b)


def test_pickle_checkpoint_needs_trust_flag(tiny_surgvlp, tmp_path):
    path = save_reference_checkpoint(tiny_surgvlp.model, tmp_path / "HecVL.pth")
    with pytest.raises(SurgkitError, match="trust-checkpoint"):
        load_reference_checkpoint(SurgicalVLM(tiny_surgvlp_config()), path)


def test_unexpected_and_missing_keys_are_listed(tiny_surgvlp, tmp_path):
    from surgkit.utils.io import save_tensors

    state = to_reference_keys(tiny_surgvlp.model)
    state["backbone_img.extra_head.weight"] = torch.zeros(3)
    del state["backbone_img.global_embedder.bias"]
    path = save_tensors(tmp_path / "bad.safetensors", state)
    with pytest.raises(SurgkitError) as err:
        load_reference_checkpoint(SurgicalVLM(tiny_surgvlp_config()), path)
    msg = str(err.value)
    assert "1 unexpected key(s): backbone_img.extra_head.weight" in msg
    assert "1 missing key(s): image.proj.bias" in msg
    assert "bad.safetensors" in msg


def test_remap_drops_position_ids_and_fc():
    t = torch.zeros(1)
    mapped, dropped = remap_reference_keys(
        {
            "module.backbone_img.model.conv1.weight": t,
            "backbone_img.model.fc.weight": t,
            "backbone_text.model.embeddings.position_ids": t,
            "backbone_img.global_embedder.bias": t,
        }
    )
    assert sorted(mapped) == ["image.proj.bias", "image.trunk.conv1.weight"]
    assert len(dropped) == 2


def _reference_pooling_loop(hidden_states, input_ids, tokenizer, last_n=4):
    """The reference's semantics written as loops: walk [CLS]..[SEP], sum ## pieces into their
    head word, zero-pad to L, mean over L, then sum the last 4 layers."""
    sep = tokenizer.sep_token_id
    batch, length = input_ids.shape
    out = torch.zeros(batch, hidden_states[0].shape[-1], dtype=torch.float64)
    for layer in hidden_states[-last_n:]:
        for b in range(batch):
            words = []
            for pos in range(length):
                token = tokenizer.convert_ids_to_tokens(int(input_ids[b, pos]))
                vec = layer[b, pos].double()
                if token.startswith("##") and words:
                    words[-1] = words[-1] + vec
                else:
                    words.append(vec.clone())
                if int(input_ids[b, pos]) == sep:
                    break
            padded = torch.zeros(length, vec.shape[0], dtype=torch.float64)
            padded[: len(words)] = torch.stack(words)
            out[b] += padded.mean(0)
    return out


def test_text_pooling_equals_reference_loop(tiny_surgvlp):
    prompts = ["I use a clipper to clip the gallbladder", "an image showing a bipolar in use", "grasper"]
    enc = tiny_surgvlp.tokenize(prompts)
    tokens = tiny_surgvlp.tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist())
    assert "##per" in tokens and "##bladder" in tokens  # the vocabulary forces word-piece splits
    assert enc["input_ids"].shape[1] == 77
    with torch.no_grad():
        fast = tiny_surgvlp.encode_text(prompts)
        hs = tiny_surgvlp.model.text.bert(**enc, output_hidden_states=True).hidden_states
    assert len(hs) == 6  # embeddings + 5 layers: the last 4 are a strict subset
    ref = _reference_pooling_loop(hs, enc["input_ids"], tiny_surgvlp.tokenizer)
    torch.testing.assert_close(fast.double(), ref, atol=1e-6, rtol=0)


def test_masked_mean_pooling_keeps_cosines(tiny_surgvlp, bert_vocab):
    from surgkit.grounding.surgvlp import SurgicalVLMAdapter
    from surgkit.grounding.zeroshot import cosine_scores

    other_model = SurgicalVLM(tiny_surgvlp_config(token_pool="masked_mean"))
    other_model.load_state_dict(tiny_surgvlp.model.state_dict())
    other = SurgicalVLMAdapter(other_model, tiny_surgvlp.tokenizer)
    prompts = ["a hook", "I use a hook to dissect the liver", "an image showing a grasper in use"]
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        img = tiny_surgvlp.encode_image(x)
        a = cosine_scores(img, tiny_surgvlp.encode_text(prompts))
        b = cosine_scores(img, other.encode_text(prompts))
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_bad_surgvlp_config_values():
    with pytest.raises(SurgkitError, match="variant"):
        tiny_surgvlp_config(variant="openclip")
    with pytest.raises(SurgkitError, match="last_n_layers"):
        tiny_surgvlp_config(last_n_layers=9)


def test_surgical_vlm_folder_round_trip(tiny_surgvlp, tmp_path, bert_vocab):
    from surgkit.grounding.adapters import load_adapter
    from surgkit.grounding.surgvlp import convert_reference_checkpoint

    ckpt = save_reference_checkpoint(tiny_surgvlp.model, tmp_path / "PeskaVLP.pth", module_prefix=True)
    folder = convert_reference_checkpoint(
        ckpt,
        bert_vocab,
        tmp_path / "peskavlp",
        config=tiny_surgvlp_config(variant="peskavlp"),
        trust_checkpoint=True,
    )
    adapter = load_adapter(str(folder))
    assert adapter.heatmap_method == "gradcam" and adapter.model.config.variant == "peskavlp"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(adapter.encode_image(x), tiny_surgvlp.encode_image(x))


def test_hf_clip_loads_eager_with_explicit_embeddings(tiny_clip, tiny_clip_dir):
    from transformers import CLIPModel

    assert tiny_clip.model.config._attn_implementation == "eager"
    ref = CLIPModel.from_pretrained(str(tiny_clip_dir)).eval()  # default attention implementation
    x = torch.randn(2, 3, 32, 32)
    prompts = ["an image showing a hook in use", "I am performing dissect"]
    enc = tiny_clip.tokenize(prompts)
    with torch.no_grad():
        img = tiny_clip.encode_image(x)
        txt = tiny_clip.encode_text(prompts)
        out = ref(pixel_values=x, **enc)
    torch.testing.assert_close(img, out.image_embeds * img.norm(dim=-1, keepdim=True), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(txt, out.text_embeds * txt.norm(dim=-1, keepdim=True), atol=1e-5, rtol=1e-5)
    assert tiny_clip.probability_scale == pytest.approx(float(ref.logit_scale.detach().exp()))
    assert enc["input_ids"][0, 0] == tiny_clip.tokenizer.bos_token_id
    assert tiny_clip.tokenizer.eos_token_id != 2  # CLIP's legacy argmax pooling is not triggered


def test_load_adapter_errors(tmp_path):
    from surgkit.grounding.adapters import load_adapter

    with pytest.raises(SurgkitError, match="no such model folder or checkpoint file"):
        load_adapter(str(tmp_path / "m"))  # a missing path is not tried as a hub id
    (tmp_path / "m").mkdir()
    with pytest.raises(SurgkitError, match="no config.json"):
        load_adapter(str(tmp_path / "m"))
    (tmp_path / "m" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(SurgkitError, match="unsupported model_type 'bert'"):
        load_adapter(str(tmp_path / "m"))
    ckpt = tmp_path / "SurgVLP.pth"
    ckpt.write_bytes(b"x")
    with pytest.raises(SurgkitError, match="vocab"):
        load_adapter(str(ckpt))


def test_cli_convert_refuses_untrusted_pickle(tiny_surgvlp, tmp_path, bert_vocab, run_cli):
    ckpt = save_reference_checkpoint(tiny_surgvlp.model, tmp_path / "SurgVLP.pth")
    code, _out, err = run_cli(
        "ground", "convert-surgvlp", ckpt, "--vocab", bert_vocab, "--out", tmp_path / "o"
    )
    assert code == 2 and "--trust-checkpoint" in err and not (tmp_path / "o").exists()
