"""Readers for the prediction / label files of ``surgkit eval`` (formats documented in docs/metrics.md).

Every malformed input raises :class:`surgkit.errors.DataFormatError` naming the file and, for
text formats, the 1-based line. NPZ files are opened with ``allow_pickle=False``.

* **phase** (labels and predictions, one file each, same format):
  CSV with a header ``video,frame,phase`` (the value column may also be called ``label`` or
  ``prediction``); JSON ``{"video01": [0, 0, 1, ...], ...}``; NPZ with one 1-D integer array per
  video; or a folder of per-video ``.txt`` files in the Cholec80 / Matlab-protocol layout (header
  line, then ``frame phase`` rows; the video is the last number in the file name). Values are
  0-based ids or phase names of the dataset vocabulary.
* **triplet**: NPZ with ``video_ids`` (N,) and ``targets`` or ``scores`` (N, 100) (optional
  ``frames``); or CSV ``video,frame,c0,...,c99``. Labels and predictions must list the same
  (video, frame) rows in the same order.
* **skill**: CSV ``fold,true,pred[,trial]`` or a JSON list of such records.
* **vqla**: CSV or JSON records with ``answer_true``, ``answer_pred`` (ids or answer names) and
  optionally ``gt_x1,gt_y1,gt_x2,gt_y2`` (pixel, 1-based inclusive, as the dataset label files)
  with either ``pred_cx,pred_cy,pred_w,pred_h`` or ``pred_x1,pred_y1,pred_x2,pred_y2``
  (normalised to the image).
"""

from __future__ import annotations

import math
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from surgkit.errors import DataFormatError
from surgkit.utils.inputs import is_int_text, read_csv_dicts, read_json, read_text_lines

__all__ = [
    "jsonable",
    "read_phase_file",
    "read_records",
    "read_skill_file",
    "read_triplet_file",
    "read_vqla_file",
]


def _suffix(path: Path) -> str:
    s = path.suffix.lower()
    if s not in (".csv", ".json", ".npz"):
        raise DataFormatError("unsupported file type (use .csv, .json or .npz)", path=path)
    return s


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as e:  # object arrays need pickle: refused
        raise DataFormatError(f"cannot read NPZ without pickle: {e}", path=path) from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise DataFormatError(f"not a valid NPZ file ({e})", path=path) from None


def _load_json(path: Path) -> Any:
    return read_json(path)


def read_records(path: str | Path) -> list[tuple[int | None, dict[str, str]]]:
    """CSV rows (with header) or a JSON list of objects, as ``(line, record)`` pairs."""
    path = Path(path)
    if _suffix(path) == ".csv":
        return list(read_csv_dicts(path, ()))
    data = _load_json(path)
    if isinstance(data, dict) and "records" in data:
        data = data["records"]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataFormatError("expected a JSON list of objects (records)", path=path)
    return [(None, r) for r in data]


def _field(rec: dict, names: tuple[str, ...], path: Path, line: int | None, idx: int) -> Any:
    for n in names:
        if n in rec:
            return rec[n]
    where = "" if line is not None else f"record {idx}: "
    raise DataFormatError(f"{where}missing field {' / '.join(names)}", path=path, line=line)


def _number(value: Any, what: str, path: Path, line: int | None, idx: int, integer: bool = False) -> float:
    where = "" if line is not None else f"record {idx}: "
    if isinstance(value, bool):
        raise DataFormatError(f"{where}{what} {value!r} is not a number", path=path, line=line)
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise DataFormatError(f"{where}{what} {value!r} is not a number", path=path, line=line) from None
    if not math.isfinite(x) or (integer and x != int(x)):
        kind = "an integer" if integer else "finite"
        raise DataFormatError(f"{where}{what} {value!r} is not {kind}", path=path, line=line)
    return x


