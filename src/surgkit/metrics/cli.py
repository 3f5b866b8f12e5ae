"""``surgkit eval``: metrics on prediction files (logic in surgkit.metrics.*; formats in docs/metrics.md)."""

from __future__ import annotations

from pathlib import Path

import typer

eval_app = typer.Typer(help="Evaluate predictions with the field's reference metrics.", no_args_is_help=True)

JSON_OPT = typer.Option(False, "--json", help="Print machine-readable JSON (NaN as null) instead of a table.")


def register(app: typer.Typer) -> None:
    """Add the ``eval`` sub-command group to the root app."""
    app.add_typer(eval_app, name="eval")


def _emit(result: dict, as_json: bool, title: str, rows: list[tuple[str, object]]) -> None:
    from surgkit.metrics.report import print_table, to_strict_json

    if as_json:
        typer.echo(to_strict_json(result))
    else:
        print_table(title, rows, result.get("protocol", {}))


@eval_app.command("phase")
def phase_cmd(
    labels: Path = typer.Argument(
        ..., exists=True, help="Ground-truth phases (.csv/.json/.npz, a per-video .txt or a folder of them)."
    ),
    preds: Path = typer.Argument(..., exists=True, help="Predicted phases, same kinds of input."),
    num_phases: int = typer.Option(7, help="Number of phases (Cholec80 7, M2CAI16 8)."),
    protocol: str = typer.Option("strict", help="strict | relaxed | sklearn-per-video | sklearn-pooled."),
    fps: float = typer.Option(1.0, help="Frame rate of the sequences (relaxed window = 10*fps frames)."),
    variant: str = typer.Option(
        None, help="Relaxed rule table: cholec80 | cholec80-svrcnet | m2cai16 | m2cai16-svrcnet."
    ),
    relaxed_fixed: bool = typer.Option(False, help="Fix the Evaluate.m tail bug (default: reproduce it)."),
    never_predicted: str = typer.Option(
        None, help="Precision of a never-predicted phase: nan (Matlab) | zero."
    ),
    phase_mean: str = typer.Option(
        "mainm", help="mainm (reference) | nanmean (all metrics nanmean over phases)."
    ),
    segmental: bool = typer.Option(False, help="Also report segmental F1@{10,25,50} and edit score."),
    as_json: bool = JSON_OPT,
) -> None:
    """Phase recognition: accuracy, precision, recall, Jaccard, F1 (Matlab relaxed or strict protocols)."""
    from surgkit.metrics.report import evaluate_phase_files, phase_rows

    result = evaluate_phase_files(
        labels,
        preds,
        num_phases,
        protocol,
        fps,
        variant,
        relaxed_fixed,
        segmental,
        never_predicted,
        phase_mean,
    )
    _emit(result, as_json, f"Phase recognition ({result['protocol']['name']})", phase_rows(result))


@eval_app.command("triplet")
def triplet_cmd(
    labels: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="Targets (.npz with targets + video_ids, or .csv)."
    ),
    preds: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="Scores (.npz with scores + video_ids, or .csv)."
    ),
    mode: str = typer.Option("video", help="video (CholecT50 recommended) | global."),
    ignore_null: bool = typer.Option(False, help="Drop the null triplets 94-99 from ivt."),
    topk: list[int] = typer.Option([], help="Top-k accuracies to add (repeatable)."),
    as_json: bool = JSON_OPT,
) -> None:
    """CholecT50 triplet recognition mAP (i, v, t, iv, it, ivt), equal to ivtmetrics 0.1.5 (sklearn<1.6)."""
    from surgkit.metrics.report import evaluate_triplet_files, triplet_rows

    result = evaluate_triplet_files(labels, preds, mode, ignore_null, tuple(topk))
    _emit(result, as_json, f"Triplet recognition ({mode}-wise mAP)", triplet_rows(result))


@eval_app.command("skill")
def skill_cmd(
    predictions: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="Records fold,true,pred[,trial] (.csv/.json)."
    ),
    aggregate: str = typer.Option("mean", help="mean (over folds, default) | pooled (out-of-fold)."),
    denormalize: str = typer.Option("none", help="Undo a GRS normalisation first: none | minmax | div30."),
    as_json: bool = JSON_OPT,
) -> None:
    """Skill regression: Spearman, MAE, RL2 per fold and aggregated."""
    from surgkit.metrics.report import evaluate_skill_file, skill_rows

    result = evaluate_skill_file(predictions, aggregate, denormalize)
    _emit(result, as_json, f"Skill assessment ({aggregate})", skill_rows(result))


@eval_app.command("vqla")
def vqla_cmd(
    results: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="Records answer_true, answer_pred[, boxes] (.csv/.json)."
    ),
    as_json: bool = JSON_OPT,
) -> None:
    """Surgical VQLA: accuracy, macro P/R/F (zero_division=1), true mIoU and legacy mIoU."""
    from surgkit.metrics.report import evaluate_vqla_file, vqla_rows

    result = evaluate_vqla_file(results)
    _emit(result, as_json, "Surgical VQLA", vqla_rows(result))
