"""Small HF CLIP models built offline: config, tokenizer and an atomic HF folder writer.

The embedded default VLM (trained by :mod:`surgkit.grounding.train_clip`) and the tests use a
real ``transformers.CLIPModel`` with a small config, saved as a normal HF folder
(``config.json``, ``model.safetensors``, ``tokenizer.json``, ``preprocessor_config.json``), so it
goes through exactly the loader used for real checkpoints. The tokenizer is a byte-level BPE
trained with ``tokenizers`` on the captions/prompts (no hub access), lower-casing, and wrapped as
``<|startoftext|> text <|endoftext|>`` so that CLIP's EOS pooling finds the end token.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from surgkit.grounding.geometry import CLIP_MEAN, CLIP_STD
from surgkit.utils.io import write_json

BOS, EOS, PAD = "<|startoftext|>", "<|endoftext|>", "<|pad|>"

SIZES: dict[str, dict[str, int]] = {
    # hidden, layers, heads, image, patch, projection
    "test": {"hidden": 32, "layers": 2, "heads": 2, "image": 32, "patch": 8, "proj": 16, "text_layers": 2},
    # 128 px / patch 16 (8 x 8 tokens, as 96 / 12 was): tips get more pixels at ~10 % more compute (chosen on val)
    "tiny": {"hidden": 64, "layers": 4, "heads": 4, "image": 128, "patch": 16, "proj": 64, "text_layers": 2},
    "small": {"hidden": 128, "layers": 6, "heads": 4, "image": 96, "patch": 8, "proj": 128, "text_layers": 4},
    "base": {
        "hidden": 768,
        "layers": 12,
        "heads": 12,
        "image": 224,
        "patch": 32,
        "proj": 512,
        "text_layers": 12,
    },
}


def build_tokenizer(corpus: Iterable[str], vocab_size: int = 512) -> Any:
    """A lower-casing byte-level BPE ``PreTrainedTokenizerFast`` trained on ``corpus`` (offline)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, BOS, PAD],  # EOS id 0: CLIP treats eos_token_id == 2 as legacy
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(list(corpus), trainer)
    bos, eos = tok.token_to_id(BOS), tok.token_to_id(EOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, bos), (EOS, eos)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD)


def clip_config(tokenizer: Any, size: str = "tiny", **overrides: Any) -> Any:
    """A ``CLIPConfig`` of the named size with eager attention and token ids inside the vocabulary."""
    from transformers import CLIPConfig

    s = {**SIZES[size], **overrides}
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": s["hidden"],
        "intermediate_size": 4 * s["hidden"],
        "num_hidden_layers": s["text_layers"],
        "num_attention_heads": s["heads"],
        "max_position_embeddings": 77,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    vision = {
        "hidden_size": s["hidden"],
        "intermediate_size": 4 * s["hidden"],
        "num_hidden_layers": s["layers"],
        "num_attention_heads": s["heads"],
        "image_size": s["image"],
        "patch_size": s["patch"],
    }
    cfg = CLIPConfig(text_config=text, vision_config=vision, projection_dim=s["proj"])
    cfg._attn_implementation = "eager"
    return cfg


def build_clip(tokenizer: Any, size: str = "tiny", seed: int = 0, **overrides: Any) -> Any:
    """A randomly initialised ``CLIPModel`` (deterministic for ``seed``), eager attention."""
    import torch
    from transformers import CLIPModel

    torch.manual_seed(seed)
    model = CLIPModel(clip_config(tokenizer, size, **overrides))
    model.set_attn_implementation("eager")
    return model.eval()


def save_clip_folder(
    model: Any, tokenizer: Any, out_dir: str | Path, extra: dict[str, Any] | None = None
) -> Path:
    """Write an HF CLIP folder atomically: everything lands in a temporary sibling, then one rename."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        size = int(model.config.vision_config.image_size)
        write_json(
            tmp / "preprocessor_config.json",
            {
                "image_processor_type": "CLIPImageProcessor",
                "image_mean": list(CLIP_MEAN),
                "image_std": list(CLIP_STD),
                "size": {"shortest_edge": size},
                "crop_size": {"height": size, "width": size},
                "do_resize": True,
                "do_center_crop": True,
                "do_normalize": True,
            },
        )
        if extra:
            write_json(tmp / "surgkit_training.json", extra)
        backup = None
        if out.exists():
            backup = out.with_name(f".{out.name}.old")
            if backup.exists():
                shutil.rmtree(backup)
            os.replace(out, backup)
        os.replace(tmp, out)
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
