"""The shared trainer flags: one decorator, the same flags everywhere, one LaunchOptions."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from surgkit.utils.cli_options import launch_options
from surgkit.utils.launch import LaunchOptions


def _app():
    app = typer.Typer()
    got = {}

    @app.command("train")
    @launch_options
    def train(epochs: int = typer.Option(3), launch: LaunchOptions = None) -> None:
        got.update(epochs=epochs, launch=launch)

    @app.command("other")
    def other() -> None:  # a second command keeps typer from collapsing the group
        pass

    return app, got


def test_flags_arrive_as_one_launch_options():
    app, got = _app()
    res = CliRunner().invoke(app, ["train", "--epochs", "2", "--mixed-precision", "bf16", "--grad-accum", "4",
                                   "--report-to", "none"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert got == {
        "epochs": 2,
        "launch": LaunchOptions(mixed_precision="bf16", grad_accum=4, report_to="none"),
    }
    res = CliRunner().invoke(app, ["train"])
    assert res.exit_code == 0 and got["launch"] == LaunchOptions()
    res = CliRunner().invoke(app, ["train", "--grad-accum", "0"])
    assert res.exit_code == 2 and "--grad-accum" in res.output


def test_help_lists_the_shared_flags():
    app, _ = _app()
    text = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output
    for flag in ("--mixed-precision", "--grad-accum", "--report-to", "train_log.jsonl"):
        assert flag in text


def test_decorator_refuses_commands_it_cannot_wire():
    with pytest.raises(TypeError, match="must take a 'launch' parameter"):
        launch_options(lambda epochs=1: None)
    with pytest.raises(TypeError, match="already defines"):
        launch_options(lambda grad_accum=1, launch=None: None)


def test_trainer_specific_grad_accum_help():
    app = typer.Typer()

    @app.command("a")
    @launch_options(grad_accum_help="per-process batch: global = batch x processes x this")
    def a(launch: LaunchOptions = None) -> None:
        pass

    @app.command("b")
    def b() -> None:
        pass

    text = CliRunner().invoke(app, ["a", "--help"], env={"COLUMNS": "200"}).output
    assert "global = batch x processes x this" in text and "--report-to" in text


TRAINERS = [("skill", "train"), ("video", "pretrain"), ("video", "finetune"), ("ground", "train-clip"),
            ("video", "teacher", "train"), ("reason", "sft"), ("reason", "grpo"), ("reason", "self-improve")]  # fmt: skip


@pytest.mark.parametrize("command", TRAINERS, ids=" ".join)
def test_every_trainer_has_the_shared_flags(command):
    from surgkit.cli import app

    text = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"}).output
    for flag in ("--mixed-precision", "--grad-accum", "--report-to"):
        assert flag in text, f"{' '.join(command)}: {flag}"


@pytest.mark.parametrize("var", ["RANK", "PMI_RANK"])
def test_only_the_main_process_prints_results(monkeypatch, var):
    """On N processes a command's result lines come once (rank 0); the others' stderr is kept."""
    from surgkit.utils.cli_options import main_process_output

    app = typer.Typer()

    @app.command("train")
    @launch_options
    def train(launch: LaunchOptions = None) -> None:
        typer.echo("result line")
        typer.echo("a warning", err=True)

    @app.command("bench")
    @main_process_output
    def bench() -> None:
        typer.echo("table")

    for name in ("RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "PMI_RANK"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()
    res = runner.invoke(app, ["train"])
    assert (res.exit_code, res.stdout, res.stderr) == (0, "result line\n", "a warning\n")
    monkeypatch.setenv(var, "1")
    res = runner.invoke(app, ["train"])
    assert (res.exit_code, res.stdout, res.stderr) == (0, "", "a warning\n")
    assert runner.invoke(app, ["bench"]).stdout == ""
    monkeypatch.setenv(var, "0")
    assert runner.invoke(app, ["bench"]).stdout == "table\n"
