"""File-level evaluation and table rendering behind ``surgkit eval`` (the CLI only calls these)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from surgkit.errors import DataFormatError

__all__ = [
    "evaluate_phase_files",
    "evaluate_skill_file",
    "evaluate_triplet_files",
    "evaluate_vqla_file",
    "print_table",
    "to_strict_json",
]


def to_strict_json(result: dict) -> str:
    """Strict JSON text (NaN/Inf → null, arrays → lists)."""
    from surgkit.metrics.files import jsonable

    return json.dumps(jsonable(result), indent=2, allow_nan=False)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, (float, np.floating)):
        return "NaN" if np.isnan(value) else f"{value:.4f}"
    return str(value)


def print_table(title: str, rows: list[tuple[str, object]], protocol: dict) -> None:
    """A two-column rich table on stdout, followed by the protocol / quirk notes."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, _fmt(value))
    console = Console()
    console.print(table)
    for key in ("name", "reference", "variant", "mode", "aggregation", "nan_rule", "miou_legacy"):
        if key in protocol:
            console.print(f"[dim]{key}: {protocol[key]}[/]", highlight=False)
    for quirk in protocol.get("quirks", []):
        console.print(f"[dim]quirk: {quirk}[/]", highlight=False)


# --------------------------------------------------------------------------------------- phase
def _phase_names(num_phases: int) -> tuple[str, ...]:
    from surgkit.vocab import CHOLEC80_PHASES, M2CAI16_PHASES

    return {7: CHOLEC80_PHASES, 8: M2CAI16_PHASES}.get(num_phases, ())


def evaluate_phase_files(
    labels: Path,
    preds: Path,
    num_phases: int,
    protocol: str = "strict",
    fps: float = 1.0,
    variant: str | None = None,
    relaxed_fixed: bool = False,
    segmental: bool = False,
    never_predicted: str | None = None,
    phase_mean: str = "mainm",
) -> dict:
    """Read two phase files, pair videos by name, run :func:`surgkit.metrics.phase.evaluate`."""
    from surgkit.metrics.files import pair_videos, read_phase_file
    from surgkit.metrics.phase import edit_score, evaluate, segmental_f1

    names = _phase_names(num_phases)
    gl, pl = read_phase_file(labels, names, num_phases), read_phase_file(preds, names, num_phases)
    videos, g_seqs, p_seqs = pair_videos(gl, pl, Path(labels), Path(preds))
    for name, (fa, _), (fb, _) in zip(videos, g_seqs, p_seqs, strict=True):
        if fa.size != fb.size:
            raise DataFormatError(
                f"video {name}: {fa.size} labelled frames but {fb.size} predicted", path=preds
            )
        differ = np.flatnonzero(fa != fb)
        if differ.size:  # Main.m also stops when the frame indices differ
            k = int(differ[0])
            raise DataFormatError(
                f"video {name}: predicted frame {fb[k]} where the labels have frame {fa[k]} (row {k})",
                path=preds,
            )
    g, p = [x[1] for x in g_seqs], [x[1] for x in p_seqs]
    result = evaluate(
        g, p, num_phases, protocol, fps, variant=variant, relaxed_fixed=relaxed_fixed, video_names=videos,
        never_predicted=never_predicted, phase_mean=phase_mean,
    )  # fmt: skip
    if segmental:
        result["segmental"] = segmental_f1(g, p)
        result["edit_score"] = edit_score(g, p)
    return result


def phase_rows(r: dict) -> list[tuple[str, object]]:
    rows = [("image accuracy (frames pooled)", r["image_accuracy"])]
    rows.append(
        (
            "video accuracy (mean ± std over videos)",
            f"{_fmt(r['video_accuracy'])} ± {_fmt(r['video_accuracy_std'])}",
        )
    )
    for key in ("precision", "recall", "jaccard", "f1"):
        if f"{key}_std" in r:
            rows.append((key, f"{_fmt(r[key])} ± {_fmt(r[f'{key}_std'])}"))
        else:
            rows.append((key, r[key]))
    if "relaxed_image_accuracy" in r:
        rows.append(("relaxed image accuracy", r["relaxed_image_accuracy"]))
    if "segmental" in r:
        rows += [(k, v) for k, v in r["segmental"].items() if k.startswith("f1@")]
        rows.append(("edit score", r["edit_score"]))
    names = _phase_names(len(r["precision_per_phase"]))
    for key in ("precision", "recall", "jaccard"):
        rows += [(f"{key} {names[c] if names else c}", v) for c, v in enumerate(r[f"{key}_per_phase"])]
    return rows


