"""Fixtures of the skill tests: single-threaded torch (tiny models are overhead-bound) and synthetic data."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models run faster on one thread on the shared 2-core CI machine; restore afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def synthetic_skill(tmp_path_factory):
    """A small JIGSAWS-format synthetic dataset (8 surgeons × 6 trials) with a feature store."""
    from surgkit.skill.synthetic import make_synthetic_skill_data

    root = tmp_path_factory.mktemp("skill-synth")
    return make_synthetic_skill_data(root, users=8, trials_per_user=6, dim=16, length=(8, 16), seed=0)
