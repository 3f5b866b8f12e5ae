"""Shared parser of Surgical-VQLA label files (EndoVis18-VQLA, EndoVis17-VQLA).

Each non-empty line is ``question|answer|x1, y1, x2, y2`` (spec metrics_formats.md §7.8): the answer
is one of the 18 classes of ``surgkit.vocab.VQLA_ANSWERS``; the box is integer pixels, 1-based
inclusive, of the object the answer refers to (spaces in the box are ignored).
"""

from __future__ import annotations

from pathlib import Path

from surgkit.data._parse import lookup, parse_int, read_text_lines
from surgkit.data.model import VQARecord
from surgkit.errors import DataFormatError
from surgkit.vocab import VQLA_ANSWERS

IMAGE_SIZE = (1280, 1024)  # width, height used by Surgical-VQLA to normalise the boxes


def read_label_file(path: Path, video_id: str, frame: str, image: Path | None) -> list[VQARecord]:
    records = []
    for i, text in enumerate(read_text_lines(path), start=1):
        if not text.strip():
            continue
        fields = text.split("|")
        if len(fields) != 3:
            raise DataFormatError(
                f"expected 'question|answer|x1, y1, x2, y2' (3 fields), found {len(fields)}",
                path=path,
                line=i,
            )
        question, answer, box_text = (f.strip() for f in fields)
        bad = next((c for c in text if not c.isprintable() and c != "\t"), None)
        if bad is not None:
            raise DataFormatError(f"control character U+{ord(bad):04X} in the text", path=path, line=i)
        answer_id = lookup(answer, VQLA_ANSWERS, path, i, "VQLA answer")
        coords = box_text.replace(" ", "").split(",")
        if len(coords) != 4:
            raise DataFormatError(f"box must have 4 integers, got {box_text!r}", path=path, line=i)
        x1, y1, x2, y2 = (parse_int(c, path, i, "box") for c in coords)
        if not (0 <= x1 <= x2 and 0 <= y1 <= y2):
            raise DataFormatError(
                f"box ({x1}, {y1}, {x2}, {y2}) has x2 < x1, y2 < y1 or a negative corner", path=path, line=i
            )
        if x2 > IMAGE_SIZE[0] or y2 > IMAGE_SIZE[1]:
            raise DataFormatError(
                f"box ({x1}, {y1}, {x2}, {y2}) lies outside the {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} frame "
                "(boxes are in EndoVis' 1280x1024 pixel convention)",
                path=path,
                line=i,
            )
        records.append(
            VQARecord(video_id, frame, question, answer, answer_id, (x1, y1, x2, y2), image, {"line": i})
        )
    if not records:
        raise DataFormatError("empty QA file (no question|answer|box lines)", path=path)
    return records
