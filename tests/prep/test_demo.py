"""The demo step on a minimal JIGSAWS-format world (videos + 1-fps class masks), tiny size."""

from __future__ import annotations

import cv2
import numpy as np

from surgkit.demo import DemoContext
from surgkit.prep.demo import demo_step
from surgkit.prep.store import FeatureStore

from .conftest import make_video


def test_demo_step_tiny(tmp_path):
    world = tmp_path / "world"
    for trial, n in (("Suturing_B001", 75), ("Suturing_C001", 60)):
        make_video(
            world / "jigsaws" / "Suturing" / "video" / f"{trial}_capture1.avi", n, 30, "mpeg4", size=(64, 48)
        )
        for f in range(0, n, 30):  # ground truth at 1 fps, 30-fps frame numbers, like surgkit synth
            mask = np.zeros((48, 64), np.uint8)
            mask[10:30, 5 + f // 10 : 20 + f // 10] = 3
            (world / "masks" / trial).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(world / "masks" / trial / f"{f:06d}_class.png"), mask)
    ctx = DemoContext(workdir=tmp_path / "demo", size="tiny", artifacts={"world": world})
    section = demo_step(ctx)
    store = FeatureStore(ctx.artifacts["features"])
    assert store.video_ids == ["Suturing_B001_capture1", "Suturing_C001_capture1"]
    assert store.modalities == ["rgb", "flow", "mask"] and store.segment_frames == 8
    assert store.info("Suturing_B001_capture1")["num_frames"] == 13  # 75 frames at 30 fps -> 5 fps
    assert section.metrics["segments"] == 2 + 2 and section.figures[0][0].is_file()
    assert any("randomly initialised SurgVISTA-architecture encoder" in n for n in section.notes)
    assert store.backbone_of("flow")["in_channels"] == 2 and "Video Swin" in " ".join(section.notes)
    entry = section.metrics["learning"]["mask_dice"]  # held-out user C, exact masks, vs a colour threshold
    assert (
        entry["n"] == section.metrics["mask_dice_frames"] > 0 and "colour threshold" in entry["baseline_kind"]
    )
    assert 0.0 <= section.metrics["mask_dice_tool"] <= 1.0
