"""Unsafe video ids never delete or write outside their folder (the ``..mp4`` / ``...mp4`` disasters).

Setup as a user had it: an output folder holding a finished earlier run plus a file of the user's,
and canary files in the folder above and the one above that. Then a video with an unsafe name lands
in the input folder and the command is run again.
"""

from __future__ import annotations

import shutil

import pytest

from surgkit.errors import SurgkitError
from surgkit.prep.frames import extract
from surgkit.utils.ids import safe_reset

from .conftest import make_video, one_error_line, tree_digest


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("short") / "good.mp4", 12)


def _world(tmp_path, short_clip):
    inp, out = tmp_path / "in", tmp_path / "parent" / "out"
    inp.mkdir()
    shutil.copy(short_clip, inp / "good.mp4")
    assert extract(inp, out, fps=5, progress=False).ok
    canaries = {
        out / "notes.txt": "beside the outputs",
        out.parent / "canary.txt": "above the output folder",
        tmp_path / "canary.txt": "two levels up",
    }
    for path, text in canaries.items():
        path.write_text(text)
    return inp, out, canaries


@pytest.mark.parametrize(
    "name, problem",
    [
        ("..mp4", "'.' is a relative path"),
        ("...mp4", "'..' is a relative path"),
        (".hidden.mp4", "starts with '.'"),
        ("new\nline.mp4", "control or invalid character U+000A"),
        (" lead.mp4", "leading or trailing white space"),
    ],
)
def test_unsafe_video_name_is_refused_and_nothing_is_lost(run_cli, tmp_path, short_clip, name, problem):
    inp, out, canaries = _world(tmp_path, short_clip)
    before = tree_digest(out)
    shutil.copy(short_clip, inp / name)
    code, stdout, err = run_cli("prep", "frames", inp, "--out", out, "--fps", "5", "-q")
    line = one_error_line(err)
    assert code == 2 and "unsafe video id" in line and problem in line
    assert str(inp / name).replace("\n", "\\n") in line  # names the file
    assert tree_digest(out) == before  # the earlier outputs are intact
    assert all(p.read_text() == text for p, text in canaries.items())


def test_odd_but_safe_names_are_processed(run_cli, tmp_path, short_clip):
    """Markup brackets and backslash-free punctuation are legal names: processed, printed verbatim."""
    inp, out, canaries = _world(tmp_path, short_clip)
    shutil.copy(short_clip, inp / "[red]x[bold] (1).mp4")
    code, _, err = run_cli("prep", "frames", inp, "--out", out, "--fps", "5", "-q")
    assert code == 0, err
    assert (out / "[red]x[bold] (1)" / "sequence.json").is_file()
    assert all(p.read_text() == text for p, text in canaries.items())


def test_reset_of_an_unsafe_target_touches_nothing(tmp_path):
    out = tmp_path / "out"
    (out / "v").mkdir(parents=True)
    (tmp_path / "canary.txt").write_text("x")
    for target in (out / ".", out / "..", out, out / "v" / "..", tmp_path):
        with pytest.raises(SurgkitError, match="refusing to delete"):
            safe_reset(target, out)
    assert (out / "v").is_dir() and (tmp_path / "canary.txt").read_text() == "x"
