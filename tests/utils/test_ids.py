"""surgkit.utils.ids: unsafe names are refused naming their source; resets stay inside the root."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surgkit.errors import DataFormatError, SurgkitError
from surgkit.utils.ids import MAX_ID_BYTES, safe_child, safe_id, safe_reset

UNSAFE = [
    "",
    ".",
    "..",
    "a/b",
    "../x",
    "a\\b",
    "/etc",
    "C:evil",
    "c:\\x",
    "nul\x00byte",
    "tab\there",
    "new\nline",
    "\x7f",
    ".hidden",
    " padded",
    "padded ",
    "x" * (MAX_ID_BYTES + 1),
    "é" * (MAX_ID_BYTES // 2 + 1),  # 2 bytes each in UTF-8
    "bad\udcffsurrogate",
]


@pytest.mark.parametrize("name", UNSAFE)
def test_unsafe_ids_are_refused_naming_the_source(name):
    with pytest.raises(DataFormatError) as e:
        safe_id(name, "in/labels.txt", line=7, what="video id")
    text = str(e.value)
    assert text.startswith("in/labels.txt:7: unsafe video id ")
    assert "\n" not in text


@pytest.mark.parametrize("name", ["video01", "Suturing_B001_capture1", "vid-3.part", "é" * 50, "a b"])
def test_safe_ids_pass_unchanged(name, tmp_path):
    assert safe_id(name, "x") == name
    assert safe_child(tmp_path, name, "x") == tmp_path / name


def test_non_text_and_sourceless_ids():
    with pytest.raises(DataFormatError, match="expected text, got int"):
        safe_id(3, "f.json")
    with pytest.raises(SurgkitError, match="unsafe id '..'"):
        safe_id("..", None)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_accepted_id_is_one_direct_child(name):
    """Property: whatever text is accepted, root/name is a direct child and not the root itself."""
    try:
        safe_id(name, "src")
    except DataFormatError:
        return
    child = os.path.normpath(os.path.join("/root/out", name))
    assert os.path.dirname(child) == "/root/out"
    assert os.path.basename(child) == name


def _tree(tmp_path):
    above = tmp_path / "canary-above.txt"
    above.write_text("keep")
    out = tmp_path / "out"
    (out / "video01").mkdir(parents=True)
    (out / "video01" / "00000.jpg").write_bytes(b"x")
    (out / "canary.txt").write_text("keep")
    return out, above


@pytest.mark.parametrize("target", [".", "..", "", "../..", "video01/.."])
def test_reset_refuses_the_root_and_above(tmp_path, target):
    out, above = _tree(tmp_path)
    with pytest.raises(SurgkitError, match="refusing to delete"):
        safe_reset(out / target if target else out, out)
    assert (out / "canary.txt").read_text() == "keep" and above.read_text() == "keep"
    assert (out / "video01" / "00000.jpg").exists()


def test_reset_refuses_a_path_reaching_outside_through_a_symlinked_parent(tmp_path):
    out, above = _tree(tmp_path)
    outside = tmp_path / "outside"
    (outside / "precious").mkdir(parents=True)
    (out / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(SurgkitError, match="refusing"):
        safe_reset(out / "link" / "precious", out)
    assert (outside / "precious").is_dir()


def test_reset_removes_a_symlink_not_its_target(tmp_path):
    out, _ = _tree(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "data.bin").write_bytes(b"1")
    (out / "video02").symlink_to(outside, target_is_directory=True)
    assert safe_reset(out / "video02", out)
    assert not os.path.lexists(out / "video02")
    assert (outside / "data.bin").read_bytes() == b"1"


def test_reset_renames_aside_then_deletes(tmp_path, monkeypatch):
    out, _ = _tree(tmp_path)
    import surgkit.utils.ids as ids

    seen = []
    monkeypatch.setattr(ids, "_remove", lambda p: seen.append(p))  # simulate a crash before deletion
    assert safe_reset(out / "video01", out)
    assert not (out / "video01").exists()  # the name is free at once
    assert len(seen) == 1 and seen[0].parent == out and seen[0].name.startswith(".video01")
    monkeypatch.undo()
    (out / "video01").mkdir()
    safe_reset(out / "video01", out)  # the next reset of the name sweeps the leftover copy
    assert sorted(p.name for p in out.iterdir()) == ["canary.txt"]
    assert safe_reset(out / "video01", out) is False  # nothing there: nothing done
