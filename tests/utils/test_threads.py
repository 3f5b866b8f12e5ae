"""torch_threads sets the intra-op thread count for a block and restores it, also on error."""

from __future__ import annotations

import pytest
import torch

from surgkit.utils.threads import torch_threads


def test_sets_and_restores_the_thread_count():
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    with torch_threads(target):
        assert torch.get_num_threads() == target
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(target):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_none_leaves_torch_alone():
    before = torch.get_num_threads()
    with torch_threads(None):
        assert torch.get_num_threads() == before
