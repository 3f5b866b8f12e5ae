"""Importing (and exporting) other projects' reasoning data as surgkit records.

- **Surg-R1 / ms-swift JSONL** (``Eval_SurgR1`` data format, spec §1.1): one object per line with
  ``messages`` (the user turn holds an ``<image>`` placeholder, the assistant turn the answer),
  ``images`` (paths) and, for grounding, ``objects`` = ``{"ref": [names], "bbox": [[x1, y1, x2, y2]]}``
  in absolute pixels of the original image (the assistant turn is then the ``<bbox>`` placeholder).
  Lettered options in the question ("A. Preparation" lines) make an MCQ record whose answer is the
  letter's option; the task comes from the question (phase, action, triplet, CVS; else VQA), a box
  makes it ``tool_localization``.
- **Surgery-R1-style JSON** (Surgery-R1-54k was not released; this is the documented shape of its three
  kinds of pairs): a JSON array or JSONL of ``{"image", "question", "answer"}`` with optional ``bbox``
  (``--box-format vqla``: EndoVis-VQLA 1-based inclusive pixels, or ``pixel``/``norm``/``norm1000``),
  optional ``cot`` (a ``<think>…</think><answer>…</answer>`` chain or its think text) and optional
  ``type`` (vqa | grounding | cot). An answer among the 18 Surgical-VQLA classes makes a ``vqla``
  record; a box with another answer a ``grounding`` record; else ``vqa``. A chain given with the pair
  is validated against the record like a teacher chain and kept (source ``teacher``) only if valid.
- **Export to ms-swift JSONL** (:func:`to_swift`): records as Surg-R1 training lines (MCQ answers
  "D. Preparation", boxes as ``objects`` in pixels), to train with ms-swift instead of TRL.

Every line that cannot become a record is reported with file and line (and the import goes on).
Record ids are ``<dataset>/<line>`` (``<dataset>/<line>/<k>`` for several pairs per element).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from surgkit.errors import DataFormatError, SurgkitError
from surgkit.reasoning import boxes as bx
from surgkit.reasoning.records import BoxAnn, ImageRef, Record

OPTION_RE = re.compile(r"^\s*\(?([A-Z])[.)]\s+(.+?)\s*$", re.M)
LETTER_ANSWER_RE = re.compile(r"^\s*\(?([A-Z])\)?(?:[.):]|\s|$)")
TASK_WORDS = (
    ("phase", ("phase", "stage of the surgery")),
    ("triplet", ("triplet",)),
    ("cvs", ("critical view", "cvs")),
    ("action", ("action", "gesture", "doing")),
)
BOX_FORMATS = ("vqla", "pixel", "norm", "norm1000")


def _image(path_text: str, base: Path, root: Path | None) -> tuple[ImageRef, Path]:
    from surgkit.reasoning.builders import _rel, image_size

    p = Path(path_text)
    if not p.is_absolute():
        p = (root or base) / p
    if not p.is_file():
        raise SurgkitError(f"image not found: {p}")
    w, h = image_size(p)
    return ImageRef(_rel(p, root) if root else str(p), w, h), p


def _task_of(question: str) -> str:
    q = question.lower()
    return next((task for task, words in TASK_WORDS if any(w in q for w in words)), "vqa")


def _lines(path: Path) -> list[tuple[int, Any]]:
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataFormatError(f"invalid JSON ({e.msg})", path=path, line=e.lineno) from None
        return [(k + 1, item) for k, item in enumerate(data)]
    out = []
    for k, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append((k, json.loads(line)))
            except json.JSONDecodeError as e:
                out.append((k, DataFormatError(f"invalid JSON ({e.msg})", path=path, line=k)))
    return out


# ------------------------------------------------------------------------------------ ms-swift
def from_swift(path: str | Path, dataset: str = "surg-r1", split: str = "test", image_root=None):
    """Records of a Surg-R1 / ms-swift JSONL file; returns (records, errors)."""
    path = Path(path)
    records, errors = [], []
    for lineno, obj in _lines(path):
        try:
            if isinstance(obj, DataFormatError):
                raise obj
            records.append(_swift_record(obj, path, lineno, dataset, split, image_root))
        except DataFormatError as e:
            errors.append(e)
        except (SurgkitError, KeyError, TypeError, ValueError, IndexError) as e:
            errors.append(DataFormatError(str(e), path=path, line=lineno))
    return records, errors


def _swift_record(obj: dict, path: Path, lineno: int, dataset: str, split: str, root) -> Record:
    msgs = obj["messages"]
    user = next(m["content"] for m in msgs if m["role"] == "user")
    reply = next((m["content"] for m in msgs if m["role"] == "assistant"), None)
    images = obj.get("images") or []
    if not images:
        raise SurgkitError("no image")
    ref, img_path = _image(str(images[0]), path.parent, Path(root) if root else None)
    question = user.replace("<image>", "").strip()
    base = dict(
        id=f"{dataset}/{lineno}", dataset=dataset, split=split, video_id=img_path.parent.name, images=[ref]
    )
    objects = obj.get("objects") or {}
    if objects.get("bbox"):
        names = [str(n) for n in objects.get("ref") or []]
        boxes = []
        for k, b in enumerate(objects["bbox"]):
            box = bx.as_box(b)
            if not bx.inside_image(box, ref.width, ref.height):
                raise SurgkitError(f"bbox {list(b)} outside the {ref.width}x{ref.height} image")
            boxes.append(BoxAnn(names[k] if k < len(names) else names[0], box, "answer"))
        label = names[0] if names else "object"
        return Record(
            **base,
            task="tool_localization",
            question=question,
            answer=label,
            labels={"object": label},
            boxes=boxes,
            provenance={"file": path.name, "line": lineno, "format": "ms-swift"},
        )
    if reply is None or not str(reply).strip():
        raise SurgkitError("no assistant answer")
    options = [m.group(2) for m in OPTION_RE.finditer(question)]
    letters = [m.group(1) for m in OPTION_RE.finditer(question)]
    task = _task_of(question)
    if options and letters == [chr(65 + k) for k in range(len(options))]:
        m = LETTER_ANSWER_RE.match(str(reply))
        if not m or not 0 <= ord(m.group(1)) - 65 < len(options):
            raise SurgkitError(f"MCQ answer {reply!r} names no option")
        k = ord(m.group(1)) - 65
        stem = OPTION_RE.sub("", question).strip()
        return Record(
            **base,
            task=task,
            question=stem,
            answer=options[k],
            question_type="mcq",
            options=options,
            answer_index=k,
            provenance={"file": path.name, "line": lineno, "format": "ms-swift"},
        )
    return Record(
        **base,
        task=task,
        question=question,
        answer=str(reply).strip(),
        provenance={"file": path.name, "line": lineno, "format": "ms-swift"},
    )


def to_swift(records: list[Record], image_root=None) -> list[dict[str, Any]]:
    """Records as ms-swift / Surg-R1 JSONL objects (absolute image paths; boxes in original pixels)."""
    from surgkit.reasoning.render import answer_payload, question_text
    from surgkit.reasoning.scoring import BoxSettings

    out = []
    for r in records:
        paths = [str(Path(image_root or ".", im.path).resolve()) for im in r.images]
        item: dict[str, Any] = {"images": paths}
        user = "<image>" + question_text(r)
        boxes = r.answer_boxes()
        if r.task in ("tool_localization", "grounding") and boxes:
            item["objects"] = {
                "ref": [b.label for b in boxes],
                "bbox": [[round(v, 1) for v in b.bbox] for b in boxes],
            }
            reply = "<bbox>"
        else:
            reply = answer_payload(r, BoxSettings())
        item["messages"] = [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
        out.append(item)
    return out


# ------------------------------------------------------------------------------ Surgery-R1 style
def from_surgery_r1(
    path: str | Path,
    dataset: str = "surgery-r1",
    split: str = "train",
    image_root=None,
    box_format: str = "vqla",
):
    """Records of a Surgery-R1-style VQA/grounding/CoT JSON (module docstring); returns (records, errors)."""
    from surgkit.reasoning.cot import validate_chain
    from surgkit.reasoning.parsing import extract_think
    from surgkit.reasoning.statements import split_levels
    from surgkit.vocab import VQLA_ANSWERS

    if box_format not in BOX_FORMATS:
        raise SurgkitError(f"unknown box format '{box_format}' (choose from {', '.join(BOX_FORMATS)})")
    path = Path(path)
    records, errors = [], []
    for lineno, obj in _lines(path):
        try:
            if isinstance(obj, DataFormatError):
                raise obj
            image = obj.get("image") or obj.get("image_path")
            question = obj.get("question") or obj.get("query")
            answer = obj.get("answer") if obj.get("answer") is not None else obj.get("label")
            if not image or not question or answer is None:
                raise SurgkitError("needs image, question and answer")
            ref, img_path = _image(str(image), path.parent, Path(image_root) if image_root else None)
            box = None
            if obj.get("bbox") is not None or obj.get("box") is not None:
                box = _box(obj.get("bbox", obj.get("box")), box_format, ref)
            answer = str(answer).strip()
            vqla = answer in VQLA_ANSWERS
            task = "vqla" if vqla else ("grounding" if box is not None else "vqa")
            labels: dict[str, Any] = {}
            if vqla:
                labels["vqla_class"] = VQLA_ANSWERS.index(answer)
            m = re.search(r"(?:state of|where is|find)\s+(?:the\s+)?([A-Za-z_\-]+)", str(question), re.I)
            obj_name = m.group(1).lower() if m else (answer if task == "grounding" else None)
            if obj_name:
                labels["object"] = obj_name
            from surgkit.reasoning.builders import vqla_question_type

            rec = Record(
                id=f"{dataset}/{lineno}",
                dataset=dataset,
                split=split,
                video_id=img_path.parent.name,
                images=[ref],
                task=task,
                question=str(question),
                answer=answer,
                question_type=vqla_question_type(answer) if vqla else obj.get("type"),
                labels=labels,
                boxes=[BoxAnn(obj_name or answer, box, "answer")] if box is not None else [],
                provenance={"file": path.name, "line": lineno, "format": "surgery-r1"},
            )
            chain = obj.get("cot") or obj.get("reasoning") or obj.get("think")
            if chain:
                text = chain if "<think>" in chain else f"<think>{chain}</think><answer>{answer}</answer>"
                levels = split_levels(extract_think(text) or "")
                if levels and not validate_chain(text, rec, check_answer=False):
                    rec.reasoning = {f"level{k}": levels[k] for k in (1, 2, 3)}
                    rec.reasoning.update(source="teacher", verified=True)
                else:
                    rec.provenance["chain_rejected"] = True
            records.append(rec)
        except DataFormatError as e:
            errors.append(e)
        except (SurgkitError, TypeError, ValueError) as e:
            errors.append(DataFormatError(str(e), path=path, line=lineno))
    return records, errors


def _box(values, fmt: str, ref: ImageRef) -> bx.Box:
    raw = bx.as_box([float(v) for v in values])
    w, h = ref.width, ref.height
    box = bx.from_vqla_pixels(raw) if fmt == "vqla" else bx.from_frame(raw, fmt, w, h)
    if not bx.inside_image(box, w, h):
        raise SurgkitError(f"bbox {list(values)} ({fmt}) outside the {w}x{h} image")
    return box


FORMATS = {"swift": from_swift, "surgery-r1": from_surgery_r1}


def import_file(fmt: str, path, out, **kw) -> dict[str, Any]:
    """Import ``path`` in format ``fmt`` (swift | surgery-r1), write records JSONL to ``out``."""
    from surgkit.reasoning.records import write_jsonl

    if fmt not in FORMATS:
        raise SurgkitError(f"unknown import format '{fmt}' (choose from {', '.join(FORMATS)})")
    records, errors = FORMATS[fmt](path, **kw)
    n = write_jsonl(out, records)
    return {
        "written": n,
        "errors": [str(e) for e in errors],
        "chains": sum(r.reasoning is not None for r in records),
    }
