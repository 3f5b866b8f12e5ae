"""Self-contained ``report.html``: one section per demo step, figures embedded as base64 PNG."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

from surgkit.utils.io import write_text

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f5f3;color:#222}
header{background:#5b1a1a;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:24px} header p{margin:4px 0 0;opacity:.85}
main{max-width:1100px;margin:0 auto;padding:16px 32px}
nav a{margin-right:14px;color:#5b1a1a}
section{background:#fff;border-radius:8px;padding:16px 24px;margin:18px 0;box-shadow:0 1px 3px #0002}
section h2{margin-top:0} .failed{border-left:6px solid #c0392b} .ok{border-left:6px solid #2e7d32}
table{border-collapse:collapse;margin:8px 0 12px} td,th{border:1px solid #ddd;padding:4px 10px;text-align:left}
th{background:#f0ecea} td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{display:inline-block;margin:8px 12px 8px 0;vertical-align:top;max-width:100%}
figure img{max-width:100%;border:1px solid #ccc} figcaption{font-size:13px;color:#555;max-width:520px}
.notes{font-size:13px;color:#555} .notes li{margin:2px 0} pre{white-space:pre-wrap;font-size:12px}
.meta{font-size:13px;color:#666}
"""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"
    return html.escape(str(value))


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _table(header: list[str], rows: list[list[Any]], caption: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td class='num'>{_fmt(c)}</td>" if _is_num(c) else f"<td>{_fmt(c)}</td>" for c in row)
        + "</tr>"
        for row in rows
    )
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _flatten(
    metrics: dict[str, Any], prefix: str = "", depth: int = 0, max_depth: int = 1
) -> list[list[Any]]:
    """Rows ``[name, value]`` for the metric table; nesting deeper than ``max_depth`` is summarised
    (the full values stay in results.json)."""
    rows: list[list[Any]] = []
    for k, v in metrics.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            if depth < max_depth:
                rows.extend(_flatten(v, name + ".", depth + 1, max_depth))
            else:
                rows.append([name, f"[{len(v)} entries: see results.json]"])
        elif isinstance(v, (list, tuple)) and len(v) > 12:
            rows.append([name, f"[{len(v)} values: see results.json]"])
        else:
            rows.append([name, v if _is_num(v) else str(v)])
    return rows


def _figure(path: Path, caption: str) -> str:
    path = Path(path)
    if not path.is_file():
        return f"<p class='notes'>missing figure: {html.escape(str(path))}</p>"
    data = base64.b64encode(path.read_bytes()).decode()
    mime = "image/png" if path.suffix.lower() == ".png" else "image/jpeg"
    return (
        f"<figure><img alt='{html.escape(caption)}' src='data:{mime};base64,{data}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _learning_table(rows: list[dict[str, Any]]) -> str:
    """The "does it learn?" summary: every held-out comparison against its trivial baseline."""
    if not rows:
        return ""
    body = [
        [
            r["step"],
            r["name"],
            r["model"],
            r["baseline"],
            r["baseline_kind"],
            "higher" if r["higher_is_better"] else "lower",
            r["n"] if r["n"] is not None else "",
            "yes" if r["holds"] else "NO",
        ]
        for r in rows
    ]
    header = ["step", "comparison", "model", "baseline", "baseline kind", "better is", "n", "beats baseline"]
    held = sum(r["holds"] for r in rows)
    return (
        "<section id='learning' class='ok'><h2>Does each pipeline learn?</h2>"
        f"<p>{held} of {len(rows)} held-out comparisons beat their trivial baseline.</p>"
        + _table(header, body)
        + "</section>"
    )


def _timing(section: Any) -> str:
    """'12.3 s (20.1 CPU-s)': wall seconds, and CPU seconds when the section recorded them."""
    cpu = getattr(section, "cpu_seconds", 0.0)
    return f"{section.seconds:.1f} s" + (f" ({cpu:.1f} CPU-s)" if cpu else "")


def _schedule_note(schedule: dict[str, Any]) -> str:
    """Which steps ran side by side (their step times overlap), from ``results.json``'s ``schedule``."""
    from surgkit.demo_lanes import WORLD_STEPS

    lanes = schedule.get("lanes") or []
    if schedule.get("mode") != "parallel" or len(lanes) < 2:
        return ""
    first = [n for n in lanes[0] if n in WORLD_STEPS]  # these ran before the second process started
    beside = [n for n in lanes[0] if n not in WORLD_STEPS]
    after = f" (after {', '.join(first)})" if first else ""
    return html.escape(
        f" · {', '.join(lanes[1])} ran in a second process ({schedule.get('second_lane_torch_threads', 1)} torch "
        f"thread) beside {', '.join(beside)}{after}: their step times overlap"
    )


def render_report(sections: list[Any], results: dict[str, Any]) -> str:
    """HTML text of the report for demo sections (see :class:`surgkit.demo.DemoSection`)."""
    nav = " ".join(f"<a href='#{html.escape(s.key)}'>{html.escape(s.title)}</a>" for s in sections)
    parts = []
    for s in sections:
        body = [f"<h2>{html.escape(s.title)}</h2>", f"<p class='meta'>{s.status} · {_timing(s)}</p>"]
        if s.summary:
            body.append(f"<p>{html.escape(s.summary)}</p>")
        if s.metrics:
            shown = {k: v for k, v in s.metrics.items() if k != "learning"}  # in the table at the top
            body.append(_table(["metric", "value"], _flatten(shown)))
        for caption, header, rows in s.tables:
            body.append(_table(header, rows, caption))
        body.extend(_figure(p, c) for p, c in s.figures)
        if s.notes:
            if s.status == "failed":
                body.append("<pre>" + html.escape("\n".join(s.notes)) + "</pre>")
            else:
                body.append(
                    "<ul class='notes'>" + "".join(f"<li>{html.escape(n)}</li>" for n in s.notes) + "</ul>"
                )
        parts.append(f"<section id='{html.escape(s.key)}' class='{s.status}'>{''.join(body)}</section>")
    title = "surgkit demo report"
    sub = (
        f"surgkit {html.escape(str(results.get('surgkit_version')))} · size {html.escape(str(results.get('size')))}"
        f" · seed {results.get('seed')} · device {html.escape(str(results.get('device')))}"
        f" · {results.get('seconds')} s ({results.get('cpu_seconds')} CPU-s) · synthetic data: numbers show the pipeline works, not clinical performance"
    ) + _schedule_note(results.get("schedule") or {})
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{_CSS}</style></head><body><header><h1>{title}</h1><p>{sub}</p></header>"
        f"<main><nav>{nav}</nav>{_learning_table(results.get('learning', []))}{''.join(parts)}</main></body></html>\n"
    )


def write_report(path: str | Path, sections: list[Any], results: dict[str, Any]) -> Path:
    """Atomically write the report HTML."""
    return write_text(path, render_report(sections, results))
