"""Record builders: dataset readers (``surgkit.data``) and the synthetic world -> unified records.

Each builder takes the :class:`surgkit.data.model.Dataset` a reader returns and emits records of
spec reasoning §1.2. Nothing is dropped silently: every item not turned into a record is listed in
the returned :class:`BuildReport` with its reason (missing image, box outside the image, …).

Questions per source (answers are canonical vocabulary names):

- EndoVis18/17-VQLA: every QA line -> one ``vqla`` record (question type organ/state/location from
  the answer class); the other QA boxes of the frame become ``context`` boxes and the frame's states
  and organ become labels, so the chain can use them.
- CholecT50: per sampled frame one ``triplet``, one ``phase`` and one ``tool_presence`` record.
- Cholec80: per sampled second (``stride_s``) one ``phase`` and one ``tool_presence`` record; the
  frames are decoded and written as PNG under ``frames_dir``.
- Endoscapes: per CVS frame one ``cvs`` record (criteria binarised at >= 0.5, the mean of raters; C1-C3 in
  the Endoscapes numbering: two structures, hepatocystic triangle, cystic plate -- mapped by name) and
  one ``grounding`` record per annotated anatomy box.
- CoPESD and Cholec80-Boxes: action and tool-localisation records (:mod:`surgkit.reasoning.benchmarks`).
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from surgkit.errors import SurgkitError
from surgkit.reasoning import boxes as bx
from surgkit.reasoning.lexicon import ALL_INSTRUMENTS, CVS_NUMBERING, TISSUES
from surgkit.reasoning.records import BoxAnn, ImageRef, Record
from surgkit.vocab import (
    CHOLEC80_PHASES,
    CHOLEC80_TOOLS,
    CVS_CRITERIA,
    INSTRUMENTS,
    TARGETS,
    TRIPLET_COMPONENTS,
    VERBS,
)

SOURCES = (
    "endovis18_vqla",
    "endovis17_vqla",
    "cholect50",
    "cholec80",
    "endoscapes",
    "copesd",
    "cholec80_boxes",
    "synth",
)
ENDOVIS18_TRAIN = {2, 3, 4, 6, 7, 9, 10, 11, 12, 14, 15}
CHOLECT50_CHALLENGE = {"val": {5, 18, 36, 65, 74}, "test": {92, 96, 103, 110, 111}}
QUESTION_OBJECT_RE = re.compile(r"(?:state of|where is|where's)\s+(?:the\s+)?([A-Za-z_\-]+)", re.IGNORECASE)
Q_PHASE = "Which surgical phase is being performed in this laparoscopic cholecystectomy frame?"
Q_TRIPLET = "Which instrument, verb, target triplets are visible? Answer as 'instrument,verb,target; ...'."
Q_TOOLS = "Which surgical instruments are visible? List them separated by commas, or answer none."
Q_CVS = (
    "Assess the critical view of safety: C1 two tubular structures entering the gallbladder, C2 "
    "hepatocystic triangle cleared, C3 lower gallbladder separated from the cystic plate. Answer as "
    "'C1 yes/no, C2 yes/no, C3 yes/no'."
)


@dataclasses.dataclass
class BuildReport:
    """What a builder made and what it left out (with reasons)."""

    source: str
    records: list[Record] = dataclasses.field(default_factory=list)
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def skip(self, item: str, reason: str) -> None:
        self.skipped.append((item, reason))

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for r in self.records:
            out[r.task] += 1
        return dict(out)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image header (PIL reads only the header)."""
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def _rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(Path(path).resolve())


# ----------------------------------------------------------------------------------------- VQLA
def vqla_question_type(answer: str) -> str:
    if answer == "kidney":
        return "organ"
    return "location" if answer in ("left-top", "right-top", "left-bottom", "right-bottom") else "state"


