"""Generic clinical skill format, for private datasets such as RAH-skill and RARP-skill.

Clinical skill data are videos of real procedures with one or more *scored segments* (e.g. the three
suturing phases of a robot-assisted vaginal-vault closure), each rated by one or more raters on a
scale made of domain items (M-GEARS by default: depth perception, bimanual dexterity, efficiency,
force sensitivity, robotic control; each 1-5, total 5-25). Two equivalent encodings are accepted.

**JSON** (``skill.json`` in ``root``, or the file itself)::

    {"format": "surgkit-clinical-skill/1",
     "scale": {"name": "M-GEARS", "items": ["depth_perception", ...], "item_range": [1, 5]},
     "videos": [
       {"id": "rah_001", "path": "videos/rah_001.mp4", "surgeon": "S03",
        "procedure": "vaginal_vault_closure", "fps": 25,
        "segments": [
          {"name": "suturing_1", "start": 120.0, "end": 410.5,
           "ratings": [{"rater": "R1", "items": {"depth_perception": 3, ...}, "score": 16}]}]}]}

``scale`` is optional (default M-GEARS); it may declare ``score_range`` ([lo, hi] of a video or segment
score, default items × item range, e.g. 6-30 for a 6-item M-GEARS); ``score`` is optional and, when
given, must equal the sum of the items; ``start``/``end`` are seconds (optional).

**CSV** (``videos.csv`` + ``ratings.csv`` in ``root``)::

    videos.csv:  id,path,surgeon,procedure[,fps]
    ratings.csv: video,segment,start,end,rater,<item columns...>[,score]

In the CSV form the item columns are those of the scale (default M-GEARS); unknown extra columns are
an error. The video score is the mean over segments of the segment score, itself the mean over raters
of the item sum; video item scores are the means over all segment ratings. Paths are relative to root.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from surgkit.data._parse import check_range, parse_float, read_csv_dicts, read_json
from surgkit.data.model import Dataset, Rating, ScoredSegment, SkillScore, Video
from surgkit.errors import DataFormatError
from surgkit.utils.ids import safe_id, safe_relative
from surgkit.vocab import MGEARS_ITEMS

FORMAT = "surgkit-clinical-skill/1"
VIDEO_COLUMNS = ("id", "path", "surgeon", "procedure")
RATING_COLUMNS = ("video", "segment", "start", "end", "rater")


@dataclasses.dataclass(frozen=True)
class Scale:
    name: str = "M-GEARS"
    items: tuple[str, ...] = MGEARS_ITEMS
    item_range: tuple[float, float] = (1.0, 5.0)
    score_range: tuple[float, float] | None = None  # None: items × item range


def load(root: str | Path, require_media: bool = True, scale: Scale | None = None) -> Dataset:
    """Read the clinical skill format at ``root`` (JSON file, folder with skill.json, or the CSV pair)."""
    root = Path(root)
    if root.is_file():
        return _load_json(root, root.parent, require_media)
    if (root / "skill.json").is_file():
        return _load_json(root / "skill.json", root, require_media)
    if (root / "videos.csv").is_file():
        return _load_csv(root, require_media, scale or Scale())
    raise DataFormatError("expected skill.json or videos.csv + ratings.csv", path=root)


def _rating(
    items: dict, given_score, scale: Scale, path: Path, line: int | None, where: str, rater
) -> Rating:
    missing = [k for k in scale.items if k not in items]
    unknown = [k for k in items if k not in scale.items]
    if missing or unknown:
        raise DataFormatError(
            f"{where}: missing items {missing} / unknown items {unknown} for {scale.name}",
            path=path,
            line=line,
        )
    values = {}
    for k in scale.items:
        v = items[k]
        value = (
            parse_float(str(v), path, line, f"{where} {k}") if not isinstance(v, (int, float)) else float(v)
        )
        values[k] = check_range(value, *scale.item_range, path, line, f"{where} {k}")
    total = float(sum(values.values()))
    if given_score not in (None, ""):
        score = (
            float(given_score)
            if isinstance(given_score, (int, float))
            else parse_float(str(given_score), path, line, "score")
        )
        if abs(score - total) > 1e-6:
            raise DataFormatError(f"{where}: score {score:g} != sum of items {total:g}", path=path, line=line)
    return Rating(None if rater in (None, "") else str(rater), values, total)


def _add_video(
    ds: Dataset,
    vid: str,
    path_text: str | None,
    surgeon,
    procedure,
    fps,
    where: Path,
    line: int | None,
    require: bool,
) -> None:
    safe_id(vid, where, line=line, what="video id")
    if vid in ds.videos:
        raise DataFormatError(f"video {vid!r} listed twice", path=where, line=line)
    media = (
        (ds.root / safe_relative(path_text, where if line is None else f"{where}:{line}", "path"))
        if path_text
        else None
    )
    if media is None or not media.exists():
        if require:
            raise DataFormatError(f"video {vid!r}: missing media {path_text!r}", path=where, line=line)
        ds.skip(vid, "media missing (scores kept)", media)
        media = None
    extra = {"procedure": procedure} if procedure else {}
    ds.videos[vid] = Video(
        vid,
        media,
        float(fps) if fps not in (None, "") else None,
        None,
        str(surgeon) if surgeon not in (None, "") else None,
        extra,
    )


def _finish(ds: Dataset, segments: dict[str, list[ScoredSegment]], scale: Scale) -> None:
    for vid in ds.videos:
        segs = segments.get(vid, [])
        if not segs:
            ds.skip(vid, "no scored segment (video kept without skill label)")
            continue
        all_ratings = [r for s in segs for r in s.ratings]
        items = {k: float(np.mean([r.items[k] for r in all_ratings])) for k in scale.items}
        score = float(np.mean([s.score for s in segs]))
        ds.skill[vid] = SkillScore(vid, scale.name, score, items, segments=segs, ratings=all_ratings)
    ds.classes["items"] = scale.items
    ds.meta["scale"] = dataclasses.asdict(scale)
    ds.notes.append("video score = mean over segments of the mean over raters of the item sum")


def _load_json(path: Path, root: Path, require: bool) -> Dataset:
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("videos"), list):
        raise DataFormatError("expected an object with a 'videos' list", path=path)
    if data.get("format", FORMAT) != FORMAT:
        raise DataFormatError(f"unsupported format {data.get('format')!r} (expected {FORMAT})", path=path)
    sc = data.get("scale") or {}
    score_range = sc.get("score_range")
    if score_range is not None:
        ok = isinstance(score_range, list) and len(score_range) == 2
        ok = ok and all(isinstance(v, (int, float)) for v in score_range) and score_range[0] < score_range[1]
        if not ok:
            raise DataFormatError(
                f"scale.score_range must be [lo, hi] with lo < hi, got {score_range!r}", path=path
            )
        score_range = (float(score_range[0]), float(score_range[1]))
    scale = Scale(
        sc.get("name", "M-GEARS"),
        tuple(sc.get("items", MGEARS_ITEMS)),
        tuple(sc.get("item_range", (1, 5))),
        score_range,
    )
    ds = Dataset(name="clinical_skill", root=root, split_scheme="kfold-by-surgeon")
    segments: dict[str, list[ScoredSegment]] = {}
    for k, v in enumerate(data["videos"]):
        if not isinstance(v, dict) or "id" not in v:
            raise DataFormatError(f"videos[{k}]: needs an 'id'", path=path)
        vid = str(v["id"])
        _add_video(
            ds, vid, v.get("path"), v.get("surgeon"), v.get("procedure"), v.get("fps"), path, None, require
        )
        for j, s in enumerate(v.get("segments", [])):
            where = f"videos[{k}].segments[{j}]"
            if not isinstance(s, dict) or not isinstance(s.get("ratings"), list) or not s["ratings"]:
                raise DataFormatError(f"{where}: needs a non-empty 'ratings' list", path=path)
            ratings = [_rating(r.get("items", {}), r.get("score"), scale, path, None, f"{where}.ratings[{i}]", r.get("rater"))
                       for i, r in enumerate(s["ratings"])]  # fmt: skip
            segments.setdefault(vid, []).append(
                ScoredSegment(
                    str(s.get("name", f"segment{j}")),
                    _time(s.get("start"), path, where),
                    _time(s.get("end"), path, where),
                    ratings,
                )
            )
    _finish(ds, segments, scale)
    return ds


def _time(value, path: Path, where: str, line: int | None = None) -> float | None:
    if value in (None, ""):
        return None
    t = (
        float(value)
        if isinstance(value, (int, float))
        else parse_float(str(value), path, line, f"{where} time")
    )
    return check_range(t, 0, float("inf"), path, line, f"{where} time")


def _load_csv(root: Path, require: bool, scale: Scale) -> Dataset:
    ds = Dataset(name="clinical_skill", root=root, split_scheme="kfold-by-surgeon")
    vpath = root / "videos.csv"
    for line, row in read_csv_dicts(vpath, VIDEO_COLUMNS):
        _add_video(
            ds, row["id"], row["path"], row["surgeon"], row["procedure"], row.get("fps"), vpath, line, require
        )
    rpath = root / "ratings.csv"
    segments: dict[str, dict[str, ScoredSegment]] = {}
    known = set(RATING_COLUMNS) | set(scale.items) | {"score"}
    rated: dict[tuple[str, str, str], int] = {}
    for line, row in read_csv_dicts(rpath, RATING_COLUMNS + scale.items):
        extra = [c for c in row if c not in known]
        if extra:
            raise DataFormatError(
                f"unknown column(s) {extra} (items of {scale.name}: {', '.join(scale.items)})",
                path=rpath,
                line=1,
            )
        vid = row["video"]
        if vid not in ds.videos:
            raise DataFormatError(f"rating for video {vid!r} not listed in videos.csv", path=rpath, line=line)
        where = f"{vid}/{row['segment']}"
        key = (vid, row["segment"], row["rater"])
        if row["rater"] and key in rated:
            raise DataFormatError(
                f"{where}: rater {row['rater']!r} already rated this segment on line {rated[key]}",
                path=rpath,
                line=line,
            )
        rated[key] = line
        rating = _rating(
            {k: row[k] for k in scale.items}, row.get("score"), scale, rpath, line, where, row["rater"]
        )
        seg = segments.setdefault(vid, {}).get(row["segment"])
        start, end = _time(row["start"], rpath, where, line), _time(row["end"], rpath, where, line)
        if seg is None:
            segments[vid][row["segment"]] = ScoredSegment(row["segment"], start, end, [rating])
        else:
            if (seg.start_s, seg.end_s) != (start, end):
                raise DataFormatError(
                    f"{where}: times differ from an earlier rating of the same segment", path=rpath, line=line
                )
            seg.ratings.append(rating)
    _finish(ds, {k: list(v.values()) for k, v in segments.items()}, scale)
    return ds
