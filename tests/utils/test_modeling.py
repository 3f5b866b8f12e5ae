from __future__ import annotations

import dataclasses
from typing import ClassVar

import pytest
import torch
from torch import nn

from surgkit.errors import SurgkitError
from surgkit.utils.modeling import ModelConfig, PretrainedModel


@dataclasses.dataclass
class _Cfg(ModelConfig):
    model_type: ClassVar[str] = "toy"
    width: int = 4
    sizes: tuple[int, ...] = (1, 2)


class _Toy(PretrainedModel):
    config_class = _Cfg

    def __init__(self, config: _Cfg):
        super().__init__(config)
        self.lin = nn.Linear(config.width, 2)
        self.head = nn.Linear(2, 2)
        self.tied = self.head  # shared parameters must save once and reload tied


def test_save_and_load_roundtrip(tmp_path):
    torch.manual_seed(0)
    m = _Toy(_Cfg(width=3, sizes=(4, 5)))
    m.save_pretrained(tmp_path / "m")
    m2 = _Toy.from_pretrained(tmp_path / "m")
    assert m2.config == m.config
    assert isinstance(m2.config.sizes, tuple)
    x = torch.randn(2, 3)
    assert torch.equal(m.lin(x), m2.lin(x))
    assert m2.tied.weight is m2.head.weight


def test_wrong_model_type_is_clear(tmp_path):
    @dataclasses.dataclass
    class Other(ModelConfig):
        model_type: ClassVar[str] = "other"

    Other().save(tmp_path)
    with pytest.raises(SurgkitError, match="model_type 'other'"):
        _Toy.from_pretrained(tmp_path)


def test_missing_folder_is_clear(tmp_path):
    with pytest.raises(SurgkitError, match="config.json"):
        _Toy.from_pretrained(tmp_path / "nope")
