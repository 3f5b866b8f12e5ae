"""surgkit.utils.inputs: every malformed input is one DataFormatError naming file and line/key."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surgkit.errors import DataFormatError
from surgkit.utils.inputs import (
    as_dict,
    as_float,
    as_int,
    as_list,
    as_str,
    get,
    is_int_text,
    natural_key,
    parse_float,
    parse_int,
    read_csv_dicts,
    read_json,
    read_jsonl,
    read_text_lines,
    split_rows,
)


def _err(fn, *args, **kw) -> str:
    with pytest.raises(DataFormatError) as e:
        fn(*args, **kw)
    text = str(e.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize(
    "raw, where",
    [
        (b'{"a": 1', ":1: malformed or truncated JSON"),
        (b"[" * 100_000 + b"]" * 100_000, ": JSON nested too deeply"),
        (b'{"n": ' + b"9" * 5000 + b"}", ": unreadable JSON value"),
        (b'{"a": 1, "a": 2}', ": duplicate key 'a'"),
        (b'{"a": "\xff"}', ":1: not UTF-8 text"),
        (b"\n\n\xc3(", ":3: not UTF-8 text"),
    ],
)
def test_read_json_failures_name_the_file(tmp_path, raw, where):
    p = tmp_path / "f.json"
    p.write_bytes(raw)
    assert _err(read_json, p).startswith(f"{p}{where}")


def test_missing_and_folder(tmp_path):
    assert _err(read_json, tmp_path / "nope.json").endswith("missing JSON file")
    assert _err(read_text_lines, tmp_path).endswith("is a folder, expected a file")


def test_jsonl_names_the_line(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text('{"a": 1}\n\n{"a": \n')
    assert _err(read_jsonl, p).startswith(f"{p}:3: malformed")
    p.write_text('{"a": 1}\n{"b": 2}\n')
    assert read_jsonl(p) == [(1, {"a": 1}), (2, {"b": 2})]


@pytest.mark.parametrize(
    "value, message",
    [
        ("3", "expected an integer, got string '3'"),
        (True, "expected an integer, got true/false"),
        (float("nan"), "expected an integer, got nan"),
        (float("inf"), "expected an integer, got inf"),
        (2.5, "expected an integer, got 2.5"),
        ([1], "expected an integer, got a list"),
        (None, "expected an integer, got null"),
        (10**30, "integer with more than 18 digits"),
        (-1, "-1 out of range [0, inf]"),
    ],
)
def test_as_int_refusals(value, message):
    assert _err(as_int, value, "a.json", "frames[2].id", lo=0) == f"a.json: frames[2].id: {message}"


def test_typed_getters_accept_what_they_should():
    assert as_int(3.0, "f") == 3 and as_int("12", "f", allow_str=True) == 12
    assert as_float(3, "f") == 3.0 and as_float("2.5", "f", allow_str=True) == 2.5
    assert as_dict({}, "f") == {} and as_list([], "f") == [] and as_str("x", "f") == "x"
    assert get({"a": 1}, "a", "f") == 1 and get({}, "b", "f", default=None) is None
    assert _err(get, {}, "fps", "f.json", "meta") == "f.json: meta.fps: missing key"
    assert _err(get, [1], "fps", "f.json") == "f.json: top level: expected an object, got a list"
    assert _err(as_float, "1", "f.json", "x") == "f.json: x: expected a number, got string '1'"
    assert _err(as_float, float("nan"), "f.json", "x") == "f.json: x: non-finite number nan"
    assert _err(as_float, 5.0, "f.json", "x", hi=1.0) == "f.json: x: 5 out of range [-inf, 1]"


@pytest.mark.parametrize("text", ["²", "١٢", "1_000", "1.0", "", "-", "+", "0x10", "9" * 19, " 1 2 "])
def test_parse_int_is_ascii_decimal_only(text):
    assert not is_int_text(text)
    assert _err(parse_int, text, "f.txt", 4, "frame").startswith("f.txt:4: frame: expected an integer")


@pytest.mark.parametrize("text", ["nan", "inf", "-Infinity", "1_0", "abc", "", "1e999"])
def test_parse_float_refusals(text):
    assert _err(parse_float, text, "f.txt", 2, "x").startswith("f.txt:2: x:")


def test_parse_accepts():
    assert parse_int(" -12 ", "f", 1, "x") == -12 and parse_int("+7", "f", 1, "x") == 7
    assert parse_float("1e-3", "f", 1, "x") == 0.001
    assert natural_key("video2") < natural_key("video10") and natural_key("a²") == ("a²",)


def test_csv_errors(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("a,b\n1,2\n3\n")
    with pytest.raises(DataFormatError, match=r"t.csv:3: expected 2 columns, found 1"):
        list(read_csv_dicts(p, ["a"]))
    p.write_text("a,a\n1,2\n")
    assert "duplicate column(s) 'a'" in _err(lambda: list(read_csv_dicts(p, ["a"])))
    p.write_text('a,b\n1,"' + "x" * 200_000 + '"\n')
    assert _err(lambda: list(read_csv_dicts(p, ["a"]))).startswith(f"{p}:")
    p.write_text('a,b\n"1\n')  # unterminated quote at end of file
    rows = []
    try:
        rows = list(read_csv_dicts(p, ["a"]))
    except DataFormatError as e:
        assert str(e).startswith(str(p))
    assert all(isinstance(r, tuple) for r in rows)
    p.write_text("")
    assert _err(lambda: list(read_csv_dicts(p, ["a"]))).endswith("empty CSV file (expected a header)")


def test_split_rows(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("Frame\tPhase\n0\tA\n1\tB\textra\n")
    head, rows = split_rows(p)
    assert head == ["Frame", "Phase"] and next(rows) == (2, ["0", "A"])
    with pytest.raises(DataFormatError, match=r":3: expected 2 columns, found 3"):
        next(rows)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_json_bytes(tmp_path_factory, raw):
    """Property: arbitrary bytes either parse (as the json module would) or raise one DataFormatError."""
    p = tmp_path_factory.mktemp("j") / "x.json"
    p.write_bytes(raw)
    try:
        value = read_json(p)
    except DataFormatError as e:
        assert str(e).startswith(str(p)) and "\n" not in str(e)
        return
    assert value == json.loads(raw.decode("utf-8-sig")) or value != value  # NaN compares unequal


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_csv_text(tmp_path_factory, text):
    p = tmp_path_factory.mktemp("c") / "x.csv"
    p.write_bytes(text.encode("utf-8", "replace"))
    try:
        for _line, row in read_csv_dicts(p, []):
            assert isinstance(row, dict)
    except DataFormatError as e:
        assert str(e).startswith(str(p)) and "\n" not in str(e)