def from_vqla(
    ds, name: str, root: Path, report: BuildReport, box_size: tuple[int, int] | None = None
) -> None:
    """EndoVis18/17-VQLA QA records (see module docstring).

    ``box_size`` = (W, H) of the frame the label boxes refer to when it differs from the stored image
    (e.g. boxes written in the reference 1280x1024 frame for smaller images); boxes are then scaled.
    """
    frames: dict[tuple[str, str], list] = defaultdict(list)
    for qa in ds.vqa:
        frames[(qa.video_id, qa.frame)].append(qa)
    for (vid, frame), qas in frames.items():
        item = f"{vid}/{frame}"
        image = qas[0].image
        if image is None or not Path(image).is_file():
            report.skip(item, f"frame image missing ({image})")
            continue
        w, h = image_size(Path(image))
        objects, boxes, states, organ = [], [], {}, None
        for qa in qas:
            qtype = vqla_question_type(qa.answer)
            m = QUESTION_OBJECT_RE.search(qa.question)
            obj = "kidney" if qtype == "organ" else (m.group(1).lower() if m else "object")
            box = bx.from_vqla_pixels(qa.box_xyxy) if qa.box_xyxy is not None else None
            if box is not None and box_size is not None and tuple(box_size) != (w, h):
                sx, sy = w / box_size[0], h / box_size[1]
                box = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
            if box is not None and not bx.inside_image(box, w, h):
                report.skip(f"{item}: {qa.question}", f"box {qa.box_xyxy} outside the {w}x{h} image")
                box = None
            objects.append((qa, qtype, obj, box))
            if qtype == "state":  # two instruments of one type may be in different states
                states.setdefault(obj, [])
                if qa.answer not in states[obj]:
                    states[obj].append(qa.answer)
            if qtype == "organ":
                organ = qa.answer
            if box is not None and all(b.label != obj for b in boxes):
                boxes.append(BoxAnn(obj, box, "context"))
        split = _vqla_split(name, vid)
        for k, (qa, qtype, obj, box) in enumerate(objects):
            if qa.box_xyxy is not None and box is None:
                continue  # skipped above with its reason
            labels = {
                "vqla_class": qa.answer_id,
                "object": obj,
                "states": {k: v[0] if len(v) == 1 else v for k, v in states.items()},
            }
            if organ:
                labels["organ"] = organ
            ctx = [b for b in boxes if b.label != obj]
            own = [BoxAnn(obj, box, "answer")] if box is not None else []
            report.records.append(
                Record(
                    id=f"{name}/{vid}/{frame}/q{k}",
                    dataset=name,
                    split=split,
                    video_id=vid,
                    images=[ImageRef(_rel(Path(image), root), w, h)],
                    task="vqla",
                    question=qa.question,
                    answer=qa.answer,
                    frame_index=_frame_number(frame),
                    question_type=qtype,
                    labels=labels,
                    boxes=own + ctx,
                    provenance={
                        "line": qa.extra.get("line"),
                        "box_1based_inclusive": list(qa.box_xyxy or []),
                    },
                )
            )


def _vqla_split(name: str, vid: str) -> str:
    if name == "endovis17_vqla":
        return "test"
    m = re.search(r"(\d+)$", vid)
    return "train" if m and int(m.group(1)) in ENDOVIS18_TRAIN else "test"


def _frame_number(frame: str) -> int | None:
    m = re.search(r"(\d+)$", str(frame))
    return int(m.group(1)) if m else None


# ------------------------------------------------------------------------------------ CholecT50
def triplet_answer(triplets: list[dict[str, str]]) -> str:
    """Canonical triplet answer: 'grasper,retract,gallbladder; hook,dissect,gallbladder' or 'none'."""
    if not triplets:
        return "none"
    return "; ".join(f"{t['instrument']},{t['verb']},{t['target']}" for t in triplets)


def tools_answer(tools: list[str]) -> str:
    """Canonical tool-set answer in vocabulary order, or 'none'."""
    order = {n: k for k, n in enumerate(ALL_INSTRUMENTS)}
    return ", ".join(sorted(tools, key=lambda t: order.get(t, 99))) if tools else "none"


def from_cholect50(ds, name: str, root: Path, report: BuildReport, stride: int = 1) -> None:
    """Triplet, phase and tool-presence records per sampled frame (every ``stride``-th labelled frame)."""
    from surgkit.data._parse import list_images

    box_index = defaultdict(list)
    for b in ds.boxes:
        box_index[(b.video_id, b.frame)].append(b)
    for vid, lab in ds.triplets.items():
        video = ds.videos.get(vid)
        files = list_images(video.path) if video is not None and video.path is not None else []
        number = int(re.sub(r"\D", "", vid) or -1)
        split = next((s for s, ids in CHOLECT50_CHALLENGE.items() if number in ids), "train")
        for row in range(0, len(lab.frames), stride):
            frame = int(lab.frames[row])
            if frame >= len(files):
                report.skip(f"{vid}/{frame}", "frame image missing")
                continue
            w, h = image_size(files[frame])
            trips = [
                dict(zip(("instrument", "verb", "target"), _names(TRIPLET_COMPONENTS[t]), strict=True))
                for t in lab.ids(row)
            ]
            tools = [INSTRUMENTS[i] for i in range(len(INSTRUMENTS)) if lab.instruments[row, i]]
            boxes = []
            for b in box_index.get((vid, frame), []):
                x1, y1, x2, y2 = b.xyxy
                pix = (x1 * w, y1 * h, x2 * w, y2 * h) if b.unit == "normalized" else (x1, y1, x2, y2)
                pix = bx.clip_box(pix, w, h)
                if bx.is_valid(pix) and all(o.label != b.label for o in boxes):
                    boxes.append(BoxAnn(b.label, pix, "context"))
            labels = {"triplets": trips, "tools": tools}
            phase_id = int(lab.phases[row])
            if phase_id >= 0:
                labels["phase"] = CHOLEC80_PHASES[phase_id]
            base = dict(
                dataset=name,
                split=split,
                video_id=vid,
                images=[ImageRef(_rel(files[frame], root), w, h)],
                frame_index=frame,
                timestamp_s=float(frame),
                boxes=boxes,
                provenance={"label_file": f"labels/{vid}.json", "frame": frame},
            )
            rid = f"{name}/{vid}/{frame:06d}"
            report.records.append(
                Record(
                    id=f"{rid}/triplet",
                    task="triplet",
                    question=Q_TRIPLET,
                    answer=triplet_answer(trips),
                    labels=labels,
                    **base,
                )
            )
            report.records.append(
                Record(
                    id=f"{rid}/tools",
                    task="tool_presence",
                    question=Q_TOOLS,
                    answer=tools_answer(tools),
                    labels=labels,
                    **base,
                )
            )
            if phase_id >= 0:
                report.records.append(
                    Record(
                        id=f"{rid}/phase",
                        task="phase",
                        question=Q_PHASE,
                        answer=labels["phase"],
                        labels=labels,
                        **base,
                    )
                )


