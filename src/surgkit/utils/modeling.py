"""HF-style model persistence: a config dataclass plus ``save_pretrained``/``from_pretrained``.

A saved model is a folder with ``config.json`` (the dataclass fields plus ``model_type`` and the
surgkit version) and ``model.safetensors``. Nothing is ever unpickled.

Loading a folder from someone else is loading untrusted input, so before any tensor is allocated:
``config.json`` is read through :mod:`surgkit.utils.inputs`; every field must have its declared type
(an ``int`` field refuses ``"2"``, ``2.5`` and ``true``) and sizes must be in a sane range
(:data:`LIMITS`); the safetensors header is validated (length, JSON, dtypes, shapes, offsets that
cover the file exactly, see :func:`read_safetensors_header`); the model is built on the ``meta``
device and every parameter shape compared with the header. Any problem is one
:class:`~surgkit.errors.DataFormatError` naming the file and the key.

Usage::

    @dataclass
    class MyConfig(ModelConfig):
        model_type: ClassVar[str] = "my-model"
        width: int = 64

    class MyModel(PretrainedModel):
        config_class = MyConfig
        def __init__(self, config: MyConfig): ...

    model.save_pretrained("out/")
    MyModel.from_pretrained("out/")
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from surgkit.errors import DataFormatError, SurgkitError
from surgkit.utils.inputs import as_dict, loads_json, read_json
from surgkit.utils.io import save_tensors, write_json

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

C = TypeVar("C", bound="ModelConfig")
M = TypeVar("M", bound="PretrainedModel")


@dataclasses.dataclass
class ModelConfig:
    """Base class for model configs: a dataclass that round-trips through JSON."""

    model_type: ClassVar[str] = "base"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model_type"] = self.model_type
        return d

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], source: str | Path | None = None) -> C:
        """Build the config; with ``source`` (the file read) every field is type- and range-checked."""
        data = dict(data)
        mt = data.pop("model_type", cls.model_type)
        data.pop("surgkit_version", None)
        if mt != cls.model_type:
            raise _config_error(source, f"config is for model_type '{mt}', expected '{cls.model_type}'")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise _config_error(source, f"unknown {cls.__name__} fields: {', '.join(unknown)}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for k, v in list(data.items()):
            if source is not None:
                check_config_value(k, v, getattr(fields[k].type, "__name__", str(fields[k].type)), source)
            if isinstance(v, list) and "tuple" in str(fields[k].type):
                data[k] = tuple(v)
        try:
            return cls(**data)
        except (TypeError, ValueError) as e:  # a config's own __post_init__ validation
            if source is None or isinstance(e, SurgkitError):
                raise
            raise DataFormatError(f"invalid {cls.__name__}: {e}", path=source) from None

    def save(self, folder: str | Path) -> Path:
        from surgkit import __version__

        return write_json(Path(folder) / CONFIG_NAME, {**self.to_dict(), "surgkit_version": __version__})

    @classmethod
    def load(cls: type[C], folder: str | Path) -> C:
        path = Path(folder) / CONFIG_NAME
        if not path.is_file():
            raise SurgkitError(f"{path}: no {CONFIG_NAME} (is this a surgkit model folder?)")
        return cls.from_dict(as_dict(read_json(path), path, "top level"), source=path)


class PretrainedModel(nn.Module):
    """``nn.Module`` with a config and safetensors save/load in a folder."""

    config_class: ClassVar[type[ModelConfig]] = ModelConfig

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config

    def save_pretrained(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        save_tensors(folder / WEIGHTS_NAME, _dedupe_shared(state), metadata={"format": "pt"})
        self.config.save(folder)
        return folder

    @classmethod
    def from_pretrained(
        cls: type[M],
        folder: str | Path,
        map_location: str | torch.device = "cpu",
        strict: bool = True,
        **overrides: Any,
    ) -> M:
        folder = Path(folder)
        config = cls.config_class.load(folder)
        if overrides:
            config = dataclasses.replace(config, **overrides)
        weights = folder / WEIGHTS_NAME
        if not weights.is_file():
            pickled = [p.name for p in folder.glob("*") if p.suffix in PICKLE_SUFFIXES]
            hint = f" ({', '.join(pickled)} is pickled: convert it to safetensors)" if pickled else ""
            raise SurgkitError(f"{weights}: weights file not found{hint}")
        header = read_safetensors_header(weights)
        check_shapes_on_meta(cls, config, header, weights, folder / CONFIG_NAME, strict)
        model = cls(config)
        from safetensors.torch import load_file

        state = load_file(str(weights), device=str(map_location))
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not _is_tied(model, k, state)]
        if strict and (missing or unexpected):
            raise SurgkitError(
                f"{weights}: state dict does not match {cls.__name__}: "
                f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
            )
        return model.to(map_location)


def _dedupe_shared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share memory: keep the first name of each storage."""
    seen: dict[tuple[int, int, tuple[int, ...]], str] = {}
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape))
        if v.numel() and key in seen:
            continue
        seen[key] = k
        out[k] = v
    return out


