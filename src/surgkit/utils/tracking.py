"""Experiment tracking shared by every trainer: the user's trackers plus ``train_log.jsonl``.

:func:`start_run` opens one run of the trackers chosen by ``--report-to`` (Accelerate's tracker
classes: TensorBoard, Weights & Biases, MLflow, trackio), stores the run config there, and writes
``<run_dir>/tracking.json`` naming each tracker and its run id (TensorBoard: the event folder;
W&B: run id, project and URL; MLflow: run and experiment id; trackio: project and run name).
:meth:`RunLogger.log` sends one step's scalars (loss, ``lr``, ``grad_norm``, ``samples_per_second``,
``eval/<metric>``...) to every tracker and appends them as one JSON line to
``<run_dir>/train_log.jsonl``. Everything happens on the main process only; the other processes get
a logger that does nothing, so trainers call it unconditionally.

Resuming at step ``s`` drops the ``train_log.jsonl`` lines after ``s`` (atomically), reopens the same
W&B / MLflow run, and makes TensorBoard purge the events after ``s``, so a resumed run reads as one.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from surgkit.utils.io import to_json, write_json, write_text
from surgkit.utils.launch import resolve_report_to

TRAIN_LOG = "train_log.jsonl"
TRACKING = "tracking.json"
TENSORBOARD_DIR = "tensorboard"


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as ``{"a.b": value}`` with values every tracker accepts (int/float/str/bool)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, f"{name}."))
        elif isinstance(value, bool | int | float | str):
            flat[name] = value
        elif value is None:
            flat[name] = "None"
        else:
            flat[name] = to_json(value, indent=None)
    return flat


def _is_main(accelerator: Any | None) -> bool:
    if accelerator is not None:
        return bool(accelerator.is_main_process)
    from accelerate import PartialState

    return bool(PartialState().is_main_process)


def _scalar(value: Any) -> float | int | None:
    """A loggable number (python, numpy or one-element torch scalar), or None."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    if isinstance(value, np.generic) and np.ndim(value) == 0:
        return value.item()
    if hasattr(value, "numel") and value.numel() == 1:
        return value.item()
    return None


class RunLogger:
    """One run's per-step logging to the trackers and ``train_log.jsonl`` (main process only)."""

    def __init__(self, run_dir: Path, trackers: list[Any], active: bool, note: str) -> None:
        self.run_dir = Path(run_dir)
        self.trackers = trackers
        self.active = active
        self.note = note
        self._last_time = time.perf_counter()
        self.recorded: list[tuple[int, dict[str, Any]]] | None = None  # see recording_logger

    @property
    def log_path(self) -> Path:
        return self.run_dir / TRAIN_LOG

    def log(
        self, metrics: Mapping[str, Any], step: int, *, samples: int | None = None, prefix: str = ""
    ) -> dict[str, Any]:
        """Log one step's scalars; ``samples`` (processed since the last call) adds ``samples_per_second``.

        Non-scalar values are kept in ``train_log.jsonl`` and left out of the trackers. Returns the record.
        """
        now = time.perf_counter()
        record: dict[str, Any] = {f"{prefix}{k}": v for k, v in metrics.items()}
        if samples is not None:
            record[f"{prefix}samples_per_second"] = samples / max(now - self._last_time, 1e-9)
        self._last_time = now
        if not self.active:
            if self.recorded is not None:
                self.recorded.append((int(step), record))
            return record
        scalars = {k: s for k, v in record.items() if (s := _scalar(v)) is not None}
        scalars = {k: v for k, v in scalars.items() if not (isinstance(v, float) and math.isnan(v))}
        for tracker in self.trackers:
            tracker.log(scalars, step=int(step))
        line = to_json({"step": int(step), **{k: scalars.get(k, v) for k, v in record.items()}}, indent=None)
        with open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        return record

    def replay(self, recorded: list[tuple[int, dict[str, Any]]]) -> None:
        """Log the records a :func:`recording_logger` kept (in a worker process), in order."""
        for step, record in recorded:
            self.log(record, step)

    def finish(self) -> None:
        """Close the trackers (flushes TensorBoard, ends the W&B / MLflow run). Safe to call twice."""
        for tracker in self.trackers:
            tracker.finish()
        self.trackers = []


def recording_logger(run_dir: str | Path) -> RunLogger:
    """A logger for work done in a worker process whose parent holds the run: it logs nowhere and
    keeps every ``(step, record)`` in ``.recorded`` (records include ``samples_per_second``); the
    parent passes them to :meth:`RunLogger.replay`, so trackers and ``train_log.jsonl`` get them."""
    log = RunLogger(Path(run_dir), [], active=False, note="")
    log.recorded = []
    return log


