"""SurgicalActions160 reader (Schoeffmann et al. 2018): 160 gynecologic laparoscopy clips, 16 actions.

Layout: the clips (``NN_MM.mp4`` or frame folders ``NN_MM/``) directly under ``root`` or under
``root/videos``. The class is the integer before the first "_" (1-based in the name, stored 0-based),
e.g. ``05_07`` is class 4 (action 5), clip 7 (spec metrics_formats.md §7.7). Class names are not
hard-coded: pass ``class_names`` or put a ``classes.txt`` (one name per line, in class order) in
``root``. There is no official split; SurgVISTA-style ``train.txt``/``test.txt`` (one clip per line,
optionally ``<label>-<clip>``) are read into ``split_files`` when present.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from surgkit.data._parse import VIDEO_EXTS, list_images, natural_key, read_text_lines
from surgkit.data.model import ClipLabel, Dataset, Video
from surgkit.errors import DataFormatError

NUM_CLASSES = 16
CLIP_RE = re.compile(r"(\d+)_([^.]+)")


def load(root: str | Path, class_names: Sequence[str] | None = None) -> Dataset:
    """Read every clip whose name starts with ``<class>_`` under ``root`` (or ``root/videos``)."""
    root = Path(root)
    folder = root / "videos" if (root / "videos").is_dir() else root
    if not folder.is_dir():
        raise DataFormatError("SurgicalActions160 folder does not exist", path=root)
    if class_names is None and (root / "classes.txt").is_file():
        class_names = [t.strip() for t in read_text_lines(root / "classes.txt") if t.strip()]
    ds = Dataset(name="surgicalactions160", root=root, split_scheme="random-70/30")
    if class_names is not None:
        ds.classes["action"] = tuple(class_names)
    for entry in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
        if entry.name.startswith(".") or entry.name in ("classes.txt", "train.txt", "test.txt", "videos"):
            continue
        is_clip = entry.suffix.lower() in VIDEO_EXTS or (entry.is_dir() and list_images(entry))
        m = CLIP_RE.fullmatch(entry.stem if entry.is_file() else entry.name)
        if not is_clip or not m:
            ds.skip(entry.name, "not a clip named <class>_<clip> (video file or frame folder)", entry)
            continue
        if entry.is_file() and entry.stat().st_size == 0:
            raise DataFormatError("empty clip file (0 bytes)", path=entry)
        label = int(m.group(1)) - 1
        if not 0 <= label < (len(class_names) if class_names is not None else NUM_CLASSES):
            raise DataFormatError(
                f"class {m.group(1)} outside 1..{len(class_names or []) or NUM_CLASSES}", path=entry
            )
        vid = m.group(0)
        if vid in ds.videos:
            raise DataFormatError(f"clip {vid} present twice (file and folder?)", path=entry)
        ds.videos[vid] = Video(vid, entry, None, extra={"class_prefix": int(m.group(1))})
        ds.clips[vid] = ClipLabel(vid, label, class_names[label] if class_names is not None else None)
    if not ds.videos:
        raise DataFormatError("no clips named <class>_<clip>", path=folder)
    for split in ("train", "test"):
        path = root / f"{split}.txt"
        if path.is_file():
            names = [t.strip().split("-", 1)[-1] for t in read_text_lines(path) if t.strip()]
            unknown = [n for n in names if n not in ds.videos]
            if unknown:
                raise DataFormatError(f"{len(unknown)} clip(s) not found, e.g. {unknown[0]!r}", path=path)
            ds.split_files[split] = names
    ds.notes.append("labels are 0-based (folder prefix - 1); no official split (SurgVISTA: random 70/30)")
    return ds