def _is_tied(model: nn.Module, key: str, state: dict[str, torch.Tensor]) -> bool:
    """A key missing from the file is fine when its parameter shares storage with a loaded one."""
    params = dict(model.state_dict(keep_vars=True))
    p = params.get(key)
    if p is None:
        return False
    ptr = p.data_ptr()
    return any(k in state and params[k].data_ptr() == ptr for k in params if k != key)


# ------------------------------------------------------------------------- untrusted folders
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
MAX_HEADER_BYTES = 100 << 20  # safetensors' own limit
DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
# Sane ranges for integer config fields, by name (first match wins); the last entry is the default.
LIMITS: list[tuple[re.Pattern, int, int]] = [
    (re.compile(r"depth|layers|heads|blocks|num_frames|tubelet|stages"), 0, 4096),
    (re.compile(r".*"), -(1 << 20), 1 << 24),
]


def _config_error(source: str | Path | None, message: str) -> SurgkitError:
    return SurgkitError(message) if source is None else DataFormatError(message, path=source)


def check_config_value(key: str, value: Any, annotation: str, source: str | Path) -> None:
    """Refuse a config value of the wrong JSON type or outside :data:`LIMITS` (before allocation)."""
    kinds = {t.strip() for t in annotation.replace("Optional[", "").rstrip("]").split("|")}
    if value is None:
        if "None" not in kinds:
            raise DataFormatError(f"{key}: null is not allowed (expected {annotation})", path=source)
        return
    if isinstance(value, bool):
        if "bool" not in kinds:
            raise DataFormatError(f"{key}: expected {annotation}, got {value!r}", path=source)
        return
    if isinstance(value, int) and ("int" in kinds or "float" in kinds):
        lo, hi = next((lo, hi) for pat, lo, hi in LIMITS if pat.search(key))
        if not lo <= value <= hi:
            raise DataFormatError(f"{key}: {value} outside the sane range [{lo}, {hi}]", path=source)
        return
    if isinstance(value, float) and "float" in kinds:
        if not math.isfinite(value):
            raise DataFormatError(f"{key}: non-finite value {value!r}", path=source)
        return
    if isinstance(value, str) and "str" in kinds:
        return
    if isinstance(value, (list, dict)) and any(k.startswith(("tuple", "list", "dict", "Any")) for k in kinds):
        return
    if "Any" in kinds or not kinds & {"int", "float", "str", "bool"}:
        return  # a type this check does not know: left to the config class
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    raise DataFormatError(f"{key}: expected {annotation}, got {type(value).__name__} {shown}", path=source)