# ------------------------------------------------------------------------------------- triplet
def evaluate_triplet_files(
    labels: Path, preds: Path, mode: str, ignore_null: bool, topk: tuple[int, ...]
) -> dict:
    """Read targets and scores, check they list the same (video, frame) rows, run triplet.evaluate."""
    from surgkit.metrics.files import read_triplet_file
    from surgkit.metrics.triplet import evaluate

    v1, f1, targets = read_triplet_file(labels, "targets")
    v2, f2, scores = read_triplet_file(preds, "scores")
    if targets.shape != scores.shape:
        raise DataFormatError(f"{scores.shape[0]} score rows but {targets.shape[0]} target rows", path=preds)
    differ = np.flatnonzero((v1.astype(str) != v2.astype(str)) | (f1 != f2))
    if differ.size:
        i = int(differ[0])
        raise DataFormatError(
            f"row {i} is video {v2[i]} frame {f2[i]} but the labels have video {v1[i]} frame {f1[i]}",
            path=preds,
            line=i + 2 if Path(preds).suffix.lower() == ".csv" else None,
        )
    return evaluate(targets, scores, v1.astype(str), mode=mode, ignore_null=ignore_null, topk=topk)


def triplet_rows(r: dict) -> list[tuple[str, object]]:
    rows = [(f"mAP {c}", r[c]) for c in ("i", "v", "t", "iv", "it", "ivt") if c in r]
    rows += list(r.get("topk", {}).items())
    rows += [("videos", r["num_videos"]), ("frames", r["num_frames"])]
    return rows


# --------------------------------------------------------------------------------------- skill
def evaluate_skill_file(path: Path, aggregate: str = "mean", denormalize: str = "none") -> dict:
    """Read fold records and run :func:`surgkit.metrics.skill.cross_validation_summary`."""
    from surgkit.metrics.files import read_skill_file
    from surgkit.metrics.skill import cross_validation_summary, denormalize_grs

    folds = read_skill_file(path)
    for f in folds:
        f["pred"] = denormalize_grs(f["pred"], denormalize)
        f["true"] = denormalize_grs(f["true"], denormalize)
    result = cross_validation_summary(folds, aggregate=aggregate)
    result["protocol"]["denormalize"] = denormalize
    result["protocol"]["name"] = f"skill-cv-{aggregate}"
    return result


def skill_rows(r: dict) -> list[tuple[str, object]]:
    m = r["mean_over_folds"]
    rows = [
        ("Spearman (headline)", r["spearman"]),
        ("MAE (headline)", r["mae"]),
        ("Spearman mean ± std over folds", f"{_fmt(m['spearman'])} ± {_fmt(m['spearman_std'])}"),
        ("Spearman Fisher-z over folds", m["spearman_fisher_z"]),
        ("MAE mean ± std over folds", f"{_fmt(m['mae'])} ± {_fmt(m['mae_std'])}"),
        ("Spearman pooled out-of-fold", r["pooled"]["spearman"]),
        ("MAE pooled out-of-fold", r["pooled"]["mae"]),
    ]
    rows += [
        (f"fold {f['fold']} (n={f['n']}) Spearman / MAE", f"{_fmt(f['spearman'])} / {_fmt(f['mae'])}")
        for f in r["per_fold"]
    ]
    return rows


# ---------------------------------------------------------------------------------------- vqla
def evaluate_vqla_file(path: Path) -> dict:
    """Read VQLA records and run :func:`surgkit.metrics.vqla.evaluate` (GT boxes normalised as the reference)."""
    from surgkit.metrics.files import read_vqla_file
    from surgkit.metrics.vqla import evaluate, vqla_gt_to_normalized
    from surgkit.vocab import VQLA_ANSWERS

    data = read_vqla_file(path, VQLA_ANSWERS)
    gt = None if data["gt_pixel"] is None else vqla_gt_to_normalized(data["gt_pixel"])
    return evaluate(data["y_true"], data["y_pred"], data["pred_xyxy"], gt)


def vqla_rows(r: dict) -> list[tuple[str, object]]:
    rows = [(k, r[k]) for k in ("accuracy", "precision", "recall", "fscore")]
    if "miou" in r:
        rows += [("mIoU (true IoU)", r["miou"]), ("mIoU LEGACY (Surgical-VQLA reference)", r["miou_legacy"])]
    rows.append(("QA pairs", r["num_pairs"]))
    return rows
