"""``surgkit skill``: SurgFusion-Net skill assessment (train, eval, table, predict, attention, configs).

No logic here: the commands call :mod:`surgkit.skill.protocol`, :mod:`surgkit.skill.table`,
:mod:`surgkit.skill.predict` and :mod:`surgkit.skill.viz`. Heavy imports happen inside commands.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from surgkit.utils.cli_options import launch_options
from surgkit.utils.launch import LaunchOptions

sub = typer.Typer(help="Multimodal surgical skill assessment (SurgFusion-Net with Divergence Regulated Attention).",
                  no_args_is_help=True)  # fmt: skip


def _stdout_console():
    """Results go to stdout (progress bars and errors use stderr)."""
    from rich.console import Console

    return Console(width=160)


def _echo_json(obj) -> None:
    from surgkit.utils.io import to_json

    typer.echo(to_json(obj))


@sub.command("train")
@launch_options
def train(
    data: Path = typer.Option(
        ..., "--data", help="JIGSAWS root (task folders with meta files) or clinical skill folder."
    ),
    features: Path = typer.Option(..., "--features", help="Feature store from `surgkit prep features`."),
    config: str = typer.Option(
        "table4_dra", "--config", help="Experiment JSON file or shipped config name (see `skill configs`)."
    ),
    scheme: str = typer.Option(
        "LOUO",
        "--scheme",
        help="LOSO | LOUO | 4fold (JIGSAWS) | kfold (grouped by surgeon) | random_kfold (grouped by video; "
        "the paper's clinical random 4-fold).",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (re-run the same command to resume)."),
    task: list[str] = typer.Option(None, "--task", help="Task(s) to run (default: all in --data)."),
    k: int = typer.Option(4, "--k", help="Folds for --scheme kfold / random_kfold."),
    split_seed: int = typer.Option(0, "--split-seed", help="Seed of the kfold surgeon assignment."),
    select: str = typer.Option(
        None, "--select", help="last (default, honest) | best_test (epoch chosen on the test fold; flagged)."
    ),
    override: list[str] = typer.Option(
        None, "--set", help="Config override, e.g. model.heads_csfb=2 or train.phase1.epochs=50."
    ),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    unimodal_from: Path = typer.Option(
        None, "--unimodal-from", help="Reuse the phase-1 branches of another run (same scheme)."
    ),
    dataset: str = typer.Option("auto", "--dataset", help="jigsaws | clinical | auto."),
    fold: list[str] = typer.Option(
        None, "--fold", help="Run only these folds (quick checks; marked PARTIAL)."
    ),
    allow_leakage: bool = typer.Option(
        False, "--allow-leakage", help="Run even if a test video/surgeon is in training."
    ),
    workers: int = typer.Option(
        1, "--workers", help="Train folds in parallel in this many processes (CPU; one torch thread each)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print results.json instead of the table."),
    launch: LaunchOptions = None,
) -> None:
    """Cross-validated two-phase training (unimodal branches, then fusion) and per-fold SCC/MAE.

    Multi-process: accelerate launch ... -m surgkit skill train (the phases' batch size is the global batch).
    """
    from surgkit.skill.config import load_experiment
    from surgkit.skill.protocol import RunOptions, run_cross_validation

    overrides = list(override or []) + ([f"train.select={select}"] if select else [])
    exp = load_experiment(config, overrides)
    opts = RunOptions(data_dir=data, features_dir=features, out_dir=out, scheme=scheme, tasks=tuple(task) if task else None,
                      dataset=dataset, k=k, split_seed=split_seed, device=device, unimodal_from=unimodal_from,
                      allow_leakage=allow_leakage, only_folds=tuple(fold) if fold else None, launch=launch,
                      workers=workers)  # fmt: skip
    results = run_cross_validation(exp, opts)
    if as_json:
        _echo_json(results)
        return
    _print_run_summary(results)


def _print_run_summary(results: dict) -> None:
    from rich.table import Table

    console = _stdout_console()
    table = Table(title=f"{results['name']} — {results['scheme']} (select={results['select']})")
    for col in ("task", "model", "SCC (mean ± std)", "SCC pooled", "MAE", "folds"):
        table.add_column(col)
    for task, tres in results["tasks"].items():
        for model, s in tres["summary"].items():
            table.add_row(task, model, f"{s['scc_mean']:.3f} ± {s['scc_std']:.3f}", f"{s['scc_pooled']:.3f}",
                          f"{s['mae_mean']:.2f} ± {s['mae_std']:.2f}", f"{s['n_folds']} ({s['nan_folds']} NaN)")  # fmt: skip
    console.print(table)
    for note in results["protocol"]:
        console.print(f"  • {note}", highlight=False)


@sub.command("eval")
def evaluate(
    run_dir: Path = typer.Argument(None, help="A finished run folder: print its per-model summary."),
    checkpoint: Path = typer.Option(
        None, "--checkpoint", help="Trained model folder to evaluate on --data/--features."
    ),
    data: Path = typer.Option(None, "--data", help="Labels for --checkpoint evaluation."),
    features: Path = typer.Option(None, "--features", help="Feature store for --checkpoint evaluation."),
    task: list[str] = typer.Option(None, "--task", help="Task(s) for --checkpoint evaluation."),
    device: str = typer.Option("cpu", "--device"),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Summarise a run folder, or score an external labelled set with a trained model."""
    from surgkit.errors import SurgkitError

    if checkpoint is not None:
        if data is None or features is None:
            raise SurgkitError("--checkpoint needs --data and --features")
        from surgkit.skill.predict import evaluate_checkpoint

        res = evaluate_checkpoint(checkpoint, data, features, tuple(task) if task else None, device=device)
        if as_json:
            _echo_json(res)
        else:
            for t, r in res["tasks"].items():
                typer.echo(f"{t}: n={r['n']}  SCC={r['scc']:.3f}  MAE={r['mae']:.2f}")
        return
    if run_dir is None:
        raise SurgkitError("give a run folder or --checkpoint")
    from surgkit.skill.table import read_run

    results = read_run(run_dir)
    if as_json:
        _echo_json({k: results[k] for k in ("name", "scheme", "select", "test_set_selection", "protocol", "across_tasks")}
                   | {"summary": {t: v["summary"] for t, v in results["tasks"].items()}})  # fmt: skip
    else:
        _print_run_summary(results)


@sub.command("table")
def table(
    run_dirs: list[Path] = typer.Argument(..., help="Run folders (one config × scheme each)."),
    model: str = typer.Option(
        "fusion", "--model", help="fusion (the config's model) or unimodal:rgb|flow|mask."
    ),
    out: Path = typer.Option(None, "--out", "-o", help="Write <out>.csv and <out>.json."),
) -> None:
    """Paper-style table: methods × (task, scheme), SCC and MAE as mean ± std over folds."""
    from surgkit.skill.table import render_tables, table_rows, write_table

    console = _stdout_console()

    rows = table_rows(run_dirs, model)
    for t in render_tables(rows):
        console.print(t)
    if out is not None:
        csv_path, json_path = write_table(rows, out)
        typer.echo(f"wrote {csv_path} and {json_path}")


@sub.command("predict")
def predict(
    features: Path = typer.Argument(..., help="Feature store of the new video(s) (`surgkit prep features`)."),
    checkpoint: Path = typer.Option(
        ..., "--checkpoint", help="Trained model folder (<run>/<task>/<fold>/fusion)."
    ),
    video: list[str] = typer.Option(None, "--video", help="Video id(s) in the store (default: all)."),
    device: str = typer.Option("cpu", "--device"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Score videos: global score, per-item breakdown (item-trained models) and unimodal scores."""
    from surgkit.skill.predict import predict_features

    rows = predict_features(checkpoint, features, tuple(video) if video else None, device)
    if as_json:
        _echo_json(rows)
        return
    for r in rows:
        extra = ""
        if "items" in r:
            extra += "  items: " + ", ".join(f"{k}={v:.2f}" for k, v in r["items"].items())
        if "unimodal" in r:
            extra += "  unimodal: " + ", ".join(f"{k}={v:.1f}" for k, v in r["unimodal"].items())
        typer.echo(f"{r['video']}: score {r['score']:.2f} ({r['segments']} segments){extra}")


@sub.command("attention")
def attention(
    features: Path = typer.Argument(..., help="Feature store."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Trained fusion model folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the PNG figures."),
    video: list[str] = typer.Option(None, "--video", help="Video id(s) (default: all)."),
    stage: int = typer.Option(2, "--stage", help="CSFB stage to plot (paper Fig. 4 uses 2)."),
) -> None:
    """Per-video curves of the CSFB attention each modality receives over time (paper Fig. 4)."""
    from types import SimpleNamespace

    from surgkit.prep.store import FeatureStore
    from surgkit.skill.predict import load_trained
    from surgkit.skill.viz import save_attention_figures

    model, _ = load_trained(checkpoint)
    store = FeatureStore(features)
    ids = list(video) if video else store.video_ids
    videos = [SimpleNamespace(id=v, features=store.load_all(v, model.config.modalities)) for v in ids]
    paths = save_attention_figures(model, videos, out, stage, store.segment_frames / store.fps)
    typer.echo(f"wrote {len(paths)} figure(s) to {out}")


@sub.command("configs")
def configs(show: str = typer.Argument(None, help="Print this shipped config.")) -> None:
    """List the shipped ablation configs (paper Tables III–V) or print one."""
    from surgkit.skill.config import load_experiment, shipped_configs

    if show:
        _echo_json(load_experiment(show).to_dict())
        return
    from importlib import resources

    for name in shipped_configs():
        text = (resources.files("surgkit.skill") / "configs" / f"{name}.json").read_text()
        typer.echo(f"{name:32s} {json.loads(text).get('description', '')}")


def register(app: typer.Typer) -> None:
    app.add_typer(sub, name="skill")
