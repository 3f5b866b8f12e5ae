"""M2CAI16-workflow reader: Cholec80-style ``Frame<TAB>Phase`` files at 25 fps with 8 phases.

Official file names (spec metrics_formats.md §7.2): ``workflow_video_01.txt`` ... ``_27`` (train) and
``test_workflow_video_01.txt`` ... ``_14`` (test), each next to its video (``.mp4``) or with the videos
in a ``videos/`` folder. Renamed copies are accepted through ``pattern``, a regular expression on the
file name whose named group ``num`` is the video number and optional group ``test`` marks the test
set; e.g. SurgVISTA's ``phases/video_phase_XX.txt`` matches the default pattern (as train/test cannot be
told from such names, those take the split from SurgVISTA's numbering: 1-27 train, 28-41 test).
"""

from __future__ import annotations

import re
from pathlib import Path

from surgkit.data._parse import find_media, natural_key
from surgkit.data.cholec80 import _skip_unannotated, read_phase_file
from surgkit.data.model import Dataset, Video
from surgkit.errors import DataFormatError
from surgkit.vocab import M2CAI16_PHASES

NATIVE_FPS = 25.0
DEFAULT_PATTERN = r"(?:(?P<test>test_)?workflow_video_|video_phase_)(?P<num>\d+)\.txt"


def load(
    root: str | Path,
    pattern: str = DEFAULT_PATTERN,
    label_fps: float = 1.0,
    require_media: bool = True,
    probe_media: bool = True,
) -> Dataset:
    """Read every phase file under ``root`` (recursively) whose name matches ``pattern``."""
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError("M2CAI16 root folder does not exist", path=root)
    regex = re.compile(pattern)
    files = sorted(
        (p for p in root.rglob("*.txt") if regex.fullmatch(p.name)), key=lambda p: natural_key(str(p))
    )
    if not files:
        raise DataFormatError(f"no phase files matching {pattern!r}", path=root)
    ds = Dataset(name="m2cai16", root=root, split_scheme="m2cai16-official")
    ds.classes["phase"] = M2CAI16_PHASES
    ds.meta["label_fps"] = label_fps
    ds.split_files = {"train": [], "test": []}
    for pf in files:
        m = regex.fullmatch(pf.name)
        vid = pf.stem
        num = int(m.group("num"))
        groups = m.groupdict()
        if groups.get("test") is not None:
            split = "test"
        elif pf.name.startswith("video_phase_"):
            split = "train" if num <= 27 else "test"
        else:
            split = "train"
        if vid in ds.videos:
            raise DataFormatError(f"two phase files for {vid}", path=pf)
        ds.phases[vid] = read_phase_file(pf, vid, M2CAI16_PHASES, NATIVE_FPS, label_fps)
        media = find_media(pf.parent, vid) or find_media(root / "videos", vid)
        if media is None:
            if require_media:
                raise DataFormatError(
                    f"missing video for {vid} (looked beside the file and in videos/)", path=pf
                )
            ds.skip(vid, "no video file (labels only)", pf)
        ds.videos[vid] = Video(vid, media, NATIVE_FPS, extra={"number": num, "official_split": split})
        if probe_media and media is not None and media.is_file():
            from surgkit.data.frames import probe_video

            probe_video(ds.videos[vid], ds.notes)
        ds.split_files[split].append(vid)
    if (root / "videos").is_dir():
        _skip_unannotated(ds, root / "videos")
    ds.notes.append("M2CAI16 phase ids: TrocarPlacement = 0 (SurgVISTA order)")
    return ds
