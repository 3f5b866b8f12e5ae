"""Records from the synthetic world: the one place that knows how the world is laid out.

The world (``surgkit synth``) writes the native layouts of the real datasets plus a ``world.json``
manifest and its own VQA file (``vlm/vqa.jsonl``). This adapter turns them into records with the same
builders as real data:

- ``vlm/vqa.jsonl`` (the world's per-frame VQA: phase, instruments, presence, count, verb, target,
  location with box, CVS yes/no). Questions of one frame are grouped so each record carries the frame's
  labels: tools, phase, per-instrument boxes and the triplets ``<instrument, verb, target>`` that the
  verb and target answers state — enough for all three CoT levels. Splits come from the file.
- EndoVis18-VQLA (``seq_<n>/vqla/label``): boxes written in the reference 1280x1024 frame (as the
  manifest says) are scaled to the images; train/test sequences from the manifest.
- CholecT50 (``labels/VID*.json``) and Endoscapes (``*/annotation*coco*.json``) through their readers.
- Cholec80 needs decoding the videos; its phases are already in ``vlm/vqa.jsonl``, so it is only built
  with ``include_cholec80=True``.

Record ids and ``dataset`` are prefixed with ``synth-`` so they never mix with real data. A folder
without a manifest is searched for native layouts by their marker files.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from surgkit.errors import DataFormatError, SurgkitError

MARKERS = {
    "endovis18_vqla": "seq_*/vqla/label",
    "cholect50": "labels/VID*.json",
    "cholec80": "phase_annotations/*-phase.txt",
    "endoscapes": "*/annotation*coco*.json",
    "copesd": "copesd.json",
    "cholec80_boxes": "cholec80_boxes.csv",
}
VLM_TASKS = {
    "phase": ("phase", None),
    "instruments": ("tool_presence", None),
    "presence": ("vqa", "yesno"),
    "count": ("vqa", "count"),
    "verb": ("vqa", "verb"),
    "target": ("vqa", "target"),
    "location": ("vqla", "location"),
    "cvs": ("vqa", "yesno"),
}


def find_layouts(world: Path, max_depth: int = 3) -> dict[str, Path]:
    """{source: dataset root} for every native layout found under ``world`` (shallowest first)."""
    found: dict[str, Path] = {}
    candidates = [world] + sorted(
        p for d in range(1, max_depth + 1) for p in world.glob("/".join(["*"] * d)) if p.is_dir()
    )
    for folder in candidates:
        for source, pattern in MARKERS.items():
            if source not in found and any(folder.glob(pattern)):
                found[source] = folder
    return found


def _object_of(question: str) -> str | None:
    import re

    m = re.search(r"\b(?:the|a|an)\s+([a-z_]+)\b", question.lower())
    return m.group(1) if m else None


def build_from_vlm_jsonl(path: Path, world: Path, report) -> None:
    """Records from the world's ``vlm/vqa.jsonl`` (see module docstring)."""
    from surgkit.reasoning.builders import image_size, tools_answer
    from surgkit.reasoning.records import BoxAnn, ImageRef, Record, iter_jsonl

    frames: dict[str, list[tuple[int, dict]]] = defaultdict(list)
    for lineno, row in iter_jsonl(path):
        if not isinstance(row, dict) or not {"image", "question", "answer", "answer_type"} <= set(row):
            raise DataFormatError("expected image, question, answer and answer_type", path=path, line=lineno)
        frames[row["image"]].append((lineno, row))
    base_dir = path.parent
    for image, rows in frames.items():
        img_path = base_dir / image
        if not img_path.is_file():
            report.skip(image, "frame image missing")
            continue
        w, h = image_size(img_path)
        labels, instances = _frame_labels(rows, w, h)
        ctx = [BoxAnn(obj, box, "context") for (obj, _), box in instances.items() if box is not None]
        rel = str(img_path.resolve().relative_to(world.resolve()))
        for lineno, row in rows:
            task, qtype = VLM_TASKS.get(row["answer_type"], ("vqa", row["answer_type"]))
            obj = _object_of(row["question"])
            rec_labels = dict(labels, object=obj) if obj else dict(labels)
            answer = row["answer"]
            if task == "tool_presence":
                answer = tools_answer(labels["tools"])
            own = []
            if task == "vqla":
                box = instances.get((obj, _box_key(row.get("box"))))
                if box is None:
                    report.skip(f"{image}:{lineno}", "location question without a valid box")
                    continue
                own = [BoxAnn(obj, box, "answer")]
            report.records.append(
                Record(
                    id=f"vlm/{Path(image).stem}/{lineno}",
                    dataset="vlm",
                    split=str(row.get("split", "unspecified")),
                    video_id=str(row.get("video", "")),
                    images=[ImageRef(rel, w, h)],
                    task=task,
                    question=row["question"],
                    answer=answer,
                    frame_index=row.get("frame"),
                    question_type=qtype,
                    labels=rec_labels,
                    boxes=own + [b for b in ctx if not own or b.bbox != own[0].bbox],
                    provenance={"file": "vlm/vqa.jsonl", "line": lineno},
                )
            )


