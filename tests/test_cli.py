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