def _class_id(
    value: Any,
    names: tuple[str, ...],
    what: str,
    path: Path,
    line: int | None,
    idx: int,
    num_classes: int | None = None,
) -> int:
    """A class given by name or 0-based id; with ``num_classes`` the id must lie in 0..num_classes-1."""
    where = "" if line is not None else f"record {idx}: "
    if isinstance(value, str) and value.strip() in names:
        return names.index(value.strip())
    if (
        isinstance(value, str)
        and is_int_text(value)
        or (isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)))
    ):
        cid = int(value)
        n = num_classes if num_classes is not None else (len(names) or None)
        if cid < 0 or (n is not None and cid >= n):
            top = f"0..{n - 1}" if n is not None else "0 or more"
            raise DataFormatError(f"{where}{what} id {cid} outside {top}", path=path, line=line)
        return cid
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    raise DataFormatError(f"{where}{what} {shown} is neither an id nor a known name", path=path, line=line)


# ------------------------------------------------------------------------------------- phase
def video_key_from_name(path: Path) -> str:
    """Video id of a per-video text file: the last number in its stem ("video41-phase" -> "41")."""
    numbers = re.findall(r"\d+", path.stem)
    if not numbers:
        raise DataFormatError("cannot tell the video from the file name (it contains no number)", path=path)
    return str(int(numbers[-1]))


