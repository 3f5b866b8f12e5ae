"""Cholec80 reader (Twinanda et al. 2016): phases per 25-fps frame, 7 tools at 1 Hz.

Layout (spec metrics_formats.md §7.1)::

    videos/video01.mp4 ... video80.mp4                 25 fps
    phase_annotations/video01-phase.txt                "Frame<TAB>Phase", every frame, phase by name
    tool_annotations/video01-tool.txt                  "Frame<TAB>Grasper ... SpecimenBag", every 25th frame

1-fps convention (SurgVISTA, Surgformer, TeCNO): keep the phase rows with ``Frame % 25 == 0``.
``label_fps=25`` keeps every row. Annotation lengths that differ from the video's frame count are
kept as annotated (the spec says to trust the annotation) and listed in ``Dataset.notes``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from surgkit.data._parse import check_range, find_media, lookup, natural_key, parse_int, split_rows
from surgkit.data.model import Dataset, PhaseLabels, ToolLabels, Video
from surgkit.errors import DataFormatError
from surgkit.utils.inputs import is_int_text
from surgkit.vocab import CHOLEC80_PHASES, CHOLEC80_TOOLS

NATIVE_FPS = 25.0


def read_phase_file(
    path: Path, video_id: str, names: tuple[str, ...], native_fps: float = NATIVE_FPS, label_fps: float = 1.0
) -> PhaseLabels:
    """Parse a ``Frame<TAB>Phase`` file (header required, one row per native frame, names or ids).

    Frames must start at 0 and increase by 1. Rows with ``Frame % round(native_fps / label_fps) == 0``
    are kept. A phase written as an integer id (0-based) is accepted, as Surgformer-style files do.
    """
    step = int(round(native_fps / label_fps))
    if step < 1 or abs(native_fps / step - label_fps) > 1e-6:
        raise DataFormatError(f"label_fps {label_fps} does not divide the native {native_fps} fps")
    head, rows = split_rows(path, sep=None, ncols=2)
    if [h.lower() for h in head] != ["frame", "phase"]:
        raise DataFormatError(
            f"expected the header 'Frame<TAB>Phase', found {' '.join(head)!r}", path=path, line=1
        )
    frames, phases = [], []
    expected = 0
    for line, (f_text, p_text) in rows:
        frame = parse_int(f_text, path, line, "Frame")
        if frame != expected:
            raise DataFormatError(
                f"frame {frame} where {expected} was expected (one row per frame)", path=path, line=line
            )
        expected += 1
        if is_int_text(p_text):
            pid = int(p_text)
            check_range(pid, 0, len(names) - 1, path, line, "phase id")
        else:
            pid = lookup(p_text, names, path, line, "phase")
        if frame % step == 0:
            frames.append(frame)
            phases.append(pid)
    if not frames:
        raise DataFormatError("no annotated frames", path=path)
    return PhaseLabels(
        video_id, np.asarray(frames, np.int64), np.asarray(phases, np.int64), names, native_fps, expected
    )


def read_tool_file(path: Path, video_id: str, names: tuple[str, ...] = CHOLEC80_TOOLS) -> ToolLabels:
    """Parse ``videoNN-tool.txt``: header Frame + tool names in Cholec80 order, binary values."""
    head, rows = split_rows(path, sep=None, ncols=1 + len(names))
    if head[0].lower() != "frame" or tuple(head[1:]) != tuple(names):
        raise DataFormatError(
            f"expected the header 'Frame {' '.join(names)}', found {' '.join(head)!r}", path=path, line=1
        )
    frames, values = [], []
    for line, fields in rows:
        frame = check_range(parse_int(fields[0], path, line, "Frame"), 0, 10**12, path, line, "Frame")
        if frames and frame <= frames[-1]:
            raise DataFormatError(f"frame {frame} not after {frames[-1]}", path=path, line=line)
        row = []
        for name, v in zip(names, fields[1:], strict=True):
            value = parse_int(v, path, line, name)
            if value not in (0, 1):
                raise DataFormatError(
                    f"{name} = {value} (tool presence must be 0 or 1)", path=path, line=line
                )
            row.append(value)
        frames.append(frame)
        values.append(row)
    presence = np.asarray(values, np.uint8).reshape(-1, len(names))
    return ToolLabels(video_id, np.asarray(frames, np.int64), presence, names, NATIVE_FPS)


def load(
    root: str | Path, label_fps: float = 1.0, require_media: bool = True, probe_media: bool = True
) -> Dataset:
    """Read Cholec80 under ``root``; every phase file needs its video unless ``require_media=False``.

    ``probe_media`` opens each video header (no decoding) to record frame count and fps and to note
    annotation/video length mismatches.
    """
    root = Path(root)
    phase_dir = root / "phase_annotations"
    if not phase_dir.is_dir():
        raise DataFormatError("missing Cholec80 folder phase_annotations/", path=phase_dir)
    ds = Dataset(name="cholec80", root=root, split_scheme="cholec80-32/8/40")
    ds.classes["phase"] = CHOLEC80_PHASES
    ds.classes["tool"] = CHOLEC80_TOOLS
    ds.meta["label_fps"] = label_fps
    files = sorted(phase_dir.glob("*-phase.txt"), key=lambda p: natural_key(p.name))
    if not files:
        raise DataFormatError("no videoNN-phase.txt files", path=phase_dir)
    for pf in files:
        vid = pf.name[: -len("-phase.txt")]
        labels = read_phase_file(pf, vid, CHOLEC80_PHASES, NATIVE_FPS, label_fps)
        video = _video(ds, root / "videos", vid, require_media, probe_media, NATIVE_FPS)
        video.extra["annotated_frames"] = labels.num_source_frames
        ds.videos[vid] = video
        ds.phases[vid] = labels
        tf = root / "tool_annotations" / f"{vid}-tool.txt"
        if tf.is_file():
            ds.tools[vid] = read_tool_file(tf, vid)
        else:
            ds.skip(vid, "no tool annotation file (phases only)", tf)
        m = re.search(r"(\d+)$", vid)
        video.extra["number"] = int(m.group(1)) if m else None
        _note_length(ds, video, pf)
    _skip_unannotated(ds, root / "videos")
    ds.notes.append(
        f"phase labels kept where Frame % {int(round(NATIVE_FPS / label_fps))} == 0 ({label_fps:g} fps)"
    )
    return ds


def _video(ds: Dataset, folder: Path, vid: str, require: bool, probe_media: bool, fps: float) -> Video:
    media = find_media(folder, vid)
    if media is None:
        if require:
            raise DataFormatError(
                f"missing video for {vid} (looked for {vid}.mp4/.avi/... or a frame folder)", path=folder
            )
        ds.skip(vid, "no video file (labels only)", folder / vid)
        return Video(vid, None, fps)
    video = Video(vid, media, fps)
    if probe_media and media.is_file():
        from surgkit.data.frames import probe

        info = probe(media)
        video.num_frames = info.num_frames
        if info.fps and abs(info.fps - fps) > 0.01:
            ds.notes.append(f"{vid}: video is {info.fps:g} fps, the annotation assumes {fps:g}")
            video.extra["media_fps"] = info.fps
    return video


def _note_length(ds: Dataset, video: Video, ann: Path) -> None:
    n_ann = video.extra.get("annotated_frames")
    if video.num_frames and n_ann and abs(video.num_frames - n_ann) >= NATIVE_FPS:
        ds.notes.append(
            f"{video.id}: {ann.name} covers {n_ann} frames, the video has {video.num_frames} (annotation trusted)"
        )


def _skip_unannotated(ds: Dataset, folder: Path) -> None:
    if not folder.is_dir():
        return
    for p in sorted(folder.iterdir()):
        stem = p.stem if p.is_file() else p.name
        if stem not in ds.videos and not p.name.startswith("."):
            ds.skip(stem, "video without a phase annotation file", p)
