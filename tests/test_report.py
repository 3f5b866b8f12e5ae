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
        metrics={"acc": 0.5, "nested": {"a": 1, "deep": {"x": 1, "y": 2}}, "nan": float("nan")},
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
    assert html.count("data:image/png;base64,") == 1
    assert "missing figure" in html
    assert "protocol: strict" in html
