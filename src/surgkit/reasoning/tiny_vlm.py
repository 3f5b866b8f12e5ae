"""surgkit's tiny vision-language models: real Qwen2-VL / Qwen2.5-VL classes at toy sizes, and a Qwen2-VL
whose vision tower is a pretrained CLIP image encoder (spec reasoning §4.3, deps.md §3).

- ``qwen2-vl`` / ``qwen2.5-vl``: ``Qwen2VLForConditionalGeneration`` / ``Qwen2_5_VLForConditionalGeneration``
  from small configs, random init -- the same code paths as the 2B/7B models (tests, the 7B path).
- ``clip``: :class:`ClipQwen2VLForConditionalGeneration`, a Qwen2-VL language model whose vision tower is
  a **frozen, already trained** CLIP vision encoder (e.g. the tiny CLIP the grounding demo trains on the
  synthetic world) plus a trainable projector. The tower keeps the Qwen2-VL interface: it reads the
  processor's flattened patches, rebuilds the image, runs CLIP, pools its patch grid to the merged
  token grid (2x2 patches per token) and appends the CLIP class token to every image token. Registered
  with the Auto classes (model type ``surgkit_clip_qwen2_vl``), so ``from_pretrained``, TRL's reference
  model and ``surgkit reason`` load it like any HF model.

Every tiny model has a byte-level BPE tokenizer trained on the records' own texts; ``<think>``,
``</think>``, ``<answer>``, ``</answer>`` are single but **not special** tokens, so GRPO's decoding keeps them.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Iterable
from pathlib import Path

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
)
from transformers.modeling_outputs import BaseModelOutputWithPooling

from surgkit.errors import SurgkitError

SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
TAGS = ["<think>", "</think>", "<answer>", "</answer>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
KINDS = ("qwen2-vl", "qwen2.5-vl", "clip")
FREQUENT = 32  # a text seen this often (the system prompt, a question) counts this many times in BPE training
# Qwen2-VL's image processor normalises with the OpenAI CLIP statistics (so does CLIP).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
MIN_PIXELS = 28 * 28  # tiny processors' min_pixels: one merged token
FEATURE_CACHE_SIZE = 50_000  # memoised tower features (9 tokens x 128 floats each at demo size: ~5 KB)


def train_tokenizer(
    corpus: Iterable[str],
    vocab_size: int = 1024,
    merge_words: bool = False,
    max_texts: int | None = None,
    seed: int = 0,
):
    """Byte-level BPE trained on ``corpus`` (any string round-trips), Qwen-style special tokens; the
    reasoning tags are added as normal (non-special) single tokens.

    ``merge_words`` lets merges cross word boundaries (no regex pre-split), so the recurring phrases of
    template chains and the system prompt become single tokens: sequences about 3x shorter, which is
    what makes the demo model fast; digits are always single tokens (box coordinates). Each distinct text counts min(its multiplicity, 32) times;
    ``max_texts`` caps the distinct texts (a seeded sample; texts seen 32+ times are always kept).
    """
    import random
    from collections import Counter

    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    counts = Counter(corpus)
    texts = sorted(counts)
    if max_texts is not None and len(texts) > max_texts:  # keep every frequent text (prompts, questions)
        frequent = [t for t in texts if counts[t] >= FREQUENT]
        rare = [t for t in texts if counts[t] < FREQUENT]
        texts = frequent + random.Random(seed).sample(rare, max(0, max_texts - len(frequent)))
    texts = [t for t in texts for _ in range(min(counts[t], FREQUENT))]  # frequency matters to BPE
    tok = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=not merge_words)
    # digits stay single tokens: box coordinates are then learnable number by number
    digits = pre_tokenizers.Digits(individual_digits=True)
    tok.pre_tokenizer = pre_tokenizers.Sequence([digits, byte_level]) if merge_words else byte_level
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        max_token_length=32 if merge_words else None,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAGS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", padding_side="left"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


@dataclasses.dataclass
class TinyVLMConfig:
    """Sizes of a tiny model (defaults: ~0.5M parameters, 4 image tokens at 56x56)."""

    kind: str = "qwen2-vl"
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
    vision_tower: str | None = None  # kind "clip": a CLIP folder (e.g. the grounding demo's tiny CLIP)
    merge_words: bool = False  # tokenizer merges across words (much shorter template sequences)
    tokenizer_texts: int | None = None  # cap on the tokenizer's training texts (seeded sample)


# ------------------------------------------------------------------------------ CLIP vision tower
@strict
class ClipQwen2VLConfig(Qwen2VLConfig):
    """Qwen2-VL config plus the CLIP vision config of its tower (``clip_vision``)."""

    model_type = "surgkit_clip_qwen2_vl"
    # not a field (never saved): TRL builds GRPO's reference model (beta > 0) by looking the architecture
    # up in `transformers`, then in `config.auto_map`, then falls back to AutoModelForCausalLM (registered
    # below); without this class attribute the auto_map lookup raises AttributeError (read-only, empty)
    auto_map = types.MappingProxyType({})
    clip_vision: dict | None = None


class ClipVisionTower(nn.Module):
    """Qwen2-VL vision interface over a frozen CLIP vision encoder (see the module docstring)."""

    def __init__(self, config: ClipQwen2VLConfig):
        super().__init__()
        from transformers import CLIPVisionConfig, CLIPVisionModel

        vc = config.vision_config
        self.patch_size, self.temporal = int(vc.patch_size), int(vc.temporal_patch_size)
        self.spatial_merge_size = int(vc.spatial_merge_size)
        self.clip = CLIPVisionModel(CLIPVisionConfig(**(config.clip_vision or {})))
        self.clip.requires_grad_(False)
        width = self.clip.config.hidden_size
        hidden = config.text_config.hidden_size
        self.proj = nn.Sequential(
            nn.LayerNorm(2 * width), nn.Linear(2 * width, hidden), nn.GELU(), nn.Linear(hidden, hidden)
        )
        self._features: dict[tuple, torch.Tensor] = {}  # see clip_features
        self._weights_version: tuple = ()

    @property
    def dtype(self) -> torch.dtype:
        return self.proj[1].weight.dtype

    def images(self, patches: torch.Tensor, grid_thw: torch.Tensor) -> list[torch.Tensor]:
        """The (3, H, W) normalised images the processor flattened into ``patches`` (its patchify, inverted)."""
        out, start = [], 0
        p, m, t = self.patch_size, self.spatial_merge_size, self.temporal
        for gt, gh, gw in grid_thw.tolist():
            n = gt * gh * gw
            x = patches[start : start + n].reshape(gt, gh // m, gw // m, m, m, 3, t, p, p)[0, ..., 0, :, :]
            x = x.permute(4, 0, 2, 5, 1, 3, 6).reshape(3, gh * p, gw * p)
            out.append(x)
            start += n
        return out

    def clip_features(self, images: torch.Tensor, merged: tuple[int, int]) -> torch.Tensor:
        """CLIP features of a stack of same-size images on the ``merged`` token grid: the patch grid
        average-pooled to it (row-major, the order of Qwen2-VL's merger), each token with the class token
        appended -- (N, tokens, 2 * width)."""
        import torch.nn.functional as F

        size = int(self.clip.config.image_size)
        x = F.interpolate(images.float(), size=(size, size), mode="bilinear")
        with torch.no_grad():
            h = self.clip(pixel_values=x.to(self.clip.dtype)).last_hidden_state
        g = int(round((h.shape[1] - 1) ** 0.5))
        grid = h[:, 1:].transpose(1, 2).reshape(len(images), -1, g, g)
        pooled = F.adaptive_avg_pool2d(grid, merged).flatten(2).transpose(1, 2)
        return torch.cat([pooled, h[:, :1].expand(-1, pooled.shape[1], -1)], dim=2)

    def _cache_usable(self) -> bool:
        """The frozen tower's features are memoised per image (a record's frame is seen every epoch, by
        several questions, and again in evaluation). Only while no CLIP weight can train (an adapter on the
        tower disables it) and invalidated by any in-place change of a weight (``Tensor._version``)."""
        params = list(self.clip.parameters())
        if any(p.requires_grad for p in params):
            return False
        version = tuple(p._version for p in params) + tuple(p.data_ptr() for p in params)
        if version != self._weights_version or len(self._features) > FEATURE_CACHE_SIZE:
            self._features.clear()
            self._weights_version = version
        return True

    def forward(self, hidden_states: torch.Tensor, grid_thw: torch.Tensor, **_) -> BaseModelOutputWithPooling:
        import hashlib

        images = self.images(hidden_states, grid_thw)
        grids = [tuple(g) for g in grid_thw.tolist()]
        m = self.spatial_merge_size
        cache = self._cache_usable()
        keys = [
            (g, str(x.dtype), str(x.device), hashlib.blake2b(x.detach().cpu().numpy().tobytes()).digest())
            if cache
            else None
            for x, g in zip(images, grids, strict=True)
        ]
        feats: list[torch.Tensor | None] = [self._features.get(k) if cache else None for k in keys]
        for shape in sorted(
            {g for g, f in zip(grids, feats, strict=True) if f is None}
        ):  # one CLIP pass per size
            idx = [k for k, g in enumerate(grids) if g == shape and feats[k] is None]
            out = self.clip_features(torch.stack([images[k] for k in idx]), (shape[1] // m, shape[2] // m))
            for j, k in enumerate(idx):
                feats[k] = out[j]
                if cache:
                    self._features[keys[k]] = out[j]
        merged = self.proj(torch.cat(feats).to(self.dtype))
        return BaseModelOutputWithPooling(last_hidden_state=merged, pooler_output=merged)


class ClipQwen2VLForConditionalGeneration(Qwen2VLForConditionalGeneration):
    """Qwen2-VL with :class:`ClipVisionTower` as ``model.visual``."""

    config_class = ClipQwen2VLConfig

    def __init__(self, config: ClipQwen2VLConfig):
        super().__init__(config)
        self.model.visual = ClipVisionTower(config)
        self.post_init()

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """Loading replaces every parameter (``requires_grad=True``): the CLIP tower is frozen again."""
        model = super().from_pretrained(*args, **kwargs)
        model.model.visual.clip.requires_grad_(False)
        return model


AutoConfig.register("surgkit_clip_qwen2_vl", ClipQwen2VLConfig)
AutoModelForImageTextToText.register(ClipQwen2VLConfig, ClipQwen2VLForConditionalGeneration)
AutoModelForCausalLM.register(ClipQwen2VLConfig, ClipQwen2VLForConditionalGeneration)  # TRL's fallback loader


# ------------------------------------------------------------------------------------- building
def _text_config(cfg: TinyVLMConfig, vocab: int, ids: dict[str, int]) -> dict:
    head_dim = cfg.hidden_size // cfg.num_heads
    half = head_dim // 2
    section = [half - 2 * (half // 3), half // 3, half // 3]
    return dict(
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
    )


def _vision_config(cfg: TinyVLMConfig) -> dict:
    out = dict(
        depth=cfg.vision_depth,
        hidden_size=cfg.hidden_size,
        num_heads=2,
        patch_size=cfg.patch_size,
        spatial_merge_size=2,
        temporal_patch_size=2,
    )
    if cfg.kind == "qwen2.5-vl":  # Qwen2.5-VL: windowed attention blocks, SwiGLU MLP, out_hidden_size
        out.update(
            hidden_size=cfg.vision_embed_dim,
            intermediate_size=2 * cfg.vision_embed_dim,
            out_hidden_size=cfg.hidden_size,
            window_size=112,
            fullatt_block_indexes=[cfg.vision_depth - 1],
        )
    else:
        out["embed_dim"] = cfg.vision_embed_dim
    return out


def clip_vision_dict(folder: str | Path) -> dict:
    """The vision config of a CLIP folder, as a dict for :class:`ClipQwen2VLConfig`."""
    from transformers import CLIPConfig

    vc = CLIPConfig.from_pretrained(folder).vision_config.to_dict()
    return {
        k: v
        for k, v in vc.items()
        if not k.startswith("_") and k not in ("transformers_version", "model_type")
    }


def build_model(cfg: TinyVLMConfig, tok, seed: int = 0):
    """A randomly initialised tiny model of ``cfg.kind`` for tokenizer ``tok`` (CLIP tower loaded trained)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    if cfg.kind not in KINDS:
        raise SurgkitError(f"unknown tiny model kind '{cfg.kind}' (choose from {', '.join(KINDS)})")
    torch.manual_seed(seed)
    vocab = (len(tok) + 63) // 64 * 64
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIALS}
    common = dict(
        text_config=_text_config(cfg, vocab, ids),
        vision_config=_vision_config(cfg),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=True,
    )
    if cfg.kind == "qwen2.5-vl":
        model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**common))
    elif cfg.kind == "clip":
        if not cfg.vision_tower:
            raise SurgkitError("a 'clip' tiny model needs vision_tower: a CLIP model folder")
        model = ClipQwen2VLForConditionalGeneration(
            ClipQwen2VLConfig(**common, clip_vision=clip_vision_dict(cfg.vision_tower))
        )
        load_clip_tower(model, cfg.vision_tower)
    else:
        model = Qwen2VLForConditionalGeneration(Qwen2VLConfig(**common))
    gc = model.generation_config
    gc.eos_token_id, gc.pad_token_id, gc.bos_token_id = ids["<|im_end|>"], ids["<|endoftext|>"], None
    return model


