"""The SurgVLP family (SurgVLP, HecVL, PeskaVLP) as independent classes (vlm_bench spec §1.1, §1.2).

The three official models share one architecture and differ only by their weights:

* image tower: torchvision-named ResNet-50 without ``fc`` (:class:`~surgkit.grounding.resnet.ResNetTrunk`),
  spatial mean of ``layer4``, then ``Linear(2048, 768)`` (``global_embedder``); no L2 norm inside;
* text tower: a BERT-base (Bio_ClinicalBERT numbers) built **from a config**; the sentence
  embedding is the reference pooling: sum over the last 4 hidden states (encoder layers 9-12),
  summed over the tokens with attention mask 1 (``[CLS]`` .. ``[SEP]``) and divided by the padded
  length L = 77. (Summing ``##`` word pieces into their head word, as the reference does, only
  regroups this sum.) No text projection: the text embedding lives in BERT's 768-d space;
* tokenizer: ``BertTokenizer(vocab.txt, do_lower_case=True)`` padded/truncated to 77 tokens
  (the hub repo has no tokenizer_config, so the BERT default lower-casing applies);
* zero-shot probabilities: softmax(100 * cos).

Official checkpoints are plain state dicts with keys ``backbone_img.model.*``,
``backbone_img.global_embedder.*`` and ``backbone_text.model.*``; :func:`remap_reference_keys`
documents the mapping onto these classes. They are pickle-based ``.pth`` files: they are only
read with ``torch.load(weights_only=True)`` and only when the caller passes
``trust_checkpoint=True``; :func:`convert_reference_checkpoint` turns them into a safetensors
folder once. SurgVLP code and weights are CC BY-NC-SA 4.0 and are not redistributed here.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from surgkit.errors import SurgkitError
from surgkit.grounding.adapters import VLMAdapter
from surgkit.grounding.geometry import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from surgkit.grounding.heatmaps import gradcam_map, upsample_and_normalise
from surgkit.grounding.resnet import ResNetTrunk
from surgkit.utils.modeling import ModelConfig, PretrainedModel

VARIANTS = ("surgvlp", "hecvl", "peskavlp")
RESNET_BLOCKS = ("layer1", "layer2", "layer3", "layer4")
SURGVLP_RESIZE = (360, 640)  # surgvlp.py::_transform: Resize((360, 640)) -> CenterCrop(224)
TOKEN_POOLS = ("masked_sum_over_L", "masked_mean", "cls")
LAYER_AGGS = ("sum", "mean")

# Bio_ClinicalBERT (BERT-base) as used by the reference text tower.
BIO_CLINICAL_BERT: dict[str, Any] = {
    "vocab_size": 28996,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "hidden_act": "gelu",
}

# Reference key prefix -> surgkit module prefix (checkpoint loader rule 4).
KEY_MAP: tuple[tuple[str, str], ...] = (
    ("backbone_img.model.", "image.trunk."),
    ("backbone_img.global_embedder.", "image.proj."),
    ("backbone_text.model.", "text.bert."),
)


@dataclasses.dataclass
class SurgicalVLMConfig(ModelConfig):
    """Architecture of a SurgVLP-family model; the defaults are the official one."""

    model_type: ClassVar[str] = "surgical-vlm"
    variant: str = "surgvlp"
    resnet_layers: tuple[int, ...] = (3, 4, 6, 3)
    resnet_width: int = 64
    bert: dict[str, Any] = dataclasses.field(default_factory=lambda: dict(BIO_CLINICAL_BERT))
    last_n_layers: int = 4
    layer_agg: str = "sum"
    token_pool: str = "masked_sum_over_L"
    max_length: int = 77
    image_size: int = 224
    probability_scale: float = 100.0

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise SurgkitError(
                f"unknown SurgVLP variant '{self.variant}' (choose from {', '.join(VARIANTS)})"
            )
        if self.token_pool not in TOKEN_POOLS:
            raise SurgkitError(f"unknown token_pool '{self.token_pool}' ({', '.join(TOKEN_POOLS)})")
        if self.layer_agg not in LAYER_AGGS:
            raise SurgkitError(f"unknown layer_agg '{self.layer_agg}' ({', '.join(LAYER_AGGS)})")
        if not 1 <= self.last_n_layers <= int(self.bert.get("num_hidden_layers", 12)):
            raise SurgkitError(f"last_n_layers={self.last_n_layers} exceeds the BERT depth")


class ResNetImageTower(nn.Module):
    """``trunk`` (layer4 map) -> spatial mean -> ``proj``; ``features`` is what Grad-CAM explains.

    ``features_at(x, "layer3")`` / ``embed_from(f, "layer3")`` split the forward pass after another
    block (the ``gradcam_layer`` protocol option).
    """

    def __init__(self, layers: Sequence[int], width: int, embed_dim: int):
        super().__init__()
        self.trunk = ResNetTrunk(layers, width)
        self.proj = nn.Linear(self.trunk.out_channels, embed_dim, bias=True)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def embed_from_features(self, features: torch.Tensor) -> torch.Tensor:
        return self.proj(features.mean(dim=(2, 3)))

    def features_at(self, x: torch.Tensor, layer: str = "layer4") -> torch.Tensor:
        """Output of block ``layer`` (``layer1`` .. ``layer4``, post-ReLU)."""
        if layer == "layer4":
            return self.features(x)
        t = self.trunk
        x = t.maxpool(t.relu(t.bn1(t.conv1(x))))
        for name in RESNET_BLOCKS[: RESNET_BLOCKS.index(layer) + 1]:
            x = getattr(t, name)(x)
        return x

    def embed_from(self, features: torch.Tensor, layer: str = "layer4") -> torch.Tensor:
        """The image embedding from the output of block ``layer`` (the rest of the forward pass)."""
        for name in RESNET_BLOCKS[RESNET_BLOCKS.index(layer) + 1 :]:
            features = getattr(self.trunk, name)(features)
        return self.embed_from_features(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed_from_features(self.features(x))


class BertSentenceTower(nn.Module):
    """BERT built from a config plus the reference sentence pooling (see module docstring)."""

    def __init__(self, bert_config: Mapping[str, Any], last_n_layers: int, layer_agg: str, token_pool: str):
        super().__init__()
        from transformers import BertConfig, BertModel

        self.bert = BertModel(BertConfig(**bert_config), add_pooling_layer=True)
        self.last_n_layers = last_n_layers
        self.layer_agg = layer_agg
        self.token_pool = token_pool

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        out = self.bert(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids),
            output_hidden_states=True,
        )
        layers = torch.stack(out.hidden_states[-self.last_n_layers :], dim=0)  # (n, B, L, H)
        per_token = layers.sum(0) if self.layer_agg == "sum" else layers.mean(0)
        if self.token_pool == "cls":
            return per_token[:, 0]
        mask = attention_mask.to(per_token.dtype)[..., None]
        summed = (per_token * mask).sum(dim=1)
        if self.token_pool == "masked_mean":
            return summed / mask.sum(dim=1).clamp_min(1.0)
        return summed / input_ids.shape[1]


class SurgicalVLM(PretrainedModel):
    """SurgVLP / HecVL / PeskaVLP: ``image`` (ResNet tower) and ``text`` (BERT sentence tower)."""

    config_class = SurgicalVLMConfig

    def __init__(self, config: SurgicalVLMConfig):
        super().__init__(config)
        embed_dim = int(config.bert["hidden_size"])
        self.image = ResNetImageTower(config.resnet_layers, config.resnet_width, embed_dim)
        self.text = BertSentenceTower(config.bert, config.last_n_layers, config.layer_agg, config.token_pool)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.image(pixels)

    def encode_text(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.text(input_ids, attention_mask, token_type_ids)


# -- checkpoints in the reference layout ------------------------------------------------------------
def read_checkpoint(path: str | Path, trust_checkpoint: bool = False) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or, with ``trust_checkpoint``, a ``.pth``/``.pt`` file.

    Pickle-based files are read with ``torch.load(map_location='cpu', weights_only=True)`` only; a
    dict wrapping ``state_dict`` or ``model`` is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise SurgkitError(f"{path}: checkpoint not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    if not trust_checkpoint:
        raise SurgkitError(
            f"{path}: a pickle-based torch checkpoint; surgkit reads it only with "
            "torch.load(weights_only=True) and only when you trust its source: pass --trust-checkpoint "
            "(trust_checkpoint=True), or convert it once with `surgkit ground convert-surgvlp`"
        )
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses arbitrary objects; corrupted files land here too
        raise SurgkitError(f"{path}: cannot read as a weights-only torch checkpoint ({e})") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise SurgkitError(f"{path}: expected a dict of tensors (a state_dict)")
    return dict(obj)


def remap_reference_keys(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Reference (SurgVLP repo) keys -> surgkit keys; returns the mapped dict and the dropped keys.

    Rules (spec §1.2): strip a leading ``module.``; ``backbone_img.model.`` -> ``image.trunk.``,
    ``backbone_img.global_embedder.`` -> ``image.proj.``, ``backbone_text.model.`` -> ``text.bert.``;
    drop ``*.embeddings.position_ids`` (a persistent buffer before transformers 4.31) and ``*.fc.*``.
    Keys with another prefix are kept unchanged, so a strict load reports them as unexpected.
    """
    mapped: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for key, value in state.items():
        k = key[len("module.") :] if key.startswith("module.") else key
        if k.endswith("embeddings.position_ids") or ".fc." in f".{k}":
            dropped.append(key)
            continue
        for old, new in KEY_MAP:
            if k.startswith(old):
                k = new + k[len(old) :]
                break
        mapped[k] = value
    return mapped, dropped


