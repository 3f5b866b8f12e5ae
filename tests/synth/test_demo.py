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


def test_a_world_from_other_generator_code_is_regenerated_not_reused(tiny_world, tmp_path):
    # Same preset, seed and package version, other drawing code (a development install): reusing it
    # would run every later step on a stale world.
    import json

    from surgkit.synth.demo import _prepare
    from surgkit.synth.generate import generator_fingerprint

    _, manifest = tiny_world
    assert manifest["generator"] == generator_fingerprint()
    assert len(manifest["generator"]) == 16
    record = {k: v for k, v in manifest.items() if k != "generation_seconds"}
    for generator, reused in ((manifest["generator"], True), ("0" * 16, False)):
        out = tmp_path / f"world-{reused}"
        (out / "jigsaws").mkdir(parents=True)
        (out / "world.json").write_text(json.dumps({**record, "generator": generator}))
        kept = _prepare(out, "tiny", 0)
        assert (kept is not None) is reused
        assert (out / "jigsaws").exists() is reused
