"""JIGSAWS reader (Gao et al. 2014): three bench-top tasks, skill scores, gestures.

Layout per task (``<root>/<Task>/``), see docs/data.md and spec metrics_formats.md §7.4::

    video/<Task>_B001_capture1.avi (and capture2)      30 fps, 640x480
    kinematics/AllGestures/<Task>_B001.txt             76 floats per row
    transcriptions/<Task>_B001.txt                     "start end Gk", 1-based frames
    meta_file_<Task>.txt                               trial, N/I/E, GRS, 6 OSATS items

The meta file is split on whitespace (it has double tabs). GRS must equal the sum of the six items
(each 1-5, GRS 6-30). Trial ids encode the user (first letter after the task) and the super-trial
(last digit). Trials listed in the meta file but without the requested video are kept (their labels
drive the LOSO/LOUO folds) and reported in ``skipped`` as "no media".
"""

from __future__ import annotations

import re
from pathlib import Path

from surgkit.data._parse import check_range, parse_int, read_text_lines, require_file
from surgkit.data.model import Dataset, Segment, SkillScore, Video
from surgkit.errors import DataFormatError
from surgkit.vocab import GRS_RANGE, JIGSAWS_TASKS, OSATS_ITEMS

FPS = 30.0
LEVELS = ("N", "I", "E")
TASK_ALIASES = {"su": "Suturing", "kt": "Knot_Tying", "np": "Needle_Passing"}


def normalise_task(task: str) -> str:
    """'SU'/'suturing'/'Suturing' -> 'Suturing'."""
    key = task.strip().lower()
    if key in TASK_ALIASES:
        return TASK_ALIASES[key]
    for t in JIGSAWS_TASKS:
        if t.lower() == key or t.lower().replace("_", "") == key.replace("_", ""):
            return t
    raise DataFormatError(f"unknown JIGSAWS task {task!r} (expected one of {', '.join(JIGSAWS_TASKS)})")


def parse_trial(trial: str) -> tuple[str, str, int]:
    """``Suturing_B003`` -> ('Suturing', 'B', 3): task, user, trial number (super-trial = number % 10)."""
    m = re.fullmatch(r"(Suturing|Knot_Tying|Needle_Passing)_([A-Z])(\d{3})", trial)
    if not m:
        raise ValueError(f"not a JIGSAWS trial id: {trial!r}")
    return m.group(1), m.group(2), int(m.group(3))


def _task_dir(root: Path, task: str) -> Path | None:
    if (root / task).is_dir():
        return root / task
    if root.name == task:
        return root
    return None


def read_meta_file(path: Path, task: str) -> dict[str, SkillScore]:
    """Parse ``meta_file_<Task>.txt``: 9 whitespace-separated fields per non-empty line."""
    require_file(path, "JIGSAWS meta file")
    scores: dict[str, SkillScore] = {}
    for i, text in enumerate(read_text_lines(path), start=1):
        fields = text.split()
        if not fields:
            continue
        if len(fields) != 3 + len(OSATS_ITEMS):
            raise DataFormatError(
                f"expected 9 fields (trial, level, GRS, 6 items), found {len(fields)}", path=path, line=i
            )
        trial, level, grs_text = fields[:3]
        try:
            t_task, _, _ = parse_trial(trial)
        except ValueError as e:
            raise DataFormatError(str(e), path=path, line=i) from None
        if t_task != task:
            raise DataFormatError(f"trial {trial} listed in the meta file of {task}", path=path, line=i)
        if level not in LEVELS:
            raise DataFormatError(f"skill level {level!r} not one of N/I/E", path=path, line=i)
        grs = check_range(parse_int(grs_text, path, i, "GRS"), *GRS_RANGE, path, i, "GRS")
        items = {}
        for name, value in zip(OSATS_ITEMS, fields[3:], strict=True):
            items[name] = float(check_range(parse_int(value, path, i, name), 1, 5, path, i, name))
        if sum(items.values()) != grs:
            raise DataFormatError(
                f"GRS {grs} != sum of the six items ({sum(items.values()):g})", path=path, line=i
            )
        if trial in scores:
            raise DataFormatError(f"trial {trial} listed twice", path=path, line=i)
        scores[trial] = SkillScore(trial, "OSATS-GRS", float(grs), items, level=level)
    if not scores:
        raise DataFormatError("empty meta file (no trial lines)", path=path)
    return scores