def to_reference_keys(
    model: SurgicalVLM, module_prefix: bool = False, position_ids: bool = True
) -> dict[str, torch.Tensor]:
    """The model's state dict in the reference key layout (for round-trip tests and exports)."""
    out: dict[str, torch.Tensor] = {}
    prefix = "module." if module_prefix else ""
    for key, value in model.state_dict().items():
        for old, new in KEY_MAP:
            if key.startswith(new):
                key = old + key[len(new) :]
                break
        out[prefix + key] = value.detach().cpu().clone()
    if position_ids:
        n = int(model.config.bert["max_position_embeddings"])
        out[f"{prefix}backbone_text.model.embeddings.position_ids"] = torch.arange(n).expand(1, -1).clone()
    return out


def save_reference_checkpoint(
    model: SurgicalVLM, path: str | Path, module_prefix: bool = False, position_ids: bool = True
) -> Path:
    """Write the model in the reference layout (``.safetensors``, or ``.pth`` via ``torch.save``), atomically."""
    from surgkit.utils.io import atomic_path, save_tensors

    path = Path(path)
    state = to_reference_keys(model, module_prefix=module_prefix, position_ids=position_ids)
    if path.suffix == ".safetensors":
        return save_tensors(path, state)
    with atomic_path(path) as tmp:
        torch.save(state, str(tmp))
    return path


