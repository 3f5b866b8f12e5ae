"""Shared fixture: one tiny synthetic world in the native layouts, generated once per test session."""

from __future__ import annotations

import pytest

LAYOUTS = "truth,cholec80,cholect50,endoscapes,boxes,vqla,jigsaws"


@pytest.fixture(scope="session")
def synth_world(tmp_path_factory):
    """(root, manifest) of ``surgkit.synth.generate.generate_world(preset='tiny', seed=3)``."""
    from surgkit.synth.generate import generate_world

    root = tmp_path_factory.mktemp("world")
    manifest = generate_world(root, preset="tiny", seed=3, layouts=LAYOUTS, progress=False)
    return root, manifest
