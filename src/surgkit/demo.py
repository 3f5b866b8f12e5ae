"""``surgkit demo``: run every pipeline on a small synthetic world and write a report.

Each capability contributes one *step*: a function ``step(ctx: DemoContext) -> DemoSection``
living in its own package (``surgkit/<pkg>/demo.py``). Steps run in the order of
:data:`DEMO_STEPS`, share data through ``ctx.artifacts``, and each becomes one section of
``report.html``. A failing step is reported (in the terminal, the report and ``results.json``)
and the others still run; the command then exits non-zero.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import Any

import typer

from surgkit.errors import SurgkitError

# "module:function", in run order. A step may read what earlier steps put in ctx.artifacts.
DEMO_STEPS: tuple[str, ...] = (
    "surgkit.synth.demo:demo_step",
    "surgkit.data.demo:demo_step",
    "surgkit.metrics.demo:demo_step",
    "surgkit.video.demo:demo_step",  # pretrains the tiny SurgVISTA encoder ...
    "surgkit.prep.demo:demo_step",  # ... which prep uses as the frozen feature backbone ...
    "surgkit.skill.demo:demo_step",  # ... for the skill-assessment features
    "surgkit.grounding.demo:demo_step",
    "surgkit.reasoning.demo:demo_step",
)

SIZES = ("tiny", "demo")


@dataclasses.dataclass
class DemoContext:
    """What a demo step receives: the working folder, the size preset and shared artifacts."""

    workdir: Path
    size: str = "demo"  # "tiny" (test suite) or "demo" (the default, minutes on 2 cores)
    seed: int = 0
    device: str = "cpu"
    artifacts: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def tiny(self) -> bool:
        return self.size == "tiny"


@dataclasses.dataclass
class DemoSection:
    """One section of the report: text, a metric table, optional tables and figures.

    ``figures`` are image paths (PNG) with captions; they are embedded in report.html.
    ``notes`` state the protocol and legacy quirks the numbers use (shown under the table).
    """

    key: str
    title: str
    summary: str = ""
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    tables: list[tuple[str, list[str], list[list[Any]]]] = dataclasses.field(default_factory=list)
    figures: list[tuple[Path, str]] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    status: str = "ok"
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # user + system of the demo process and its workers (surgkit.utils.cputime)
    load_avg: list[float] | None = None  # 1/5/15-minute load average when the step ended


def learning_entry(
    model: float,
    baseline: float,
    baseline_kind: str,
    n: int,
    higher_is_better: bool = True,
) -> dict[str, Any]:
    """One comparison of ``steps.<step>.metrics.learning`` (the house convention, DEVELOPERS.md).

    ``model`` is the pipeline's score on held-out data, ``baseline`` the score of the trivial
    alternative a skeptic would name (``baseline_kind`` says which: majority answer, random-init
    encoder, uniform heatmap, length-only predictor, ...), ``n`` the number of held-out items the
    scores are computed on. ``holds`` is True when the model strictly beats the baseline.
    """
    model, baseline = float(model), float(baseline)
    holds = model > baseline if higher_is_better else model < baseline
    return {
        "model": model,
        "baseline": baseline,
        "baseline_kind": str(baseline_kind),
        "higher_is_better": bool(higher_is_better),
        "n": int(n),
        "holds": bool(holds),
    }


def learning_summary(steps: dict[str, Any]) -> list[dict[str, Any]]:
    """Every learning comparison of every step, as rows (step, name, model, baseline, kind, n, holds)."""
    rows = []
    for key, step in steps.items():
        for name, e in (step.get("metrics") or {}).get("learning", {}).items():
            model, baseline = float(e["model"]), float(e["baseline"])
            holds = model > baseline if e.get("higher_is_better", True) else model < baseline
            rows.append(
                {
                    "step": key,
                    "name": name,
                    "model": model,
                    "baseline": baseline,
                    "baseline_kind": e.get("baseline_kind", ""),
                    "higher_is_better": bool(e.get("higher_is_better", True)),
                    "n": e.get("n"),
                    "holds": bool(holds),
                }
            )
    return rows


def step_name(spec: str) -> str:
    """'surgkit.video.demo:demo_step' -> 'video'."""
    return spec.split(":")[0].split(".")[1]


def select_steps(only: str) -> tuple[str, ...] | None:
    """The demo steps named in a comma-separated list (None = all), in run order."""
    names = [n.strip() for n in only.split(",") if n.strip()]
    if not names:
        return None
    known = {step_name(s): s for s in DEMO_STEPS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SurgkitError(f"unknown demo step(s) {', '.join(unknown)} (choose from {', '.join(known)})")
    return tuple(s for s in DEMO_STEPS if step_name(s) in names)


def _load_step(spec: str) -> Callable[[DemoContext], DemoSection]:
    module, func = spec.split(":")
    return getattr(import_module(module), func)


def _quiet_third_party_progress() -> None:
    """The demo shows surgkit's own rich progress bars; silence the HF/TRL tqdm bars and info logs."""
    import logging
    import os
    import warnings

    os.environ["TQDM_DISABLE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DATASETS_VERBOSITY", "error")
    for name in ("transformers", "datasets", "accelerate", "trl", "peft"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # transformers 5 renames gradient_checkpointing -> activation_checkpointing; TRL still passes the old name
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*", category=FutureWarning)


def _step_threads(spec: str):
    """The second lane's steps run on its thread count in either schedule, so their numbers do not
    depend on it (intra-op reductions split work by thread)."""
    from surgkit.demo_lanes import SECOND_LANE, SECOND_LANE_THREADS
    from surgkit.utils.threads import torch_threads

    return torch_threads(SECOND_LANE_THREADS if step_name(spec) in SECOND_LANE else None)


def run_step(spec: str, ctx: DemoContext, exclude_pids: tuple[int, ...] = ()) -> DemoSection:
    """Run one step; a failure becomes a failed section. Wall and CPU seconds (``exclude_pids``:
    live processes whose CPU time is measured elsewhere, e.g. the demo's second lane) are recorded."""
    from surgkit.utils.cputime import load_average, tree_cpu_seconds
    from surgkit.utils.progress import console

    step = _load_step(spec)
    t0, cpu0 = time.perf_counter(), tree_cpu_seconds(exclude_pids)
    try:
        with _step_threads(spec):
            section = step(ctx)
    except Exception as e:  # a failing step must not hide the others
        console.print(f"[bold red]step {spec} failed:[/] {e}")
        section = DemoSection(
            key=spec,
            title=f"{spec} (failed)",
            summary=f"{type(e).__name__}: {e}",
            status="failed",
            notes=[traceback.format_exc(limit=6)],
        )
    section.seconds = time.perf_counter() - t0
    section.cpu_seconds = tree_cpu_seconds(exclude_pids) - cpu0
    section.load_avg = load_average()
    return section


def _run_steps(
    specs: tuple[str, ...], ctx: DemoContext, parallel: bool, on_step: Callable | None = None
) -> tuple[list[DemoSection], dict[str, Any]]:
    """Run ``specs``: the world steps first, then the two lanes side by side (:mod:`surgkit.demo_lanes`).

    ``on_step(sections, schedule)`` is called with the sections finished so far after each step of
    the main lane.
    """
    from surgkit.demo_lanes import MAIN_LANE_NICE, SECOND_LANE_THREADS, WORLD_STEPS, SecondLane, split_lanes
    from surgkit.utils.progress import console

    main, second = split_lanes(specs, parallel)
    schedule: dict[str, Any] = {
        "mode": "parallel" if second else "sequential",
        "lanes": [[step_name(s) for s in main]],
    }
    lane = SecondLane(second, ctx) if second else None
    if second:
        schedule["lanes"].append([step_name(s) for s in second])
        schedule["second_lane_torch_threads"] = SECOND_LANE_THREADS
        schedule["second_lane_log"] = str(lane.log)
        schedule["main_lane_nice_increment"] = MAIN_LANE_NICE
    done: dict[str, DemoSection] = {}
    try:
        for spec in main:
            if lane is not None and lane.proc is None and step_name(spec) not in WORLD_STEPS:
                lane.start()
                console.print(
                    f"[bold]{', '.join(schedule['lanes'][1])}[/] run in a second process beside "
                    f"{', '.join(n for n in schedule['lanes'][0] if n not in WORLD_STEPS)} "
                    f"({SECOND_LANE_THREADS} torch thread); its output: {lane.log}",
                    highlight=False,
                )
            console.rule(f"[bold]{step_name(spec)}")
            done[spec] = run_step(spec, ctx, (lane.pid,) if lane is not None and lane.pid else ())
            if on_step is not None:
                on_step([done[s] for s in specs if s in done], schedule)
        if lane is not None:  # started before the main lane's first model step (split_lanes guarantees one)
            with console.status(f"waiting for {', '.join(schedule['lanes'][1])} (output: {lane.log})"):
                sections, artifacts = lane.collect()
            for spec, section in zip(second, sections, strict=True):
                done[spec] = section
                console.print(
                    f"{step_name(spec)}: {section.status} in {section.seconds:.1f} s "
                    f"({section.cpu_seconds:.1f} CPU-s, second process)",
                    highlight=False,
                )
            ctx.artifacts.update({k: v for k, v in artifacts.items() if k not in ctx.artifacts})
    finally:
        if lane is not None:
            lane.stop()
    return [done[s] for s in specs], schedule


def run_demo(
    workdir: str | Path = "surgkit-demo",
    size: str = "demo",
    seed: int = 0,
    device: str = "cpu",
    steps: tuple[str, ...] | None = None,
    parallel: bool | None = None,
) -> dict[str, Any]:
    """Run all demo steps into ``workdir``; write ``report.html`` and ``results.json``.

    ``parallel`` (None: when the machine has two or more CPUs) runs the grounding and reasoning
    steps in a second process beside video, prep and skill (:mod:`surgkit.demo_lanes`); the
    numbers do not depend on it. Returns the results dict (also written to ``results.json``).
    """
    from surgkit import __version__
    from surgkit.demo_lanes import default_parallel
    from surgkit.report.html import write_report
    from surgkit.utils.cputime import load_average, tree_cpu_seconds
    from surgkit.utils.io import write_json
    from surgkit.utils.progress import console

    if size not in SIZES:
        raise SurgkitError(f"unknown demo size '{size}' (choose from {', '.join(SIZES)})")
    _quiet_third_party_progress()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = DemoContext(workdir=workdir, size=size, seed=seed, device=device)
    t_all, cpu_all, load_start = time.perf_counter(), tree_cpu_seconds(), load_average()
    parallel = default_parallel() if parallel is None else parallel

    def results_of(sections: list[DemoSection], schedule: dict[str, Any], complete: bool) -> dict[str, Any]:
        results = {
            "surgkit_version": __version__,
            "size": size,
            "seed": seed,
            "device": device,
            "seconds": round(time.perf_counter() - t_all, 2),
            # CPU seconds (user + system, workers included) are the machine-load-independent measure
            "cpu_seconds": round(tree_cpu_seconds() - cpu_all, 2),
            # False while the demo runs (results.json is rewritten after each step) or when it was stopped
            "complete": complete,
            "load_avg": {"start": load_start, "end": load_average()},
            # which steps ran side by side; in parallel mode the step seconds of the two lanes overlap
            "schedule": schedule,
            "steps": {
                s.key: {
                    "title": s.title,
                    "status": s.status,
                    "seconds": round(s.seconds, 2),
                    "cpu_seconds": round(s.cpu_seconds, 2),
                    "load_avg": s.load_avg,
                    "metrics": s.metrics,
                    "notes": s.notes,
                }
                for s in sections
            },
        }
        results["learning"] = learning_summary(results["steps"])
        return results

    def write_partial(sections: list[DemoSection], schedule: dict[str, Any]) -> None:
        write_json(workdir / "results.json", results_of(sections, schedule, complete=False))

    sections, schedule = _run_steps(tuple(steps or DEMO_STEPS), ctx, parallel, on_step=write_partial)
    results = results_of(sections, schedule, complete=True)
    write_json(workdir / "results.json", results)
    write_report(workdir / "report.html", sections, results)
    for row in results["learning"]:
        mark = "[green]beats[/]" if row["holds"] else "[bold red]does not beat[/]"
        console.print(
            f"{row['step']}.{row['name']}: model {row['model']:.4g} {mark} "
            f"{row['baseline_kind']} {row['baseline']:.4g} (n={row['n']})",
            highlight=False,
        )
    console.print(f"report: {workdir / 'report.html'}  results: {workdir / 'results.json'}")
    return results


def demo(
    workdir: Path = typer.Option(
        Path("surgkit-demo"), "--workdir", "-o", help="Working folder for all outputs."
    ),
    size: str = typer.Option("demo", help="'demo' (default, a few minutes on 2 cores) or 'tiny' (seconds)."),
    seed: int = typer.Option(0, help="Seed of the synthetic world and of every training run."),
    device: str = typer.Option("cpu", help="Torch device for the model steps, e.g. cpu or cuda."),
    parallel: bool | None = typer.Option(
        None,
        "--parallel/--sequential",
        help="Run grounding and reasoning in a second process beside video, prep and skill (default: when the "
        "machine has 2 or more CPUs). The numbers are the same either way; only the time differs.",
        show_default=False,
    ),
    only: str = typer.Option(
        "",
        "--steps",
        help="Comma-separated subset of steps to run, e.g. 'synth,video' (default: all). A step that needs "
        "an earlier step's output fails with a message naming it; the world is reused when unchanged.",
    ),
) -> None:
    """Generate a synthetic surgical world, run every pipeline on it, and write report.html."""
    results = run_demo(
        workdir, size=size, seed=seed, device=device, steps=select_steps(only), parallel=parallel
    )
    failed = [k for k, v in results["steps"].items() if v["status"] != "ok"]
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
