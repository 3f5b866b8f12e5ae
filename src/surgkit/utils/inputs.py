"""The hardened input layer: every text, CSV and JSON file a user gives surgkit is read here.

Whatever is wrong with a file, the caller gets a :class:`~surgkit.errors.DataFormatError` naming
the file and the line (text, CSV) or the key path (JSON, e.g. ``annotations[3].bbox``), which the
CLI prints as one line with exit code 2, never a traceback. Covered: missing files, bytes that are
not UTF-8 (the line of the first bad byte), truncated or malformed JSON, JSON nested deeper than
Python's recursion limit, numbers beyond Python's int digit limit, duplicate JSON keys (JSON
parsers silently keep the last one), CSV errors (NUL bytes, oversized fields), ragged rows, and
wrong JSON types: a string where a number is expected, a list where an object is expected,
``true`` where an integer is expected, NaN/Infinity or 2.5 where an integer is expected.

Integers in text are ASCII digits with an optional sign (checked with ``isdecimal`` on ASCII
text, never ``isdigit``, which accepts '²'), at most :data:`MAX_INT_DIGITS` digits. Text read from
user files is passed through :func:`escape` before it is printed with rich markup.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from surgkit.errors import DataFormatError

MAX_INT_DIGITS = 18  # fits int64; ids, frame numbers and counts never need more
_MISSING = object()


# --------------------------------------------------------------------------------------- files
def require_dir(path: Path, what: str) -> Path:
    if not Path(path).is_dir():
        raise DataFormatError(f"missing {what} folder", path=path)
    return Path(path)


def require_file(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        reason = "is a folder, expected a file" if path.is_dir() else f"missing {what}"
        raise DataFormatError(reason, path=path)
    return path


def read_bytes(path: str | Path, what: str = "file") -> bytes:
    path = require_file(Path(path), what)
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataFormatError(f"cannot read {what} ({e.strerror or e})", path=path) from None


def decode_text(data: bytes, path: str | Path) -> str:
    """UTF-8 (a byte-order mark is dropped); a bad byte is reported with its line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataFormatError(
            f"not UTF-8 text ({e.reason} at byte {e.start})", path=path, line=line
        ) from None


def read_text(path: str | Path, what: str = "file") -> str:
    """The text of a UTF-8 (or UTF-8-with-BOM) file."""
    return decode_text(read_bytes(path, what), path)


def read_text_lines(path: str | Path, what: str = "file") -> list[str]:
    """Lines of a UTF-8 text file, without line terminators."""
    return read_text(path, what).splitlines()


# ---------------------------------------------------------------------------------------- JSON
def _no_duplicate_keys(path: str | Path):
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise DataFormatError(f"duplicate key {repr(key)} in one JSON object", path=path)
            out[key] = value
        return out

    return hook


def loads_json(text: str, path: str | Path, *, allow_duplicate_keys: bool = False) -> Any:
    """Parse JSON text read from ``path`` (for messages)."""
    try:
        hook = None if allow_duplicate_keys else _no_duplicate_keys(path)
        return json.loads(text, object_pairs_hook=hook)
    except json.JSONDecodeError as e:
        raise DataFormatError(
            f"malformed or truncated JSON: {e.msg} (column {e.colno})", path=path, line=e.lineno
        ) from None
    except RecursionError:
        raise DataFormatError("JSON nested too deeply", path=path) from None
    except ValueError as e:  # int digit limit and friends
        if isinstance(e, DataFormatError):
            raise
        raise DataFormatError(f"unreadable JSON value ({str(e).splitlines()[0][:120]})", path=path) from None


def read_json(path: str | Path, what: str = "JSON file", *, allow_duplicate_keys: bool = False) -> Any:
    """Parse a JSON file; every failure is a :class:`DataFormatError` naming the file."""
    return loads_json(read_text(path, what), path, allow_duplicate_keys=allow_duplicate_keys)


def read_jsonl(path: str | Path, what: str = "JSON-lines file") -> list[tuple[int, Any]]:
    """(line number, value) of each non-blank line of a JSON-lines file."""
    out = []
    for i, text in enumerate(read_text_lines(path, what), start=1):
        if text.strip():
            try:
                out.append((i, loads_json(text, path)))
            except DataFormatError as e:
                raise DataFormatError(e.reason, path=path, line=i) from None
    return out


