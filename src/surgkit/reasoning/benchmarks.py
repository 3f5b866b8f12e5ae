"""Records for the remaining Arena benchmarks: action, tool localisation and multiple choice.

- **CoPESD** (:mod:`surgkit.data.copesd`, LLaVA-style motion instructions with normalised boxes): every
  tool named in an answer ("Move the Grasper[x1, y1, x2, y2] to the gallbladder and retract it") gives a
  ``tool_localization`` record ("Where is the grasper?", answer box = its box) and an ``action`` record
  ("Which action is the grasper performing?", answer = the verb). The instruction itself is never in
  the question (it states the action). Labels carry the tools and the ⟨tool, verb, target⟩ relations
  the answer states, with every tool box as context, so chains have all three levels.
- **Cholec80-Boxes** (:mod:`surgkit.data.cholec80_boxes`, 1-Hz tool boxes on extracted frames): one
  ``tool_localization`` record per box (a tool present twice gets the question once, both boxes as
  answers -- scored by Hungarian matching).
- **Multiple choice** (:func:`to_mcq`): any closed-vocabulary record (phase, action, VQLA class, …) as a
  Surg-R1-style question with ``k`` lettered options, the right one among ``k-1`` others drawn from the
  vocabulary, the order a seeded shuffle of the record id (stored, never re-drawn).
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections import defaultdict
from pathlib import Path

from surgkit.reasoning import boxes as bx
from surgkit.reasoning.records import BoxAnn, ImageRef, Record

ACTION_RE = re.compile(r"move the (\w[\w ]*?)\s*(?:\[[^\]]*\])?\s+to the ([\w ]+?) and (\w+) it", re.I)
Q_WHERE = "Where is the {tool}? Give its bounding box."
Q_ACTION = "Which action is the {tool} performing?"


def _size(path: Path) -> tuple[int, int]:
    from surgkit.reasoning.builders import image_size

    return image_size(path)


def from_copesd(ds, name: str, root: Path, report) -> None:
    """Tool-localisation and action records from a CoPESD dataset (see the module docstring)."""
    from surgkit.reasoning.builders import _rel

    for k, qa in enumerate(ds.vqa):
        image = qa.image
        if image is None or not Path(image).is_file():
            report.skip(f"{qa.video_id}/{qa.frame}", "image file missing")
            continue
        w, h = _size(Path(image))
        tools: dict[str, list[bx.Box]] = defaultdict(list)
        for tool, b in qa.extra.get("boxes", []):
            box = bx.clip_box(bx.from_frame(tuple(b), "norm", w, h), w, h)
            if bx.is_valid(box):
                tools[tool.lower()].append(box)
        relations = []
        for m in ACTION_RE.finditer(qa.answer):
            tool, target, verb = (
                m.group(1).split()[-1].lower(),
                m.group(2).strip().lower().replace(" ", "_"),
                m.group(3).lower(),
            )
            relations.append({"instrument": tool, "verb": verb, "target": target})
        labels = {"tools": sorted(tools), "triplets": relations}
        ctx = [BoxAnn(t, b, "context") for t, bs in tools.items() for b in bs]
        base = dict(
            dataset=name,
            split="unspecified",
            video_id=qa.video_id,
            images=[ImageRef(_rel(Path(image), root), w, h)],
            frame_index=int(qa.frame) if str(qa.frame).isdigit() else None,
            provenance={"element": qa.extra.get("element", k), "instruction": qa.question},
        )
        rid = f"{name}/{qa.video_id}/{qa.frame}/{k}"
        for tool, bs in sorted(tools.items()):
            own = [BoxAnn(tool, b, "answer") for b in bs]
            report.records.append(
                Record(
                    id=f"{rid}/where-{tool}",
                    task="tool_localization",
                    question=Q_WHERE.format(tool=tool),
                    answer=tool,
                    labels={**labels, "object": tool},
                    boxes=own + [c for c in ctx if c.label != tool],
                    **base,
                )
            )
        verbs: dict[str, set[str]] = defaultdict(set)
        for rel in relations:
            verbs[rel["instrument"]].add(rel["verb"])
        asked = set()
        for rel in relations:
            if rel["instrument"] in asked:
                continue  # one question per tool
            asked.add(rel["instrument"])
            if rel["instrument"] not in tools or len(verbs[rel["instrument"]]) != 1:
                report.skip(f"{rid}/{rel['instrument']}", "tool without a box, or with several actions")
                continue
            report.records.append(
                Record(
                    id=f"{rid}/action-{rel['instrument']}",
                    task="action",
                    question=Q_ACTION.format(tool=rel["instrument"]),
                    answer=rel["verb"],
                    labels={**labels, "object": rel["instrument"], "action": rel["verb"]},
                    boxes=ctx,
                    **base,
                )
            )


def from_cholec80_boxes(ds, name: str, root: Path, report) -> None:
    """Tool-localisation records from Cholec80-Boxes (frames from ``<root>/<Dir>/``)."""
    from surgkit.reasoning.builders import _rel

    frames: dict[tuple[str, int], list] = defaultdict(list)
    for b in ds.boxes:
        frames[(b.video_id, b.frame)].append(b)
    for (vid, frame), found in sorted(frames.items()):
        path = (ds.videos[vid].extra.get("frames") or {}).get(frame) if vid in ds.videos else None
        if path is None or not Path(path).is_file():
            report.skip(f"{vid}/{frame}", "frame image missing")
            continue
        w, h = _size(Path(path))
        tools: dict[str, list[bx.Box]] = defaultdict(list)
        for b in found:
            x1, y1, x2, y2 = b.xyxy
            box = bx.clip_box(
                (x1 * w, y1 * h, x2 * w, y2 * h) if b.unit == "normalized" else (x1, y1, x2, y2), w, h
            )
            if bx.is_valid(box):
                tools[b.label.lower()].append(box)
            else:
                report.skip(f"{vid}/{frame}: {b.label}", f"box {b.xywh} outside the {w}x{h} frame")
        ctx = [BoxAnn(t, box, "context") for t, bs in tools.items() for box in bs]
        for tool, bs in sorted(tools.items()):
            report.records.append(
                Record(
                    id=f"{name}/{vid}/{frame:06d}/where-{tool}",
                    dataset=name,
                    split="unspecified",
                    video_id=vid,
                    images=[ImageRef(_rel(Path(path), root), w, h)],
                    task="tool_localization",
                    question=Q_WHERE.format(tool=tool),
                    answer=tool,
                    frame_index=frame,
                    labels={"tools": sorted(tools), "object": tool},
                    boxes=[BoxAnn(tool, b, "answer") for b in bs] + [c for c in ctx if c.label != tool],
                    provenance={"frame": frame},
                )
            )


def to_mcq(rec: Record, vocab: list[str], k: int = 4) -> Record:
    """A multiple-choice copy of ``rec``: its answer among ``k-1`` other vocabulary entries, shuffled by a
    seed of the record id; id suffixed ``/mcq``; the question asks for a letter (render adds the options)."""
    others = [v for v in vocab if v != rec.answer]
    rng = random.Random(rec.seed("mcq"))
    options = rng.sample(others, min(k - 1, len(others))) + [rec.answer]
    rng.shuffle(options)
    new = dataclasses.replace(rec, id=f"{rec.id}/mcq", question_type="mcq", options=options)
    new.answer_index = options.index(rec.answer)
    return new


def mcq_records(
    records: list[Record], tasks: tuple[str, ...] = ("phase", "action"), k: int = 4
) -> list[Record]:
    """MCQ copies of the records of ``tasks``; the vocabulary of a (dataset, task) is its answers."""
    vocab: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in records:
        if r.task in tasks and not r.options:
            vocab[(r.dataset, r.task)].add(r.answer)
    out = []
    for r in records:
        v = sorted(vocab.get((r.dataset, r.task), ()))
        if r.task in tasks and not r.options and len(v) >= 2:
            out.append(to_mcq(r, v, k))
    return out
