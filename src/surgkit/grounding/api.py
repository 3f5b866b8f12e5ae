"""High-level entry points behind ``surgkit ground ...`` (the CLI only parses options)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from surgkit.errors import LeakageError, SurgkitError
from surgkit.grounding.benchmark import BenchSettings, load_summary, run_benchmark
from surgkit.grounding.frames import video_number
from surgkit.grounding.sources import load_frames

TRAINING_RECORD = "surgkit_training.json"


def check_leakage(model: str | Path, frames: Sequence[Any], allow: bool = False) -> None:
    """Refuse to benchmark a model on videos it was trained on (recorded in ``surgkit_training.json``)."""
    record = Path(model) / TRAINING_RECORD
    if not record.is_file():
        return
    trained = json.loads(record.read_text()).get("train_videos", [])
    trained_nums = {video_number(v) for v in trained}
    overlap = sorted({f.video for f in frames if video_number(f.video) in trained_nums})
    if overlap and not allow:
        raise LeakageError(
            f"{record}: the model was trained on video(s) {', '.join(overlap)} that are in the benchmark; "
            "benchmark held-out videos or pass --allow-leakage"
        )


def bench(
    model: str,
    dataset: str,
    root: str | Path,
    task: str,
    out: str | Path | None = None,
    device: str = "cpu",
    boxes_root: str | Path | None = None,
    frame_map: str | None = "auto",
    regions: str = "boxes",
    videos: Sequence[str] | None = None,
    allow_leakage: bool = False,
    name: str | None = None,
    model_options: dict[str, Any] | None = None,
    progress: bool = True,
    **settings: Any,
) -> dict[str, Any]:
    """Load the model and the frames, run the benchmark, return the summary (also on disk in ``out``).

    ``settings`` are the protocol options of :class:`~surgkit.grounding.protocol.BenchSettings`;
    ``model_options`` go to :func:`~surgkit.grounding.adapters.load_adapter` (checkpoint files:
    ``vocab``, ``variant``, ``trust_checkpoint``).
    """
    from surgkit.grounding.adapters import load_adapter

    source = load_frames(dataset, root, task, boxes_root=boxes_root, frame_map=frame_map, regions=regions)
    frames = source.frames
    if videos:
        wanted = {video_number(v) for v in videos}
        frames = [f for f in frames if video_number(f.video) in wanted]
        if not frames:
            raise SurgkitError(f"none of the videos {', '.join(videos)} is in {root}")
    check_leakage(model, frames, allow_leakage)
    from surgkit.utils.launch import process_device

    adapter = load_adapter(model, device=process_device(device), **(model_options or {}))
    if name:
        adapter.name = name
    out = Path(out) if out is not None else Path("ground-runs") / f"{adapter.name}-{task}"
    extra = {
        "regions": regions,
        "frame_map": source.join.get("frame_map") if source.join else None,
        "videos": sorted({f.video for f in frames}),
        "dataset_notes": source.notes,
        "join": source.join,
        "allow_leakage": allow_leakage,
    }
    return run_benchmark(
        adapter,
        frames,
        source.vocabulary,
        BenchSettings(task=task, **settings),
        out,
        dataset,
        extra,
        progress,
    )


def compare(runs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Summaries of finished runs, for :func:`surgkit.grounding.tables.print_tables`."""
    if not runs:
        raise SurgkitError("give at least one run folder")
    return [load_summary(r) for r in runs]