def load_reference_checkpoint(
    model: SurgicalVLM, path: str | Path, trust_checkpoint: bool = False
) -> SurgicalVLM:
    """Load an official SurgVLP/HecVL/PeskaVLP checkpoint strictly; list missing/unexpected keys on failure."""
    return load_reference_state(model, read_checkpoint(path, trust_checkpoint), path)


def load_reference_state(
    model: SurgicalVLM, state: Mapping[str, torch.Tensor], path: str | Path
) -> SurgicalVLM:
    """Remap a reference-layout state dict and load it strictly (``path`` names the source in errors)."""
    mapped, _dropped = remap_reference_keys(state)
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    if missing or unexpected:

        def show(keys: list[str]) -> str:
            return ", ".join(keys[:20]) + (f" ... (+{len(keys) - 20} more)" if len(keys) > 20 else "")

        parts = []
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {show(list(unexpected))}")
        if missing:
            parts.append(f"{len(missing)} missing key(s): {show(list(missing))}")
        raise SurgkitError(f"{path}: checkpoint does not match {model.config.variant}: " + "; ".join(parts))
    return model


def convert_reference_checkpoint(
    checkpoint: str | Path,
    vocab: str | Path,
    out_dir: str | Path,
    config: SurgicalVLMConfig | None = None,
    trust_checkpoint: bool = False,
) -> Path:
    """Official checkpoint + Bio_ClinicalBERT ``vocab.txt`` -> a surgkit folder (safetensors, config, vocab)."""
    from surgkit.utils.io import write_text

    vocab = Path(vocab)
    if not vocab.is_file():
        raise SurgkitError(f"{vocab}: vocab.txt not found (the Bio_ClinicalBERT vocabulary)")
    state = read_checkpoint(checkpoint, trust_checkpoint)  # refused or read before building the model
    model = load_reference_state(SurgicalVLM(config or SurgicalVLMConfig()), state, checkpoint)
    out = model.save_pretrained(out_dir)
    write_text(out / "vocab.txt", vocab.read_text(encoding="utf-8"))
    return out


# -- adapter ----------------------------------------------------------------------------------------
def bert_tokenizer(vocab: str | Path) -> Any:
    """A lower-casing WordPiece ``BertTokenizer`` over ``vocab.txt``, as the reference effectively uses.

    transformers 5 builds ``BertTokenizer`` on the ``tokenizers`` backend and silently ignores a
    ``vocab_file=`` argument (leaving a 5-token vocabulary), so the file is read here (one token per
    line, id = line number) and passed as ``vocab=``.
    """
    from transformers import BertTokenizer

    vocab = Path(vocab)
    if not vocab.is_file():
        raise SurgkitError(f"{vocab}: vocab.txt not found")
    tokens = vocab.read_text(encoding="utf-8").split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    table = {}
    for i, tok in enumerate(tokens):
        table.setdefault(tok.rstrip("\r"), i)
    for special in ("[PAD]", "[UNK]", "[CLS]", "[SEP]"):
        if special not in table:
            raise SurgkitError(f"{vocab}: not a BERT vocabulary (no {special} token)")
    return BertTokenizer(vocab=table, do_lower_case=True)


