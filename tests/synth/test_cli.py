"""``surgkit synth`` command line: help, a real run, and one-line user errors with exit code 2."""

from __future__ import annotations

import json


def test_help(run_cli):
    code, out, _ = run_cli("synth", "--help")
    assert code == 0
    for opt in ("--out", "--preset", "--seed", "--videos", "--layouts", "--overwrite"):
        assert opt in out


def test_root_help_lists_synth(run_cli):
    code, out, _ = run_cli("--help")
    assert code == 0 and "synth" in out


def test_small_run_writes_requested_layouts(run_cli, tmp_path):
    out = tmp_path / "w"
    code, _, err = run_cli(
        "synth", "--out", out, "--preset", "tiny", "--videos", "1", "--layouts", "cholec80,truth", "--quiet"
    )
    assert code == 0, err
    manifest = json.loads((out / "world.json").read_text())
    assert list(manifest["layouts"]) == ["truth", "cholec80"] and len(manifest["videos"]) == 1
    assert (out / "cholec80" / "videos" / "video01.mp4").is_file()
    assert (out / "truth" / "video01.safetensors").is_file()
    assert not (out / "jigsaws").exists()


def _one_line_error(code, err, needle):
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err


def test_non_empty_out_dir_needs_overwrite(run_cli, tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    code, _, err = run_cli("synth", "--out", tmp_path, "--preset", "tiny")
    _one_line_error(code, err, "not empty")
    assert (tmp_path / "keep.txt").read_text() == "x"


def test_unknown_layout_and_preset(run_cli, tmp_path):
    code, _, err = run_cli("synth", "--out", tmp_path / "a", "--layouts", "cholec80,nope")
    _one_line_error(code, err, "unknown layout 'nope'")
    code, _, err = run_cli("synth", "--out", tmp_path / "b", "--preset", "huge")
    _one_line_error(code, err, "unknown preset 'huge'")
    code, _, err = run_cli("synth", "--out", tmp_path / "c", "--preset", "tiny", "--videos", "0")
    _one_line_error(code, err, "--videos")
    code, _, err = run_cli("synth", "--out", tmp_path / "d", "--preset", "tiny", "--seed", "-3")
    _one_line_error(code, err, "--seed")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_out_is_a_file(run_cli, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    code, _, err = run_cli("synth", "--out", f, "--preset", "tiny")
    _one_line_error(code, err, "not a folder")


def test_cli_module_import_is_light():
    """``surgkit --help`` imports surgkit.synth.cli: it must not pull in OpenCV, SciPy or PyAV."""
    import subprocess
    import sys

    code = (
        "import sys, surgkit.synth.cli; print(sorted(m for m in ('cv2', 'scipy', 'av') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