def key_path(parent: str, key: str | int) -> str:
    """``annotations`` + 3 -> ``annotations[3]``; ``meta`` + ``fps`` -> ``meta.fps``."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else str(key)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"string {repr(shown)}"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return f"{value!r}"


def _fail(path: str | Path, key: str, message: str, line: int | None = None) -> DataFormatError:
    where = f"{key}: " if key else ""
    return DataFormatError(f"{where}{message}", path=path, line=line)


def as_dict(value: Any, path: str | Path, key: str = "", line: int | None = None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, key, f"expected an object, got {_kind(value)}", line)
    return value


def as_list(value: Any, path: str | Path, key: str = "", line: int | None = None) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(path, key, f"expected a list, got {_kind(value)}", line)
    return value


def as_str(value: Any, path: str | Path, key: str = "", line: int | None = None) -> str:
    if not isinstance(value, str):
        raise _fail(path, key, f"expected a string, got {_kind(value)}", line)
    return value


def as_bool(value: Any, path: str | Path, key: str = "", line: int | None = None) -> bool:
    if not isinstance(value, bool):
        raise _fail(path, key, f"expected true or false, got {_kind(value)}", line)
    return value


def _range(value: float, lo: float | None, hi: float | None, path, key, line) -> None:
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        lo_t = "-inf" if lo is None else f"{lo:g}"
        hi_t = "inf" if hi is None else f"{hi:g}"
        raise _fail(path, key, f"{value:g} out of range [{lo_t}, {hi_t}]", line)


def as_int(
    value: Any,
    path: str | Path,
    key: str = "",
    line: int | None = None,
    *,
    lo: int | None = None,
    hi: int | None = None,
    allow_str: bool = False,
) -> int:
    """An integer: a JSON integer, a whole float (3.0), or with ``allow_str`` a decimal string."""
    if isinstance(value, str) and allow_str:
        value = parse_int(value, path, line, key or "value")
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(path, key, f"expected an integer, got {_kind(value)}", line)
    elif isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise _fail(path, key, f"expected an integer, got {value!r}", line)
        value = int(value)
    if abs(value) >= 10**MAX_INT_DIGITS:
        raise _fail(path, key, f"integer with more than {MAX_INT_DIGITS} digits", line)
    _range(value, lo, hi, path, key, line)
    return int(value)


def as_float(
    value: Any,
    path: str | Path,
    key: str = "",
    line: int | None = None,
    *,
    lo: float | None = None,
    hi: float | None = None,
    allow_str: bool = False,
    finite: bool = True,
) -> float:
    """A number (int or float, not true/false); NaN/Infinity refused unless ``finite=False``."""
    if isinstance(value, str) and allow_str:
        return parse_float(value, path, line, key or "value") if finite else float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(path, key, f"expected a number, got {_kind(value)}", line)
    try:
        out = float(value)
    except OverflowError:
        raise _fail(path, key, "number too large", line) from None
    if finite and not math.isfinite(out):
        raise _fail(path, key, f"non-finite number {value!r}", line)
    if math.isfinite(out):
        _range(out, lo, hi, path, key, line)
    return out


def get(obj: Any, key: str, path: str | Path, parent: str = "", default: Any = _MISSING) -> Any:
    """``obj[key]`` of a JSON object; a missing key (without ``default``) names its key path."""
    where = key_path(parent, key)
    obj = as_dict(obj, path, parent or "top level")
    if key not in obj:
        if default is _MISSING:
            raise _fail(path, where, "missing key")
        return default
    return obj[key]


# ------------------------------------------------------------------------------- text fields
def _int_text_ok(text: str) -> bool:
    body = text[1:] if text[:1] in "+-" else text
    return body.isascii() and body.isdecimal() and len(body) <= MAX_INT_DIGITS


def is_int_text(text: str) -> bool:
    """True for ASCII decimal integers with an optional sign ('12', '-3'); never '²' or '1_000'."""
    return _int_text_ok(text.strip())


def parse_int(text: str, path: str | Path, line: int | None, field: str) -> int:
    """A plain integer; '1.0' and '1e+00' are refused here (see :func:`parse_float_id`)."""
    t = text.strip()
    if not _int_text_ok(t):
        body = t[1:] if t[:1] in "+-" else t
        too_long = body.isascii() and body.isdecimal()
        shown = t if len(t) <= 40 else t[:37] + "..."
        raise DataFormatError(
            f"{field}: expected an integer, got {shown!r}" + (" (too many digits)" if too_long else ""),
            path=path,
            line=line,
        )
    return int(t)


def parse_float(text: str, path: str | Path, line: int | None, field: str) -> float:
    t = text.strip()
    shown = t if len(t) <= 40 else t[:37] + "..."
    if len(t) > 400 or "_" in t:
        raise DataFormatError(f"{field}: expected a number, got {repr(shown)}", path=path, line=line)
    try:
        value = float(t)
    except ValueError:
        raise DataFormatError(
            f"{field}: expected a number, got {repr(shown)}", path=path, line=line
        ) from None
    if not math.isfinite(value):
        raise DataFormatError(f"{field}: non-finite value {repr(shown)}", path=path, line=line)
    return value


def parse_float_id(text: str, path: str | Path, line: int | None, field: str = "id") -> int:
    """An integer id that may be written as a float, e.g. '1.000000000000000000e+00' (Endoscapes)."""
    value = parse_float(text, path, line, field)
    if value != int(value):
        raise DataFormatError(f"{field}: {text.strip()!r} is not a whole number", path=path, line=line)
    if abs(value) >= 10**MAX_INT_DIGITS:
        raise DataFormatError(f"{field}: {text.strip()!r} is too large", path=path, line=line)
    return int(value)


def check_range(value: float, lo: float, hi: float, path: str | Path, line: int | None, field: str) -> float:
    if not lo <= value <= hi:
        raise DataFormatError(f"{field} = {value:g} out of range [{lo:g}, {hi:g}]", path=path, line=line)
    return value


def lookup(name: str, names: Sequence[str], path: str | Path, line: int | None, what: str) -> int:
    """Index of ``name`` in ``names``; an unknown class is an error listing the valid ones."""
    try:
        return list(names).index(name)
    except ValueError:
        shown = ", ".join(names) if len(names) <= 20 else ", ".join(names[:20]) + ", ..."
        raise DataFormatError(
            f"unknown {what} {repr(name)} (expected one of: {shown})", path=path, line=line
        ) from None


def natural_key(text: str) -> tuple:
    """Sort key that orders 'video2' before 'video10' (ASCII digit runs only)."""
    return tuple(int(t) if i % 2 else t for i, t in enumerate(re.split(r"([0-9]+)", text)))


# ----------------------------------------------------------------------------- delimited text
def split_rows(
    path: str | Path, *, sep: str | None = "\t", header: bool = True, ncols: int | None = None
) -> tuple[list[str] | None, Iterator[tuple[int, list[str]]]]:
    """Header and (line number, fields) rows of a delimited text file; blank lines are ignored.

    ``sep=None`` splits on any run of whitespace. Every row must have ``ncols`` fields (default: as
    many as the header).
    """
    path = Path(path)
    lines = read_text_lines(path)
    head: list[str] | None = None
    start = 0
    if header:
        while start < len(lines) and not lines[start].strip():
            start += 1
        if start == len(lines):
            raise DataFormatError("empty file (expected a header line)", path=path)
        head = [h.strip() for h in (lines[start].split(sep) if sep else lines[start].split())]
        start += 1
    want = ncols if ncols is not None else (len(head) if head else None)

    def rows() -> Iterator[tuple[int, list[str]]]:
        for i in range(start, len(lines)):
            text = lines[i]
            if not text.strip():
                continue
            fields = text.rstrip("\r\n").split(sep) if sep else text.split()
            if want is not None and len(fields) != want:
                raise DataFormatError(f"expected {want} columns, found {len(fields)}", path=path, line=i + 1)
            yield i + 1, fields

    return head, rows()


def read_csv_dicts(
    path: str | Path, required: Sequence[str], delimiter: str = ","
) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row dict) of a CSV file with a header; checks required and duplicate columns,
    column counts, and turns the csv module's errors (NUL bytes, oversized fields) into one line."""
    path = Path(path)
    text = read_text(path, "CSV file")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        try:
            header = next(reader)
        except StopIteration:
            raise DataFormatError("empty CSV file (expected a header)", path=path) from None
        header = [h.strip() for h in header]
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes:
            raise DataFormatError(f"duplicate column(s) {', '.join(map(repr, dupes))}", path=path, line=1)
        missing = [c for c in required if c not in header]
        if missing:
            raise DataFormatError(
                f"missing column(s) {', '.join(missing)} (header has: {', '.join(header)[:200]})",
                path=path,
                line=1,
            )
        for fields in reader:
            line = reader.line_num
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                raise DataFormatError(
                    f"expected {len(header)} columns, found {len(fields)}", path=path, line=line
                )
            yield line, dict(zip(header, (f.strip() for f in fields), strict=True))
    except csv.Error as e:
        raise DataFormatError(f"malformed CSV ({e})", path=path, line=reader.line_num or None) from None


# ------------------------------------------------------------------------------------ output
def escape(text: object) -> str:
    """``text`` with rich markup escaped, for printing user-supplied text with a rich console."""
    from rich.markup import escape as _escape

    return _escape(str(text))
