"""transformers / TRL trainers on surgkit's tracking: their log dicts go to the trackers and
``train_log.jsonl`` (not to stdout), and surgkit's rich progress bar replaces tqdm.

transformers prints every ``Trainer.log`` dict (``{'loss': ..., 'grad_norm': ..., 'learning_rate': ...}``)
through its ``PrinterCallback`` / ``ProgressCallback``. :func:`use_surgkit_logging` removes those two and
adds :class:`SurgkitTrackerCallback`, which opens the run with :func:`surgkit.utils.tracking.start_run`
(the same trackers, ``tracking.json`` and ``train_log.jsonl`` as every other surgkit trainer), logs each
dict at its global step (``learning_rate`` renamed ``lr``; evaluation keys ``eval_x`` as ``eval/x``),
and shows one rich bar over the optimizer steps. Set ``report_to="none"`` in the TrainingArguments:
trackers are opened here, once, by the main process.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

_RENAME = {"learning_rate": "lr"}


def _normalise(logs: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in logs.items():
        if key.startswith("eval_"):
            key = "eval/" + key[5:]
        out[_RENAME.get(key, key)] = value
    return out


def tracker_callback(
    run_dir: str | Path,
    name: str,
    config: Mapping[str, Any],
    *,
    report_to: str | None = None,
    progress: bool = True,
    description: str | None = None,
    global_batch: int | None = None,
    step_offset: int = 0,
    resume_step: int | None = None,
):
    """A ``transformers.TrainerCallback`` logging to the run in ``run_dir`` (see the module doc).

    ``global_batch`` (samples per optimizer step over all processes) adds ``samples_per_second``.
    ``step_offset`` is added to the trainer's ``global_step`` (a run that restarts the trainer after
    ``n`` steps done passes ``n``); ``resume_step`` (default: ``step_offset``) drops the log after it.
    """
    resume = step_offset if resume_step is None else resume_step
    from transformers import TrainerCallback

    class SurgkitTrackerCallback(TrainerCallback):
        def __init__(self) -> None:
            self.log = None
            self.bar = None
            self.task = None
            self.last_step = 0

        def on_train_begin(self, args, state, control, **kwargs):
            from surgkit.utils.progress import make_progress
            from surgkit.utils.tracking import start_run

            main = bool(state.is_world_process_zero)
            self.log = start_run(
                run_dir, name, config, report_to=report_to, resume_step=resume, quiet=not main
            )
            self.bar = make_progress(disable=not (progress and main))
            self.bar.start()
            total = state.max_steps if state.max_steps and state.max_steps > 0 else None
            self.task = self.bar.add_task(
                description or name, total=total, completed=state.global_step, unit="steps"
            )
            self.last_step = step_offset + state.global_step

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(self.task, completed=state.global_step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.log is None or not logs:
                return
            step = step_offset + int(state.global_step)
            record = _normalise(logs)
            samples = None
            if global_batch and "loss" in record and step > self.last_step:
                samples = global_batch * (step - self.last_step)
                self.last_step = step
            self.log.log(record, step, samples=samples)
            if self.bar is not None and "loss" in record:
                self.bar.update(
                    self.task, description=f"{description or name} loss {float(record['loss']):.4f}"
                )

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.stop()
                self.bar = None
            if self.log is not None:
                self.log.finish()

    return SurgkitTrackerCallback()


def use_surgkit_logging(trainer: Any, callback: Any) -> Any:
    """Replace transformers' console printers (``PrinterCallback``, ``ProgressCallback``) by ``callback``."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(callback)
    return trainer
