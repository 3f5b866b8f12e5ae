"""Comparison tables in the layout of the seed's Tables 1 and 2.

* Table 1 (instrument task): one row per model; per video tau-AC and tau-AA, then the overall
  values and the classification accuracy.
* Table 2 (triplet task): one row per video (and "overall"); per model ARS, V/T (%) and Z/V (%).
* A triplet accuracy table: triplet and component accuracies per model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

Table = tuple[str, list[str], list[list[Any]]]


def _num(x: Any, digits: int = 4) -> Any:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return round(float(x), digits)


def _videos(summaries: Sequence[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for s in summaries:
        for v in s["videos"]:
            seen.setdefault(v, None)
    return list(seen)


def instrument_table(summaries: Sequence[dict[str, Any]]) -> Table:
    """Seed Table 1: tau-AC / tau-AA per video and overall, one row per model."""
    videos = _videos(summaries)
    header = ["Model"]
    for v in videos:
        header += [f"{v} τ-AC", f"{v} τ-AA"]
    header += ["overall τ-AC", "overall τ-AA", "accuracy", "best constant acc.", "frames"]
    rows = []
    for s in summaries:
        row: list[Any] = [s["model"]]
        for v in videos:
            m = s["videos"].get(v, {})
            row += [_num(m.get("tau_ac")), _num(m.get("tau_aa"))]
        o = s["overall"]
        row += [_num(o["tau_ac"]), _num(o["tau_aa"]), _num(o["accuracy"]), _num(o.get("best_constant_accuracy")),
                o["frames"]]  # fmt: skip
        rows.append(row)
    return ("Instrument task: thresholded attention coverage and alignment (τ = 0.5)", header, rows)


def triplet_table(summaries: Sequence[dict[str, Any]]) -> Table:
    """Seed Table 2: per video, per model ARS, V/T (%) and Z/V (%)."""
    header = ["Video"]
    for s in summaries:
        header += [f"{s['model']} ARS", f"{s['model']} V/T (%)", f"{s['model']} Z/V (%)"]
    rows = []
    for v in [*_videos(summaries), "overall"]:
        row: list[Any] = [v]
        for s in summaries:
            m = s["overall"] if v == "overall" else s["videos"].get(v, {})
            row += [_num(m.get("ars")), _num(m.get("v_over_t"), 1), _num(m.get("z_over_v"), 1)]
        rows.append(row)
    return ("Triplet task: action reasoning score, valid/total and zero/valid frames", header, rows)


def triplet_accuracy_table(summaries: Sequence[dict[str, Any]]) -> Table:
    header = [
        "Model",
        "triplet acc.",
        "instrument acc.",
        "verb acc.",
        "target acc.",
        "valid frames",
        "frames",
    ]
    rows = []
    for s in summaries:
        o = s["overall"]
        rows.append([s["model"], _num(o["accuracy"]), _num(o["instrument_accuracy"]), _num(o["verb_accuracy"]),
                     _num(o["target_accuracy"]), o["valid_frames"], o["frames"]])  # fmt: skip
    return ("Triplet task: classification accuracy (top-1 in the frame's GT set)", header, rows)


def tables_for(summaries: Sequence[dict[str, Any]]) -> list[Table]:
    """All tables for a set of runs, grouped by task (runs of both tasks may be mixed)."""
    out = []
    inst = [s for s in summaries if s["task"] == "instrument"]
    trip = [s for s in summaries if s["task"] == "triplet"]
    if inst:
        out.append(instrument_table(inst))
    if trip:
        out += [triplet_table(trip), triplet_accuracy_table(trip)]
    return out


def markdown(table: Table) -> str:
    caption, header, rows = table
    lines = [f"**{caption}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def run_markdown(summaries: Sequence[dict[str, Any]]) -> str:
    return "\n".join(markdown(t) for t in tables_for(summaries))


def print_tables(summaries: Sequence[dict[str, Any]]) -> None:
    """Rich tables on stdout."""
    import sys

    from rich.console import Console
    from rich.table import Table as RichTable

    console = Console(width=None if sys.stdout.isatty() else 220)
    for caption, header, rows in tables_for(summaries):
        t = RichTable(title=caption)
        for h in header:
            t.add_column(h, justify="left" if h in ("Model", "Video") else "right")
        for row in rows:
            t.add_row(*(str(c) for c in row))
        console.print(t)
