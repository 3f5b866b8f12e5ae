"""Cholec80-Boxes reader (Alshirbaji et al., Data 2025, 10(1):7): tool boxes at 1 Hz on Cholec80 frames.

One CSV, one row per box (spec metrics_formats.md §7.10)::

    Surgery_num,Dir,FrameName,NumBBox_inFrame,ToolName,BBox_X,BBox_Y,BBox_Width,BBox_Height
    3,video03,Video_03_00125.png,1,Grasper,402,88,131,97

Facts and their sources:

* the nine columns and their meaning - Surgery_num (video), Dir (folder of the image), FrameName
  ``Video_SS_fffff.png`` "where SS is the Surgery_num and fffff is the frame number",
  NumBBox_inFrame (1, 2, ... within an image), ToolName, BBox_X/BBox_Y (top-left corner),
  BBox_Width/BBox_Height - and the 1 Hz labelling: the data paper, §2 and §3.2;
* the delimiter: ``,`` as in the spec's example; ``;`` is accepted too (a public reader of the
  release opens its label file with ``delimiter=";"``), detected from the header line;
* whether fffff counts 25-fps video frames or seconds is not stated: it is kept as written, and the
  join with CholecT45/50 reads the numbering from the numbers
  (:func:`surgkit.grounding.sources.infer_frame_map`);
* box coordinates are pixels of the labelled image [unverified: the image size is not stated].

Tool names must be Cholec80 tools (case-insensitive). Frame images are attached from ``<root>/<Dir>/``
when present.
"""

from __future__ import annotations

import re
from pathlib import Path

from surgkit.data._parse import check_range, lookup, parse_float, parse_int, read_csv_dicts
from surgkit.data.model import Box, Dataset, Video
from surgkit.errors import DataFormatError
from surgkit.utils.ids import safe_id
from surgkit.vocab import CHOLEC80_TOOLS

COLUMNS = (
    "Surgery_num",
    "Dir",
    "FrameName",
    "NumBBox_inFrame",
    "ToolName",
    "BBox_X",
    "BBox_Y",
    "BBox_Width",
    "BBox_Height",
)
FRAME_RE = re.compile(r"Video_(\d+)_(\d+)\.(?:png|jpg)", re.IGNORECASE)


def _find_csv(root: Path) -> Path:
    if root.is_file():
        return root
    found = sorted(root.glob("*.csv"))
    if len(found) != 1:
        raise DataFormatError(f"expected one box CSV in the folder, found {len(found)}", path=root)
    return found[0]


def _delimiter(path: Path) -> str:
    """``;`` when the header line is split by semicolons and has no comma, else ``,``."""
    with open(path, "rb") as fh:
        head = fh.readline().decode("utf-8", "replace")
    return ";" if ";" in head and "," not in head else ","


def _check_inside(image: Path, box: tuple, sizes: dict, path: Path, line: int) -> None:
    """A box must lie inside its frame when the frame image is there to tell its size."""
    if image not in sizes:
        sizes[image] = None
        if image.is_file():
            try:
                from PIL import Image

                with Image.open(image) as im:
                    sizes[image] = im.size
            except OSError:
                sizes[image] = None
    size = sizes[image]
    x, y, w, h = box
    if size is not None and (x + w > size[0] + 1 or y + h > size[1] + 1):
        raise DataFormatError(
            f"box {x:g},{y:g},{w:g},{h:g} lies outside the {size[0]}x{size[1]} frame {image.name}",
            path=path,
            line=line,
        )


def load(root: str | Path) -> Dataset:
    """Read the Cholec80-Boxes CSV at ``root`` (the file or the folder holding it)."""
    root = Path(root)
    path = _find_csv(root)
    folder = path.parent
    ds = Dataset(name="cholec80_boxes", root=folder, split_scheme="cholec80-32/8/40")
    ds.classes["tool"] = CHOLEC80_TOOLS
    lower = tuple(t.lower() for t in CHOLEC80_TOOLS)
    seen: dict[tuple, int] = {}
    sizes: dict[Path, tuple[int, int] | None] = {}
    for line, row in read_csv_dicts(path, COLUMNS, delimiter=_delimiter(path)):
        number = check_range(
            parse_int(row["Surgery_num"], path, line, "Surgery_num"), 0, 10**6, path, line, "Surgery_num"
        )
        m = FRAME_RE.fullmatch(row["FrameName"])
        if not m:
            raise DataFormatError(
                f"FrameName {row['FrameName']!r} is not Video_SS_fffff.png", path=path, line=line
            )
        if int(m.group(1)) != number:
            raise DataFormatError(
                f"FrameName video {m.group(1)} != Surgery_num {number}", path=path, line=line
            )
        tool = CHOLEC80_TOOLS[lookup(row["ToolName"].lower(), lower, path, line, "tool")]
        x, y, w, h = (parse_float(row[c], path, line, c) for c in COLUMNS[5:])
        check_range(min(x, y), 0, float("inf"), path, line, "box corner")
        if w <= 0 or h <= 0:
            raise DataFormatError(
                f"box width/height must be positive, got {w:g} x {h:g}", path=path, line=line
            )
        index = check_range(
            parse_int(row["NumBBox_inFrame"], path, line, "NumBBox_inFrame"),
            0,
            10**6,
            path,
            line,
            "NumBBox_inFrame",
        )
        vid = f"video{number:02d}"
        frame = int(m.group(2))
        key = (vid, frame, tool, x, y, w, h)
        if key in seen:
            raise DataFormatError(f"duplicate of the box on line {seen[key]}", path=path, line=line)
        seen[key] = line
        image = folder / safe_id(row["Dir"], path, line=line, what="Dir") / row["FrameName"]
        _check_inside(image, (x, y, w, h), sizes, path, line)
        if vid not in ds.videos:
            vdir = folder / row["Dir"]
            ds.videos[vid] = Video(
                vid, vdir if vdir.is_dir() else None, 1.0, extra={"number": number, "frames": {}}
            )
        if image.is_file():
            ds.videos[vid].extra["frames"][frame] = image
        ds.boxes.append(
            Box(vid, frame, tool, (x, y, w, h), "pixel", index, {"file": row["FrameName"], "line": line})
        )
    if not ds.boxes:
        raise DataFormatError("no box rows", path=path)
    for v in ds.videos.values():
        v.num_frames = len(v.extra["frames"]) or None
        if v.path is None:
            ds.skip(v.id, "frame folder not found (boxes only)", folder)
    ds.notes.append(
        "frame = the number fffff of FrameName as written (1 Hz labels; 25-fps or 1-fps numbering is read by "
        "the triplet join); boxes are x, y, w, h in pixels of the labelled image"
    )
    return ds
