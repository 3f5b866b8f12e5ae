"""``surgkit recipes list|path|show|copy``: the shipped Accelerate configs and SLURM scripts."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    sub = typer.Typer(
        help="Launch recipes: Accelerate configs (1 GPU, DDP, FSDP, DeepSpeed ZeRO-2/3, CPU) and SLURM scripts.",
        no_args_is_help=True,
    )
    app.add_typer(sub, name="recipes")

    @sub.command("list")
    def list_cmd() -> None:
        """Every recipe with its one-line description."""
        from surgkit.recipes import list_recipes

        for name, text in list_recipes().items():
            typer.echo(f"{name:18s} {text}")

    @sub.command("path")
    def path_cmd(name: str = typer.Argument(..., help="Recipe name (see `surgkit recipes list`).")) -> None:
        """Print the recipe's file path: accelerate launch --config_file $(surgkit recipes path NAME) ..."""
        from surgkit.recipes import recipe_path

        typer.echo(str(recipe_path(name)))

    @sub.command("show")
    def show_cmd(name: str = typer.Argument(..., help="Recipe name.")) -> None:
        """Print the recipe."""
        from surgkit.recipes import recipe_path

        typer.echo(recipe_path(name).read_text(encoding="utf-8"), nl=False)

    @sub.command("copy")
    def copy_cmd(
        name: str = typer.Argument(..., help="Recipe name."),
        dest: Path = typer.Argument(Path("."), help="Folder (or file path) to write the copy to."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing file."),
    ) -> None:
        """Copy the recipe to edit it (keeps the file name unless DEST is a file path)."""
        from surgkit.errors import SurgkitError
        from surgkit.recipes import recipe_path
        from surgkit.utils.io import write_text

        src = recipe_path(name)
        target = dest / src.name if dest.is_dir() else dest
        if target.exists() and not overwrite:
            raise SurgkitError(f"{target}: exists (use --overwrite)")
        write_text(target, src.read_text(encoding="utf-8"))
        if src.suffix == ".slurm":
            target.chmod(0o755)
        typer.echo(str(target))
