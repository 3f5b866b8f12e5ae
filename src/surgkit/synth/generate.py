"""Write a synthetic world to disk in several native dataset layouts at once.

``generate_world(out, preset="demo", seed=0, layouts=None)`` plans every video, renders each one
exactly once, and streams its frames through the writers of the requested layouts. It ends by
writing ``world.json`` (preset, seed, version, layouts, splits, per-video summaries).
"""

from __future__ import annotations

import dataclasses
import functools
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
from surgkit.utils.workers import default_workers

MANIFEST = "world.json"
MANIFEST_FORMAT = "surgkit-synth-world/1"
_NOT_DRAWING = {"cli.py", "demo.py"}  # modules that do not change what a world holds


def writer_classes() -> dict[str, type]:
    """Layout name -> writer class, in writing order."""
    from surgkit.synth.corpus import CorpusWriter
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
        CorpusWriter,
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
    "corpus",
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


def _sweep_temporaries(out: Path) -> None:
    """Remove the temporary files of writes that a killed run left (``.<name>.<random>.tmp<ext>``).

    Every file is written to such a name and renamed when complete (:mod:`surgkit.utils.io`); a
    ``kill -9`` of the command (and with it of its worker processes) leaves them behind. Called
    under the folder's writer lock before a run writes into an existing folder.
    """
    for path in out.rglob(".*.tmp*"):
        if path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)


@functools.cache  # the sources do not change while a process runs
def generator_fingerprint() -> str:
    """sha256 (16 hex) of the sources that draw and write a world (``surgkit.synth`` + the vocabularies).

    Recorded in ``world.json``: a world written by other generator code is never reused or resumed as
    if it were current, even when preset, seed and package version match (a development install
    changes the code without changing the version).
    """
    import hashlib

    import surgkit.vocab

    root = Path(__file__).resolve().parent
    files = [p for p in sorted(root.rglob("*.py")) if p.name not in _NOT_DRAWING or p.parent != root]
    digest = hashlib.sha256()
    for path in [*files, Path(surgkit.vocab.__file__)]:
        digest.update(path.relative_to(root.parent).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _resume_state(out: Path, config: dict[str, Any], overwrite: bool, resume: bool) -> set[str]:
    """Names of videos complete in an earlier run with the same settings (empty unless ``resume``)."""
    if out.is_dir() and (overwrite or resume):
        _sweep_temporaries(out)
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
    workers: int | None = None,
) -> dict[str, Any]:
    """Generate the world into ``out``; return the manifest (also written to ``out/world.json``).

    ``resume=True`` continues an interrupted run with the same settings: videos marked complete in
    ``out/.synth/done`` are *replayed* (rendered for the dataset-level annotation files, nothing
    re-encoded or re-written), the others are generated. ``workers`` processes (default: up to 2,
    the CPUs) write videos at once (:mod:`surgkit.synth.parallel`); the files do not depend on it.
    """
    from surgkit import __version__
    from surgkit.synth.parallel import VideoJob, WorldSpec, plan_of, run_parallel, write_video
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
        "generator": generator_fingerprint(),
        "seed": seed,
        "layouts": names,
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(pr).items()},
    }
    done = _resume_state(out, config, overwrite, resume)
    writers = [writer_classes()[n](out, world, splits) for n in names]
    active = {kind: [w for w in writers if kind in w.kinds] for kind in ("lap", "bench", "corpus")}
    summaries: dict[str, list[dict]] = {"lap": [], "bench": [], "corpus": []}
    jobs: list[VideoJob] = []
    if active["lap"]:
        jobs += [VideoJob("lap", i, world.lap_name(i)) for i in range(pr.lap_videos)]
    if active["bench"]:
        jobs += [VideoJob("bench", k, spec.name) for k, spec in enumerate(world.trials())]
    if active["corpus"]:  # pretraining keyframes of extra surgeries, after the world's videos
        from surgkit.synth.corpus import corpus_size, surgery_name

        jobs += [VideoJob("corpus", k, surgery_name(k)) for k in range(corpus_size(pr))]
    jobs = [dataclasses.replace(job, replay=job.name in done) for job in jobs]
    workers = default_workers() if workers is None else max(1, int(workers))
    frames_done, t0 = 0, time.perf_counter()
    with make_progress(disable=not progress) as bar:
        overall = bar.add_task("synth videos", total=len(jobs), unit="videos")
        frames_bar = bar.add_task("  frames", total=None, unit="frames")

        def advance_frames(n: int) -> None:
            bar.advance(frames_bar, n)

        if workers > 1 and len(jobs) > 1:
            spec = WorldSpec(str(out), seed, pr.name, videos, tuple(names), splits)
            results = run_parallel(spec, jobs, workers, advance_frames)
        else:
            results = _in_process(world, jobs, active, plan_of, write_video, advance_frames)
        try:
            for job, (summary, states) in zip(jobs, results, strict=True):
                if states is not None:  # written by a worker: merge its writers' state, in video order
                    for w, state in zip(active[job.kind], states, strict=True):
                        w.merge_state(state)
                write_text(out / STATE_DIR / "done" / f"{job.name}.done", "")
                bar.advance(overall)
                if job.kind != "corpus":  # world.json counts the videos' frames (the corpus has its own)
                    frames_done += summary["frames"]
                summaries[job.kind].append(summary)
        finally:
            close = getattr(results, "close", None)
            if close is not None:
                close()
    seconds = time.perf_counter() - t0
    manifest = {
        "format": MANIFEST_FORMAT,
        "surgkit_version": __version__,
        "generator": config["generator"],
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


def _in_process(world, jobs, active, plan_of, write_video, on_frames):
    """One process: the main writers write every video themselves (no state to merge)."""
    for job in jobs:
        plan = plan_of(world, job)
        for w in active[job.kind]:
            w.replay = job.replay
        write_video(world, active[job.kind], plan, on_frames, keyframes_only=job.kind == "corpus")
        yield plan.summary(), None
