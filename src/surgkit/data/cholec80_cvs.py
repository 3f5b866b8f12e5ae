"""Cholec80-CVS reader (Ríos et al. 2023): critical-view-of-safety scores per time interval.

The dataset is one workbook, ``surgeons_annotations.xlsx`` (one sheet, one row per interval), with the
columns (spec metrics_formats.md §7.5)::

    video, initial_minute, initial_second, final_minute, final_second,
    two_structures, cystic_plate, hepatocystic_triangle   (each 0, 1 or 2)
    [total, critical_view]                                 (optional; critical_view <=> total >= 5)

The .xlsx is read with openpyxl when it is installed. Otherwise export the sheet to CSV (same header)
and pass that file: ``surgeons_annotations.csv`` is looked for first. Times become 25-fps frames:
frame = (minute*60 + second)*25. Intervals with final < initial (a known data issue) are skipped and
reported. Cholec80 videos are attached from ``<root>/videos`` when present (ids ``videoNN``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from surgkit.data._parse import check_range, find_media, parse_float, parse_int, read_csv_dicts
from surgkit.data.model import CVSLabel, Dataset, Video
from surgkit.errors import DataFormatError
from surgkit.vocab import CVS_CRITERIA

FPS = 25.0
TIME_COLUMNS = ("initial_minute", "initial_second", "final_minute", "final_second")
REQUIRED = ("video",) + TIME_COLUMNS + CVS_CRITERIA
NAMES = ("surgeons_annotations.csv", "surgeons_annotations.xlsx")


def _find_table(root: Path) -> Path:
    if root.is_file():
        return root
    for name in NAMES:
        if (root / name).is_file():
            return root / name
    found = sorted(root.glob("*.csv")) + sorted(root.glob("*.xlsx"))
    if len(found) == 1:
        return found[0]
    raise DataFormatError(f"no annotation table ({' or '.join(NAMES)})", path=root)


def _xlsx_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        import openpyxl
    except ImportError:
        raise DataFormatError(
            "reading .xlsx needs openpyxl, which is not installed; install it or export the sheet to "
            "CSV with the same header and pass the .csv",
            path=path,
        ) from None
    book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    sheet = book.worksheets[0]
    rows = sheet.iter_rows(values_only=True)
    header = [str(h).strip() if h is not None else "" for h in next(rows, [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise DataFormatError(f"missing column(s) {', '.join(missing)}", path=path, line=1)
    for i, values in enumerate(rows, start=2):
        if values is None or all(v is None for v in values):
            continue
        yield i, {h: ("" if v is None else str(v)) for h, v in zip(header, values, strict=False)}


def read_table(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    if path.suffix.lower() == ".xlsx":
        return _xlsx_rows(path)
    return read_csv_dicts(path, REQUIRED)


def _int_cell(text: str, path: Path, line: int, field: str) -> int:
    value = parse_float(text, path, line, field)  # spreadsheets store 3 as 3.0
    if value != int(value):
        raise DataFormatError(f"{field}: {text!r} is not a whole number", path=path, line=line)
    return int(value)


def load(root: str | Path, require_media: bool = False) -> Dataset:
    """Read the CVS table at ``root`` (file, or folder holding it); videos from ``<root>/videos``."""
    root = Path(root)
    table = _find_table(root)
    folder = root if root.is_dir() else root.parent
    ds = Dataset(name="cholec80_cvs", root=folder, split_scheme="cholec80-cvs-40/40")
    ds.classes["criteria"] = CVS_CRITERIA
    bad_flag = 0
    for line, row in read_table(table):
        number = check_range(_int_cell(row["video"], table, line, "video"), 1, 80, table, line, "video")
        vid = f"video{number:02d}"
        t = [_int_cell(row[c], table, line, c) for c in TIME_COLUMNS]
        for c, v in zip(TIME_COLUMNS, t, strict=True):
            check_range(v, 0, 59 if c.endswith("second") else 10_000, table, line, c)
        start, end = int((t[0] * 60 + t[1]) * FPS), int((t[2] * 60 + t[3]) * FPS)
        crit = tuple(
            float(check_range(_int_cell(row[c], table, line, c), 0, 2, table, line, c)) for c in CVS_CRITERIA
        )
        if "total" in row and row["total"].strip():
            total = _int_cell(row["total"], table, line, "total")
            if total != sum(crit):
                raise DataFormatError(
                    f"total = {total} but the criteria sum to {sum(crit):g}", path=table, line=line
                )
        if "critical_view" in row and row["critical_view"].strip():
            bad_flag += int(
                bool(parse_int(row["critical_view"].split(".")[0], table, line, "critical_view"))
                != (sum(crit) >= 5)
            )
        if end < start:
            ds.skip(
                f"{vid} line {line}",
                f"interval ends before it starts ({t[2]}:{t[3]:02d} < {t[0]}:{t[1]:02d})",
                table,
            )
            continue
        ds.cvs.append(CVSLabel(vid, start, end, crit, scale="0-2", extra={"line": line}))
        if vid not in ds.videos:
            media = find_media(folder / "videos", vid)
            if media is None and require_media:
                raise DataFormatError(f"missing video for {vid}", path=folder / "videos")
            ds.videos[vid] = Video(vid, media, FPS, extra={"number": number})
    if bad_flag:
        ds.notes.append(f"{bad_flag} rows whose critical_view flag disagrees with total >= 5 (kept as read)")
    if not any(v.path for v in ds.videos.values()):
        ds.notes.append("no Cholec80 videos found under videos/: labels only")
    ds.notes.append("frames at 25 fps: (minute*60 + second)*25; CVS only meaningful before ClippingCutting")
    return ds
