"""Endoscapes2023 reader (Murali et al.): CVS per keyframe (CVS201), boxes (BBox201), masks (Seg50).

Layout (spec metrics_formats.md §7.6)::

    {train,val,test}/<vid>_<frame>.jpg
    {train,val,test}/annotation_ds_coco.json   CVS keyframes: images[].ds = mean of 3 annotators
    {train,val,test}/annotation_coco.json      detection keyframes: annotations[].bbox = [x, y, w, h] px
    {train,val,test}/annotation_coco_vid.json  all 1-fps ROI frames (read when the others are absent)
    semseg/<vid>_<frame>.png, insseg/<vid>_<frame>.npy   masks
    all_metadata.csv                            vid, frame, C1, C2, C3, ... (validated; optional CVS source)
    train_vids.txt, val_vids.txt, test_vids.txt video ids, possibly floats like 1.000000000000000000e+00

Frame numbers are those in the file names (``<vid>_<frame>.jpg``); the COCO ``frame_id`` is kept in
``extra``. There are no video files: each :class:`Video` lists its frame images in
``extra["frames"]`` (frame number -> path; ``path`` is the split folder), which the torch datasets
and the leakage guard read directly.
"""

from __future__ import annotations

import re
from pathlib import Path

from surgkit.data._parse import (
    as_float,
    as_int,
    check_range,
    parse_float,
    parse_float_id,
    read_csv_dicts,
    read_json,
    read_text_lines,
)
from surgkit.data.model import Box, CVSLabel, Dataset, MaskRef, Video
from surgkit.errors import DataFormatError
from surgkit.vocab import CVS_CRITERIA

SPLITS = ("train", "val", "test")
COCO_FILES = ("annotation_ds_coco.json", "annotation_coco.json", "annotation_coco_vid.json")
FILE_RE = re.compile(r"([0-9]+)_([0-9]+)\.(?:jpg|jpeg|png)", re.IGNORECASE)


def read_vids_file(path: Path) -> list[str]:
    """Video ids of a ``*_vids.txt`` file; accepts ``12``, ``12.0`` and ``1.2e+01`` (whole numbers only)."""
    ids = []
    for i, text in enumerate(read_text_lines(path), start=1):
        for token in text.replace(",", " ").split():
            ids.append(str(parse_float_id(token, path, i, "video id")))
    return ids


def load(root: str | Path, require_media: bool = True, cvs_source: str = "coco") -> Dataset:
    """Read an Endoscapes2023 root. ``cvs_source='metadata'`` takes per-frame CVS from all_metadata.csv."""
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError("Endoscapes root folder does not exist", path=root)
    if cvs_source not in ("coco", "metadata"):
        raise DataFormatError(f"cvs_source must be 'coco' or 'metadata', not {cvs_source!r}")
    ds = Dataset(name="endoscapes", root=root, split_scheme="endoscapes-official")
    ds.classes["criteria"] = CVS_CRITERIA
    for split in SPLITS:
        if (root / f"{split}_vids.txt").is_file():
            ds.split_files[split] = read_vids_file(root / f"{split}_vids.txt")
    found = False
    for split in SPLITS:
        folder = root / split
        files = [folder / f for f in COCO_FILES if (folder / f).is_file()]
        if not files:
            continue
        found = True
        if len(files) == 3:
            files = files[:2]  # the vid file repeats the keyframes of the other two
        seen: set[tuple[str, int]] = set()
        for path in files:
            _read_coco(ds, path, folder, split, seen, require_media, want_cvs=cvs_source == "coco")
    if not found:
        raise DataFormatError("no {train,val,test}/annotation_*coco*.json files", path=root)
    meta = root / "all_metadata.csv"
    if meta.is_file():
        n = _read_metadata(ds, meta, add_cvs=cvs_source == "metadata")
        ds.meta["roi_frames"] = n
    elif cvs_source == "metadata":
        raise DataFormatError("missing all_metadata.csv (cvs_source='metadata')", path=meta)
    _read_masks(ds, root)
    ds.notes.append(
        "CVS criteria = mean of 3 annotators in {0, 1/3, 2/3, 1}; frames = numbers in the file names"
    )
    return ds


