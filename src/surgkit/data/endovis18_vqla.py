"""EndoVis18-VQLA reader (Bai et al., Surgical-VQLA, ICRA 2023).

Layout (``root`` = the ``EndoVis-18-VQA`` folder)::

    seq_<n>/left_frames/frameNNN.png          1280x1024
    seq_<n>/vqla/label/frameNNN_QA.txt        one file per frame, lines 'question|answer|x1, y1, x2, y2'

The frame id is the label file name before the first "_". Official split by sequence: train 2 3 4 6 7
9 10 11 12 14 15, test 1 5 16 (see :mod:`surgkit.data.splits`).
"""

from __future__ import annotations

import re
from pathlib import Path

from surgkit.data._parse import natural_key
from surgkit.data._vqla import read_label_file
from surgkit.data.model import Dataset, Video
from surgkit.errors import DataFormatError
from surgkit.vocab import VQLA_ANSWERS


def load(root: str | Path, require_media: bool = True) -> Dataset:
    """Read every ``seq_<n>`` folder under ``root``; a sequence is one :class:`Video` (frame folder)."""
    root = Path(root)
    seqs = sorted(
        (p for p in root.glob("seq_*") if p.is_dir() and re.fullmatch(r"seq_\d+", p.name)),
        key=lambda p: natural_key(p.name),
    )
    if not seqs:
        raise DataFormatError("no seq_<n> folders", path=root)
    ds = Dataset(name="endovis18_vqla", root=root, split_scheme="endovis18-official")
    ds.classes["answer"] = VQLA_ANSWERS
    for seq in seqs:
        label_dir = seq / "vqla" / "label"
        if not label_dir.is_dir():
            ds.skip(seq.name, "no vqla/label folder", label_dir)
            continue
        frames = seq / "left_frames"
        ds.videos[seq.name] = Video(
            seq.name,
            frames if frames.is_dir() else None,
            None,
            extra={"number": int(seq.name[4:]), "frames": {}},
        )
        for path in sorted(label_dir.glob("*.txt"), key=lambda p: natural_key(p.name)):
            frame = path.stem.split("_")[0]
            image = frames / f"{frame}.png"
            if not image.is_file():
                if require_media:
                    raise DataFormatError(f"missing frame image for {path.name}", path=image)
                ds.skip(f"{seq.name}/{frame}", "frame image missing (QA kept)", image)
            else:
                ds.videos[seq.name].extra["frames"][frame] = image
            ds.vqa.extend(read_label_file(path, seq.name, frame, image))
    for v in ds.videos.values():
        v.num_frames = len(v.extra["frames"])
    return ds
