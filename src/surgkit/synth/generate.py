"""Write a synthetic world to disk in several native dataset layouts at once.

``generate_world(out, preset="demo", seed=0, layouts=None)`` plans every video, renders each one
exactly once, and streams its frames through the writers of the requested layouts. It ends by
writing ``world.json`` (preset, seed, version, layouts, splits, per-video summaries).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from surgkit.errors import SurgkitError
from surgkit.synth.world import World
from surgkit.utils.inputs import read_json
from surgkit.utils.io import to_json, write_json, write_text
from surgkit.utils.lock import LOCK_NAME, locked
from surgkit.utils.progress import make_progress
from surgkit.utils.runinfo import first_difference

MANIFEST = "world.json"
MANIFEST_FORMAT = "surgkit-synth-world/1"


def writer_classes() -> dict[str, type]:
    """Layout name -> writer class, in writing order."""
    from surgkit.synth.writers.cholec80 import BoxesWriter, Cholec80Writer
    from surgkit.synth.writers.cholect50 import CholecT50Writer
    from surgkit.synth.writers.copesd import CopesdWriter
    from surgkit.synth.writers.endoscapes import EndoscapesWriter
    from surgkit.synth.writers.jigsaws import JigsawsWriter
    from surgkit.synth.writers.masks import MasksWriter
    from surgkit.synth.writers.truth import TruthWriter
    from surgkit.synth.writers.vlm import VlmWriter
    from surgkit.synth.writers.vqla import VqlaWriter

    classes = (
        TruthWriter,
        Cholec80Writer,
        CholecT50Writer,
        EndoscapesWriter,
        BoxesWriter,
        MasksWriter,
        VqlaWriter,
        VlmWriter,
        CopesdWriter,
        JigsawsWriter,
    )
    return {c.name: c for c in classes}


LAYOUTS: tuple[str, ...] = (
    "truth",
    "cholec80",
    "cholect50",
    "endoscapes",
    "boxes",
    "masks",
    "vqla",
    "vlm",
    "copesd",
    "jigsaws",
)


def parse_layouts(spec: str | list[str] | None) -> list[str]:
    """``"jigsaws,cholec80"`` or a list -> validated layout names (``all`` or None = every layout)."""
    if spec is None or spec == "all" or spec == ["all"]:
        return list(LAYOUTS)
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    unknown = [n for n in names if n not in LAYOUTS]
    if unknown:
        raise SurgkitError(f"unknown layout '{unknown[0]}' (choose from {', '.join(LAYOUTS)}, or all)")
    if not names:
        raise SurgkitError("no layout given")
    return [n for n in LAYOUTS if n in names]


def _has_content(out: Path, *ignore: str) -> bool:
    """True when ``out`` holds anything besides the writer lock (and ``ignore``)."""
    return out.is_dir() and any(p.name not in (LOCK_NAME, *ignore) for p in out.iterdir())


def check_out_dir(out: Path, overwrite: bool, resume: bool = False) -> None:
    if out.exists() and not out.is_dir():
        raise SurgkitError(f"{out}: exists and is not a folder")
    if _has_content(out) and not (overwrite or resume):
        raise SurgkitError(f"{out}: folder is not empty (pass --overwrite to write into it, or --resume)")


STATE_DIR = ".synth"  # resume state: config.json + done/<video>.done markers


def _resume_state(out: Path, config: dict[str, Any], overwrite: bool, resume: bool) -> set[str]:
    """Names of videos complete in an earlier run with the same settings (empty unless ``resume``)."""
    state = out / STATE_DIR
    old = state / "config.json"
    done: set[str] = set()
    if resume and old.is_file():
        diff = first_difference(read_json(old), json.loads(to_json(config)))
        if diff is not None:
            key, was, now = diff
            raise SurgkitError(
                f"{out}: written with other settings ({key}={was!r}, this run has {key}={now!r}); "
                "use --overwrite to start again"
            )
        done = {p.stem for p in (state / "done").glob("*.done")}
    elif resume and _has_content(out, STATE_DIR) and not overwrite:
        raise SurgkitError(f"{out}: nothing to resume (no {STATE_DIR}/config.json); use --overwrite")
    if not done and (state / "done").is_dir():
        for marker in (state / "done").glob("*.done"):
            marker.unlink()
    write_json(old, config)
    return done


@locked("surgkit synth", "out")
def generate_world(
    out: str | Path,
    preset: str = "demo",
    seed: int = 0,
    layouts: str | list[str] | None = None,
    videos: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    resume: bool = False,
) -> dict[str, Any]:
    """Generate the world into ``out``; return the manifest (also written to ``out/world.json``).

    ``resume=True`` continues an interrupted run with the same settings: videos marked complete in
    ``out/.synth/done`` are *replayed* (rendered for the dataset-level annotation files, nothing
    re-encoded or re-written), the others are generated.
    """
    from surgkit import __version__
    from surgkit.synth.writers.base import default_splits

    out = Path(out)
    names = parse_layouts(layouts)
    check_out_dir(out, overwrite, resume)
    world = World(seed=seed, preset=preset, videos=videos)
    pr = world.preset
    splits = default_splits(pr.lap_videos)
    config = {
        "format": MANIFEST_FORMAT,
        "surgkit_version": __version__,
        "seed": seed,
        "layouts": names,
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(pr).items()},
    }
    done = _resume_state(out, config, overwrite, resume)
    writers = [writer_classes()[n](out, world, splits) for n in names]
    lap_writers = [w for w in writers if "lap" in w.kinds]
    bench_writers = [w for w in writers if "bench" in w.kinds]
    summaries: dict[str, list[dict]] = {"lap": [], "bench": []}
    frames_done, t0 = 0, time.perf_counter()
    jobs: list[tuple[str, Any]] = []
    if lap_writers:
        jobs += [("lap", i) for i in range(pr.lap_videos)]
    if bench_writers:
        jobs += [("bench", spec) for spec in world.trials()]
    with make_progress(disable=not progress) as bar:
        overall = bar.add_task("synth videos", total=len(jobs), unit="videos")
        for kind, job in jobs:
            plan = world.lap_plan(job) if kind == "lap" else world.bench_plan(job)
            active = lap_writers if kind == "lap" else bench_writers
            replay = plan.name in done
            for w in active:
                w.replay = replay
            label = f"  {plan.name}" + (" (done, replaying annotations)" if replay else "")
            task = bar.add_task(label, total=plan.frames, unit="frames")
            started = []
            try:
                for w in active:
                    w.begin(plan)
                    started.append(w)
                for t, (rgb, truth) in enumerate(world.render(plan)):
                    for w in active:
                        w.frame(t, rgb, truth)
                    if t % 50 == 0:
                        bar.update(task, completed=t)
            except BaseException:
                for w in started:  # close encoders and remove their temporary files
                    w.abort()
                raise
            for w in active:
                w.end(plan)
            write_text(out / STATE_DIR / "done" / f"{plan.name}.done", "")
            bar.remove_task(task)
            bar.advance(overall)
            frames_done += plan.frames
            summaries[kind].append(plan.summary())
    seconds = time.perf_counter() - t0
    manifest = {
        "format": MANIFEST_FORMAT,
        "surgkit_version": __version__,
        "preset": pr.name,
        "seed": seed,
        "settings": config["settings"],
        "layouts": {w.name: w.finish() for w in writers},
        "splits": {"lap": {k: [f"video{i:02d}" for i in v] for k, v in splits.items()}},
        "videos": summaries["lap"],
        "trials": summaries["bench"],
        "frames": frames_done,
    }
    write_json(out / MANIFEST, manifest)
    manifest["generation_seconds"] = round(seconds, 3)  # not in the file: it would break byte identity
    return manifest