def _video_frame(img: dict, path: Path) -> tuple[str, int]:
    m = FILE_RE.fullmatch(Path(str(img.get("file_name", ""))).name)
    if m:
        return str(int(m.group(1))), int(m.group(2))
    if "video_id" in img and "frame_id" in img:
        where = f"images[id={img.get('id')}]"
        vid = as_int(img["video_id"], path, f"{where}.video_id", lo=0)
        return str(vid), as_int(img["frame_id"], path, f"{where}.frame_id", lo=0)
    raise DataFormatError(
        f"image {img.get('id')}: file_name {img.get('file_name')!r} is not <vid>_<frame>.jpg", path=path
    )


def _read_coco(
    ds: Dataset, path: Path, folder: Path, split: str, seen: set, require: bool, want_cvs: bool
) -> None:
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataFormatError("not a COCO file (no 'images' list)", path=path)
    cats = {}
    for c in data.get("categories", []):
        if not isinstance(c, dict) or "id" not in c or "name" not in c:
            raise DataFormatError(f"malformed category {c!r}", path=path)
        cats[c["id"]] = c["name"]
    ds.classes.setdefault("box", tuple(cats[k] for k in sorted(cats)))
    images = {}
    sizes: dict = {}
    for img in data["images"]:
        if not isinstance(img, dict) or "id" not in img:
            raise DataFormatError(f"image entry without an id: {img!r}"[:200], path=path)
        vid, frame = _video_frame(img, path)
        if img["id"] in images:
            raise DataFormatError(f"images: id {img['id']!r} appears twice", path=path)
        images[img["id"]] = (vid, frame)
        if "width" in img and "height" in img:
            where = f"images[id={img['id']}]"
            sizes[img["id"]] = (
                as_float(img["width"], path, f"{where}.width", lo=1),
                as_float(img["height"], path, f"{where}.height", lo=1),
            )
        video = ds.videos.get(vid)
        if video is None:
            video = ds.videos[vid] = Video(vid, folder, None, 0, extra={"frames": {}, "split_folder": split})
        file = folder / Path(str(img.get("file_name", ""))).name
        if not file.is_file():
            if require:
                raise DataFormatError(f"missing frame image {file.name} (image id {img['id']})", path=path)
            ds.skip(f"{vid}_{frame}", "frame image missing", file)
        elif frame not in video.extra["frames"]:
            video.extra["frames"][frame] = file
            video.num_frames = len(video.extra["frames"])
        if want_cvs and "ds" in img and (vid, frame) not in seen:
            seen.add((vid, frame))
            ds.cvs.append(
                CVSLabel(
                    vid,
                    frame,
                    frame,
                    from_endoscapes_order(_criteria(img["ds"], path, img["id"])),
                    extra=_tags(img),
                )
            )
    for ann in data.get("annotations", []):
        if not isinstance(ann, dict) or ann.get("image_id") not in images:
            raise DataFormatError(
                f"annotation {ann.get('id') if isinstance(ann, dict) else ann!r} refers to an unknown image",
                path=path,
            )
        if ann.get("category_id") not in cats:
            raise DataFormatError(
                f"annotation {ann.get('id')}: unknown category id {ann.get('category_id')}", path=path
            )
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise DataFormatError(f"annotation {ann.get('id')}: bbox must be [x, y, w, h]", path=path)
        vid, frame = images[ann["image_id"]]
        box = _pixel_box(bbox, sizes.get(ann["image_id"]), path, f"annotations[id={ann.get('id')}].bbox")
        ds.boxes.append(
            Box(
                vid,
                frame,
                cats[ann["category_id"]],
                box,
                "pixel",
                ann.get("id"),
                {"split": split},
            )
        )


