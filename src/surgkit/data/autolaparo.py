"""AutoLaparo Task 1 reader (Wang et al., MICCAI 2022): phases of laparoscopic hysterectomy.

Assumed layout (the release's Task 1 folder; pass it as root)::

    videos/01.mp4 ... 21.mp4            25 fps
    labels/label_01.txt ... label_21.txt "Frame<TAB>Phase" with a header, one row per second (1 fps),
                                         phase as an id 1-7 (as released) or as a name below

Phase ids are converted to 0-based. Official split (the AutoLaparo paper): videos 1-10 train,
11-14 validation, 15-21 test. The phase names below follow the paper; check them against your copy.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from surgkit.data._parse import check_range, find_media, lookup, natural_key, parse_int, split_rows
from surgkit.data.model import Dataset, PhaseLabels, Video
from surgkit.errors import DataFormatError
from surgkit.utils.inputs import is_int_text

PHASES: tuple[str, ...] = (
    "Preparation",
    "Dividing Ligament and Peritoneum",
    "Dividing Uterine Vessels and Ligament",
    "Transecting the Vagina",
    "Specimen Removal",
    "Suturing",
    "Washing",
)
LABEL_FPS = 1.0
VIDEO_FPS = 25.0


def read_label_file(path: Path, vid: str) -> PhaseLabels:
    """Parse one AutoLaparo label file; rows must be consecutive seconds starting at 0 (or 1)."""
    lines_head, rows = split_rows(path, sep="\t", ncols=2)
    if [h.lower() for h in lines_head] != ["frame", "phase"]:
        raise DataFormatError(
            f"expected the header 'Frame<TAB>Phase', found {'|'.join(lines_head)!r}", path=path, line=1
        )
    frames, phases = [], []
    for line, (f_text, p_text) in rows:
        frame = parse_int(f_text, path, line, "Frame")
        if frames and frame != frames[-1] + 1:
            raise DataFormatError(
                f"frame {frame} where {frames[-1] + 1} was expected (one row per second)",
                path=path,
                line=line,
            )
        p_text = p_text.strip()
        if is_int_text(p_text):
            pid = check_range(int(p_text), 1, len(PHASES), path, line, "phase id (1-7)") - 1
        else:
            pid = lookup(p_text, PHASES, path, line, "phase")
        frames.append(frame)
        phases.append(pid)
    if not frames:
        raise DataFormatError("no annotated frames", path=path)
    frames_arr = np.asarray(frames, np.int64)
    return PhaseLabels(
        vid, frames_arr - frames_arr[0], np.asarray(phases, np.int64), PHASES, LABEL_FPS, len(frames)
    )


def load(root: str | Path, require_media: bool = True, probe_media: bool = True) -> Dataset:
    """Read AutoLaparo Task 1 under ``root`` (``labels/label_XX.txt`` + ``videos/XX.mp4``)."""
    root = Path(root)
    label_dir = root / "labels"
    files = (
        sorted(label_dir.glob("label_*.txt"), key=lambda p: natural_key(p.name)) if label_dir.is_dir() else []
    )
    if not files:
        raise DataFormatError("no labels/label_XX.txt files", path=label_dir)
    ds = Dataset(name="autolaparo", root=root, split_scheme="autolaparo-10/4/7")
    ds.classes["phase"] = PHASES
    for path in files:
        m = re.fullmatch(r"label_(\d+)\.txt", path.name)
        if not m:
            ds.skip(path.name, "label file name is not label_<number>.txt", path)
            continue
        vid = m.group(1)
        ds.phases[vid] = read_label_file(path, vid)
        media = find_media(root / "videos", vid)
        if media is None:
            if require_media:
                raise DataFormatError(f"missing video {vid}.mp4 for {path.name}", path=root / "videos")
            ds.skip(vid, "no video file (labels only)", root / "videos")
        ds.videos[vid] = Video(vid, media, VIDEO_FPS, extra={"number": int(vid)})
        if probe_media and media is not None and media.is_file():
            from surgkit.data.frames import probe_video

            probe_video(ds.videos[vid], ds.notes)
    ds.notes.append("phase ids 1-7 in the files are stored 0-based; labels are at 1 fps (frame = second)")
    return ds
