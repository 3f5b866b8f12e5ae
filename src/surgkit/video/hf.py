"""surgkit ↔ HF transformers ``VideoMAE`` folders (spec surgvista.md §11).

The SurgVISTA encoder is weight-compatible with ``VideoMAEModel`` up to renaming and a qkv split
(``qkv.weight`` rows [q; k; v] → ``query``/``key``/``value``; ``q_bias``/``v_bias`` →
``query.bias``/``value.bias``; HF's key has no bias, which matches the fixed zero k-bias).
Three things HF does not store and surgkit therefore writes into the config and re-applies:

* ``layer_norm_eps = 1e-6`` (HF default 1e-12) — a real config field, HF uses it;
* the **3-D sin-cos table**: HF's ``embeddings.position_embeddings`` is a plain attribute outside
  the state dict that HF always fills with its 1-D table. The config carries
  ``surgkit_position_table = "3d-sincos"`` and :func:`load_hf_videomae` re-assigns the table after
  ``from_pretrained``; a bare ``from_pretrained`` gives wrong outputs;
* ``fc_norm`` eps 1e-6 for the classifier (HF hard-codes 1e-5): ``surgkit_fc_norm_eps``,
  re-applied by :func:`load_hf_videomae`.

Folders are written by surgkit (atomic ``config.json`` + ``model.safetensors``) in the layout
``from_pretrained`` reads; weights round-trip bit-exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from surgkit.errors import SurgkitError
from surgkit.utils.io import save_tensors, write_text
from surgkit.video.config import SurgVistaClassifierConfig, SurgVistaEncoderConfig
from surgkit.video.layers import position_table

_BLOCK_MAP = {  # surgkit block suffix -> HF layer suffix (qkv handled separately)
    "norm1": "layernorm_before",
    "attn.proj": "attention.output.dense",
    "norm2": "layernorm_after",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}


def hf_config(config: SurgVistaEncoderConfig):
    """A ``VideoMAEConfig`` for ``config`` (classifier → ``use_mean_pooling`` and labels)."""
    from transformers import VideoMAEConfig

    is_cls = isinstance(config, SurgVistaClassifierConfig)
    kwargs = dict(
        image_size=config.img_size, patch_size=config.patch_size, num_channels=config.in_chans,
        num_frames=config.num_frames, tubelet_size=config.tubelet_size, hidden_size=config.embed_dim,
        num_hidden_layers=config.depth, num_attention_heads=config.num_heads,
        intermediate_size=int(config.embed_dim * config.mlp_ratio), hidden_act="gelu",
        layer_norm_eps=config.layer_norm_eps, qv_bias=config.qkv_bias, use_mean_pooling=is_cls,
        surgkit_position_table=config.position_table,
        image_mean=list(config.mean), image_std=list(config.std),
    )  # fmt: skip
    if is_cls:
        kwargs["surgkit_fc_norm_eps"] = config.fc_norm_eps
        names = list(config.label_names) or [f"class_{i}" for i in range(config.num_classes)]
        kwargs.update(
            num_labels=config.num_classes,
            id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)},
            problem_type="multi_label_classification"
            if config.multi_label
            else "single_label_classification",
            architectures=["VideoMAEForVideoClassification"],
        )
    else:
        kwargs["architectures"] = ["VideoMAEModel"]
    return VideoMAEConfig(**kwargs)


def surgkit_to_hf_state(
    state: dict[str, torch.Tensor], config: SurgVistaEncoderConfig
) -> dict[str, torch.Tensor]:
    """Rename a surgkit encoder/classifier state dict to HF VideoMAE keys (v5 names)."""
    is_cls = isinstance(config, SurgVistaClassifierConfig)
    enc_in = "encoder." if any(k.startswith("encoder.") for k in state) else ""
    pre = "videomae." if is_cls else ""
    d = config.embed_dim
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not key.startswith(enc_in):
            if key.startswith("fc_norm."):
                out[key] = value
            elif key.startswith("head."):
                out["classifier." + key[5:]] = value
            elif key.startswith(("decoder_vid.", "decoder_img.")):
                continue  # pretraining decoders: not part of VideoMAEModel (export the encoder only)
            else:
                raise SurgkitError(f"cannot map '{key}' to HF VideoMAE")
            continue
        k = key[len(enc_in) :]
        if k.startswith("patch_embed.proj."):
            out[pre + "embeddings.patch_embeddings.projection." + k.split(".")[-1]] = value
        elif k.startswith("norm."):
            if is_cls:
                raise SurgkitError("a classifier has no final norm (use_mean_pooling)")
            out["layernorm." + k[5:]] = value
        elif k.startswith("blocks."):
            _, i, rest = k.split(".", 2)
            base = f"{pre}encoder.layer.{i}."
            if rest == "attn.qkv.weight":
                q, kk, v = value.split(d, dim=0)
                for name, w in (("query", q), ("key", kk), ("value", v)):
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
        else:
            raise SurgkitError(f"cannot map '{key}' to HF VideoMAE")
    return {k: v.detach().cpu().contiguous() for k, v in out.items()}


def hf_to_surgkit_state(hf_state: dict[str, torch.Tensor], classifier: bool) -> dict[str, torch.Tensor]:
    """Inverse of :func:`surgkit_to_hf_state`; accepts v4 (``q_bias``) and v5 (``query.bias``) names."""
    inv = {v: k for k, v in _BLOCK_MAP.items()}
    enc = "encoder." if classifier else ""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in hf_state.items():
        k = key[len("videomae.") :] if key.startswith("videomae.") else key
        if k.startswith("embeddings.patch_embeddings.projection."):
            out[enc + "patch_embed.proj." + k.split(".")[-1]] = value
        elif k.startswith("layernorm."):
            out[enc + "norm." + k.split(".")[-1]] = value
        elif k.startswith("fc_norm."):
            out[k] = value
        elif k.startswith("classifier."):
            out["head." + k.split(".")[-1]] = value
        elif k.startswith("encoder.layer."):
            _, _, i, rest = k.split(".", 3)
            base = f"{enc}blocks.{i}."
            m = {
                "attention.attention.query.weight": ("q", None),
                "attention.attention.key.weight": ("k", None),
                "attention.attention.value.weight": ("v", None),
            }
            if rest in m:
                qkv.setdefault(base, {})[m[rest][0]] = value
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
        else:
            raise SurgkitError(f"unknown HF VideoMAE key '{key}' (decoder weights are not imported)")
    for base, parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise SurgkitError(f"incomplete q/k/v weights for {base}")
        out[base + "attn.qkv.weight"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def save_hf_folder(model, folder: str | Path) -> Path:
    """Write a surgkit encoder or classifier as an HF ``VideoMAEModel``/``VideoMAEForVideoClassification`` folder.

    A pretraining model is exported as its encoder (with the final norm as ``layernorm``).
    """
    from surgkit.video.model import SurgVistaForPretraining

    if isinstance(model, SurgVistaForPretraining):
        model = model.encoder
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
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise SurgkitError(f"{cfg_path}:{e.lineno}: invalid JSON ({e.msg})") from None
    if cfg.get("model_type") != "videomae":
        raise SurgkitError(f"{cfg_path}: model_type is {cfg.get('model_type')!r}, expected 'videomae'")
    return cfg, load_file(str(w_path))


def load_hf_folder(folder: str | Path):
    """Read an HF VideoMAE folder (surgkit-exported or a genuine VideoMAE) into a surgkit model.

    A folder without ``surgkit_position_table`` is a genuine VideoMAE checkpoint: it gets the
    1-D table (``position_table="1d-sincos"``) so its outputs stay those HF computes.
    """
    from surgkit.video.model import SurgVistaEncoder, SurgVistaForClassification

    folder = Path(folder)
    cfg, hf_state = _read_hf_folder(folder)
    classifier = any(k.startswith("classifier.") for k in hf_state)

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
    if classifier:
        id2label = cfg.get("id2label") or {}
        names = tuple(
            id2label[str(i)] if str(i) in id2label else id2label.get(i) for i in range(len(id2label))
        )
        config = SurgVistaClassifierConfig(
            **enc, num_classes=hf_state["classifier.weight"].shape[0],
            multi_label=cfg.get("problem_type") == "multi_label_classification",
            label_names=names if all(names) else (), fc_norm_eps=cfg.get("surgkit_fc_norm_eps", 1e-5),
        )  # fmt: skip
        model = SurgVistaForClassification(config)
    else:
        config = SurgVistaEncoderConfig(**enc, final_norm="layernorm.weight" in hf_state)
        model = SurgVistaEncoder(config)
    model.load_state_dict(hf_to_surgkit_state(hf_state, classifier), strict=True)
    return model


def load_hf_videomae(folder: str | Path, attn_implementation: str = "eager"):
    """``from_pretrained`` an HF VideoMAE folder and re-apply what HF does not store.

    Sets ``embeddings.position_embeddings`` to the table named by ``surgkit_position_table`` and
    ``fc_norm.eps`` to ``surgkit_fc_norm_eps``: after this, HF outputs equal surgkit's.
    """
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification, VideoMAEModel

    folder = Path(folder)
    cfg, hf_state = _read_hf_folder(folder)
    cls = (
        VideoMAEForVideoClassification
        if any(k.startswith("classifier.") for k in hf_state)
        else VideoMAEModel
    )
    model = cls.from_pretrained(str(folder), attn_implementation=attn_implementation)
    hc: VideoMAEConfig = model.config
    base = model.videomae if cls is VideoMAEForVideoClassification else model
    grid = (hc.num_frames // hc.tubelet_size, hc.image_size // hc.patch_size, hc.image_size // hc.patch_size)
    table = cfg.get("surgkit_position_table", "1d-sincos")
    base.embeddings.position_embeddings = position_table(table, hc.hidden_size, grid)
    if cls is VideoMAEForVideoClassification and "surgkit_fc_norm_eps" in cfg:
        model.fc_norm.eps = cfg["surgkit_fc_norm_eps"]
    return model.eval()
