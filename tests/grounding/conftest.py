"""Tiny offline models shared by the grounding tests (no network, random weights)."""

from __future__ import annotations

import pytest
import torch

BERT_WORDS = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "an",
    "image",
    "showing",
    "a",
    "in",
    "use",
    "i",
    "to",
    "the",
    "am",
    "performing",
    "grasp",
    "##er",
    "hook",
    "clip",
    "##per",
    "gall",
    "##bladder",
    "bi",
    "##polar",
    "dissect",
    "retract",
    "cut",
    "scissors",
    "irrigator",
    "liver",
    "cystic",
    "duct",
    "coagulate",
    "specimen",
    "bag",
]

PROMPT_CORPUS = [
    "an image showing a grasper in use",
    "an image showing a hook in use",
    "an image showing a clipper in use",
    "I use a hook to dissect the gallbladder",
    "I use a grasper to retract the liver",
    "I am performing dissect",
    "I am performing retract",
]


@pytest.fixture(scope="session")
def bert_vocab(tmp_path_factory):
    path = tmp_path_factory.mktemp("bert") / "vocab.txt"
    path.write_text("\n".join(BERT_WORDS) + "\n")
    return path


def tiny_surgvlp_config(**overrides):
    from surgkit.grounding.surgvlp import SurgicalVLMConfig

    bert = dict(
        vocab_size=len(BERT_WORDS),
        hidden_size=32,
        num_hidden_layers=5,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=80,
    )
    base = dict(resnet_layers=(1, 1, 1, 1), resnet_width=8, bert=bert, image_size=64)
    base.update(overrides)
    return SurgicalVLMConfig(**base)


def perturb_batchnorm(model: torch.nn.Module, seed: int = 0) -> None:
    """Random BN statistics and affine parameters so eval-mode BN is not the identity."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.fixture
def tiny_surgvlp(bert_vocab):
    from surgkit.grounding.surgvlp import SurgicalVLM, SurgicalVLMAdapter, bert_tokenizer

    torch.manual_seed(0)
    model = SurgicalVLM(tiny_surgvlp_config())
    perturb_batchnorm(model)
    return SurgicalVLMAdapter(model.eval(), bert_tokenizer(bert_vocab))


@pytest.fixture(scope="session")
def clip_tokenizer():
    from surgkit.grounding.tiny_clip import build_tokenizer

    return build_tokenizer(PROMPT_CORPUS, vocab_size=300)


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory, clip_tokenizer):
    from surgkit.grounding.tiny_clip import build_clip, save_clip_folder

    model = build_clip(clip_tokenizer, "test", seed=0, image=32, patch=8, hidden=32, layers=3)
    return save_clip_folder(model, clip_tokenizer, tmp_path_factory.mktemp("clip") / "tiny-clip")


@pytest.fixture
def tiny_clip(tiny_clip_dir):
    from surgkit.grounding.clip import HFClipAdapter

    return HFClipAdapter.from_pretrained(tiny_clip_dir)
