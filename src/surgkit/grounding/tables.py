"""Comparison tables in the layout of the seed's Tables 1 and 2, with the protocol in every caption.

* Table 1 (instrument task): one row per model; column groups per Cholec80-Boxes video (or per
  video of any other dataset) and **one group for CoPESD** (its overall value), each with τ-AC
  and τ-AA - the seed's layout (Video-41 ... Video-45, CoPESD).
* Instrument accuracy and chance levels: per model and dataset, accuracy beside the best constant
  prediction, τ-AC / τ-AA beside the score of a uniform heatmap.
* Table 2 (triplet task): one row per video (and "overall"); per model ARS, V/T (%) and Z/V (%).
* Triplet accuracy and chance levels: triplet and component accuracies, ARS beside its uniform
  heatmap level.

Runs shown in one table must share their protocol (:func:`surgkit.grounding.protocol.protocol_conflicts`);
:func:`tables_for` refuses mixed protocols unless ``allow_mixed`` is given, and then says so in
the captions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from surgkit.errors import SurgkitError
from surgkit.grounding.protocol import caption, protocol_conflicts

Table = tuple[str, list[str], list[list[Any]]]
OVERALL_COLUMN_DATASETS = {"copesd": "CoPESD"}  # datasets shown as one column group (their overall value)


def _num(x: Any, digits: int = 4) -> Any:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return round(float(x), digits)


def _caption(title: str, summaries: Sequence[dict[str, Any]], mixed: list[str]) -> str:
    heatmaps = [s["protocol"].get("heatmap") or {} for s in summaries]
    text = f"{title}. Protocol: {caption(summaries[0]['protocol'], heatmaps)}"
    if mixed:
        text += f". MIXED PROTOCOLS (--allow-mixed-protocols): {'; '.join(mixed)}"
    return text


def _groups(summaries: Sequence[dict[str, Any]]) -> list[tuple[str, str, str | None]]:
    """Column groups of Table 1: (label, dataset, video or None for a whole-dataset group)."""
    seen: dict[tuple[str, str, str | None], None] = {}
    for s in summaries:
        ds = s.get("dataset", "")
        if ds in OVERALL_COLUMN_DATASETS:
            seen.setdefault((OVERALL_COLUMN_DATASETS[ds], ds, None), None)
        else:
            for v in s["videos"]:
                seen.setdefault((v, ds, v), None)
    labels = [g[0] for g in seen]
    return [(f"{g[1]}:{g[0]}" if labels.count(g[0]) > 1 else g[0], g[1], g[2]) for g in seen]


def _models(summaries: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """model -> dataset -> summary; two runs of one model on one dataset cannot share a table."""
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    for s in summaries:
        cell = rows.setdefault(s["model"], {})
        if s.get("dataset", "") in cell:
            raise SurgkitError(
                f"two runs of model '{s['model']}' on dataset '{s.get('dataset', '')}': give them different "
                "names (--name) or put them in separate tables"
            )
        cell[s.get("dataset", "")] = s
    return rows


def instrument_table(summaries: Sequence[dict[str, Any]], mixed: list[str] | None = None) -> Table:
    """Seed Table 1: τ-AC / τ-AA per video (per Cholec80-Boxes video, one group for CoPESD)."""
    groups = _groups(summaries)
    header = ["Model"]
    for label, _, _ in groups:
        header += [f"{label} τ-AC", f"{label} τ-AA"]
    rows = []
    for model, by_ds in _models(summaries).items():
        row: list[Any] = [model]
        for _, ds, video in groups:
            s = by_ds.get(ds)
            m = {} if s is None else (s["overall"] if video is None else s["videos"].get(video, {}))
            row += [_num(m.get("tau_ac")), _num(m.get("tau_aa"))]
        rows.append(row)
    title = "Instrument task: thresholded attention coverage (τ-AC) and alignment (τ-AA)"
    return (_caption(title, summaries, mixed or []), header, rows)


def instrument_accuracy_table(summaries: Sequence[dict[str, Any]], mixed: list[str] | None = None) -> Table:
    """Accuracy and grounding beside their chance levels, per model and dataset (pooled frames)."""
    header = ["Model", "dataset", "accuracy", "best constant (class)", "τ-AC", "τ-AC uniform", "τ-AA",
              "τ-AA uniform", "frames"]  # fmt: skip
    rows = []
    for s in summaries:
        o = s["overall"]
        const = f"{_num(o.get('best_constant_accuracy'))} ({o.get('best_constant_class')})"
        rows.append([s["model"], s.get("dataset", ""), _num(o["accuracy"]), const, _num(o["tau_ac"]),
                     _num(o.get("tau_ac_uniform")), _num(o["tau_aa"]), _num(o.get("tau_aa_uniform")), o["frames"]])  # fmt: skip
    title = (
        "Instrument task: accuracy and grounding beside chance (best constant prediction; uniform heatmap)"
    )
    return (_caption(title, summaries, mixed or []), header, rows)


def triplet_table(summaries: Sequence[dict[str, Any]], mixed: list[str] | None = None) -> Table:
    """Seed Table 2: per video, per model ARS, V/T (%) and Z/V (%)."""
    header = ["Video"]
    for s in summaries:
        header += [f"{s['model']} ARS", f"{s['model']} V/T (%)", f"{s['model']} Z/V (%)"]
    videos: dict[str, None] = {}
    for s in summaries:
        for v in s["videos"]:
            videos.setdefault(v, None)
    rows = []
    for v in [*videos, "overall"]:
        row: list[Any] = [v]
        for s in summaries:
            m = s["overall"] if v == "overall" else s["videos"].get(v, {})
            row += [_num(m.get("ars")), _num(m.get("v_over_t"), 1), _num(m.get("z_over_v"), 1)]
        rows.append(row)
    title = "Triplet task: action reasoning score (ARS), valid/total (V/T) and zero-ARS/valid (Z/V) frames"
    return (_caption(title, summaries, mixed or []), header, rows)


def triplet_accuracy_table(summaries: Sequence[dict[str, Any]], mixed: list[str] | None = None) -> Table:
    header = ["Model", "triplet acc.", "best constant (class)", "instrument acc.", "verb acc.", "target acc.",
              "ARS", "ARS uniform", "valid frames", "frames"]  # fmt: skip
    rows = []
    for s in summaries:
        o = s["overall"]
        const = f"{_num(o.get('best_constant_accuracy'))} ({o.get('best_constant_class')})"
        rows.append([s["model"], _num(o["accuracy"]), const, _num(o["instrument_accuracy"]),
                     _num(o["verb_accuracy"]), _num(o["target_accuracy"]), _num(o["ars"]),
                     _num(o.get("ars_uniform")), o["valid_frames"], o["frames"]])  # fmt: skip
    title = "Triplet task: accuracy (top-1 in the frame's GT set) and ARS beside chance"
    return (_caption(title, summaries, mixed or []), header, rows)


def check_protocols(summaries: Sequence[dict[str, Any]], allow_mixed: bool = False) -> list[str]:
    """The protocol differences of runs meant for one table; an error unless ``allow_mixed``."""
    conflicts = protocol_conflicts([s["protocol"] for s in summaries])
    if conflicts and not allow_mixed:
        raise SurgkitError(
            f"runs with different protocols cannot share a table ({'; '.join(conflicts)}); "
            "rerun them with the same options or pass --allow-mixed-protocols"
        )
    return conflicts


def tables_for(summaries: Sequence[dict[str, Any]], allow_mixed: bool = False) -> list[Table]:
    """All tables for a set of runs, grouped by task (runs of both tasks may be given together)."""
    out = []
    inst = [s for s in summaries if s["task"] == "instrument"]
    trip = [s for s in summaries if s["task"] == "triplet"]
    if inst:
        mixed = check_protocols(inst, allow_mixed)
        out += [instrument_table(inst, mixed), instrument_accuracy_table(inst, mixed)]
    if trip:
        mixed = check_protocols(trip, allow_mixed)
        out += [triplet_table(trip, mixed), triplet_accuracy_table(trip, mixed)]
    return out


def markdown(table: Table) -> str:
    title, header, rows = table
    lines = [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def run_markdown(summaries: Sequence[dict[str, Any]], allow_mixed: bool = False) -> str:
    return "\n".join(markdown(t) for t in tables_for(summaries, allow_mixed))


def print_tables(summaries: Sequence[dict[str, Any]], allow_mixed: bool = False) -> None:
    """Rich tables on stdout."""
    import sys

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table as RichTable

    console = Console(width=None if sys.stdout.isatty() else 220)
    for title, header, rows in tables_for(summaries, allow_mixed):
        t = RichTable(title=escape(title))
        for h in header:
            t.add_column(escape(h), justify="left" if h in ("Model", "Video", "dataset") else "right")
        for row in rows:
            t.add_row(*(escape(str(c)) for c in row))
        console.print(t)