def _box_key(box) -> tuple | None:
    return tuple(round(float(v), 4) for v in box) if box else None


def _frame_labels(rows: list[tuple[int, dict]], w: int, h: int) -> tuple[dict, dict]:
    """Frame labels (phase, tools, triplets) and its instrument instances {(name, box key): pixel box}.

    Verb/target/location rows of one instrument instance share its box, so two graspers in one frame
    stay two instances with their own verb, target and box (keying by name alone mixed them up).
    """
    from surgkit.reasoning import boxes as bx
    from surgkit.reasoning.lexicon import ALL_INSTRUMENTS

    labels: dict = {"tools": [], "triplets": []}
    verbs, targets, instances = {}, {}, {}
    for _, row in rows:
        t, obj = row["answer_type"], _object_of(row["question"])
        if t == "phase":
            labels["phase"] = row["answer"]
        elif t == "instruments":
            labels["tools"] = [] if row["answer"] == "none" else [x.strip() for x in row["answer"].split(",")]
        if obj not in ALL_INSTRUMENTS or t not in ("verb", "target", "location"):
            continue
        key = (obj, _box_key(row.get("box")))
        if t == "verb":
            verbs[key] = row["answer"]
        elif t == "target":
            targets[key] = row["answer"]
        box = None
        if row.get("box"):
            box = bx.clip_box(bx.from_frame(tuple(row["box"]), "norm", w, h), w, h)
            box = box if bx.is_valid(box) else None
        instances.setdefault(key, box)
    triplets = []
    for key, verb in verbs.items():
        trip = {"instrument": key[0], "verb": verb, "target": targets.get(key, "null_target")}
        if trip not in triplets:
            triplets.append(trip)
    labels["triplets"] = triplets
    return labels, instances


def _manifest(world: Path) -> dict:
    p = world / "world.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def build_from_world(world: str | Path, stride: int = 1, include_cholec80: bool = False):
    """One :class:`BuildReport` with the records of every source the world wrote (ids ``synth-…``)."""
    from surgkit.reasoning.builders import BuildReport, build
    from surgkit.reasoning.records import ImageRef

    world = Path(world)
    manifest = _manifest(world).get("layouts", {})
    layouts = find_layouts(world)
    if not include_cholec80:
        layouts.pop("cholec80", None)
    vlm = world / manifest.get("vlm", {}).get("path", "vlm") / "vqa.jsonl"
    if not layouts and not vlm.is_file():
        raise SurgkitError(f"{world}: no native dataset layout found (expected one of {', '.join(MARKERS)})")
    report = BuildReport("synth")
    if vlm.is_file():
        build_from_vlm_jsonl(vlm, world, report)
    vqla_info = manifest.get("vqla", {})
    for source, root in layouts.items():
        kw = {}
        if source == "endovis18_vqla" and "1280x1024" in str(vqla_info.get("box_convention", "")):
            kw["vqla_box_size"] = (1280, 1024)
        sub = build(source, root, stride=stride, frames_dir=world / "surgkit_frames", **kw)
        rel = root.resolve().relative_to(world.resolve())
        if source == "endovis18_vqla" and vqla_info.get("test_sequences"):
            test = {f"seq_{n}" for n in vqla_info["test_sequences"]}
            for r in sub.records:
                r.split = "test" if r.video_id in test else "train"
            sub.notes.append("train/test sequences from world.json")
        for r in sub.records:
            r.images = [  # new objects: builders may share one image list between a frame's records
                ImageRef(im.path if Path(im.path).is_absolute() else str(rel / im.path), im.width, im.height)
                for im in r.images
            ]
            r.provenance["world_layout"] = str(rel)
        report.records += sub.records
        report.skipped += [(f"{source}:{item}", why) for item, why in sub.skipped]
        report.notes += [f"{source} ({rel}): {n}" for n in sub.notes]
    splits = world_splits(world)
    if splits:
        moved = 0
        for r in report.records:
            new = splits.get(world_video(r.video_id))
            if new is not None and new != r.split:
                r.split, moved = new, moved + 1
        report.notes.append(
            f"splits by world video (world.json splits.lap): {moved} records moved -- the native layouts are "
            "cut from the same videos, so a dataset's own split (e.g. CholecT50's challenge split) would put "
            "test-video frames into training"
        )
    for r in report.records:
        r.id = f"synth-{r.id}"
        r.dataset = f"synth-{r.dataset}"
    return report


def world_video(video_id: str) -> str | None:
    """The world video a record's video id names: 'video06', 'seq_6', 'VID06' and '6' -> 'video06'."""
    import re

    m = re.search(r"(\d+)$", str(video_id))
    return f"video{int(m.group(1)):02d}" if m else None


def world_splits(world: Path) -> dict[str, str]:
    """{video name: split} of the world's laparoscopic videos (``world.json`` ``splits.lap``)."""
    lap = (_manifest(world).get("splits") or {}).get("lap") or {}
    return {v: split for split, videos in lap.items() for v in videos}
