"""surgkit ↔ HF transformers ``VideoMAE`` folders (spec surgvista.md §11).

The SurgVISTA encoder is weight-compatible with ``VideoMAEModel`` up to renaming and a qkv split
(``qkv.weight`` rows [q; k; v] → ``query``/``key``/``value``; ``q_bias``/``v_bias`` →
``query.bias``/``value.bias``; HF's key has no bias, which matches the fixed zero k-bias), and the
reconstruction branch is ``VideoMAEForPreTraining``'s decoder. What HF does not store, surgkit
writes into the folder and :func:`load_hf_videomae` re-applies after ``from_pretrained``:

* ``layer_norm_eps = 1e-6`` (HF default 1e-12) — a real config field, HF uses it;
* the **3-D sin-cos tables** (``surgkit_position_table``): HF keeps its position tables outside the
  state dict and always builds its 1-D table, so a bare ``from_pretrained`` gives wrong outputs;
* ``fc_norm`` eps 1e-6 (classifier; HF hard-codes 1e-5) and the decoder norm eps 1e-6 (HF 1e-5);
* the **bias of the encoder-to-decoder projection** (``encoder_to_decoder.bias``; HF's has none);
* the **distillation decoder**, which HF has no module for, under ``surgkit_distill_decoder.*``
  (HF reports these as unused keys and ignores them).

``config.json`` also carries the full surgkit config (``surgkit_config``), so a pretraining model
goes surgkit → HF → surgkit with both decoders, bit-exactly. Folders without it are genuine
VideoMAE checkpoints: they load with their own 1-D table and eps (encoder and classifier; a
genuine pretraining folder loads as its encoder).
"""

from __future__ import annotations

from pathlib import Path

import torch

from surgkit.errors import SurgkitError
from surgkit.utils.io import save_tensors, write_text
from surgkit.video.config import SurgVistaClassifierConfig, SurgVistaConfig, SurgVistaEncoderConfig
from surgkit.video.layers import position_table, sincos_3d_table

_BLOCK_MAP = {  # surgkit block suffix -> HF layer suffix (qkv handled separately)
    "norm1": "layernorm_before",
    "attn.proj": "attention.output.dense",
    "norm2": "layernorm_after",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}
_QKV = {"query": "q", "key": "k", "value": "v"}
DISTILL = "surgkit_distill_decoder."


def hf_config(config: SurgVistaEncoderConfig):
    """A ``VideoMAEConfig`` for ``config`` (classifier → labels; pretraining → decoder fields)."""
    from transformers import VideoMAEConfig

    is_cls = isinstance(config, SurgVistaClassifierConfig)
    kwargs = dict(
        image_size=config.img_size, patch_size=config.patch_size, num_channels=config.in_chans,
        num_frames=config.num_frames, tubelet_size=config.tubelet_size, hidden_size=config.embed_dim,
        num_hidden_layers=config.depth, num_attention_heads=config.num_heads,
        intermediate_size=int(config.embed_dim * config.mlp_ratio), hidden_act="gelu",
        layer_norm_eps=config.layer_norm_eps, qv_bias=config.qkv_bias, use_mean_pooling=is_cls,
        surgkit_position_table=config.position_table, surgkit_config=config.to_dict(),
        image_mean=list(config.mean), image_std=list(config.std),
    )  # fmt: skip
    if is_cls:
        kwargs["surgkit_fc_norm_eps"] = config.fc_norm_eps
        names = list(config.label_names) or [f"class_{i}" for i in range(config.num_classes)]
        kwargs.update(
            num_labels=config.num_classes, id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)},
            problem_type="multi_label_classification" if config.multi_label else "single_label_classification",
            architectures=["VideoMAEForVideoClassification"],
        )  # fmt: skip
    elif isinstance(config, SurgVistaConfig):
        kwargs.update(
            decoder_hidden_size=config.decoder_embed_dim, decoder_num_hidden_layers=config.decoder_depth,
            decoder_num_attention_heads=config.decoder_num_heads,
            decoder_intermediate_size=int(config.decoder_embed_dim * config.mlp_ratio),
            norm_pix_loss=config.normalize_pixel_target, surgkit_decoder_norm_eps=config.layer_norm_eps,
            architectures=["VideoMAEForPreTraining"],
        )  # fmt: skip
    else:
        kwargs["architectures"] = ["VideoMAEModel"]
    return VideoMAEConfig(**kwargs)


# --------------------------------------------------------------------------------- key renaming


