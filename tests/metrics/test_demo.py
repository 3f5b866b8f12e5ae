"""The metrics demo step runs in seconds and shows the protocol effects it describes."""

from __future__ import annotations

from surgkit.demo import DemoContext
from surgkit.metrics.demo import demo_step


def test_demo_step_tiny(tmp_path):
    section = demo_step(DemoContext(workdir=tmp_path, size="tiny", seed=1))
    m = section.metrics
    # relaxed forgiveness only turns errors into matches, so it cannot lower accuracy
    assert m["phase_video_accuracy_relaxed"] >= m["phase_video_accuracy_strict"]
    assert m["vqla_miou_legacy_random_boxes"] > m["vqla_miou_true_random_boxes"]
    assert all(0.0 <= v <= 1.0 for v in m.values())
    assert section.key == "metrics" and len(section.tables) == 2
    assert any("tail bug" in n for n in section.notes)
