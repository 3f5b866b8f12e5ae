"""The unified reasoning record (spec reasoning §1.2): one JSONL line = one question about one frame.

Boxes are stored in one internal frame only (absolute pixel xyxy, 0-based, x2/y2 exclusive, in the
stored image; see :mod:`surgkit.reasoning.boxes`). Every rendering of a record (prompt, target text,
chain of thought) is a pure function of the record, never stored as the source of truth; the only
chain stored is ``reasoning`` (with its ``source`` and ``verified`` flag), used by Stage 2/4 SFT.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from surgkit.errors import DataFormatError, SurgkitError
from surgkit.reasoning.boxes import as_box, inside_image
from surgkit.utils.inputs import loads_json
from surgkit.utils.io import atomic_write

SCHEMA = "surgkit-reasoning/1"
TASKS = (
    "vqa",
    "vqla",
    "grounding",
    "phase",
    "step",
    "action",
    "triplet",
    "cvs",
    "tool_presence",
    "tool_localization",
)
BOX_TASKS = ("vqla", "grounding", "tool_localization")
ROLES = ("answer", "context")
REASONING_SOURCES = ("template", "teacher", "self")


@dataclasses.dataclass
class ImageRef:
    """An image of the record; ``path`` relative to a data root (or absolute)."""

    path: str
    width: int
    height: int


@dataclasses.dataclass
class BoxAnn:
    """A labelled box in the internal pixel frame; ``role`` = 'answer' or 'context'."""

    label: str
    bbox: tuple[float, float, float, float]
    role: str = "context"


@dataclasses.dataclass
class Record:
    """One question about one frame (spec §1.2). See the module docstring for the box frame."""

    id: str
    dataset: str
    split: str
    video_id: str
    images: list[ImageRef]
    task: str
    question: str
    answer: str
    frame_index: int | None = None
    timestamp_s: float | None = None
    question_type: str | None = None
    options: list[str] | None = None
    answer_index: int | None = None
    answer_aliases: list[str] = dataclasses.field(default_factory=list)
    labels: dict[str, Any] = dataclasses.field(default_factory=dict)
    boxes: list[BoxAnn] = dataclasses.field(default_factory=list)
    reasoning: dict[str, Any] | None = None
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)

    # ------------------------------------------------------------------ helpers
    @property
    def image(self) -> ImageRef:
        return self.images[0]

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the first image: the frame every box is in."""
        return self.images[0].width, self.images[0].height

    def answer_boxes(self) -> list[BoxAnn]:
        return [b for b in self.boxes if b.role == "answer"]

    def answer_box(self) -> tuple[float, float, float, float] | None:
        """The first answer box, or None."""
        boxes = self.answer_boxes()
        return boxes[0].bbox if boxes else None

    def seed(self, salt: str = "") -> int:
        """A stable integer from the record id (template variants, option order)."""
        return int.from_bytes(hashlib.sha256(f"{self.id}|{salt}".encode()).digest()[:8], "big")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (None-valued optional fields dropped)."""
        out = dataclasses.asdict(self)
        out["boxes"] = [
            {"label": b.label, "bbox": [float(v) for v in b.bbox], "role": b.role} for b in self.boxes
        ]
        return {k: v for k, v in out.items() if k == "labels" or (v is not None and v != {})}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Record:
        """Parse and validate; raises :class:`SurgkitError` naming the bad field."""
        return _record_from_dict(d)


def _require(d: dict[str, Any], key: str, typ: type | tuple[type, ...]) -> Any:
    if key not in d:
        raise SurgkitError(f"missing field '{key}'")
    if not isinstance(d[key], typ):
        raise SurgkitError(
            f"field '{key}' must be {getattr(typ, '__name__', typ)}, got {type(d[key]).__name__}"
        )
    return d[key]


def _record_from_dict(d: dict[str, Any]) -> Record:
    if not isinstance(d, dict):
        raise SurgkitError(f"a record must be a JSON object, got {type(d).__name__}")
    task = _require(d, "task", str)
    if task not in TASKS:
        raise SurgkitError(f"unknown task '{task}' (choose from {', '.join(TASKS)})")
    images = []
    for k, im in enumerate(_require(d, "images", list)):
        if not isinstance(im, dict) or not {"path", "width", "height"} <= set(im):
            raise SurgkitError(f"images[{k}] needs path, width and height")
        if int(im["width"]) <= 0 or int(im["height"]) <= 0:
            raise SurgkitError(f"images[{k}] has a non-positive size {im['width']}x{im['height']}")
        images.append(ImageRef(str(im["path"]), int(im["width"]), int(im["height"])))
    if not images:
        raise SurgkitError("a record needs at least one image")
    w, h = images[0].width, images[0].height
    boxes = []
    for k, b in enumerate(d.get("boxes") or []):
        if not isinstance(b, dict) or "bbox" not in b or "label" not in b:
            raise SurgkitError(f"boxes[{k}] needs label and bbox")
        bbox = as_box(b["bbox"])
        if not inside_image(bbox, w, h):
            raise SurgkitError(f"boxes[{k}] {list(bbox)} is degenerate or outside the {w}x{h} image")
        role = b.get("role", "context")
        if role not in ROLES:
            raise SurgkitError(f"boxes[{k}] has unknown role '{role}' (answer or context)")
        boxes.append(BoxAnn(str(b["label"]), bbox, role))
    options = d.get("options")
    answer_index = d.get("answer_index")
    if options is not None and answer_index is not None and not 0 <= int(answer_index) < len(options):
        raise SurgkitError(f"answer_index {answer_index} outside the {len(options)} options")
    reasoning = d.get("reasoning")
    if reasoning is not None and reasoning.get("source", "template") not in REASONING_SOURCES:
        raise SurgkitError(f"reasoning.source must be one of {', '.join(REASONING_SOURCES)}")
    return Record(
        id=_require(d, "id", str),
        dataset=_require(d, "dataset", str),
        split=str(d.get("split", "unspecified")),
        video_id=str(d.get("video_id", "")),
        images=images,
        task=task,
        question=_require(d, "question", str),
        answer=_require(d, "answer", str),
        frame_index=None if d.get("frame_index") is None else int(d["frame_index"]),
        timestamp_s=None if d.get("timestamp_s") is None else float(d["timestamp_s"]),
        question_type=d.get("question_type"),
        options=None if options is None else [str(o) for o in options],
        answer_index=None if answer_index is None else int(answer_index),
        answer_aliases=[str(a) for a in d.get("answer_aliases") or []],
        labels=dict(d.get("labels") or {}),
        boxes=boxes,
        reasoning=reasoning,
        provenance=dict(d.get("provenance") or {}),
    )


# ------------------------------------------------------------------------------------- JSONL I/O
def write_jsonl(path: str | Path, records: Iterable[Record | dict[str, Any]]) -> int:
    """Atomically write records, one JSON object per line. Returns the number written."""
    n = 0
    with atomic_write(path, "w", encoding="utf-8", newline="\n") as fh:
        for r in records:
            d = r.to_dict() if isinstance(r, Record) else r
            fh.write(json.dumps(d, ensure_ascii=False, sort_keys=False) + "\n")
            n += 1
    return n


def iter_jsonl(
    path: str | Path, strict: bool = True
) -> Iterator[tuple[int, dict[str, Any] | DataFormatError]]:
    """(line number, object) for each non-empty line.

    A malformed line raises :class:`DataFormatError` naming file and line; with ``strict=False`` the
    error is yielded in place of the object and reading goes on.
    """
    path = Path(path)
    if not path.is_file():
        raise SurgkitError(f"{path}: no such file")
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
                if not line.strip():
                    continue
                yield lineno, loads_json(line, path)
            except (UnicodeDecodeError, DataFormatError) as e:
                reason = e.reason if isinstance(e, DataFormatError) else f"not UTF-8 text ({e.reason})"
                err = DataFormatError(reason, path=path, line=lineno)
                if strict:
                    raise err from None
                yield lineno, err


def read_records(path: str | Path, errors: list[DataFormatError] | None = None) -> list[Record]:
    """Read a records JSONL file.

    A malformed line raises :class:`DataFormatError` ("file:line: reason"), unless ``errors`` is a
    list: then the error is appended there and reading goes on with the next line.
    """
    out: list[Record] = []
    seen: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path, strict=errors is None):
        try:
            if isinstance(obj, DataFormatError):
                raise obj
            rec = Record.from_dict(obj)
            if rec.id in seen:
                raise SurgkitError(f"duplicate id '{rec.id}' (first on line {seen[rec.id]})")
            seen[rec.id] = lineno
        except DataFormatError as e:
            if errors is None:
                raise
            errors.append(e)
            continue
        except SurgkitError as e:
            err = DataFormatError(str(e), path=path, line=lineno)
            if errors is None:
                raise err from None
            errors.append(err)
            continue
        out.append(rec)
    return out


def resolve_image(record: Record, root: str | Path | None, index: int = 0) -> Path:
    """Absolute path of an image of ``record`` under ``root``; a missing file is a clear error."""
    p = Path(record.images[index].path)
    if not p.is_absolute() and root is not None:
        p = Path(root) / p
    if not p.is_file():
        raise SurgkitError(f"record '{record.id}': image not found: {p}")
    return p