def read_phase_txt(
    path: Path, phase_names: tuple[str, ...] = (), num_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One Cholec80/M2CAI-style phase file: a header line (always skipped, as ReadPhaseLabel.m),
    then whitespace-separated ``frame phase`` rows; returns (sorted frame indices, their phases)."""
    frames: dict[int, int] = {}
    lines = read_text_lines(path)
    if not lines:
        raise DataFormatError("empty file (a header line is required)", path=path, line=1)
    for number, text in enumerate(lines[1:], start=2):
        fields = text.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise DataFormatError(f"expected 'frame phase', got {len(fields)} fields", path=path, line=number)
        frame = _frame(fields[0], path, number, 0)
        if frame in frames:
            raise DataFormatError(f"frame {frame} appears twice", path=path, line=number)
        frames[frame] = _class_id(fields[1], phase_names, "phase", path, number, 0, num_classes)
    if not frames:
        raise DataFormatError("no rows after the header", path=path)
    return _sorted_frames(frames)


def _frame(value: Any, path: Path, line: int | None, idx: int) -> int:
    """A frame index: a whole, non-negative number."""
    frame = int(_number(value, "frame", path, line, idx, integer=True))
    if frame < 0:
        where = "" if line is not None else f"record {idx}: "
        raise DataFormatError(f"{where}negative frame {frame}", path=path, line=line)
    return frame


def _sorted_frames(frames: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    order = sorted(frames)
    return np.array(order, dtype=np.int64), np.array([frames[k] for k in order], dtype=np.int64)


def _implicit_frames(phases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(phases.size, dtype=np.int64), phases


def read_phase_file(
    path: str | Path, phase_names: tuple[str, ...] = (), num_classes: int | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{video: (frames,) int array}`` from a phase CSV / JSON / NPZ file (frames sorted for CSV),
    one ``.txt`` file per video (Cholec80 annotation / Matlab-protocol layout) or a folder of them.

    Returns ``{video: (frame indices, phases)}``; JSON and NPZ sequences have frames 0..N-1.
    """
    path = Path(path)
    if path.is_dir() or path.suffix.lower() == ".txt":
        files = sorted(path.glob("*.txt")) if path.is_dir() else [path]
        if not files:
            raise DataFormatError("folder contains no .txt phase files", path=path)
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for f in files:
            key = video_key_from_name(f)
            if key in out:
                raise DataFormatError(f"two files for video {key} in this folder", path=f)
            out[key] = read_phase_txt(f, phase_names, num_classes)
        return out
    kind = _suffix(path)
    if kind == ".npz":
        out = {}
        for k, v in _load_npz(path).items():
            if v.ndim != 1 or not np.issubdtype(v.dtype, np.integer):
                raise DataFormatError(
                    f"array '{k}' must be a 1-D integer array, got {v.dtype} {v.shape}", path=path
                )
            bad = np.flatnonzero((v < 0) | (v >= num_classes)) if num_classes is not None else []
            if len(bad):
                i = int(bad[0])
                raise DataFormatError(
                    f"array '{k}' index {i}: phase id {int(v[i])} outside 0..{num_classes - 1}", path=path
                )
            out[k] = _implicit_frames(v.astype(np.int64))
        return out
    if kind == ".json":
        data = _load_json(path)
        if not isinstance(data, dict):
            raise DataFormatError('expected a JSON object {"video": [phase, ...]}', path=path)
        out = {}
        for video, seq in data.items():
            if not isinstance(seq, list):
                raise DataFormatError(f"video {video}: expected a list of phases", path=path)
            out[str(video)] = _implicit_frames(
                np.array(
                    [
                        _class_id(
                            x, phase_names, f"video {video} frame {i}: phase", path, None, i, num_classes
                        )
                        for i, x in enumerate(seq)
                    ],
                    dtype=np.int64,
                )
            )
        return out
    frames: dict[str, dict[int, int]] = {}
    for line, rec in read_records(path):
        video = str(_field(rec, ("video",), path, line, 0))
        frame = _frame(_field(rec, ("frame",), path, line, 0), path, line, 0)
        value = _field(rec, ("phase", "label", "prediction"), path, line, 0)
        per_video = frames.setdefault(video, {})
        if frame in per_video:
            raise DataFormatError(f"video {video}: frame {frame} appears twice", path=path, line=line)
        per_video[frame] = _class_id(value, phase_names, "phase", path, line, 0, num_classes)
    if not frames:
        raise DataFormatError("no rows", path=path)
    return {v: _sorted_frames(f) for v, f in frames.items()}


def pair_videos(labels: dict, preds: dict, label_path: Path, pred_path: Path) -> tuple[list[str], list, list]:
    """Match videos by name; every labelled video needs a prediction and vice versa."""
    missing = sorted(set(labels) - set(preds))
    if missing:
        raise DataFormatError(f"no predictions for video(s) {', '.join(missing[:5])}", path=pred_path)
    extra = sorted(set(preds) - set(labels))
    if extra:
        raise DataFormatError(f"prediction(s) for unlabelled video(s) {', '.join(extra[:5])}", path=pred_path)
    names = sorted(labels)
    return names, [labels[n] for n in names], [preds[n] for n in names]


# ----------------------------------------------------------------------------------- triplet
def read_triplet_file(path: str | Path, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(video_ids, frames, matrix)`` from a triplet NPZ (``key`` = targets or scores) or CSV."""
    path = Path(path)
    kind = _suffix(path)
    if kind == ".json":
        raise DataFormatError("triplet files must be .npz or .csv", path=path)
    if kind == ".npz":
        z = _load_npz(path)
        for need in (key, "video_ids"):
            if need not in z:
                raise DataFormatError(f"missing array '{need}' (has {', '.join(z) or 'none'})", path=path)
        m, vids = z[key], z["video_ids"]
        if m.ndim != 2 or m.shape[1] != 100 or vids.shape != (m.shape[0],):
            raise DataFormatError(
                f"'{key}' must be (N, 100) and 'video_ids' (N,), got {m.shape}, {vids.shape}", path=path
            )
        frames = z.get("frames", np.arange(m.shape[0]))
        if not np.issubdtype(m.dtype, np.number) or np.issubdtype(m.dtype, np.complexfloating):
            raise DataFormatError(f"'{key}' must be numeric, got {m.dtype}", path=path)
        return vids, frames, _check_matrix(m.astype(np.float64), key, path, None)
    vids, frames, rows = [], [], []
    for line, rec in read_records(path):
        vids.append(str(_field(rec, ("video",), path, line, 0)))
        frames.append(_frame(_field(rec, ("frame",), path, line, 0), path, line, 0))
        rows.append(
            [_number(_field(rec, (f"c{k}",), path, line, 0), f"c{k}", path, line, 0) for k in range(100)]
        )
    if not rows:
        raise DataFormatError("no rows", path=path)
    return np.array(vids), np.array(frames), _check_matrix(np.array(rows, dtype=np.float64), key, path, 2)


def _check_matrix(m: np.ndarray, key: str, path: Path, first_line: int | None) -> np.ndarray:
    """Scores must be finite; targets must be 0 or 1. Names the first offending row."""
    bad = ~np.isfinite(m) if key == "scores" else ~np.isin(m, (0.0, 1.0))
    if bad.any():
        r, c = (int(x) for x in np.argwhere(bad)[0])
        need = "finite" if key == "scores" else "0 or 1"
        line = first_line + r if first_line is not None else None
        where = "" if line is not None else f"row {r}: "
        raise DataFormatError(f"{where}{key} c{c} = {m[r, c]!r} (must be {need})", path=path, line=line)
    return m


# ------------------------------------------------------------------------------------- skill
def read_skill_file(path: str | Path) -> list[dict]:
    """Folds for :func:`surgkit.metrics.skill.cross_validation_summary` from CSV / JSON records."""
    path = Path(path)
    folds: dict[str, dict] = {}
    for i, (line, rec) in enumerate(read_records(path)):
        fold = str(_field(rec, ("fold",), path, line, i))
        f = folds.setdefault(fold, {"name": fold, "pred": [], "true": [], "ids": []})
        f["true"].append(_number(_field(rec, ("true",), path, line, i), "true", path, line, i))
        f["pred"].append(_number(_field(rec, ("pred",), path, line, i), "pred", path, line, i))
        f["ids"].append(rec.get("trial", f"{path.name}:{line if line is not None else i}"))
    if not folds:
        raise DataFormatError("no rows", path=path)
    return list(folds.values())


# -------------------------------------------------------------------------------------- vqla
def read_vqla_file(path: str | Path, answers: tuple[str, ...]) -> dict:
    """``{"y_true", "y_pred", "gt_pixel" or None, "pred_xyxy" or None}`` from VQLA records."""
    from surgkit.metrics.vqla import cxcywh_to_xyxy

    path = Path(path)
    y_true, y_pred, gt, pred = [], [], [], []
    records = read_records(path)
    if not records:
        raise DataFormatError("no rows", path=path)
    has_boxes = "gt_x1" in records[0][1]
    pred_cols = ("pred_cx", "pred_cy", "pred_w", "pred_h")
    cxcywh = has_boxes and "pred_cx" in records[0][1]
    if has_boxes and not cxcywh:
        pred_cols = ("pred_x1", "pred_y1", "pred_x2", "pred_y2")
    for i, (line, rec) in enumerate(records):
        y_true.append(
            _class_id(_field(rec, ("answer_true",), path, line, i), answers, "answer_true", path, line, i)
        )
        y_pred.append(
            _class_id(_field(rec, ("answer_pred",), path, line, i), answers, "answer_pred", path, line, i)
        )
        if has_boxes:
            g = [_number(_field(rec, (c,), path, line, i), c, path, line, i) for c in GT_COLS]
            p = [_number(_field(rec, (c,), path, line, i), c, path, line, i) for c in pred_cols]
            _check_boxes(g, p, pred_cols, path, line, i)
            gt.append(g)
            pred.append(p)
    out = {"y_true": np.array(y_true), "y_pred": np.array(y_pred), "gt_pixel": None, "pred_xyxy": None}
    if has_boxes:
        out["gt_pixel"] = np.array(gt)
        out["pred_xyxy"] = cxcywh_to_xyxy(np.array(pred)) if cxcywh else np.array(pred)
    return out


GT_COLS = ("gt_x1", "gt_y1", "gt_x2", "gt_y2")


def _check_boxes(g: list, p: list, pred_cols: tuple, path: Path, line: int | None, idx: int) -> None:
    """GT: pixels, 0 <= x1 <= x2, 0 <= y1 <= y2. Prediction: normalised, every value in [0, 1]."""
    where = "" if line is not None else f"record {idx}: "
    if not (0 <= g[0] <= g[2] and 0 <= g[1] <= g[3]):
        raise DataFormatError(
            f"{where}gt box {g} needs 0 <= x1 <= x2 and 0 <= y1 <= y2 (pixels)", path=path, line=line
        )
    for c, v in zip(pred_cols, p, strict=True):
        if not 0.0 <= v <= 1.0:
            raise DataFormatError(
                f"{where}{c} = {v:g} is not normalised to the image (expected 0..1)", path=path, line=line
            )


# ------------------------------------------------------------------------------------ output
def jsonable(obj: Any) -> Any:
    """Nested numpy-free structure for strict JSON output: arrays → lists, NaN/Inf → null."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj
