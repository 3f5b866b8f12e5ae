"""Model folders from elsewhere are untrusted input: refused in one line naming file and key, before
any tensor is allocated; no code from the folder runs, nothing is unpickled."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from surgkit.errors import DataFormatError, SurgkitError
from surgkit.utils.modeling import check_hf_folder, read_safetensors_header
from surgkit.video.config import SurgVistaEncoderConfig
from surgkit.video.model import SurgVistaEncoder, load_model

from .conftest import one_error_line

TINY = dict(img_size=32, patch_size=16, num_frames=4, tubelet_size=2, embed_dim=32, depth=1, num_heads=2)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model") / "encoder"
    torch.manual_seed(0)
    SurgVistaEncoder(SurgVistaEncoderConfig(**TINY)).save_pretrained(out)
    return out


def _copy(folder: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "m"
    dst.mkdir()
    for p in folder.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def _edit_config(m: Path, **kv) -> None:
    cfg = json.loads((m / "config.json").read_text())
    cfg.update(kv)
    (m / "config.json").write_text(json.dumps(cfg))


def _header(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _write(path: Path, header: dict, data: bytes) -> None:
    h = json.dumps(header).encode()
    path.write_bytes(len(h).to_bytes(8, "little") + h + data)


CONFIG_CASES = [
    ({"depth": "2"}, "depth: expected int, got str '2'"),
    ({"depth": True}, "depth: expected int, got True"),
    ({"embed_dim": 32.5}, "embed_dim: expected int, got float 32.5"),
    ({"depth": 10**9}, "depth: 1000000000 outside the sane range [0, 4096]"),
    ({"embed_dim": 10**9}, "embed_dim: 1000000000 outside the sane range"),
    ({"num_heads": 0}, "cannot build SurgVistaEncoder from this config"),
    ({"embed_dim": -32}, "cannot build SurgVistaEncoder from this config"),
    ({"embed_dim": 64}, "has shape [32], config.json makes it [64]"),
    ({"auto_map": {"AutoModel": "evil.Model"}}, "auto_map: the folder asks to run its own Python code"),
]


@pytest.mark.parametrize(
    "edit, message", CONFIG_CASES, ids=[next(iter(e)) + str(i) for i, (e, _) in enumerate(CONFIG_CASES)]
)
def test_bad_config_is_refused_before_allocation(folder, tmp_path, edit, message):
    m = _copy(folder, tmp_path)
    _edit_config(m, **edit)
    with pytest.raises(SurgkitError) as e:
        load_model(m)
    assert message in str(e.value) and ("config.json" in str(e.value) or "model.safetensors" in str(e.value))


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"model_type": "surgvista-encoder", ', "config.json:1: malformed or truncated JSON"),
        ("[1, 2]", "config.json: top level: expected an object, got a list"),
        ("[" * 100_000 + "]" * 100_000, "config.json: JSON nested too deeply"),
        ('{"depth": ' + "9" * 5000 + "}", "config.json: unreadable JSON value"),
        ('{"model_type": "surgvista-encoder", "depth": 1, "depth": 7}', "duplicate key 'depth'"),
    ],
)
def test_malformed_config_json(folder, tmp_path, text, message):
    m = _copy(folder, tmp_path)
    (m / "config.json").write_text(text)
    with pytest.raises(DataFormatError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_model(m)


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _garbage(p: Path) -> None:
    p.write_bytes(os.urandom(4096))


def _huge_header(p: Path) -> None:
    raw = p.read_bytes()
    p.write_bytes((1 << 60).to_bytes(8, "little") + raw[8:])


def _wrong_shape(p: Path) -> None:
    h, data = _header(p)
    key = next(
        k
        for k, v in h.items()
        if k != "__metadata__" and len(v["shape"]) == 2 and v["shape"][0] != v["shape"][1]
    )
    h[key]["shape"] = h[key]["shape"][::-1]
    _write(p, h, data)


def _offsets_outside(p: Path) -> None:
    h, data = _header(p)
    key = next(k for k in h if k != "__metadata__")
    h[key]["data_offsets"][1] += 10**9
    _write(p, h, data)


def _extra_tensor(p: Path) -> None:
    from safetensors.torch import load_file, save_file

    t = load_file(str(p))
    t["injected.weight"] = torch.zeros(3)
    save_file(t, str(p))


@pytest.mark.parametrize(
    "damage, message",
    [
        (_truncate, "do not hold"),
        (_garbage, "safetensors header length"),
        (_huge_header, "safetensors header length 1152921504606846976 does not fit"),
        (_wrong_shape, "config.json makes it"),
        (_offsets_outside, "data_offsets"),
        (_extra_tensor, "unexpected tensor(s) ['injected.weight']"),
    ],
    ids=["truncated", "garbage", "huge-header", "wrong-shape", "offsets", "extra-tensor"],
)
def test_damaged_weights_are_refused(folder, tmp_path, damage, message):
    m = _copy(folder, tmp_path)
    damage(m / "model.safetensors")
    with pytest.raises(DataFormatError) as e:
        load_model(m)
    assert str(e.value).startswith(str(m / "model.safetensors")) and message in str(e.value)


def test_header_reader_accepts_what_safetensors_writes(folder):
    from safetensors.torch import load_file

    header = read_safetensors_header(folder / "model.safetensors")
    assert {k: tuple(v.shape) for k, v in load_file(str(folder / "model.safetensors")).items()} == {
        k: shape for k, (_, shape) in header.items()
    }


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory) -> Path:
    from transformers import VideoMAEConfig, VideoMAEModel

    out = tmp_path_factory.mktemp("hf") / "videomae"
    VideoMAEModel(VideoMAEConfig(image_size=32, patch_size=16, num_frames=4, tubelet_size=2, hidden_size=32,
                                 num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
                  ).save_pretrained(out)  # fmt: skip
    return out


def test_hf_folders_remote_code_pickles_and_sizes(hf_folder, tmp_path, run_cli):
    from safetensors.torch import load_file

    m = _copy(hf_folder, tmp_path)
    assert check_hf_folder(m)["hidden_size"] == 32
    _edit_config(m, auto_map={"AutoModel": "modeling_evil.Evil"})
    (m / "modeling_evil.py").write_text("open('PWNED', 'w').write('x')\n")
    code, _, err = run_cli("backbones", "info", m)
    assert code == 2 and "auto_map: the folder asks to run its own Python code" in one_error_line(err)
    assert not Path("PWNED").exists()
    _edit_config(m, auto_map=None)
    cfg = json.loads((m / "config.json").read_text())
    del cfg["auto_map"]
    cfg["hidden_size"] = "32"
    (m / "config.json").write_text(json.dumps(cfg))
    code, _, err = run_cli("backbones", "info", m)
    assert code == 2 and "hidden_size: '32' is not an integer in [0, 65536]" in one_error_line(err)
    cfg["hidden_size"] = 32
    (m / "config.json").write_text(json.dumps(cfg))
    torch.save(load_file(str(m / "model.safetensors")), m / "pytorch_model.bin")
    (m / "model.safetensors").unlink()
    code, _, err = run_cli("backbones", "info", m)
    assert code == 2 and "only pickled weights (pytorch_model.bin)" in one_error_line(err)


def test_hf_folder_with_wrong_tensor_shape_names_the_tensor(hf_folder, tmp_path, run_cli):
    m = _copy(hf_folder, tmp_path)
    _wrong_shape(m / "model.safetensors")
    code, _, err = run_cli("backbones", "info", m)
    line = one_error_line(err)
    assert code == 2 and str(m / "model.safetensors") in line and "config.json makes it" in line