class SurgicalVLMAdapter(VLMAdapter):
    """SurgVLP-family model with Grad-CAM (``layer4`` by default) and the cosine target (spec §4.1)."""

    heatmap_method = "gradcam"

    def __init__(
        self,
        model: SurgicalVLM,
        tokenizer: Any,
        official: Preprocess | None = None,
        name: str | None = None,
        device: str | torch.device = "cpu",
    ):
        super().__init__(name or model.config.variant, official or official_preprocess(model.config), device)
        self.model = model.to(self.device).eval().float()
        self.tokenizer = tokenizer

    @classmethod
    def from_pretrained(
        cls, path: str | Path, device: str | torch.device = "cpu", name: str | None = None
    ) -> SurgicalVLMAdapter:
        """A surgkit SurgicalVLM folder (config.json, model.safetensors, vocab.txt)."""
        path = Path(path)
        model = SurgicalVLM.from_pretrained(path)
        return cls(model, bert_tokenizer(path / "vocab.txt"), None, name, device)

    @classmethod
    def from_reference_checkpoint(
        cls,
        checkpoint: str | Path,
        vocab: str | Path | None = None,
        variant: str = "surgvlp",
        trust_checkpoint: bool = False,
        device: str | torch.device = "cpu",
        name: str | None = None,
    ) -> SurgicalVLMAdapter:
        """An official checkpoint file plus its ``vocab.txt`` (full-size architecture)."""
        if vocab is None:
            raise SurgkitError(
                f"{checkpoint}: a SurgVLP checkpoint needs the Bio_ClinicalBERT vocab.txt (--vocab)"
            )
        config = SurgicalVLMConfig(variant=variant)
        state = read_checkpoint(checkpoint, trust_checkpoint)
        model = load_reference_state(SurgicalVLM(config), state, checkpoint)
        return cls(model, bert_tokenizer(vocab), None, name or variant, device)

    @property
    def probability_scale(self) -> float:
        return float(self.model.config.probability_scale)

    @property
    def score_scale(self) -> float:
        return 1.0  # Grad-CAM is invariant to the score scale

    def describe(self) -> dict[str, Any]:
        c = self.model.config
        return {
            **super().describe(),
            "variant": c.variant,
            "text_pooling": {
                "last_n_layers": c.last_n_layers,
                "layer_agg": c.layer_agg,
                "token_pool": c.token_pool,
            },
        }

    def tokenize(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        n = int(self.model.config.max_length)
        lengths = [len(ids) for ids in self.tokenizer(list(prompts), truncation=False)["input_ids"]]
        cut = [p for p, k in zip(prompts, lengths, strict=True) if k > n]
        if cut:
            warnings.warn(f"{len(cut)} prompt(s) truncated to {n} tokens, e.g. {cut[0]!r}", stacklevel=2)
        enc = self.tokenizer(
            list(prompts), padding="max_length", max_length=n, truncation=True, return_tensors="pt"
        )
        return {k: v.to(self.device) for k, v in enc.items()}

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        enc = self.tokenize(prompts)
        return self.model.encode_text(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"))

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels.to(self.device, torch.float32))

    def describe_heatmap(self) -> dict[str, Any]:
        layer = self.heatmap_options.gradcam_layer
        return {"method": self.heatmap_method, "layer": f"image.trunk.{layer}", "target": "cos"}

    def _explainable_forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, Any]:
        # hook-free Grad-CAM: the trunk runs without a graph up to the explained block, whose
        # output becomes a leaf; the rest of the forward pass keeps the graph
        layer = self.heatmap_options.gradcam_layer
        with torch.no_grad():
            feats = self.model.image.features_at(pixels, layer)
        feats = feats.detach().requires_grad_(True)
        return self.model.image.embed_from(feats, layer), feats

    def _relevance(self, state: Any, score: torch.Tensor, retain_graph: bool) -> torch.Tensor:
        (grads,) = torch.autograd.grad(score.sum(), state, retain_graph=retain_graph)
        cam = gradcam_map(state, grads)
        return upsample_and_normalise(cam, (self.preprocess.size, self.preprocess.size))


def official_preprocess(config: SurgicalVLMConfig) -> Preprocess:
    """SurgVLP's transform: Resize((360, 640)) then CenterCrop(224), ImageNet normalisation.

    For a model whose input is not 224 (reduced test configurations) the intermediate size is
    scaled by ``image_size / 224``, so the visible window keeps the official geometry.
    """
    s = int(config.image_size)
    hw = tuple(int(round(v * s / 224)) for v in SURGVLP_RESIZE)
    return Preprocess("resize_crop", s, IMAGENET_MEAN, IMAGENET_STD, resize_hw=hw)  # type: ignore[arg-type]
