"""generate_world: interrupted runs leave no half-written files; layout parsing."""

from __future__ import annotations

from unittest import mock

import pytest

from surgkit.errors import SurgkitError
from surgkit.synth import LAYOUTS, generate_world
from surgkit.synth.generate import parse_layouts
from surgkit.synth.writers.cholec80 import Cholec80Writer


def test_interrupted_video_leaves_no_partial_files(tmp_path):
    original = Cholec80Writer.frame

    def fail_at_30(self, t, rgb, truth):
        if t == 30:
            raise KeyboardInterrupt
        return original(self, t, rgb, truth)

    with mock.patch.object(Cholec80Writer, "frame", fail_at_30), pytest.raises(KeyboardInterrupt):
        generate_world(tmp_path / "w", preset="tiny", layouts="cholec80", videos=1, progress=False)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_parse_layouts():
    assert parse_layouts(None) == list(LAYOUTS) == parse_layouts("all")
    assert parse_layouts("jigsaws, cholec80") == ["cholec80", "jigsaws"]  # canonical writing order
    with pytest.raises(SurgkitError, match="unknown layout 'x'"):
        parse_layouts("cholec80,x")
    with pytest.raises(SurgkitError, match="no layout"):
        parse_layouts(" , ")
