"""The synth demo step: world path in ctx.artifacts, metrics and figures."""

from __future__ import annotations

from surgkit.demo import DemoContext
from surgkit.synth.demo import demo_step


def test_demo_step_reuses_an_identical_world(tiny_world, tmp_path):
    root, manifest = tiny_world
    (tmp_path / "world").symlink_to(root, target_is_directory=True)
    ctx = DemoContext(workdir=tmp_path, size="tiny", seed=0)
    section = demo_step(ctx)
    assert ctx.artifacts["world"] == tmp_path / "world"
    assert section.status == "ok" and section.key == "synth"
    assert section.metrics["lap_videos"] == 2 and section.metrics["jigsaws_trials"] == 6
    assert section.metrics["frames"] == manifest["frames"]
    assert "(reused)" in section.summary
    for png, _ in section.figures:
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
