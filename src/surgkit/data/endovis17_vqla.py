"""EndoVis17-VQLA reader (external test set of Surgical-VQLA, 97 frames).

Layout (``root`` = the ``EndoVis-17-VQA`` folder)::

    left_frames/<frame>.png
    vqla/label/<frame>.txt        lines 'question|answer|x1, y1, x2, y2'

All frames form one :class:`Video` named ``endovis17``; the whole set is a test set.
"""

from __future__ import annotations

from pathlib import Path

from surgkit.data._parse import natural_key
from surgkit.data._vqla import read_label_file
from surgkit.data.model import Dataset, Video
from surgkit.errors import DataFormatError
from surgkit.vocab import VQLA_ANSWERS


def load(root: str | Path, require_media: bool = True) -> Dataset:
    root = Path(root)
    label_dir = root / "vqla" / "label"
    if not label_dir.is_dir():
        raise DataFormatError("missing vqla/label folder", path=label_dir)
    ds = Dataset(name="endovis17_vqla", root=root, split_scheme="endovis17-test")
    ds.classes["answer"] = VQLA_ANSWERS
    frames = root / "left_frames"
    video = ds.videos["endovis17"] = Video(
        "endovis17", frames if frames.is_dir() else None, None, extra={"frames": {}}
    )
    for path in sorted(label_dir.glob("*.txt"), key=lambda p: natural_key(p.name)):
        frame = path.stem.split("_")[0]
        image = frames / f"{frame}.png"
        if not image.is_file():
            if require_media:
                raise DataFormatError(f"missing frame image for {path.name}", path=image)
            ds.skip(frame, "frame image missing (QA kept)", image)
        else:
            video.extra["frames"][frame] = image
        ds.vqa.extend(read_label_file(path, "endovis17", frame, image))
    if not ds.vqa:
        raise DataFormatError("no QA label files", path=label_dir)
    video.num_frames = len(video.extra["frames"])
    return ds
