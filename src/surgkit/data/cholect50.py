"""CholecT50 / CholecT45 readers (Nwoye et al.): action triplets <instrument, verb, target> at 1 fps.

Two layouts are read (spec metrics_formats.md §7.3), detected automatically:

* **JSON layout** (CholecT50 release): ``videos/VIDxx/000000.png``, ``labels/VIDxx.json`` with keys
  ``video, fps, num_frames, categories, annotations``; ``annotations`` maps a frame id (string) to a
  list of 15-element instance vectors ``[triplet, inst id, score, x, y, w, h, verb, target id, score,
  x, y, w, h, phase]`` (-1 = null; a frame without action has one vector with triplet -1).
* **TXT layout** (CholecT45 release): ``data/VIDxx/*.png``, ``{triplet,instrument,verb,target}/VIDxx.txt``
  (headerless CSV: 0-based frame index, then 100/6/10/15 binary columns), ``dict/*.txt``.

Validation: instance vectors of 15 values, triplet ids 0-99 whose instrument/verb/target agree with
``maps.txt`` (``surgkit.vocab.TRIPLET_COMPONENTS``), one phase per frame, frame ids in
[0, num_frames), as many annotated frames as ``num_frames`` and as frame images, category names equal
to the vocabulary.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from surgkit.data._parse import (
    as_dict,
    as_float,
    as_int,
    is_int_text,
    list_images,
    natural_key,
    parse_int,
    read_json,
    split_rows,
)
from surgkit.data.model import Box, Dataset, TripletLabels, Video
from surgkit.errors import DataFormatError
from surgkit.vocab import CHOLECT50_PHASES, INSTRUMENTS, TARGETS, TRIPLET_COMPONENTS, TRIPLET_NAMES, VERBS

VOCABS = {
    "triplet": TRIPLET_NAMES,
    "instrument": INSTRUMENTS,
    "verb": VERBS,
    "target": TARGETS,
    "phase": CHOLECT50_PHASES,
}
TXT_COLUMNS = {"triplet": 100, "instrument": 6, "verb": 10, "target": 15}


def video_number(vid: str) -> int:
    m = re.search(r"(\d+)$", vid)
    if not m:
        raise ValueError(f"no video number in {vid!r}")
    return int(m.group(1))


def detect_layout(root: Path) -> str:
    if (root / "labels").is_dir() and any((root / "labels").glob("*.json")):
        return "json"
    if (root / "triplet").is_dir():
        return "txt"
    raise DataFormatError(
        "neither labels/*.json (CholecT50 layout) nor triplet/*.txt (CholecT45 layout) found", path=root
    )


def load(root: str | Path, require_media: bool = True, name: str = "cholect50") -> Dataset:
    """Read a CholecT50 (or CholecT45) root in either layout; ``name`` sets the default split family."""
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(f"{name} root folder does not exist", path=root)
    layout = detect_layout(root)
    ds = Dataset(
        name=name,
        root=root,
        split_scheme=f"{name}-crossval" if name == "cholect45" else "cholect50-challenge",
    )
    ds.classes.update({k: v for k, v in VOCABS.items()})
    ds.meta["layout"] = layout
    if layout == "json":
        for path in sorted((root / "labels").glob("*.json"), key=lambda p: natural_key(p.name)):
            vid = path.stem
            labels, boxes, n = read_label_json(path, vid)
            ds.triplets[vid] = labels
            ds.boxes.extend(boxes)
            ds.videos[vid] = _video(ds, root / "videos", vid, n, require_media, path)
    else:
        for path in sorted((root / "triplet").glob("*.txt"), key=lambda p: natural_key(p.name)):
            vid = path.stem
            ds.triplets[vid], disagree = read_txt_labels(root, vid)
            if disagree:
                ds.notes.append(
                    f"{vid}: {disagree} frames whose component files differ from maps.txt of the triplets"
                )
            ds.videos[vid] = _video(ds, root / "data", vid, None, require_media, path)
        ds.notes.append("CholecT45 txt layout has no phase labels (phases = -1)")
    if not ds.videos:
        raise DataFormatError("no label files", path=root)
    ds.notes.append("frames are 0-based 1-fps indices; frames without any triplet have an all-zero row")
    return ds


def _video(ds: Dataset, folder: Path, vid: str, n: int | None, require: bool, label_path: Path) -> Video:
    frame_dir = folder / vid
    video = Video(vid, frame_dir if frame_dir.is_dir() else None, 1.0, n, extra={"number": video_number(vid)})
    if video.path is None:
        if require:
            raise DataFormatError(f"missing frame folder for {vid}", path=frame_dir)
        ds.skip(vid, "no frame folder (labels only)", frame_dir)
        return video
    count = len(list_images(frame_dir))
    labelled = len(ds.triplets[vid].frames)
    if count != labelled:
        raise DataFormatError(
            f"frame count mismatch: {count} images in {frame_dir} but {labelled} labelled frames",
            path=label_path,
        )
    video.num_frames = count
    return video


def _check_categories(cats: object, path: Path) -> None:
    if not isinstance(cats, dict):
        raise DataFormatError("'categories' must be an object keyed by component", path=path)
    for comp, mapping in cats.items():
        vocab = VOCABS.get(comp)
        if vocab is None or not isinstance(mapping, dict):
            continue
        for key, value in mapping.items():
            idx = int(key) if is_int_text(str(key)) else -1
            if not 0 <= idx < len(vocab):
                raise DataFormatError(f"categories.{comp}: id {key!r} outside 0..{len(vocab) - 1}", path=path)
            if str(value).strip().lower() != vocab[idx].lower():
                raise DataFormatError(
                    f"categories.{comp}[{key}] = {value!r}, expected {vocab[idx]!r}", path=path
                )


def read_label_json(path: Path, vid: str) -> tuple[TripletLabels, list[Box], int]:
    """Parse one CholecT50 ``VIDxx.json``; returns labels, any non-null boxes, num_frames."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataFormatError("expected a JSON object", path=path)
    for key in ("num_frames", "annotations"):
        if key not in data:
            raise DataFormatError(f"missing key {key!r}", path=path)
    if "categories" in data:
        _check_categories(data["categories"], path)
    n = as_int(data["num_frames"], path, "num_frames", lo=0)
    if "video" in data and as_int(data["video"], path, "video", lo=0) != _number_or_none(vid):
        raise DataFormatError(f"video: {data['video']} but the file is {vid}", path=path)
    ann = as_dict(data["annotations"], path, "annotations")
    if "fps" in data:
        as_float(data["fps"], path, "fps", lo=1e-9)  # a negative or zero rate is a broken file
    keys = _frame_keys(ann, path)
    if len(keys) != n:
        raise DataFormatError(
            f"frame count mismatch: num_frames = {n} but {len(keys)} annotated frames", path=path
        )
    frames = np.asarray([int(k) for k in keys], np.int64)
    if len(frames) and (frames[0] < 0 or frames[-1] >= n):
        raise DataFormatError(f"frame ids must lie in [0, {n})", path=path)
    trip = np.zeros((len(keys), 100), np.uint8)
    phases = np.full(len(keys), -1, np.int64)
    boxes: list[Box] = []
    for row, key in enumerate(keys):
        instances = ann[key]
        if not isinstance(instances, list) or not instances:
            raise DataFormatError(f"frame {key}: expected a non-empty list of instance vectors", path=path)
        for vec in instances:
            phases[row] = _instance(vec, key, path, trip[row], phases[row], vid, boxes)
    return TripletLabels.from_triplets(vid, frames, trip, phases), boxes, n