def read_transcription(path: Path, trial: str) -> list[Segment]:
    """Gesture segments ``start end Gk`` (1-based, inclusive) -> 0-based inclusive frame segments."""
    segs = []
    for i, text in enumerate(read_text_lines(path), start=1):
        fields = text.split()
        if not fields:
            continue
        if len(fields) != 3:
            raise DataFormatError(
                f"expected 'start end gesture', found {len(fields)} fields", path=path, line=i
            )
        start, end = parse_int(fields[0], path, i, "start"), parse_int(fields[1], path, i, "end")
        if not re.fullmatch(r"G\d+", fields[2]):
            raise DataFormatError(
                f"unknown gesture label {fields[2]!r} (expected G1..G15)", path=path, line=i
            )
        if start < 1 or end < start:
            raise DataFormatError(f"bad frame range {start}..{end}", path=path, line=i)
        if segs and start - 1 <= segs[-1].start:
            raise DataFormatError(
                f"segment {start}..{end} starts at or before the previous one ({segs[-1].start + 1})",
                path=path,
                line=i,
            )
        segs.append(Segment(trial, start - 1, end - 1, fields[2]))
    if not segs:
        raise DataFormatError("empty transcription (no 'start end gesture' lines)", path=path)
    return segs


def load(
    root: str | Path, task: str | list[str] | None = None, capture: str = "capture1", probe_media: bool = True
) -> Dataset:
    """Read one or more JIGSAWS tasks under ``root`` (the JIGSAWS folder or one task folder).

    ``task=None`` reads every task folder present. ``capture`` picks the camera (capture1 = left, as
    MUSDL/CoRe/ViSA use). ``probe_media`` reads each video header (frame count, fps; no decoding).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError("JIGSAWS root folder does not exist", path=root)
    if task is None:
        tasks = [t for t in JIGSAWS_TASKS if _task_dir(root, t) is not None]
        if not tasks:
            raise DataFormatError(f"no JIGSAWS task folder ({', '.join(JIGSAWS_TASKS)}) found", path=root)
    else:
        tasks = [normalise_task(t) for t in ([task] if isinstance(task, str) else task)]
    ds = Dataset(name="jigsaws", root=root, split_scheme="LOUO")
    ds.classes["osats_items"] = OSATS_ITEMS
    ds.meta["tasks"] = tasks
    ds.meta["capture"] = capture
    for t in tasks:
        tdir = _task_dir(root, t)
        if tdir is None:
            raise DataFormatError(f"missing JIGSAWS task folder {t}", path=root / t)
        _load_task(ds, tdir, t, capture)
    if probe_media:
        from surgkit.data.frames import probe_video

        for video in ds.videos.values():
            probe_video(video, ds.notes)
    ds.notes.append("frames: 0-based 30-Hz indices (transcriptions are 1-based in the files)")
    return ds


def _load_task(ds: Dataset, tdir: Path, task: str, capture: str) -> None:
    scores = read_meta_file(tdir / f"meta_file_{task}.txt", task)
    video_dir = tdir / "video"
    listed_videos = set()
    if video_dir.is_dir():
        listed_videos = {p.name for p in video_dir.iterdir() if p.suffix.lower() == ".avi"}
    for trial, score in scores.items():
        _, user, number = parse_trial(trial)
        vname = f"{trial}_{capture}.avi"
        vpath = video_dir / vname
        has_video = vname in listed_videos
        kin = tdir / "kinematics" / "AllGestures" / f"{trial}.txt"
        extra = {"task": task, "trial_number": number, "super_trial": number % 10, "level": score.level}
        if kin.is_file():
            extra["kinematics"] = kin
        ds.videos[trial] = Video(trial, vpath if has_video else None, FPS, None, user, extra)
        ds.skill[trial] = score
        if not has_video:
            ds.skip(trial, f"no {capture} video (trial kept: labels only)", vpath)
        trans = tdir / "transcriptions" / f"{trial}.txt"
        if trans.is_file():
            ds.segments.extend(read_transcription(trans, trial))
    for name in sorted(listed_videos):
        m = re.fullmatch(rf"({task}_[A-Z]\d{{3}})_(capture\d)\.avi", name)
        if m and m.group(1) not in scores and m.group(2) == capture:
            ds.skip(m.group(1), "video without a meta-file entry (no skill labels)", video_dir / name)
