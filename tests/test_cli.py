"""The root CLI: version, help, and the one-line error contract."""

from __future__ import annotations

from surgkit import __version__


def test_version(run_cli):
    code, out, _ = run_cli("--version")
    assert code == 0
    assert out.strip() == f"surgkit {__version__}"


def test_help_lists_demo(run_cli):
    code, out, _ = run_cli("--help")
    assert code == 0
    assert "demo" in out


def test_unknown_command_exits_2(run_cli):
    code, _, err = run_cli("no-such-command")
    assert code == 2
    assert "No such command" in err


def test_demo_bad_size_is_one_line_error(run_cli, tmp_path):
    code, _, err = run_cli("demo", "--workdir", tmp_path / "d", "--size", "huge")
    assert code == 2
    assert "unknown demo size 'huge'" in err
    assert "Traceback" not in err


def _all_command_paths():
    """Every command and sub-command path of the surgkit app, e.g. ('prep', 'flow')."""
    import typer.main

    from surgkit.cli import app

    root = typer.main.get_command(app)
    paths = []

    def walk(cmd, prefix):
        for name, sub in getattr(cmd, "commands", {}).items():
            paths.append((*prefix, name))
            walk(sub, (*prefix, name))

    walk(root, ())
    return paths


def test_every_command_has_help(run_cli):
    paths = _all_command_paths()
    top = {p[0] for p in paths}
    assert {"synth", "demo", "data", "prep", "eval", "skill", "video", "ground", "reason"} <= top
    for path in paths:
        code, out, err = run_cli(*path, "--help")
        assert code == 0, (path, err)
        assert "Usage: surgkit " + " ".join(path) in " ".join(out.split()), path


def test_ctrl_c_says_interrupted_and_exits_130(run_cli, tmp_path, monkeypatch):
    """typer turns KeyboardInterrupt into a silent exit 130; the user gets one line saying why it stopped."""
    import surgkit.demo

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(surgkit.demo, "run_demo", interrupted)
    code, out, err = run_cli("demo", "--size", "tiny", "-o", tmp_path / "demo")
    assert code == 130
    assert "error: interrupted" in err and "Traceback" not in err
