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
        generate_world(tmp_path / "w", preset="tiny", layouts="cholec80", videos=1, progress=False, workers=1)
    left = [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()]
    assert left == ["w/.synth/config.json"]  # only the resume state: no partial video, no temporary file


def test_parse_layouts():
    assert parse_layouts(None) == list(LAYOUTS) == parse_layouts("all")
    assert parse_layouts("jigsaws, cholec80") == ["cholec80", "jigsaws"]  # canonical writing order
    with pytest.raises(SurgkitError, match="unknown layout 'x'"):
        parse_layouts("cholec80,x")
    with pytest.raises(SurgkitError, match="no layout"):
        parse_layouts(" , ")


def test_resume_after_interruption_gives_the_same_files(tiny_world, tmp_path):
    """Interrupt in video02, resume: the result equals an uninterrupted run (fixture) file by file."""
    from surgkit.synth.writers.vlm import VlmWriter

    root, _ = tiny_world
    out = tmp_path / "w"
    layouts = "truth,cholec80,boxes,vlm"
    original = VlmWriter.frame

    def fail_in_video02(self, t, rgb, truth):
        if self.plan.name == "video02" and t == 60:
            raise KeyboardInterrupt
        return original(self, t, rgb, truth)

    with mock.patch.object(VlmWriter, "frame", fail_in_video02), pytest.raises(KeyboardInterrupt):
        generate_world(
            out, preset="tiny", layouts=layouts, progress=False, workers=1
        )  # the patch is in-process
    assert (out / ".synth" / "done" / "video01.done").is_file()
    assert not (out / "cholec80" / "videos" / "video02.mp4").exists()
    with pytest.raises(SurgkitError, match="not empty"):
        generate_world(out, preset="tiny", layouts=layouts, progress=False)
    with pytest.raises(SurgkitError, match=r"other settings \(seed=0, this run has seed=5\)"):
        generate_world(out, preset="tiny", seed=5, layouts=layouts, progress=False, resume=True)
    before = (out / "cholec80" / "videos" / "video01.mp4").stat().st_mtime_ns
    generate_world(out, preset="tiny", layouts=layouts, progress=False, resume=True)
    assert (out / "cholec80" / "videos" / "video01.mp4").stat().st_mtime_ns == before  # not re-encoded
    for rel in (
        "cholec80_boxes/cholec80_boxes.csv",
        "vlm/captions.jsonl",
        "vlm/vqa.jsonl",
        "cholec80/phase_annotations/video02-phase.txt",
        "cholec80/tool_annotations/video01-tool.txt",
        "truth/video02.safetensors",
        "truth/video01.json",
    ):
        assert (out / rel).read_bytes() == (root / rel).read_bytes(), rel
    assert sorted(p.name for p in (out / "vlm" / "images").iterdir()) == sorted(
        p.name for p in (root / "vlm" / "images").iterdir()
    )