def _names(comp: tuple[int, int, int]) -> tuple[str, str, str]:
    return INSTRUMENTS[comp[0]], VERBS[comp[1]], TARGETS[comp[2]]


# -------------------------------------------------------------------------------------- Cholec80
def from_cholec80(
    ds, name: str, root: Path, report: BuildReport, frames_dir: Path, stride_s: float = 30.0
) -> None:
    """Phase and tool-presence records every ``stride_s`` seconds; frames decoded to PNG in ``frames_dir``."""
    import cv2

    from surgkit.data.frames import open_frames
    from surgkit.utils.io import write_bytes

    for vid, ph in ds.phases.items():
        video = ds.videos.get(vid)
        if video is None or video.path is None:
            report.skip(vid, "no video file")
            continue
        fps = ph.fps or 25.0
        step = max(1, int(round(stride_s * fps)))
        keep = [(int(f), int(p)) for f, p in zip(ph.frames, ph.phases, strict=True) if int(f) % step == 0]
        tools = ds.tools.get(vid)
        tool_at = {int(f): row for f, row in zip(tools.frames, tools.presence, strict=True)} if tools else {}
        number = int(re.sub(r"\D", "", vid) or 0)
        split = "train" if number <= 32 else "val" if number <= 40 else "test"
        with open_frames(video.path, fps=fps) as reader:
            images = reader.read([f for f, _ in keep]) if keep else []
        for (frame, phase_id), rgb in zip(keep, images, strict=True):
            out = frames_dir / name / vid / f"{frame:07d}.png"
            if not out.is_file():
                ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                write_bytes(out, buf.tobytes())
            h, w = rgb.shape[:2]
            labels = {"phase": CHOLEC80_PHASES[phase_id]}
            if frame in tool_at:
                labels["tools"] = [
                    CHOLEC80_TOOLS[i].lower() for i in range(len(CHOLEC80_TOOLS)) if tool_at[frame][i]
                ]
            base = dict(
                dataset=name,
                split=split,
                video_id=vid,
                images=[ImageRef(_rel(out, root), w, h)],
                frame_index=frame,
                timestamp_s=frame / fps,
                labels=labels,
                provenance={"phase_file": f"phase_annotations/{vid}-phase.txt", "frame": frame},
            )
            rid = f"{name}/{vid}/{frame:07d}"
            report.records.append(
                Record(id=f"{rid}/phase", task="phase", question=Q_PHASE, answer=labels["phase"], **base)
            )
            if "tools" in labels:
                report.records.append(
                    Record(
                        id=f"{rid}/tools",
                        task="tool_presence",
                        question=Q_TOOLS,
                        answer=tools_answer(labels["tools"]),
                        **base,
                    )
                )


# ------------------------------------------------------------------------------------ Endoscapes
def cvs_answer(cvs: dict[str, int]) -> str:
    return ", ".join(f"C{k} {'yes' if cvs[f'c{k}'] else 'no'}" for k in (1, 2, 3))


