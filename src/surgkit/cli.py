"""The ``surgkit`` command line. No logic lives here: each sub-package registers its commands.

Every sub-package with commands has a ``cli.py`` exposing ``register(app)``. Heavy imports
(torch, transformers, av) happen inside the commands so ``surgkit --help`` stays fast.
"""

from __future__ import annotations

import sys
from importlib import import_module

import typer

from surgkit import __version__
from surgkit.errors import SurgkitError

app = typer.Typer(
    name="surgkit",
    help="Surgical video understanding: synthetic world, datasets, preprocessing, metrics and models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

# Order = order in `surgkit --help`. Each module exposes register(app).
COMMAND_MODULES = (
    "surgkit.synth.cli",
    "surgkit.demo",
    "surgkit.data.cli",
    "surgkit.backbones.cli",
    "surgkit.prep.cli",
    "surgkit.metrics.cli",
    "surgkit.skill.cli",
    "surgkit.video.cli",
    "surgkit.grounding.cli",
    "surgkit.reasoning.cli",
    "surgkit.recipes.cli",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"surgkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """surgkit command line."""


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue  # capability not built yet
            raise
        module.register(app)


_register_all()


def _fail(message: str, code: int = 2) -> None:
    from surgkit.utils.inputs import escape
    from surgkit.utils.progress import console

    # the message quotes user text (file names, labels): never interpret it as rich markup
    message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)  # one line, always
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the app and turns user errors into one line and exit code 2."""
    try:
        app(args=argv, prog_name="surgkit")
    except SurgkitError as e:
        _fail(str(e))
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError) as e:
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        _fail(f"{where}{e.strerror or e}")
    except KeyboardInterrupt:
        _fail("interrupted", code=130)
    except SystemExit as e:
        if e.code == 130:  # typer turns Ctrl-C into a silent exit 130: say what happened
            _fail("interrupted", code=130)
        raise
    finally:
        if "torch.distributed" in sys.modules:  # under torchrun / accelerate launch: leave the group cleanly
            from surgkit.utils.distributed import shutdown

            shutdown()


if __name__ == "__main__":
    main()