def _number_or_none(vid: str) -> int | None:
    try:
        return video_number(vid)
    except ValueError:
        return None


def _frame_keys(ann: dict, path: Path) -> list[str]:
    """Annotation keys sorted by frame; each an ASCII integer, no two for the same frame ('0', '00')."""
    seen: dict[int, str] = {}
    for key in ann:
        if not is_int_text(key):
            raise DataFormatError(f"annotations: key {key!r} is not a frame id (an integer)", path=path)
        frame = int(key)
        if frame in seen:
            raise DataFormatError(
                f"annotations: keys {seen[frame]!r} and {key!r} are the same frame {frame}", path=path
            )
        seen[frame] = key
    return [seen[f] for f in sorted(seen)]


def _instance(vec, key: str, path: Path, trip_row: np.ndarray, phase: int, vid: str, boxes: list[Box]) -> int:
    where = f"annotations.{key}"
    if not isinstance(vec, list) or len(vec) != 15:
        got = len(vec) if isinstance(vec, list) else type(vec).__name__
        raise DataFormatError(f"frame {key}: instance vector must have 15 values, got {got}", path=path)
    t, inst, verb, target, ph = (as_int(vec[i], path, f"{where}[{i}]", lo=-1) for i in (0, 1, 7, 8, 14))
    for i in (2, 3, 4, 5, 6, 9, 10, 11, 12, 13):
        as_float(vec[i], path, f"{where}[{i}]")
    if t != -1:
        if not 0 <= t < 100:
            raise DataFormatError(f"frame {key}: unknown triplet id {t}", path=path)
        if (inst, verb, target) != TRIPLET_COMPONENTS[t] and (inst, verb, target) != (-1, -1, -1):
            raise DataFormatError(
                f"frame {key}: triplet {t} is {TRIPLET_NAMES[t]} = {TRIPLET_COMPONENTS[t]}, "
                f"but the vector says instrument/verb/target = {(inst, verb, target)}",
                path=path,
            )
        trip_row[t] = 1
        for off, comp_id, names in (
            (2, TRIPLET_COMPONENTS[t][0], INSTRUMENTS),
            (9, TRIPLET_COMPONENTS[t][2], TARGETS),
        ):
            x, y, w, h = (float(v) for v in vec[off + 1 : off + 5])
            if min(x, y, w, h) >= 0:
                if x + w > 1 + 1e-6 or y + h > 1 + 1e-6:
                    raise DataFormatError(
                        f"frame {key}: normalised box {x:g},{y:g},{w:g},{h:g} extends outside the image",
                        path=path,
                    )
                boxes.append(
                    Box(vid, int(key), names[comp_id], (x, y, w, h), "normalized", extra={"triplet": t})
                )
    if ph != -1 and not 0 <= ph < len(CHOLECT50_PHASES):
        raise DataFormatError(f"frame {key}: unknown phase id {ph}", path=path)
    if phase != -1 and ph != phase:
        raise DataFormatError(
            f"frame {key}: instance vectors disagree on the phase ({phase} vs {ph})", path=path
        )
    return ph if ph != -1 else phase