def read_safetensors_header(path: str | Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Validate a safetensors file without loading it; return ``{name: (dtype, shape)}``.

    Checks: 8-byte little-endian header length within the file and below 100 MiB, a JSON object
    header, known dtypes, non-negative integer shapes, and data offsets that match each tensor's size
    and tile the data section exactly (a truncated or padded file is refused).
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise DataFormatError(f"truncated safetensors file ({size} bytes)", path=path)
        n = int.from_bytes(head, "little")
        if n > MAX_HEADER_BYTES or n > size - 8:
            raise DataFormatError(
                f"safetensors header length {n} does not fit the {size}-byte file", path=path
            )
        raw = fh.read(n)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DataFormatError("safetensors header is not UTF-8 JSON", path=path) from None
    header = as_dict(loads_json(text, path), path, "header")
    data_size = size - 8 - n
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        where = f"tensor {name!r}"
        if not isinstance(info, dict) or info.get("dtype") not in DTYPE_BYTES:
            raise DataFormatError(f"{where}: missing or unknown dtype", path=path)
        shape, offsets = info.get("shape"), info.get("data_offsets")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise DataFormatError(f"{where}: shape must be a list of non-negative integers", path=path)
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
            raise DataFormatError(f"{where}: data_offsets must be two integers", path=path)
        start, end = offsets
        want = math.prod(shape) * DTYPE_BYTES[info["dtype"]]
        if not 0 <= start <= end <= data_size or end - start != want:
            raise DataFormatError(
                f"{where}: data_offsets {offsets} do not hold {want} bytes inside {data_size} (truncated?)",
                path=path,
            )
        spans.append((start, end))
        out[name] = (info["dtype"], tuple(shape))
    pos = 0
    for start, end in sorted(spans):
        if start != pos:
            raise DataFormatError(f"tensor data is not contiguous at byte {pos}", path=path)
        pos = end
    if pos != data_size:
        raise DataFormatError(f"{data_size - pos} bytes after the last tensor (damaged file?)", path=path)
    return out


def check_shapes_on_meta(
    cls: type[PretrainedModel],
    config: ModelConfig,
    header: dict[str, tuple[str, tuple[int, ...]]],
    weights: Path,
    config_path: Path,
    strict: bool = True,
) -> None:
    """Build the model on the meta device (no memory) and compare its tensors with the file's."""
    try:
        with torch.device("meta"):
            meta = cls(config)
    except Exception as e:  # noqa: BLE001 - a config the model code cannot build
        raise DataFormatError(
            f"cannot build {cls.__name__} from this config ({type(e).__name__}: {str(e)[:120]})",
            path=config_path,
        ) from None
    expected = {k: tuple(v.shape) for k, v in meta.state_dict().items()}
    for name, (_, shape) in header.items():
        if name in expected and expected[name] != shape:
            raise DataFormatError(
                f"tensor {name!r} has shape {list(shape)}, {config_path.name} makes it {list(expected[name])}",
                path=weights,
            )
    if strict:
        unexpected = sorted(set(header) - set(expected))
        if unexpected:
            raise DataFormatError(f"unexpected tensor(s) {unexpected[:3]} for {cls.__name__}", path=weights)


REMOTE_CODE_KEYS = ("auto_map", "trust_remote_code", "custom_pipelines")
_HF_LIMITS = [
    (re.compile(r"layers|heads|num_frames|tubelet"), 0, 4096),
    (re.compile(r"_size$|_dim$|^dim$|channels"), 0, 1 << 16),
]


def read_model_config(path: str | Path) -> dict[str, Any]:
    """``config.json`` of a model folder as a dict (hardened reader); remote-code configs refused."""
    path = Path(path)
    cfg = as_dict(read_json(path, "config.json"), path, "top level")
    for key in REMOTE_CODE_KEYS:
        if key in cfg:
            raise DataFormatError(
                f"{key}: the folder asks to run its own Python code; surgkit never does (remove the key "
                "only if you wrote that code yourself)",
                path=path,
            )
    return cfg


def check_hf_folder(folder: str | Path) -> dict[str, Any]:
    """Pre-flight for an HF model folder before ``transformers`` touches it: config read and checked
    (remote code refused, sizes in range), safetensors weights present (pickled ``.bin``/``.pt``
    refused) and their headers valid. Returns the config dict."""
    folder = Path(folder)
    cfg_path = folder / CONFIG_NAME
    cfg = read_model_config(cfg_path)
    for key, value in cfg.items():
        for pat, lo, hi in _HF_LIMITS:
            if pat.search(key):
                if isinstance(value, (list, dict)) or value is None:
                    break  # per-stage lists and optional sizes: left to the model's own config class
                if isinstance(value, bool) or not (isinstance(value, int) and lo <= value <= hi):
                    raise DataFormatError(
                        f"{key}: {value!r} is not an integer in [{lo}, {hi}]", path=cfg_path
                    )
                break
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        pickled = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickled:
            raise DataFormatError(
                f"only pickled weights ({', '.join(pickled[:3])}); surgkit loads safetensors only: convert "
                "them where you trust the file",
                path=folder / pickled[0],
            )
        raise DataFormatError("no model.safetensors in the model folder", path=folder)
    for f in files:
        read_safetensors_header(f)
    return cfg


def check_hf_shapes(folder: str | Path, model_cls: Any) -> None:
    """Build ``model_cls`` (a transformers class) from the folder's config on the meta device and
    compare every tensor of ``model.safetensors`` present in both: a mismatch names the tensor."""
    folder = Path(folder)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        return  # sharded or other layouts: left to transformers (headers were checked)
    try:
        config = model_cls.config_class.from_pretrained(str(folder))
        with torch.device("meta"):
            meta = model_cls(config)
    except Exception as e:  # noqa: BLE001 - the folder's config cannot build the model
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise DataFormatError(
            f"cannot build {model_cls.__name__} from this config ({first})", path=folder / CONFIG_NAME
        ) from None
    expected = {k: tuple(v.shape) for k, v in meta.state_dict().items()}
    for name, (_, shape) in read_safetensors_header(weights).items():
        if name in expected and expected[name] != shape:
            raise DataFormatError(
                f"tensor {name!r} has shape {list(shape)}, config.json makes it {list(expected[name])}",
                path=weights,
            )
