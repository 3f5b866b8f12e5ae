"""Benchmark: synthetic-world generation speed at 224x224 (frames/s on one core), JSON to stdout.

    python bench/synth.py [--frames 1500] [--seed 0]

Measures, on cholecystectomy video01 of the demo preset (224x224, 25 fps):
  * ``plan_seconds``: planning the whole video (workflow, motion, camera, skill scores);
  * ``draw_fps``: rendering RGB frames only (``Renderer(truth=False)``);
  * ``draw_truth_fps``: rendering frames plus masks, boxes, anatomy mask and triplets;
  * ``draw_truth_h264_fps``: the same plus H.264 encoding to mp4 (PyAV, the Cholec80 writer's settings);
  * ``draw_mpeg4_fps``: rendering plus MPEG-4 AVI encoding (the JIGSAWS writer's settings).
OpenCV and x264 are limited to one thread, so the numbers are per core. Each rate is given per wall-clock
second and per CPU second of this process (the latter is the per-core speed when the machine is shared).
Target (issue 2): >= 500 frames/s per core for drawing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path


def _rate(n: int, fn) -> tuple[float, float]:
    """(frames per wall-clock second, frames per CPU second of this process)."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return round(n / (time.perf_counter() - t0), 1), round(n / (time.process_time() - c0), 1)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import cv2

    cv2.setNumThreads(1)
    from surgkit.synth import World
    from surgkit.synth.writers.base import video_writer

    world = World(seed=args.seed, preset="demo")
    t0 = time.perf_counter()
    plan = world.lap_plan(0)
    plan_seconds = time.perf_counter() - t0
    n = min(args.frames, plan.frames)
    assert (plan.width, plan.height) == (224, 224)
    world.render(plan).render(0)  # warm the canvas cache of the first state

    def draw(truth: bool):
        r = world.render(plan, truth=truth)
        for t in range(n):
            r.render(t)

    def draw_encode(suffix: str, truth: bool):
        r = world.render(plan, truth=truth)
        with (
            tempfile.TemporaryDirectory() as d,
            video_writer(Path(d) / f"v{suffix}", plan.fps, 224, 224) as write,
        ):
            for t in range(n):
                write(r.render(t)[0])

    rates = {
        "draw": _rate(n, lambda: draw(False)),
        "draw_truth": _rate(n, lambda: draw(True)),
        "draw_truth_h264": _rate(n, lambda: draw_encode(".mp4", True)),
        "draw_mpeg4": _rate(n, lambda: draw_encode(".avi", False)),
    }
    result = {
        "benchmark": "synth",
        "resolution": "224x224",
        "frames": n,
        "plan_seconds": round(plan_seconds, 3),
        "plan_frames": plan.frames,
        **{f"{k}_fps": wall for k, (wall, _) in rates.items()},
        **{f"{k}_fps_per_cpu_second": cpu for k, (_, cpu) in rates.items()},
        "target_draw_fps_per_core": 500,
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "opencv": cv2.__version__,
    }
    result["meets_target"] = result["draw_fps_per_cpu_second"] >= 500
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return result


if __name__ == "__main__":
    main()
