"""`surgkit demo` end to end at the reduced 'tiny' size: every step succeeds and the report is complete."""

from __future__ import annotations

import json

import pytest

from surgkit.demo import DEMO_STEPS, step_name


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    """The whole tiny demo through the CLI, in its default schedule (two lanes on 2+ CPUs)."""
    from surgkit.cli import main

    workdir = tmp_path_factory.mktemp("demo") / "demo"
    try:
        main(["demo", "--size", "tiny", "--workdir", str(workdir), "--seed", "3", "--parallel"])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, workdir, json.loads((workdir / "results.json").read_text())


def test_demo_tiny_end_to_end(tiny_demo):
    code, workdir, results = tiny_demo
    failed = {k: v for k, v in results["steps"].items() if v["status"] != "ok"}
    assert code == 0, f"failed steps: {failed}"
    assert len(results["steps"]) == len(DEMO_STEPS)
    assert results["size"] == "tiny" and results["seed"] == 3
    assert list(results["steps"]) == [
        step_name(s) for s in DEMO_STEPS
    ]  # report order is the step order, whatever the schedule
    html = (workdir / "report.html").read_text()
    for step in results["steps"].values():
        assert step["title"] in html.replace("&#x27;", "'").replace("&amp;", "&")
        assert step["metrics"], f"step {step['title']} reported no metrics"
    assert html.count("data:image/png;base64,") >= len(DEMO_STEPS) - 1  # figures are embedded
    # timing for a shared machine: CPU seconds per step (workers included) add up to the total
    steps_cpu = [step["cpu_seconds"] for step in results["steps"].values()]
    assert all(c >= 0 for c in steps_cpu) and results["cpu_seconds"] > 0
    assert sum(steps_cpu) <= results["cpu_seconds"] + 0.05 * len(steps_cpu)
    assert len(results["load_avg"]["start"]) == 3
    assert results["complete"] is True


def test_second_lane_ran_beside_the_first(tiny_demo):
    _, workdir, results = tiny_demo
    schedule = results["schedule"]
    assert schedule["mode"] == "parallel"
    assert schedule["lanes"][1] == ["grounding", "reasoning"]
    assert "grounding" not in schedule["lanes"][0] and "video" in schedule["lanes"][0]
    log = (workdir / "logs" / "grounding+reasoning.log").read_text()
    assert "grounding" in log and "reasoning" in log  # the child's terminal output went to its log
    # the lane's steps ran at the same time as the main lane's model steps
    assert results["steps"]["grounding"]["cpu_seconds"] > 0


def _without_timing(metrics):
    if isinstance(metrics, dict):
        return {k: _without_timing(v) for k, v in metrics.items() if "seconds" not in k}
    return metrics


def test_numbers_do_not_depend_on_the_schedule(tiny_demo, tmp_path, run_cli):
    """The same steps run one after the other in one process give the same numbers as the two lanes."""
    _, _, parallel = tiny_demo
    workdir = tmp_path / "seq"
    code, _, err = run_cli(
        "demo", "--size", "tiny", "--workdir", workdir, "--seed", "3", "--steps", "synth,grounding,reasoning"
    )
    assert code == 0, err[-3000:]
    sequential = json.loads((workdir / "results.json").read_text())
    assert sequential["schedule"] == {"mode": "sequential", "lanes": [["synth", "grounding", "reasoning"]]}
    for key in ("grounding", "reasoning"):
        assert _without_timing(sequential["steps"][key]["metrics"]) == _without_timing(
            parallel["steps"][key]["metrics"]
        )


def test_split_lanes():
    from surgkit.demo import select_steps
    from surgkit.demo_lanes import split_lanes

    main, second = split_lanes(DEMO_STEPS, parallel=True)
    assert [s.split(".")[1] for s in second] == ["grounding", "reasoning"]
    assert set(main) | set(second) == set(DEMO_STEPS) and not set(main) & set(second)
    assert split_lanes(DEMO_STEPS, parallel=False) == (DEMO_STEPS, ())
    # a lone chain gains nothing from a second process
    only_language = select_steps("synth,grounding,reasoning")
    assert split_lanes(only_language, parallel=True) == (only_language, ())
    assert split_lanes(select_steps("synth,video,grounding"), parallel=True)[1] == select_steps("grounding")


def test_a_dead_second_lane_fails_its_steps_and_names_its_log(tmp_path):
    from surgkit.demo import DemoContext
    from surgkit.demo_lanes import SecondLane

    ctx = DemoContext(workdir=tmp_path, size="tiny")
    lane = SecondLane(("surgkit.no_such_module:demo_step", "surgkit.reasoning.demo:demo_step"), ctx)
    lane.start()
    sections, artifacts = lane.collect()
    assert artifacts == {}
    assert [s.status for s in sections] == ["failed", "failed"]
    assert str(lane.log) in sections[0].summary and "exited with code 1" in sections[0].summary
    assert "no_such_module" in sections[0].notes[0]  # the log's tail says why


def _interrupt_step(ctx):
    raise KeyboardInterrupt  # the user pressing Ctrl-C in the middle of the demo


def test_a_stopped_demo_leaves_the_finished_steps_in_results_json(tmp_path):
    from surgkit.demo import run_demo

    with pytest.raises(KeyboardInterrupt):
        run_demo(tmp_path, size="tiny", steps=("surgkit.metrics.demo:demo_step", "tests.test_demo:_interrupt_step"),
                 parallel=False)  # fmt: skip
    partial = json.loads((tmp_path / "results.json").read_text())
    assert partial["complete"] is False
    assert list(partial["steps"]) == ["metrics"] and partial["steps"]["metrics"]["status"] == "ok"
    assert partial["steps"]["metrics"]["metrics"]


def test_main_lane_steps_back_for_the_second_lane():
    """Every process of the main lane gets a higher nice value; the second lane's subtree keeps its own."""
    import os
    import subprocess
    import sys

    from surgkit.demo_lanes import MainLanePriority

    script = (
        "import subprocess, sys, time\n"
        "kids = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']) for _ in range(2)]\n"
        "print(' '.join(str(k.pid) for k in kids), flush=True)\n"
        "time.sleep(60)\n"
    )
    root = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        worker, lane = (int(x) for x in root.stdout.readline().split())
        nice = {pid: os.getpriority(os.PRIO_PROCESS, pid) for pid in (root.pid, worker, lane)}
        priority = MainLanePriority(lane, increment=5, root=root.pid)
        priority.lower()
        assert os.getpriority(os.PRIO_PROCESS, root.pid) == min(19, nice[root.pid] + 5)
        assert os.getpriority(os.PRIO_PROCESS, worker) == min(19, nice[worker] + 5)
        assert os.getpriority(os.PRIO_PROCESS, lane) == nice[lane]  # the second lane keeps its priority
        assert set(priority.before) == {root.pid, worker}
        priority.restore()  # back where the OS allows it (raising priority needs privileges); never raises
        assert priority.before == {}
        assert os.getpriority(os.PRIO_PROCESS, lane) == nice[lane]
    finally:
        for pid in (worker, lane):
            os.kill(pid, 9)
        root.kill()
        root.wait()