def read_train_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``train_log.jsonl`` (empty when there is none)."""
    path = Path(run_dir) / TRAIN_LOG
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _trim_log(run_dir: Path, resume_step: int | None) -> None:
    """Keep the lines with ``step <= resume_step`` (a fresh run: none; ``None``: all of them)."""
    path = run_dir / TRAIN_LOG
    if not path.is_file() or resume_step is None:
        return
    keep = [r for r in read_train_log(run_dir) if int(r.get("step", 0)) <= resume_step] if resume_step else []
    write_text(path, "".join(to_json(r, indent=None) + "\n" for r in keep))


def _tracker_info(tracker: Any) -> dict[str, Any]:
    """Where a tracker's run lives and its id, as written into ``tracking.json``."""
    name = tracker.name
    if name == "tensorboard":
        return {"logdir": str(tracker.logging_dir), "run_id": Path(tracker.logging_dir).name}
    if name == "wandb":
        run = tracker.run
        return {"run_id": run.id, "project": run.project, "url": getattr(run, "url", None)}
    if name == "mlflow":
        info = tracker.active_run.info
        return {"run_id": info.run_id, "experiment_id": info.experiment_id}
    if name == "trackio":
        return {"project": tracker.run_name, "run_id": getattr(tracker.run, "name", None)}
    return {}  # pragma: no cover - only the trackers of REPORT_TO are created


def _resume_kwargs(name: str, previous: dict[str, Any], resume_step: int | None) -> dict[str, Any]:
    old = previous.get("trackers", {}).get(name, {})
    resuming = resume_step is None or resume_step > 0
    if name == "tensorboard" and resume_step:
        return {"purge_step": resume_step + 1}
    if name == "wandb" and resuming and old.get("run_id"):
        return {"id": old["run_id"], "resume": "allow"}
    if name == "mlflow" and resuming and old.get("run_id"):
        return {"run_id": old["run_id"]}
    return {}


def start_run(
    run_dir: str | Path,
    name: str,
    config: Mapping[str, Any],
    *,
    report_to: str | None = None,
    accelerator: Any | None = None,
    resume_step: int | None = 0,
    init_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    quiet: bool = False,
) -> RunLogger:
    """Open the trackers of ``report_to`` (None = the default) for the run in ``run_dir``.

    ``name`` is the tracker project / TensorBoard sub-folder (e.g. ``"skill-train"``); ``config``
    (nested settings) is stored with the run. ``resume_step`` continues a resumed run (see module doc);
    ``None`` appends to what is there (runs whose steps restart per part, e.g. per fold and phase).
    """
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    names, note = resolve_report_to(report_to)
    run_dir = Path(run_dir).resolve()
    if not _is_main(accelerator):
        return RunLogger(run_dir, [], active=False, note=note)
    run_dir.mkdir(parents=True, exist_ok=True)
    previous: dict[str, Any] = {}
    if (run_dir / TRACKING).is_file():
        try:
            previous = json.loads((run_dir / TRACKING).read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            previous = {}
    _trim_log(run_dir, resume_step)
    trackers = []
    flat = flatten_config(config)
    for tracker_name in names:
        cls = LOGGER_TYPE_TO_CLASS[tracker_name]
        kwargs = {
            **_resume_kwargs(tracker_name, previous, resume_step),
            **dict((init_kwargs or {}).get(tracker_name, {})),
        }
        if cls.requires_logging_directory:
            tracker = cls(name, str(run_dir / TENSORBOARD_DIR), **kwargs)
        else:
            tracker = cls(name, **kwargs)
        tracker.start()
        tracker.store_init_configuration(flat)
        trackers.append(tracker)
    write_json(
        run_dir / TRACKING,
        {
            "report_to": names or ["none"],
            "why": note,
            "train_log": TRAIN_LOG,
            "trackers": {t.name: _tracker_info(t) for t in trackers},
            "resumed_at_step": int(resume_step) if resume_step else None,
        },
    )
    if not quiet:
        from surgkit.utils.progress import console

        console.print(f"tracking: {note}" + (f" -> {run_dir / TENSORBOARD_DIR}" if "tensorboard" in names else ""),
                      highlight=False, markup=False)  # fmt: skip
    return RunLogger(run_dir, trackers, active=True, note=note)
