"""The backbone registry: below prep/video/skill, lazy by name, one object behind the old import path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import surgkit
from surgkit.backbones import known_model_types, load_backbone, register_backbone
from surgkit.errors import SurgkitError


def test_prep_and_backbones_do_not_import_video():
    code = (
        "import sys, surgkit.backbones, surgkit.prep.features, surgkit.prep.demo; "
        "print(sorted(m for m in sys.modules if m.startswith('surgkit.video')))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(surgkit.__file__).parents[1])}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout
    assert out.strip() == "[]"


def test_old_import_path_is_the_same_registry():
    import surgkit.backbones.registry as reg
    import surgkit.prep.backbones as old

    assert old.load_backbone is reg.load_backbone and old.register_backbone is reg.register_backbone


def test_string_loader_resolved_on_first_use(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "test-by-name"}))
    register_backbone("test-by-name", "surgkit.backbones.registry:_echo_for_test")
    assert "test-by-name" in known_model_types()
    with pytest.raises(AttributeError):  # the named attribute does not exist: resolved only now
        load_backbone(tmp_path)


def test_unknown_model_type_names_file_and_known_types(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "nope"}))
    with pytest.raises(
        SurgkitError, match=r"config\.json: no feature backbone for model_type 'nope'.*videomae"
    ):
        load_backbone(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(SurgkitError, match="config.json: top level: expected an object, got a list"):
        load_backbone(tmp_path)