def from_endoscapes(ds, name: str, root: Path, report: BuildReport) -> None:
    """CVS records (criteria >= 0.5 -> 1) and one grounding record per anatomy box of the frame."""
    boxes = defaultdict(list)
    for b in ds.boxes:
        boxes[(b.video_id, b.frame)].append(b)
    for lab in ds.cvs:
        video = ds.videos.get(lab.video_id)
        path = (video.extra.get("frames") or {}).get(lab.start) if video else None
        item = f"{lab.video_id}/{lab.start}"
        if path is None or not Path(path).is_file():
            report.skip(item, "frame image missing")
            continue
        w, h = image_size(Path(path))
        anns = []
        for b in boxes.get((lab.video_id, lab.start), []):
            label = b.label.lower().replace(" ", "_")
            box = bx.clip_box(b.xyxy, w, h)
            if any(a.label == label and a.bbox == box for a in anns):
                continue  # the same box listed in two COCO files
            if bx.is_valid(box):
                anns.append(BoxAnn(label, box, "context"))
            else:
                report.skip(f"{item}: {b.label}", f"box {b.xywh} outside the {w}x{h} image")
        by_name = dict(zip(CVS_CRITERIA, lab.criteria, strict=True))  # reader order -> names
        cvs = {c: int(by_name[name] >= 0.5) for c, name in CVS_NUMBERING.items()}  # Endoscapes C1-C3
        anatomy = sorted({a.label for a in anns if a.label in TISSUES})
        labels = {"cvs": cvs, "cvs_mean": list(lab.criteria), "anatomy": anatomy}
        split = (video.extra.get("split_folder") if video else None) or "unspecified"
        base = dict(
            dataset=name,
            split=split,
            video_id=lab.video_id,
            images=[ImageRef(_rel(Path(path), root), w, h)],
            frame_index=lab.start,
            provenance={"criteria_mean": list(lab.criteria), "binarised": ">= 0.5"},
        )
        rid = f"{name}/{lab.video_id}/{lab.start}"
        report.records.append(
            Record(
                id=f"{rid}/cvs",
                task="cvs",
                question=Q_CVS,
                answer=cvs_answer(cvs),
                labels=labels,
                boxes=anns,
                **base,
            )
        )
        for k, a in enumerate(x for x in anns if x.label in TISSUES):
            gl = dict(labels, object=a.label)
            own = [BoxAnn(a.label, a.bbox, "answer")] + [o for o in anns if o is not a]
            report.records.append(
                Record(
                    id=f"{rid}/ground{k}",
                    task="grounding",
                    question=f"Find the {a.label.replace('_', ' ')} and give its bounding box.",
                    answer=a.label,
                    labels=gl,
                    boxes=own,
                    **base,
                )
            )


# ------------------------------------------------------------------------------------ dispatcher
def _loader(source: str) -> Callable:
    from importlib import import_module

    return import_module(f"surgkit.data.{source}").load


def build(
    source: str,
    root: str | Path,
    frames_dir: str | Path | None = None,
    stride: int = 1,
    stride_s: float = 30.0,
    require_media: bool = True,
    vqla_box_size: tuple[int, int] | None = None,
) -> BuildReport:
    """Records of one dataset root (``source`` in :data:`SOURCES`; ``synth`` = every native layout the
    synthetic world wrote under ``root``). Image paths in records are relative to ``root`` (absolute
    when outside it, e.g. Cholec80 frames decoded into a ``frames_dir`` elsewhere)."""
    root = Path(root)
    if source not in SOURCES:
        raise SurgkitError(f"unknown source '{source}' (choose from {', '.join(SOURCES)})")
    if not root.is_dir():
        raise SurgkitError(f"{root}: not a folder")
    if source == "synth":
        from surgkit.reasoning.synth_adapter import build_from_world

        return build_from_world(root, stride=stride)
    report = BuildReport(source)
    load = _loader(source)
    ds = load(root) if source == "cholec80_boxes" else load(root, require_media=require_media)
    report.notes += list(ds.notes)
    report.skipped += [(s.item, s.reason) for s in ds.skipped]
    if source in ("endovis18_vqla", "endovis17_vqla"):
        from_vqla(ds, source, root, report, vqla_box_size)
        if vqla_box_size is not None:
            report.notes.append(
                f"VQLA label boxes read in a {vqla_box_size[0]}x{vqla_box_size[1]} frame, scaled to the images"
            )
    elif source == "cholect50":
        from_cholect50(ds, source, root, report, stride)
    elif source == "cholec80":
        fdir = Path(frames_dir) if frames_dir else root / "surgkit_frames"
        from_cholec80(ds, source, root, report, fdir, stride_s)
    elif source == "endoscapes":
        from_endoscapes(ds, source, root, report)
    elif source == "copesd":
        from surgkit.reasoning.benchmarks import from_copesd

        from_copesd(ds, source, root, report)
    elif source == "cholec80_boxes":
        from surgkit.reasoning.benchmarks import from_cholec80_boxes

        from_cholec80_boxes(ds, source, root, report)
    return report
