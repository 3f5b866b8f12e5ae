"""report.html rendering: metric tables, escaping, embedded figures, deep results summarised."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from surgkit.demo import DemoSection  # noqa: E402
from surgkit.report.html import render_report  # noqa: E402


def test_report_renders_sections_tables_and_figures(tmp_path):
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1], [0, 1])
    png = tmp_path / "f.png"
    fig.savefig(png)
    plt.close(fig)
    sec = DemoSection(
        key="s1",
        title="Step <one>",
        summary="a & b",
        metrics={
            "acc": 0.5,
            "nested": {"a": 1, "deep": {"x": 1, "y": 2}},
            "nan": float("nan"),
            "learning": {"acc_vs_majority": {"model": 0.5, "baseline": 0.4}},
        },
        tables=[("cap", ["h1", "h2"], [["r", 2]])],
        figures=[(png, "a figure"), (tmp_path / "missing.png", "gone")],
        notes=["protocol: strict"],
    )
    html = render_report(
        [sec], {"surgkit_version": "x", "size": "tiny", "seed": 0, "device": "cpu", "seconds": 1}
    )
    assert "Step &lt;one&gt;" in html and "a &amp; b" in html  # user text is escaped
    assert "<td>nested.a</td><td class='num'>1</td>" in html
    assert "nested.deep" in html and "2 entries: see results.json" in html  # deeper levels summarised
    assert "NaN" in html
    assert "acc_vs_majority" not in html  # learning entries live in the summary table, not per step
    assert html.count("data:image/png;base64,") == 1
    assert "missing figure" in html
    assert "protocol: strict" in html


def test_learning_entries_and_summary_table():
    from surgkit.demo import learning_entry, learning_summary

    up = learning_entry(0.7, 0.5, "majority answer", n=40)
    down = learning_entry(3.0, 2.5, "length-only predictor", n=32, higher_is_better=False)
    tie = learning_entry(0.5, 0.5, "uniform heatmap", n=10)
    assert up["holds"] and not down["holds"] and not tie["holds"]  # a tie does not beat the baseline
    steps = {"a": {"metrics": {"learning": {"acc": up, "mae": down}}}, "b": {"metrics": {"x": 1}}}
    rows = learning_summary(steps)
    assert [(r["step"], r["name"], r["holds"]) for r in rows] == [("a", "acc", True), ("a", "mae", False)]
    # the summary recomputes "holds" from the numbers, so a hand-edited flag cannot lie
    steps["a"]["metrics"]["learning"]["mae"]["holds"] = True
    assert not learning_summary(steps)[1]["holds"]
    html = render_report([], {"learning": rows})
    assert "Does each pipeline learn?" in html and "1 of 2 held-out comparisons" in html
    assert "length-only predictor" in html and "<td>NO</td>" in html


def test_demo_step_selection():
    import pytest

    from surgkit.demo import DEMO_STEPS, select_steps
    from surgkit.errors import SurgkitError

    assert select_steps("") is None
    chosen = select_steps("video, synth")
    assert chosen == tuple(s for s in DEMO_STEPS if s.startswith(("surgkit.synth.", "surgkit.video.")))
    with pytest.raises(SurgkitError, match="unknown demo step"):
        select_steps("synth,nope")


def test_header_says_which_steps_ran_side_by_side():
    from surgkit.report.html import render_report

    parallel = {"mode": "parallel", "lanes": [["synth", "data", "video", "skill"], ["grounding", "reasoning"]],
                "second_lane_torch_threads": 1}  # fmt: skip
    html = render_report([], {"schedule": parallel})
    # the world steps run before the second process starts: they do not overlap it
    assert (
        "grounding, reasoning ran in a second process (1 torch thread) beside video, skill (after synth, data)"
        in html
    )
    assert "second process" not in render_report(
        [], {"schedule": {"mode": "sequential", "lanes": [["synth"]]}}
    )
    assert "second process" not in render_report([], {})  # results written before schedules existed
