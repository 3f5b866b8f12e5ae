"""A tiny synthetic world generated once per test session (all layouts)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """(root, manifest) of ``generate_world(preset="tiny", seed=0)`` with every layout."""
    from surgkit.synth import generate_world

    root = tmp_path_factory.mktemp("synth") / "world"
    manifest = generate_world(root, preset="tiny", seed=0, progress=False)
    return root, manifest


@pytest.fixture(scope="session")
def tiny():
    from surgkit.synth import World

    return World(seed=0, preset="tiny")


@pytest.fixture(scope="session")
def tiny_lap_frames(tiny):
    """Every rendered frame and truth of tiny video01 (a few hundred 128x128 frames)."""
    plan = tiny.lap_plan(0)
    return plan, list(tiny.render(plan))
