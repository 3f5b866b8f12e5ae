"""Vision-language models for the reasoning pipeline: loading any HF VLM folder, and the embedded tiny
Qwen2-VL trained from scratch on synthetic records (spec reasoning §4.3, deps.md §3).

The tiny model is a real ``Qwen2VLForConditionalGeneration`` (random init from a small config) with a
byte-level BPE tokenizer trained on the records' own text, so training, generation and evaluation run
the same code paths as a 2B/7B Qwen2-VL, only smaller. Qwen2-VL's processor in transformers 5 requires
a video processor that imports torchvision; :class:`ImageOnlyQwen2VLProcessor` drops that slot.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from surgkit.errors import SurgkitError

SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<think>",
    "</think>",
    "<answer>",
    "</answer>",
]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
MARKER = "surgkit_vlm.json"


def image_only_processor_class():
    """``Qwen2VLProcessor`` subclass without the (torchvision-bound) video processor slot."""
    from transformers import Qwen2VLProcessor
    from transformers.processing_utils import ProcessorMixin

    class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            self.image_token, self.video_token = "<|image_pad|>", "<|video_pad|>"
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    return ImageOnlyQwen2VLProcessor


def train_tokenizer(corpus: Iterable[str], vocab_size: int = 1024):
    """Byte-level BPE trained on ``corpus`` (any string round-trips), Qwen-style special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(list(corpus), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", padding_side="left"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


@dataclasses.dataclass
class TinyVLMConfig:
    """Sizes of the embedded tiny Qwen2-VL (defaults: ~0.5M parameters, 4 image tokens at 56x56)."""

    hidden_size: int = 96
    intermediate_size: int = 192
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    vision_depth: int = 1
    vision_embed_dim: int = 32
    patch_size: int = 14
    image_pixels: int = 56 * 56
    vocab_size: int = 1024
    max_position_embeddings: int = 2048


def build_tiny_vlm(
    out_dir: str | Path, corpus: Iterable[str], cfg: TinyVLMConfig = TinyVLMConfig(), seed: int = 0
) -> Path:
    """Create, randomly initialise and save a tiny Qwen2-VL + processor in ``out_dir``."""
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    torch.manual_seed(seed)
    tok = train_tokenizer(corpus, cfg.vocab_size)
    head_dim = cfg.hidden_size // cfg.num_heads
    half = head_dim // 2
    section = [half - 2 * (half // 3), half // 3, half // 3]
    vocab = (len(tok) + 63) // 64 * 64
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIALS}
    config = Qwen2VLConfig(
        text_config=dict(
            vocab_size=vocab,
            hidden_size=cfg.hidden_size,
            intermediate_size=cfg.intermediate_size,
            num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads,
            num_key_value_heads=cfg.num_kv_heads,
            max_position_embeddings=cfg.max_position_embeddings,
            rope_parameters={"rope_type": "default", "mrope_section": section, "rope_theta": 10000.0},
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
            bos_token_id=None,
            tie_word_embeddings=True,
        ),
        vision_config=dict(
            depth=cfg.vision_depth,
            embed_dim=cfg.vision_embed_dim,
            hidden_size=cfg.hidden_size,
            num_heads=2,
            patch_size=cfg.patch_size,
            spatial_merge_size=2,
            temporal_patch_size=2,
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=True,
    )
    model = Qwen2VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.bos_token_id = None
    ip = Qwen2VLImageProcessorPil(
        patch_size=cfg.patch_size,
        merge_size=2,
        temporal_patch_size=2,
        min_pixels=cfg.image_pixels,
        max_pixels=cfg.image_pixels,
    )
    proc = image_only_processor_class()(image_processor=ip, tokenizer=tok, chat_template=CHAT_TEMPLATE)
    out = Path(out_dir)
    save_vlm(model, proc, out, {"kind": "tiny-qwen2-vl", "config": dataclasses.asdict(cfg), "seed": seed})
    return out


def save_vlm(model, processor, out_dir: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Save model (safetensors) + processor; write the marker that says how to reload the processor."""
    from surgkit.utils.io import write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    image_only = type(processor).__name__ == "ImageOnlyQwen2VLProcessor"
    write_json(out / MARKER, {**(meta or {}), "processor": "image-only-qwen2-vl" if image_only else "auto"})
    return out


def load_processor(path: str | Path):
    """The processor saved in ``path`` (the image-only subclass for surgkit's tiny models)."""
    path = Path(path)
    marker = path / MARKER
    if marker.is_file() and json.loads(marker.read_text()).get("processor") == "image-only-qwen2-vl":
        proc = image_only_processor_class().from_pretrained(path)
    else:
        from transformers import AutoProcessor

        proc = AutoProcessor.from_pretrained(path)
    tok = getattr(proc, "tokenizer", proc)
    tok.padding_side = "left"
    return proc


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' when available else 'cpu'; other values unchanged."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_vlm(path: str | Path, device: str = "cpu", dtype: str = "auto"):
    """(model, processor) of an HF vision-language model folder (or hub id when online)."""
    import torch
    from transformers import AutoModelForImageTextToText

    if not (Path(path).is_dir() or "/" in str(path)):
        raise SurgkitError(f"{path}: not a model folder")
    torch_dtype = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch_dtype).to(resolve_device(device))
    return model, load_processor(path)


def generate(
    model,
    processor,
    records,
    image_root,
    box_settings=None,
    max_new_tokens: int = 256,
    reasoning: bool = True,
    do_sample: bool = False,
    temperature: float = 1.0,
    num_return_sequences: int = 1,
) -> list[str]:
    """Greedy (or sampled) completions for a batch of records; returns ``len(records) * n`` strings."""
    import torch
    from PIL import Image

    from surgkit.reasoning.render import image_paths, prompt_messages
    from surgkit.reasoning.scoring import BoxSettings

    box_settings = box_settings or BoxSettings()
    texts, images = [], []
    for rec in records:
        msgs = prompt_messages(rec, box_settings, reasoning)
        texts.append(processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))
        images.append([Image.open(p).convert("RGB") for p in image_paths(rec, image_root)])
    inputs = processor(text=texts, images=images, return_tensors="pt", padding=True).to(model.device)
    with torch.no_grad():
        out = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            temperature=temperature if do_sample else None,
            top_p=None,
            top_k=None,
            num_return_sequences=num_return_sequences,
        )
    new = out[:, inputs["input_ids"].shape[1] :]
    tok = getattr(processor, "tokenizer", processor)
    return (
        tok.batch_decode(new, skip_special_tokens=False)
        if False
        else [_clean(t) for t in tok.batch_decode(new)]
    )


def _clean(text: str) -> str:
    """Decoded completion without padding/end tokens (keeps <think>/<answer> tags)."""
    return text.replace("<|endoftext|>", "").split("<|im_end|>")[0].strip()