def load_clip_tower(model: ClipQwen2VLForConditionalGeneration, folder: str | Path) -> None:
    """Copy the vision weights of a CLIP folder (safetensors) into the model's tower."""
    from safetensors.torch import load_file

    path = Path(folder) / "model.safetensors"
    if not path.is_file():
        raise SurgkitError(f"{folder}: no model.safetensors (a CLIP model folder is expected)")
    weights = {
        k[len("vision_model.") :]: v for k, v in load_file(str(path)).items() if k.startswith("vision_model.")
    }
    missing, unexpected = model.model.visual.clip.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise SurgkitError(
            f"{folder}: CLIP vision weights do not fit (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


def build_tiny_vlm(
    out_dir: str | Path, corpus: Iterable[str], cfg: TinyVLMConfig = TinyVLMConfig(), seed: int = 0
) -> Path:
    """Create, initialise and save a tiny model + its image-only processor in ``out_dir``."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from surgkit.reasoning.vlm import image_only_processor_class, save_vlm

    tok = train_tokenizer(corpus, cfg.vocab_size, cfg.merge_words, cfg.tokenizer_texts, seed)
    model = build_model(cfg, tok, seed)
    ip = Qwen2VLImageProcessorPil(
        patch_size=cfg.patch_size,
        merge_size=2,
        temporal_patch_size=2,
        # frames are shrunk to at most image_pixels; min_pixels well below it so that a resized frame is
        # a fixed point of the resize (smart_resize's floor can land under image_pixels: with min = max
        # the resized frame would be enlarged again -- cached copies would differ from the original's)
        min_pixels=min(cfg.image_pixels, MIN_PIXELS),
        max_pixels=cfg.image_pixels,
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    )
    kind = "image-only-qwen2.5-vl" if cfg.kind == "qwen2.5-vl" else "image-only-qwen2-vl"
    proc = image_only_processor_class(kind)(image_processor=ip, tokenizer=tok, chat_template=CHAT_TEMPLATE)
    meta = {"kind": f"tiny-{cfg.kind}", "config": dataclasses.asdict(cfg), "seed": seed}
    return save_vlm(model, proc, Path(out_dir), meta)
