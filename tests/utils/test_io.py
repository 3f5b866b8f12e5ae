from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from surgkit.utils.io import atomic_write, save_tensors, sha256_json, write_json


def test_atomic_write_leaves_old_file_on_error(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target) as fh:
        fh.write("new, but incomplete")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]  # temp file cleaned up


def test_write_json_numpy(tmp_path):
    p = write_json(tmp_path / "x.json", {"a": np.float64(0.5), "b": np.arange(3), "c": float("nan")})
    text = p.read_text()
    assert json.loads(text.replace("NaN", "null")) == {"a": 0.5, "b": [0, 1, 2], "c": None}


def test_save_tensors_roundtrip(tmp_path):
    from safetensors.numpy import load_file as load_np
    from safetensors.torch import load_file as load_pt

    save_tensors(tmp_path / "n.safetensors", {"x": np.arange(6, dtype=np.float32).reshape(2, 3)})
    assert load_np(str(tmp_path / "n.safetensors"))["x"].tolist() == [[0, 1, 2], [3, 4, 5]]
    save_tensors(tmp_path / "t.safetensors", {"y": torch.ones(2)})
    assert torch.equal(load_pt(str(tmp_path / "t.safetensors"))["y"], torch.ones(2))


def test_sha256_json_is_key_order_independent():
    assert sha256_json({"a": 1, "b": 2}) == sha256_json({"b": 2, "a": 1})
    assert sha256_json({"a": 1}) != sha256_json({"a": 2})