def read_txt_labels(root: Path, vid: str) -> tuple[TripletLabels, int]:
    """CholecT45 txt layout; returns the labels and the number of frames whose component files
    disagree with the components derived from the triplets (the files are kept as shipped)."""
    frames, arrays = None, {}
    for comp, ncols in TXT_COLUMNS.items():
        path = root / comp / f"{vid}.txt"
        if not path.is_file():
            if comp == "triplet":
                raise DataFormatError("missing triplet label file", path=path)
            continue
        _, rows = split_rows(path, sep=",", header=False, ncols=1 + ncols)
        fr, vals = [], []
        for line, fields in rows:
            fr.append(parse_int(fields[0], path, line, "frame"))
            row = [parse_int(v, path, line, f"{comp} column {j}") for j, v in enumerate(fields[1:])]
            if any(v not in (0, 1) for v in row):
                raise DataFormatError(f"{comp} labels must be 0/1", path=path, line=line)
            vals.append(row)
        fr_arr = np.asarray(fr, np.int64)
        if frames is None:
            frames = fr_arr
            if np.any(np.diff(frames) <= 0):
                raise DataFormatError("frame indices must increase", path=path)
        elif not np.array_equal(frames, fr_arr):
            raise DataFormatError(
                f"frame count mismatch with triplet/{vid}.txt ({len(fr_arr)} vs {len(frames)} rows)",
                path=path,
            )
        arrays[comp] = np.asarray(vals, np.uint8).reshape(-1, ncols)
    labels = TripletLabels.from_triplets(vid, frames, arrays["triplet"])
    disagree = 0
    for comp, attr in (("instrument", "instruments"), ("verb", "verbs"), ("target", "targets")):
        if comp in arrays:  # the shipped component files are authoritative; count disagreements
            disagree += int((getattr(labels, attr) != arrays[comp]).any(axis=1).sum())
            setattr(labels, attr, arrays[comp])
    return labels, disagree