def _block_to_hf(rest: str, value: torch.Tensor, dim: int, base: str, out: dict, key: str) -> None:
    """One surgkit block tensor (``rest`` after ``blocks.i.``) → HF layer tensors under ``base``."""
    if rest == "attn.qkv.weight":
        for name, w in zip(_QKV, value.split(dim, dim=0), strict=True):
            out[f"{base}attention.attention.{name}.weight"] = w.clone()
    elif rest == "attn.q_bias":
        out[base + "attention.attention.query.bias"] = value
    elif rest == "attn.v_bias":
        out[base + "attention.attention.value.bias"] = value
    else:
        mod, param = rest.rsplit(".", 1)
        if mod not in _BLOCK_MAP:
            raise SurgkitError(f"cannot map '{key}' to HF VideoMAE")
        out[f"{base}{_BLOCK_MAP[mod]}.{param}"] = value


def _decoder_to_hf(k: str, value: torch.Tensor, dim: int, out: dict, layers: str, top: str) -> None:
    """A surgkit decoder tensor (``k`` after ``decoder_xxx.``) → HF names (``top`` = ``""`` or the distill prefix)."""
    if k.startswith("down."):
        out[top + "encoder_to_decoder." + k[5:]] = value
    elif k == "mask_token":
        out[top + "mask_token"] = value
    elif k.startswith("blocks."):
        _, i, rest = k.split(".", 2)
        _block_to_hf(rest, value, dim, f"{layers}decoder_layers.{i}.", out, k)
    elif k.startswith(("norm.", "head.")):
        out[layers + k] = value
    else:
        raise SurgkitError(f"cannot map decoder key '{k}' to HF VideoMAE")


def surgkit_to_hf_state(
    state: dict[str, torch.Tensor], config: SurgVistaEncoderConfig
) -> dict[str, torch.Tensor]:
    """Rename a surgkit encoder / classifier / pretraining state dict to HF VideoMAE keys (v5 names)."""
    is_cls = isinstance(config, SurgVistaClassifierConfig)
    is_pre = isinstance(config, SurgVistaConfig)
    enc_in = "encoder." if any(k.startswith("encoder.") for k in state) else ""
    pre = "videomae." if (is_cls or is_pre) else ""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("decoder_vid.") and is_pre:
            _decoder_to_hf(key[12:], value, config.decoder_embed_dim, out, "decoder.", "")
        elif key.startswith("decoder_img.") and is_pre:
            _decoder_to_hf(key[12:], value, config.distill_embed_dim, out, DISTILL, DISTILL)
        elif not key.startswith(enc_in) or (enc_in == "" and key.startswith(("fc_norm.", "head."))):
            if key.startswith("fc_norm."):
                out[key] = value
            elif key.startswith("head."):
                out["classifier." + key[5:]] = value
            else:
                raise SurgkitError(f"cannot map '{key}' to HF VideoMAE")
        else:
            k = key[len(enc_in) :]
            if k.startswith("patch_embed.proj."):
                out[pre + "embeddings.patch_embeddings.projection." + k.split(".")[-1]] = value
            elif k.startswith("norm."):
                if is_cls:
                    raise SurgkitError("a classifier has no final norm (use_mean_pooling)")
                out[pre + "layernorm." + k[5:]] = value
            elif k.startswith("blocks."):
                _, i, rest = k.split(".", 2)
                _block_to_hf(rest, value, config.embed_dim, f"{pre}encoder.layer.{i}.", out, key)
            else:
                raise SurgkitError(f"cannot map '{key}' to HF VideoMAE")
    return {k: v.detach().cpu().contiguous() for k, v in out.items()}


def _block_from_hf(rest: str, value, base: str, key: str, out: dict, qkv: dict) -> None:
    inv = {v: k for k, v in _BLOCK_MAP.items()}
    if rest.startswith("attention.attention.") and rest.endswith(".weight") and rest.split(".")[2] in _QKV:
        qkv.setdefault(base, {})[_QKV[rest.split(".")[2]]] = value
    elif rest in ("attention.attention.query.bias", "attention.attention.q_bias"):
        out[base + "attn.q_bias"] = value
    elif rest in ("attention.attention.value.bias", "attention.attention.v_bias"):
        out[base + "attn.v_bias"] = value
    elif rest == "attention.attention.key.bias":
        if bool(value.abs().max() > 0):
            raise SurgkitError(f"'{key}' is non-zero; SurgVISTA attention has a fixed zero k-bias")
    else:
        mod, param = rest.rsplit(".", 1)
        if mod not in inv:
            raise SurgkitError(f"unknown HF VideoMAE key '{key}'")
        out[f"{base}{inv[mod]}.{param}"] = value


