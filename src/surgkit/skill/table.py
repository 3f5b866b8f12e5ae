"""Paper-style result tables from run folders (SurgFusion-Net Table I layout: tasks × schemes).

Each run folder (one config under one scheme) contributes, per task, the mean ± std over folds of
SCC and MAE and, across tasks, the Fisher-z mean SCC and the mean MAE. Runs whose epochs were
selected on the test fold are marked "[test-selected]" in every output.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from surgkit.errors import SurgkitError
from surgkit.skill.protocol import MAIN, RUN_FORMAT
from surgkit.utils.io import write_json, write_text

ACROSS = "Across tasks"
TASK_ORDER = {"Knot_Tying": 0, "Needle_Passing": 1, "Suturing": 2}  # the paper's column order (KT, NP, SU)
SCHEME_ORDER = {"LOSO": 0, "LOUO": 1, "4fold": 2, "kfold": 3}


def read_run(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise SurgkitError(f"{path}: no results.json (run `surgkit skill train` to completion first)")
    try:
        res = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SurgkitError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    if res.get("format") != RUN_FORMAT:
        raise SurgkitError(f"{path}: not a surgkit skill run (format {res.get('format')!r})")
    return res


def table_rows(run_dirs: Sequence[str | Path], model: str = MAIN) -> list[dict[str, Any]]:
    """Long-format rows: method, task, scheme, SCC/MAE mean and std, folds, selection flag."""
    rows = []
    for run_dir in run_dirs:
        res = read_run(run_dir)
        method = res["name"] if model == MAIN else f"{res['name']}:{model}"
        flag = bool(res.get("test_set_selection"))
        for task, tres in res["tasks"].items():
            s = tres["summary"].get(model)
            if s is None:
                raise SurgkitError(f"{run_dir}: no model '{model}' (has {', '.join(tres['summary'])})")
            rows.append(
                {"method": method, "task": task, "scheme": res["scheme"], "scc_mean": s["scc_mean"],
                 "scc_std": s["scc_std"], "mae_mean": s["mae_mean"], "mae_std": s["mae_std"],
                 "scc_pooled": s["scc_pooled"], "n_folds": s["n_folds"], "nan_folds": s["nan_folds"],
                 "test_set_selection": flag, "run": str(run_dir)}
            )  # fmt: skip
        across = res.get("across_tasks", {}).get(model)
        if across and len(res["tasks"]) > 1:
            rows.append(
                {"method": method, "task": ACROSS, "scheme": res["scheme"], "scc_mean": across["scc_fisher_z"],
                 "scc_std": float("nan"), "mae_mean": across["mae_mean"], "mae_std": float("nan"),
                 "scc_pooled": float("nan"), "n_folds": None, "nan_folds": None,
                 "test_set_selection": flag, "run": str(run_dir)}
            )  # fmt: skip
    return rows


def _fmt(mean: float, std: float, digits: int) -> str:
    if mean is None or not math.isfinite(mean):
        return "—"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None and math.isfinite(std) else "")


def _columns(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    tasks = sorted({r["task"] for r in rows}, key=lambda t: (t == ACROSS, TASK_ORDER.get(t, 9), t))
    schemes = sorted({r["scheme"] for r in rows}, key=lambda s: SCHEME_ORDER.get(s, 9))
    return [(t, s) for t in tasks for s in schemes if any(r["task"] == t and r["scheme"] == s for r in rows)]


def render_tables(rows: list[dict[str, Any]]):
    """Two rich tables (SCC, MAE): methods × (task, scheme) cells of mean ± std."""
    from rich.table import Table

    cols = _columns(rows)
    methods = list(
        dict.fromkeys(r["method"] + (" [test-selected]" if r["test_set_selection"] else "") for r in rows)
    )
    tables = []
    for metric, digits, title in (("scc", 3, "Spearman correlation (SCC, mean ± std over folds)"),
                                  ("mae", 2, "Mean absolute error (score points, mean ± std over folds)")):  # fmt: skip
        table = Table(title=title)
        table.add_column("Method")
        for task, scheme in cols:
            table.add_column(f"{task}\n{scheme}", justify="right")
        for method in methods:
            cells = []
            for task, scheme in cols:
                hit = [r for r in rows if (r["method"] + (" [test-selected]" if r["test_set_selection"] else "")) == method
                       and r["task"] == task and r["scheme"] == scheme]  # fmt: skip
                cells.append(_fmt(hit[0][f"{metric}_mean"], hit[0][f"{metric}_std"], digits) if hit else "")
            table.add_row(method, *cells)
        tables.append(table)
    return tables


def write_table(rows: list[dict[str, Any]], prefix: str | Path) -> tuple[Path, Path]:
    """Write ``<prefix>.csv`` (long format) and ``<prefix>.json``."""
    prefix = Path(prefix)
    keys = ["method", "task", "scheme", "scc_mean", "scc_std", "mae_mean", "mae_std", "scc_pooled", "n_folds",
            "nan_folds", "test_set_selection", "run"]  # fmt: skip
    lines = [",".join(keys)]
    for r in rows:
        lines.append(
            ",".join(
                "" if r[k] is None else (f"{r[k]:.6g}" if isinstance(r[k], float) else str(r[k]))
                for k in keys
            )
        )
    csv_path = write_text(prefix.with_suffix(".csv"), "\n".join(lines) + "\n")
    notes = [
        "SCC: mean over folds per task; across tasks: Fisher z of the per-task SCC",
        "MAE in score points",
    ]
    if any(r["test_set_selection"] for r in rows):
        notes.append("rows marked test_set_selection=true chose epochs on the test fold (optimistic)")
    json_path = write_json(prefix.with_suffix(".json"), {"rows": rows, "notes": notes})
    return csv_path, json_path
