"""HF-style model persistence: a config dataclass plus ``save_pretrained``/``from_pretrained``.

A saved model is a folder with ``config.json`` (the dataclass fields plus ``model_type`` and the
surgkit version) and ``model.safetensors``. Nothing is ever unpickled.

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
import json
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from surgkit.errors import SurgkitError
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
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        data = dict(data)
        mt = data.pop("model_type", cls.model_type)
        data.pop("surgkit_version", None)
        if mt != cls.model_type:
            raise SurgkitError(f"config is for model_type '{mt}', expected '{cls.model_type}'")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise SurgkitError(f"unknown {cls.__name__} fields: {', '.join(unknown)}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for k, v in list(data.items()):
            if isinstance(v, list) and "tuple" in str(fields[k].type):
                data[k] = tuple(v)
        return cls(**data)

    def save(self, folder: str | Path) -> Path:
        from surgkit import __version__

        return write_json(Path(folder) / CONFIG_NAME, {**self.to_dict(), "surgkit_version": __version__})

    @classmethod
    def load(cls: type[C], folder: str | Path) -> C:
        path = Path(folder) / CONFIG_NAME
        if not path.is_file():
            raise SurgkitError(f"{path}: no {CONFIG_NAME} (is this a surgkit model folder?)")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise SurgkitError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
        return cls.from_dict(data)


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
        model = cls(config)
        weights = folder / WEIGHTS_NAME
        if not weights.is_file():
            raise SurgkitError(f"{weights}: weights file not found")
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