def hf_to_surgkit_state(hf_state: dict[str, torch.Tensor], kind: str) -> dict[str, torch.Tensor]:
    """Inverse of :func:`surgkit_to_hf_state` for ``kind`` ``encoder``/``classifier``/``pretrain``.

    Accepts v4 (``q_bias``) and v5 (``query.bias``) names. ``kind="encoder"`` of a pretraining
    folder drops the decoders.
    """
    enc = "" if kind == "encoder" else "encoder."
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in hf_state.items():
        k = key[len("videomae.") :] if key.startswith("videomae.") else key
        dec, dk = None, None
        if k.startswith(DISTILL):
            dec, dk = "decoder_img.", k[len(DISTILL) :]
        elif k.startswith(("decoder.", "encoder_to_decoder.")) or k == "mask_token":
            dec, dk = "decoder_vid.", k.removeprefix("decoder.")
        if dec is not None:
            if kind != "pretrain":
                continue  # a genuine VideoMAEForPreTraining folder read as its encoder
            if dk.startswith("encoder_to_decoder."):
                out[dec + "down." + dk.split(".")[-1]] = value
            elif dk == "mask_token":
                out[dec + "mask_token"] = value
            elif dk.startswith("decoder_layers."):
                _, i, rest = dk.split(".", 2)
                _block_from_hf(rest, value, f"{dec}blocks.{i}.", key, out, qkv)
            elif dk.startswith(("norm.", "head.")):
                out[dec + dk] = value
            else:
                raise SurgkitError(f"unknown HF VideoMAE decoder key '{key}'")
        elif k.startswith("embeddings.patch_embeddings.projection."):
            out[enc + "patch_embed.proj." + k.split(".")[-1]] = value
        elif k.startswith("layernorm."):
            out[enc + "norm." + k.split(".")[-1]] = value
        elif k.startswith("fc_norm."):
            out[k] = value
        elif k.startswith("classifier."):
            out["head." + k.split(".")[-1]] = value
        elif k.startswith("encoder.layer."):
            _, _, i, rest = k.split(".", 3)
            _block_from_hf(rest, value, f"{enc}blocks.{i}.", key, out, qkv)
        else:
            raise SurgkitError(f"unknown HF VideoMAE key '{key}'")
    for base, parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise SurgkitError(f"incomplete q/k/v weights for {base}")
        out[base + "attn.qkv.weight"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


# ------------------------------------------------------------------------------------- folders


def save_hf_folder(model, folder: str | Path) -> Path:
    """Write a surgkit model as an HF folder: encoder → ``VideoMAEModel``, classifier →
    ``VideoMAEForVideoClassification``, pretraining → ``VideoMAEForPreTraining`` (+ the bias and
    the distillation decoder HF lacks, see the module docstring)."""
    config = model.config
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = surgkit_to_hf_state(model.state_dict(), config)
    save_tensors(folder / "model.safetensors", state, metadata={"format": "pt"})
    write_text(folder / "config.json", hf_config(config).to_json_string())
    return folder


def _read_hf_folder(folder: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    cfg_path, w_path = folder / "config.json", folder / "model.safetensors"
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise SurgkitError(
                f"{p}: not found (expected an HF VideoMAE folder with config.json + model.safetensors)"
            )
    from surgkit.utils.modeling import check_hf_folder

    cfg = check_hf_folder(folder)
    if cfg.get("model_type") != "videomae":
        raise SurgkitError(f"{cfg_path}: model_type is {cfg.get('model_type')!r}, expected 'videomae'")
    return cfg, load_file(str(w_path))


def _genuine_config(cfg: dict, hf_state: dict, classifier: bool) -> SurgVistaEncoderConfig:
    """The surgkit config of a genuine (not surgkit-written) VideoMAE folder: its 1-D table and eps."""

    def size(v):
        return v[0] if isinstance(v, list | tuple) else v

    enc = dict(
        img_size=size(cfg.get("image_size", 224)), patch_size=size(cfg.get("patch_size", 16)),
        num_frames=cfg.get("num_frames", 16), tubelet_size=cfg.get("tubelet_size", 2),
        in_chans=cfg.get("num_channels", 3), embed_dim=cfg["hidden_size"], depth=cfg["num_hidden_layers"],
        num_heads=cfg["num_attention_heads"], mlp_ratio=cfg["intermediate_size"] / cfg["hidden_size"],
        qkv_bias=cfg.get("qv_bias", cfg.get("qkv_bias", True)), layer_norm_eps=cfg.get("layer_norm_eps", 1e-12),
        position_table=cfg.get("surgkit_position_table", "1d-sincos"),
    )  # fmt: skip
    if "image_mean" in cfg:
        enc.update(mean=tuple(cfg["image_mean"]), std=tuple(cfg["image_std"]))
    if not classifier:
        return SurgVistaEncoderConfig(**enc, final_norm=any(k.endswith("layernorm.weight") for k in hf_state))
    id2label = cfg.get("id2label") or {}
    names = tuple(id2label[str(i)] if str(i) in id2label else id2label.get(i) for i in range(len(id2label)))
    return SurgVistaClassifierConfig(
        **enc, num_classes=hf_state["classifier.weight"].shape[0],
        multi_label=cfg.get("problem_type") == "multi_label_classification",
        label_names=names if all(names) else (), fc_norm_eps=cfg.get("surgkit_fc_norm_eps", 1e-5),
    )  # fmt: skip


def load_hf_folder(folder: str | Path):
    """Read an HF VideoMAE folder (surgkit-exported or a genuine VideoMAE) into a surgkit model.

    A surgkit-written folder comes back as the model it was written from (``surgkit_config``),
    bit-exactly. A genuine VideoMAE folder gets the 1-D table (``position_table="1d-sincos"``) so
    its outputs stay those HF computes; a genuine ``VideoMAEForPreTraining`` loads as its encoder.
    """
    from surgkit.video.model import MODEL_CLASSES

    folder = Path(folder)
    cfg, hf_state = _read_hf_folder(folder)
    if "surgkit_config" in cfg:
        data = dict(cfg["surgkit_config"])
        cls = MODEL_CLASSES.get(data.get("model_type"))
        if cls is None:
            raise SurgkitError(
                f"{folder / 'config.json'}: unknown surgkit_config model_type {data.get('model_type')!r}"
            )
        config = cls.config_class.from_dict(data)
    else:
        classifier = any(k.startswith("classifier.") for k in hf_state)
        config = _genuine_config(cfg, hf_state, classifier)
        cls = MODEL_CLASSES[config.model_type]
    kind = {"surgvista": "pretrain", "surgvista-classifier": "classifier"}.get(config.model_type, "encoder")
    model = cls(config)
    model.load_state_dict(hf_to_surgkit_state(hf_state, kind), strict=True)
    return model


def load_hf_videomae(folder: str | Path, attn_implementation: str = "eager"):
    """``from_pretrained`` an HF VideoMAE folder and re-apply what HF does not store.

    Sets the encoder's (and decoder's) position table named by ``surgkit_position_table``, the
    ``fc_norm`` / decoder-norm eps, and for a pretraining folder replaces ``encoder_to_decoder``
    by a biased Linear holding the stored bias: after this, HF outputs equal surgkit's.
    """
    from transformers import VideoMAEForPreTraining, VideoMAEForVideoClassification, VideoMAEModel

    folder = Path(folder)
    cfg, hf_state = _read_hf_folder(folder)
    if any(k.startswith("classifier.") for k in hf_state):
        cls = VideoMAEForVideoClassification
    elif "encoder_to_decoder.weight" in hf_state:
        cls = VideoMAEForPreTraining
    else:
        cls = VideoMAEModel
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the surgkit_* extra keys are expected, not worth a load report
    try:
        model = cls.from_pretrained(str(folder), attn_implementation=attn_implementation)
    finally:
        hf_logging.set_verbosity(level)
    hc = model.config
    base = model if cls is VideoMAEModel else model.videomae
    grid = (hc.num_frames // hc.tubelet_size, hc.image_size // hc.patch_size, hc.image_size // hc.patch_size)
    table = cfg.get("surgkit_position_table", "1d-sincos")
    base.embeddings.position_embeddings = position_table(table, hc.hidden_size, grid)
    if cls is VideoMAEForVideoClassification and "surgkit_fc_norm_eps" in cfg:
        model.fc_norm.eps = cfg["surgkit_fc_norm_eps"]
    if cls is VideoMAEForPreTraining and "surgkit_config" in cfg:
        model.position_embeddings = sincos_3d_table(hc.decoder_hidden_size, *grid)
        model.decoder.norm.eps = cfg.get("surgkit_decoder_norm_eps", 1e-6)
        if "encoder_to_decoder.bias" in hf_state:
            proj = torch.nn.Linear(hc.hidden_size, hc.decoder_hidden_size, bias=True)
            with torch.no_grad():
                proj.weight.copy_(hf_state["encoder_to_decoder.weight"])
                proj.bias.copy_(hf_state["encoder_to_decoder.bias"])
            model.encoder_to_decoder = proj
    return model.eval()
