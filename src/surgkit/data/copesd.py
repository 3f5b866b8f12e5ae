"""CoPESD reader (Wang et al. 2024): endoscopic-submucosal-dissection motion instructions with boxes.

The instruction-tuning release is a LLaVA-style JSON array (spec metrics_formats.md §7.9)::

    [{"image": "frames/000123/0042.jpg",
      "conversations": [{"from": "human", "value": "<instruction>"},
                        {"from": "gpt", "value": "Move the Forceps[0.15, 0.36, 0.55, 0.78] to ..."}]}]

Each human/gpt pair becomes a :class:`VQARecord` (video = the image's parent folder, frame = the
file stem). Boxes are parsed from ``<Name>[x1, y1, x2, y2]`` (normalised, 0-1) in the answer and kept
in ``extra["boxes"]`` as (name, xyxy); the first one is also ``box_xyxy``.
"""

from __future__ import annotations

import re
from pathlib import Path

from surgkit.data._parse import read_json
from surgkit.data.model import Box, Dataset, Video, VQARecord
from surgkit.errors import DataFormatError
from surgkit.utils.ids import safe_relative
from surgkit.utils.inputs import is_int_text

BOX_RE = re.compile(
    r"([A-Za-z][\w\- ]*?)\s*\[\s*([-\d.eE]+)\s*,\s*([-\d.eE]+)\s*,\s*([-\d.eE]+)\s*,\s*([-\d.eE]+)\s*\]"
)


def parse_boxes(text: str) -> list[tuple[str, tuple[float, float, float, float]]]:
    """All ``Name[x1, y1, x2, y2]`` boxes in an answer, in order (the name is the last word before '[')."""
    out = []
    for m in BOX_RE.finditer(text):
        name = m.group(1).split()[-1]
        out.append((name, tuple(float(m.group(k)) for k in range(2, 6))))
    return out


def _files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    files = sorted(root.glob("*.json"))
    if not files:
        raise DataFormatError("no CoPESD JSON files", path=root)
    return files


def load(root: str | Path, require_media: bool = False) -> Dataset:
    """Read every CoPESD JSON array at ``root`` (a file or a folder of files); images are resolved
    relative to the JSON file's folder."""
    root = Path(root)
    ds = Dataset(name="copesd", root=root if root.is_dir() else root.parent, split_scheme=None)
    for path in _files(root):
        data = read_json(path)
        if not isinstance(data, list):
            raise DataFormatError("expected a JSON array of samples", path=path)
        for k, sample in enumerate(data):
            _sample(ds, path, k, sample, require_media)
    ds.notes.append("boxes are normalised x1, y1, x2, y2 (2 decimals) parsed from the answers")
    return ds


def _sample(ds: Dataset, path: Path, k: int, sample: object, require_media: bool) -> None:
    where = f"element {k}"
    if (
        not isinstance(sample, dict)
        or "image" not in sample
        or not isinstance(sample.get("conversations"), list)
    ):
        raise DataFormatError(f"{where}: needs 'image' and a 'conversations' list", path=path)
    image = (path.parent / safe_relative(sample["image"], path, f"{where}.image")).resolve()
    vid, frame = Path(str(sample["image"])).parent.name or "-", Path(str(sample["image"])).stem
    if not image.is_file():
        if require_media:
            raise DataFormatError(f"{where}: missing image {sample['image']}", path=path)
        ds.skip(f"{vid}/{frame}", "image file missing (text kept)", image)
    ds.videos.setdefault(vid, Video(vid, image.parent if image.parent.is_dir() else None, None))
    turns = sample["conversations"]
    if len(turns) % 2:
        raise DataFormatError(f"{where}: odd number of conversation turns ({len(turns)})", path=path)
    for t in range(0, len(turns), 2):
        q, a = turns[t], turns[t + 1]
        if (
            not (isinstance(q, dict) and isinstance(a, dict))
            or q.get("from") != "human"
            or a.get("from") != "gpt"
        ):
            raise DataFormatError(f"{where}: turns {t}-{t + 1} must be a human then a gpt turn", path=path)
        boxes = parse_boxes(str(a.get("value", "")))
        for name, b in boxes:
            if not (0 <= b[0] <= b[2] <= 1 and 0 <= b[1] <= b[3] <= 1):
                raise DataFormatError(
                    f"{where}: box {name}{list(b)} is not a normalised x1<=x2, y1<=y2 box", path=path
                )
            ds.boxes.append(
                Box(
                    vid,
                    int(frame) if is_int_text(frame) else -1,
                    name,
                    (b[0], b[1], b[2] - b[0], b[3] - b[1]),
                    "normalized",
                )
            )
        ds.vqa.append(
            VQARecord(vid, frame, str(q.get("value", "")), str(a.get("value", "")), None,
                      boxes[0][1] if boxes else None, image, {"boxes": boxes, "element": k})
        )  # fmt: skip
