"""``surgkit data``: check a dataset, print its splits, look for train/test leakage."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="Dataset readers, official splits and the leakage guard.", no_args_is_help=True)

    @sub.command("check")
    def check(
        dataset: str = typer.Option(
            ..., "--dataset", "-d", help="Dataset name, e.g. cholec80, jigsaws, cholect50."
        ),
        root: Path = typer.Option(
            ..., "--root", "-r", help="Dataset root folder (or file, for table datasets)."
        ),
        task: str = typer.Option(
            None, "--task", help="JIGSAWS task (Suturing, Knot_Tying, Needle_Passing); default all present."
        ),
        labels_only: bool = typer.Option(
            False, "--labels-only", help="Accept missing videos/frames (reported, not fatal)."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    ) -> None:
        """Read and validate a dataset; summarise counts, classes, durations and problems found."""
        from surgkit.data import dataset_module
        from surgkit.data.summary import print_summary, summarize
        from surgkit.utils.io import to_json

        ds = dataset_module(dataset).load(root, **_reader_kwargs(dataset, task, labels_only))
        summary = summarize(ds)
        if as_json:
            typer.echo(to_json(summary))
        else:
            print_summary(summary)

    @sub.command("splits")
    def splits(
        dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset name."),
        root: Path = typer.Option(..., "--root", "-r", help="Dataset root folder."),
        task: str = typer.Option(None, "--task", help="JIGSAWS task for LOSO/LOUO/4fold."),
        scheme: str = typer.Option("official", "--scheme", help="official | LOSO | LOUO | 4fold | kfold"),
        variant: str = typer.Option(
            None, "--variant", help="Official variant, e.g. 40/40, cholect50-crossval."
        ),
        k: int = typer.Option(5, "--k", help="Number of folds for kfold."),
        seed: int = typer.Option(0, "--seed", help="Seed for kfold."),
        as_json: bool = typer.Option(False, "--json", help="Print the folds as JSON lists of ids."),
    ) -> None:
        """Print the folds of a split scheme as lists of video ids."""
        from surgkit.data import dataset_module
        from surgkit.data.splits import make_splits
        from surgkit.utils.io import to_json

        ds = dataset_module(dataset).load(root, **_reader_kwargs(dataset, task, True))
        folds = make_splits(ds, scheme, task=task, k=k, seed=seed, variant=variant)
        if as_json:
            typer.echo(to_json([f.to_dict() for f in folds]))
            return
        for f in folds:
            typer.echo(f"[{f.scheme}] {f.name}: train {len(f.train)}, val {len(f.val)}, test {len(f.test)}")
            typer.echo(f"  test: {' '.join(f.test)}")
            for note in f.notes:
                typer.echo(f"  note: {note}")

    @sub.command("leakage")
    def leakage(
        roots: list[Path] = typer.Argument(
            ..., help="Folders (or video files) to compare; every pair of roots is compared."
        ),
        within: bool = typer.Option(False, "--within", help="Also compare videos inside each root."),
        threshold: float = typer.Option(
            0.5, "--threshold", help="Similarity at which a pair is reported (0-1)."
        ),
        interval: float = typer.Option(2.0, "--interval", help="Seconds between sampled frames."),
        cache: Path = typer.Option(None, "--cache", help="Folder to cache fingerprints in."),
        as_json: bool = typer.Option(False, "--json", help="Print the pairs as JSON."),
        workers: int = typer.Option(
            None, "--workers", min=1, help="Processes computing fingerprints [default: up to 2, the CPUs]."
        ),
    ) -> None:
        """Find the same video (re-encoded, resized, renamed) across folders by content fingerprints."""
        import dataclasses

        from surgkit.data.leakage import compare_roots
        from surgkit.errors import SurgkitError
        from surgkit.utils.io import to_json

        if len(roots) < 2 and not within:
            raise SurgkitError("give at least two roots, or one root with --within")
        from surgkit.utils.workers import default_workers

        pairs, counts = compare_roots(
            roots, within=within, threshold=threshold, cache_dir=cache, interval=interval,
            workers=workers or default_workers(),
        )  # fmt: skip
        if as_json:
            typer.echo(to_json({"media": counts, "pairs": [dataclasses.asdict(p) for p in pairs]}))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(
            title=f"{len(pairs)} pair(s) with similarity >= {threshold:g} ({sum(counts.values())} videos)"
        )
        for col in ("a", "b", "similarity", "offset (s)"):
            table.add_column(col)
        for p in pairs:
            table.add_row(p.a, p.b, f"{p.similarity:.3f}", "" if p.offset_s is None else f"{p.offset_s:+.1f}")
        Console().print(table)

    app.add_typer(sub, name="data")


def _reader_kwargs(dataset: str, task: str | None, labels_only: bool) -> dict:
    import inspect

    from surgkit.data import dataset_module

    params = inspect.signature(dataset_module(dataset).load).parameters
    kwargs: dict = {}
    if task is not None and "task" in params:
        kwargs["task"] = task
    if labels_only and "require_media" in params:
        kwargs["require_media"] = False
    return kwargs
