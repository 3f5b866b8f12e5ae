"""Small validated-parsing helpers shared by the readers.

Every helper raises :class:`surgkit.errors.DataFormatError` naming the file and (1-based) line, so a
malformed dataset gives one clear message instead of a traceback from deep inside a reader.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from surgkit.errors import DataFormatError

VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataFormatError(f"missing {what} folder", path=path)
    return path


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataFormatError(f"missing {what}", path=path)
    return path


def read_text_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 (or UTF-8-with-BOM) text file, without line terminators."""
    require_file(path, "file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataFormatError(f"not UTF-8 text ({e.reason} at byte {e.start})", path=path) from None
    return text.splitlines()


def read_json(path: Path) -> Any:
    """Parse a JSON file; truncated or malformed JSON names the line and column."""
    require_file(path, "JSON file")
    try:
        with open(path, encoding="utf-8-sig") as fh:
            return json.load(fh)
    except json.JSONDecodeError as e:
        raise DataFormatError(
            f"malformed or truncated JSON: {e.msg} (column {e.colno})", path=path, line=e.lineno
        ) from None


def parse_int(text: str, path: Path, line: int | None, field: str) -> int:
    """A plain integer; '1.0' and '1e+00' are refused here (see :func:`parse_float_id`)."""
    try:
        return int(text.strip())
    except ValueError:
        raise DataFormatError(f"{field}: expected an integer, got {text!r}", path=path, line=line) from None


def parse_float(text: str, path: Path, line: int | None, field: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise DataFormatError(f"{field}: expected a number, got {text!r}", path=path, line=line) from None
    if not math.isfinite(value):
        raise DataFormatError(f"{field}: non-finite value {text!r}", path=path, line=line)
    return value


def parse_float_id(text: str, path: Path, line: int | None, field: str = "id") -> int:
    """An integer id that may be written as a float, e.g. '1.000000000000000000e+00' (Endoscapes)."""
    value = parse_float(text, path, line, field)
    if value != int(value):
        raise DataFormatError(f"{field}: {text!r} is not a whole number", path=path, line=line)
    return int(value)


def check_range(value: float, lo: float, hi: float, path: Path, line: int | None, field: str) -> float:
    if not lo <= value <= hi:
        raise DataFormatError(f"{field} = {value:g} out of range [{lo:g}, {hi:g}]", path=path, line=line)
    return value


def lookup(name: str, names: Sequence[str], path: Path, line: int | None, what: str) -> int:
    """Index of ``name`` in ``names``; an unknown class is an error listing the valid ones."""
    try:
        return list(names).index(name)
    except ValueError:
        shown = ", ".join(names) if len(names) <= 20 else ", ".join(names[:20]) + ", ..."
        raise DataFormatError(
            f"unknown {what} {name!r} (expected one of: {shown})", path=path, line=line
        ) from None


def split_rows(
    path: Path, *, sep: str | None = "\t", header: bool = True, ncols: int | None = None
) -> tuple[list[str] | None, Iterator[tuple[int, list[str]]]]:
    """Header and (line number, fields) rows of a delimited text file; blank lines are ignored.

    ``sep=None`` splits on any run of whitespace. Every row must have ``ncols`` fields (default: as
    many as the header).
    """
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
    path: Path, required: Sequence[str], delimiter: str = ","
) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row dict) of a CSV file with a header; checks required columns and column counts."""
    require_file(path, "CSV file")
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            raise DataFormatError("empty CSV file (expected a header)", path=path) from None
        header = [h.strip() for h in header]
        missing = [c for c in required if c not in header]
        if missing:
            raise DataFormatError(
                f"missing column(s) {', '.join(missing)} (header has: {', '.join(header)})", path=path, line=1
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


def natural_key(text: str) -> tuple:
    """Sort key that orders 'video2' before 'video10'."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text))


def find_media(folder: Path, stem: str, exts: Sequence[str] = VIDEO_EXTS) -> Path | None:
    """The file ``folder/stem.<ext>`` for the first existing extension, or a frame folder ``folder/stem``."""
    for ext in exts:
        cand = folder / f"{stem}{ext}"
        if cand.is_file():
            return cand
    cand = folder / stem
    if cand.is_dir():
        return cand
    return None


def list_images(folder: Path) -> list[Path]:
    """Image files of a frame folder in natural order."""
    return sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS), key=lambda p: natural_key(p.name)
    )
