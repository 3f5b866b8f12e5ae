"""`surgkit demo` end to end at the reduced 'tiny' size: every step succeeds and the report is complete."""

from __future__ import annotations

import json

from surgkit.demo import DEMO_STEPS


def test_demo_tiny_end_to_end(run_cli, tmp_path):
    workdir = tmp_path / "demo"
    code, _, err = run_cli("demo", "--size", "tiny", "--workdir", workdir, "--seed", "3")
    results = json.loads((workdir / "results.json").read_text())
    failed = {k: v for k, v in results["steps"].items() if v["status"] != "ok"}
    assert code == 0, f"failed steps: {failed}\n{err[-3000:]}"
    assert len(results["steps"]) == len(DEMO_STEPS)
    assert results["size"] == "tiny" and results["seed"] == 3
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
