"""Validated-parsing helpers of the readers: the hardened input layer plus media lookup.

Parsing lives once, in :mod:`surgkit.utils.inputs` (every helper raises
:class:`surgkit.errors.DataFormatError` naming the file and line or key); this module re-exports it
for the readers and adds the dataset media helpers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from surgkit.utils.inputs import (
    as_dict,
    as_float,
    as_int,
    as_list,
    as_str,
    check_range,
    get,
    is_int_text,
    key_path,
    lookup,
    natural_key,
    parse_float,
    parse_float_id,
    parse_int,
    read_csv_dicts,
    read_json,
    read_text,
    read_text_lines,
    require_dir,
    require_file,
    split_rows,
)

__all__ = [
    "IMAGE_EXTS",
    "VIDEO_EXTS",
    "as_dict",
    "as_float",
    "as_int",
    "as_list",
    "as_str",
    "check_range",
    "find_media",
    "get",
    "is_int_text",
    "key_path",
    "list_images",
    "lookup",
    "natural_key",
    "parse_float",
    "parse_float_id",
    "parse_int",
    "read_csv_dicts",
    "read_json",
    "read_text",
    "read_text_lines",
    "require_dir",
    "require_file",
    "split_rows",
]

VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")


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