def _pixel_box(bbox: list, size: tuple[float, float] | None, path: Path, key: str) -> tuple:
    """COCO [x, y, w, h] in pixels: finite numbers, w, h >= 0, inside the image when its size is known."""
    x, y, w, h = (as_float(v, path, f"{key}[{i}]") for i, v in enumerate(bbox))
    if w < 0 or h < 0:
        raise DataFormatError(f"{key}: negative width or height ({w:g}, {h:g})", path=path)
    if size is not None:
        width, height = size
        tol = 1.0  # COCO exporters round to the pixel
        if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
            raise DataFormatError(
                f"{key}: box {x:g},{y:g},{w:g},{h:g} lies outside the {width:g}x{height:g} image", path=path
            )
    return (x, y, w, h)


# Endoscapes numbers the criteria C1 two structures, C2 hepatocystic triangle, C3 cystic plate (its
# annotation protocol: 1 = 2-structure, 2 = hepatocystic triangle, 3 = cystic plate criterion);
# CVSLabel.criteria are in surgkit.vocab.CVS_CRITERIA order (two structures, cystic plate, triangle).
ENDOSCAPES_ORDER = ("two_structures", "hepatocystic_triangle", "cystic_plate")


def from_endoscapes_order(values) -> tuple[float, float, float]:
    """(C1, C2, C3) as Endoscapes writes them -> CVS_CRITERIA order."""
    by_name = dict(zip(ENDOSCAPES_ORDER, (float(v) for v in values), strict=True))
    return tuple(by_name[c] for c in CVS_CRITERIA)  # type: ignore[return-value]


def _tags(img: dict) -> dict:
    return {k: img[k] for k in ("frame_id", "is_ds_keyframe", "is_det_keyframe") if k in img}


def _criteria(values, path: Path, image_id) -> tuple[float, float, float]:
    if (
        not isinstance(values, list)
        or len(values) != 3
        or not all(isinstance(v, (int, float)) for v in values)
    ):
        raise DataFormatError(f"image {image_id}: 'ds' must be 3 numbers, got {values!r}", path=path)
    for v in values:
        check_range(float(v), 0.0, 1.0, path, None, f"image {image_id} ds")
    return tuple(float(v) for v in values)


def _read_metadata(ds: Dataset, path: Path, add_cvs: bool) -> int:
    n = 0
    seen: dict[tuple[str, int], int] = {}
    for line, row in read_csv_dicts(path, ("vid", "frame", "C1", "C2", "C3")):
        vid = str(check_range(parse_float_id(row["vid"], path, line, "vid"), 0, 1e15, path, line, "vid"))
        frame = check_range(parse_float_id(row["frame"], path, line, "frame"), 0, 1e15, path, line, "frame")
        if (vid, frame) in seen:
            raise DataFormatError(
                f"video {vid} frame {frame} also on line {seen[vid, frame]}", path=path, line=line
            )
        seen[vid, frame] = line
        crit = from_endoscapes_order(
            check_range(parse_float(row[c], path, line, c), 0, 1, path, line, c) for c in ("C1", "C2", "C3")
        )
        n += 1
        if add_cvs:
            ds.cvs.append(CVSLabel(vid, frame, frame, crit, extra={"source": "all_metadata.csv"}))
            ds.videos.setdefault(vid, Video(vid, None, None, 0, extra={"frames": {}}))
    return n


def _read_masks(ds: Dataset, root: Path) -> None:
    for kind, folder, ext in (("semantic", "semseg", ".png"), ("instance", "insseg", ".npy")):
        if not (root / folder).is_dir():
            continue
        for p in sorted((root / folder).glob(f"*{ext}")):
            m = re.fullmatch(r"([0-9]+)_([0-9]+)", p.stem)
            if not m:
                ds.skip(p.name, "mask file name is not <vid>_<frame>", p)
                continue
            ds.masks.append(MaskRef(str(int(m.group(1))), int(m.group(2)), p, kind))
