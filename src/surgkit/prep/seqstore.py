"""Per-video sequences of images (frames, flow maps, masks) as image folders or a chunked array store.

One folder per video, ``<out>/<video_id>/``, finished by ``sequence.json`` (format
``surgkit-seq/1``) which is written last and atomically, by the main process, only after the
item files were counted: a folder without it is incomplete. Every reader checks the files against
``sequence.json`` again (one ``listdir``) and refuses a sequence with missing or extra items.

Layouts (``fmt``):

* ``jpg`` / ``png`` (the datasets' convention): frames ``<pattern>.jpg`` (RGB), flow
  ``flow_x_<pattern>.png`` + ``flow_y_<pattern>.png`` (8-bit greyscale maps), masks
  ``<pattern>.png`` (8-bit class index). ``pattern`` is a Python format string over ``index``
  (default ``{index:05d}``); the file number is ``index + start_number``.
* ``array`` (compact, fast): ``chunk-<k:06d>.npy`` holding uint8 [n, H, W(, C)] (plain NumPy
  arrays, read with ``allow_pickle=False`` and memory-mapped), item ``i`` in chunk ``i // chunk_size``.

Items: frames uint8 [H, W, 3] RGB; flow uint8 [H, W, 2] (x, y encoded, see :mod:`surgkit.prep.flow`);
masks uint8 [H, W] class indices. Masks are never written as JPEG (lossy labels).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from surgkit.errors import DataFormatError, SurgkitError
from surgkit.utils.ids import safe_id, safe_reset
from surgkit.utils.inputs import as_dict, as_int, as_str, get, read_json
from surgkit.utils.io import atomic_path, write_json

SEQ_FORMAT = "surgkit-seq/1"
SEQ_NAME = "sequence.json"
KINDS = ("frames", "flow", "masks")
FORMATS = ("jpg", "png", "array")


def check_format(kind: str, fmt: str) -> None:
    if kind not in KINDS:
        raise SurgkitError(f"unknown sequence kind '{kind}' (choose from {', '.join(KINDS)})")
    if fmt not in FORMATS:
        raise SurgkitError(f"unknown output format '{fmt}' (choose from {', '.join(FORMATS)})")
    if kind == "masks" and fmt == "jpg":
        raise SurgkitError("masks are class labels: JPEG would corrupt them; use png or array")


def _encode(image: np.ndarray, ext: str, jpeg_quality: int) -> bytes:
    import cv2

    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    params = (
        [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if ext == "jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    )
    ok, buf = cv2.imencode(f".{ext}", image, params)
    if not ok:
        raise SurgkitError(f"OpenCV could not encode a {image.shape} image as {ext}")
    return buf.tobytes()


def _write_file(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


class SequenceWriter:
    """Write one video's items chunk by chunk; :meth:`finalize` writes ``sequence.json`` last."""

    def __init__(
        self,
        folder: str | Path,
        kind: str,
        fmt: str = "array",
        *,
        chunk_size: int = 256,
        pattern: str = "{index:05d}",
        start_number: int = 0,
        jpeg_quality: int = 95,
    ):
        check_format(kind, fmt)
        if chunk_size < 1:
            raise SurgkitError(f"chunk_size must be >= 1, got {chunk_size}")
        try:
            pattern.format(index=0)
        except (KeyError, IndexError, ValueError) as e:
            raise SurgkitError(f"invalid file pattern '{pattern}': use a format string over 'index'") from e
        self.folder = Path(folder)
        self.kind, self.fmt, self.chunk_size = kind, fmt, int(chunk_size)
        self.pattern, self.start_number, self.jpeg_quality = pattern, int(start_number), int(jpeg_quality)

    def reset(self) -> None:
        """Remove an earlier (stale or unfinished) output of this video (only inside its parent)."""
        safe_reset(self.folder, self.folder.parent)

    def file_names(self, index: int) -> list[str]:
        stem = self.pattern.format(index=index + self.start_number)
        if self.kind == "flow":
            return [f"flow_x_{stem}.{self.fmt}", f"flow_y_{stem}.{self.fmt}"]
        return [f"{stem}.{self.fmt}"]

    def write_chunk(self, chunk_id: int, items: list[np.ndarray] | np.ndarray) -> int:
        """Write the items of chunk ``chunk_id`` (indices chunk_id*chunk_size onward); returns count."""
        start = chunk_id * self.chunk_size
        n = len(items)
        if n == 0:
            return 0
        if n > self.chunk_size:
            raise ValueError(f"chunk of {n} items exceeds chunk_size {self.chunk_size}")
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.fmt == "array":
            data = np.ascontiguousarray(np.stack(items) if isinstance(items, list) else items, dtype=np.uint8)
            with atomic_path(self.folder / f"chunk-{chunk_id:06d}.npy") as tmp:
                np.save(tmp, data, allow_pickle=False)
            return n
        for offset, item in enumerate(items):
            self.write_item(start + offset, item)
        return n

    def write_item(self, index: int, item: np.ndarray) -> None:
        """Encode and atomically write the image file(s) of item ``index`` (jpg/png layouts).

        Items are independent files, so several threads may write different items of one chunk
        (OpenCV's encoders release the GIL); the folder must exist.
        """
        names = self.file_names(index)
        planes = [item[..., 0], item[..., 1]] if self.kind == "flow" else [item]
        for name, plane in zip(names, planes, strict=True):
            _write_file(self.folder / name, _encode(np.ascontiguousarray(plane), self.fmt, self.jpeg_quality))

    def sweep_temporary(self) -> None:
        """Remove the temporary files of interrupted atomic writes (never called while writing)."""
        if not self.folder.is_dir():
            return
        for entry in self.folder.iterdir():
            if entry.name.startswith(".") and ".tmp" in entry.name and entry.is_file():
                entry.unlink(missing_ok=True)

    def check_complete(self, num_items: int, where: Path | None = None) -> None:
        """Refuse unless exactly the item files of ``num_items`` items are present."""
        problem = self._count_problem(int(num_items))
        if problem:
            raise DataFormatError(f"incomplete sequence: {problem}", path=where or self.folder)

    def _count_problem(self, n: int) -> str | None:
        try:
            present = {e for e in os.listdir(self.folder) if not e.startswith(".")}
        except FileNotFoundError:
            present = set()
        if self.fmt == "array":
            return self._array_problem(n, present)
        expected = {name for i in range(n) for name in self.file_names(i)}
        missing = sorted(expected - present)
        extra = sorted(e for e in present if e.endswith(f".{self.fmt}") and e not in expected)
        if missing:
            return f"{n} items expected, {len(missing)} file(s) missing (first: {missing[0]})"
        if extra:
            return f"{n} items expected, {len(extra)} extra file(s) (first: {extra[0]})"
        return None

    def _array_problem(self, n: int, present: set[str]) -> str | None:
        n_chunks = -(-n // self.chunk_size)
        expected = [f"chunk-{k:06d}.npy" for k in range(n_chunks)]
        missing = [c for c in expected if c not in present]
        if missing:
            return f"{n} items expected, chunk file missing: {missing[0]}"
        extra = sorted(e for e in present if e.startswith("chunk-") and e not in expected)
        if extra:
            return f"{n} items expected, extra chunk file {extra[0]}"
        for k, name in enumerate(expected):
            want = min(self.chunk_size, n - k * self.chunk_size)
            try:
                rows = np.load(self.folder / name, mmap_mode="r", allow_pickle=False).shape[0]
            except (ValueError, OSError, IndexError) as e:
                return f"unreadable chunk {name} ({e})"
            if rows != want:
                return f"{name} holds {rows} items, expected {want}"
        return None

    def finalize(self, num_items: int, shape: tuple[int, ...] | None, meta: dict[str, Any]) -> Path:
        """Count the item files, then write ``sequence.json``: the video is complete.

        Temporary files left by a writer that was killed mid-file (``.<name>.<random>.tmp<ext>``)
        are removed first: the folder then holds exactly the items.
        """
        self.sweep_temporary()
        self.check_complete(num_items)
        info = {
            "format": SEQ_FORMAT,
            "kind": self.kind,
            "layout": self.fmt,
            "num_items": int(num_items),
            "item_shape": list(shape) if shape is not None else None,
            "chunk_size": self.chunk_size,
            "pattern": self.pattern,
            "start_number": self.start_number,
            **meta,
        }
        return write_json(self.folder / SEQ_NAME, info)


class SequenceReader:
    """Random access to a finished sequence folder (any layout)."""

    def __init__(self, folder: str | Path, kind: str | None = None, *, verify: bool = True):
        self.folder = Path(folder)
        path = self.folder / SEQ_NAME
        if not path.is_file():
            raise SurgkitError(f"{self.folder}: no {SEQ_NAME}; the sequence is missing or unfinished")
        self.meta: dict[str, Any] = as_dict(read_json(path), path, "top level")
        if self.meta.get("format") != SEQ_FORMAT:
            raise DataFormatError(f"not a {SEQ_FORMAT} file", path=path)
        self.kind: str = as_str(get(self.meta, "kind", path), path, "kind")
        self.layout: str = as_str(get(self.meta, "layout", path), path, "layout")
        if self.kind not in KINDS or self.layout not in FORMATS:
            raise DataFormatError(f"unknown kind/layout {self.kind!r}/{self.layout!r}", path=path)
        if kind is not None and self.kind != kind:
            raise SurgkitError(f"{self.folder}: holds {self.kind}, expected {kind}")
        self.num_items: int = as_int(get(self.meta, "num_items", path), path, "num_items", lo=0)
        self.chunk_size: int = as_int(get(self.meta, "chunk_size", path), path, "chunk_size", lo=1)
        pattern = as_str(get(self.meta, "pattern", path), path, "pattern")
        start = as_int(get(self.meta, "start_number", path), path, "start_number", lo=0)
        try:
            self._names = SequenceWriter(
                self.folder, self.kind, self.layout, chunk_size=self.chunk_size, pattern=pattern,
                start_number=start,
            )  # fmt: skip
        except SurgkitError as e:
            raise DataFormatError(str(e), path=path) from None
        if verify:
            self._names.check_complete(self.num_items, where=path)

    def __len__(self) -> int:
        return self.num_items

    @staticmethod
    def peek_shape(writer: SequenceWriter) -> tuple[int, ...] | None:
        """Item shape of an unfinished sequence from its first chunk (used when resuming)."""
        if writer.fmt == "array":
            path = writer.folder / "chunk-000000.npy"
            return (
                tuple(np.load(path, mmap_mode="r", allow_pickle=False).shape[1:]) if path.is_file() else None
            )
        import cv2

        img = cv2.imread(str(writer.folder / writer.file_names(0)[0]), cv2.IMREAD_UNCHANGED)
        if img is None:
            return None
        return img.shape[:2] + ((2,) if writer.kind == "flow" else img.shape[2:])

    def read(self, start: int, stop: int) -> np.ndarray:
        """Items ``start`` .. ``stop - 1`` stacked: [n, H, W(, C)] uint8."""
        stop = min(stop, self.num_items)
        if not 0 <= start <= stop:
            raise IndexError(f"{self.folder}: range {start}:{stop} outside 0:{self.num_items}")
        if start == stop:
            return np.zeros((0, *(self.meta.get("item_shape") or [0])), dtype=np.uint8)
        if self.layout == "array":
            return self._read_array(start, stop)
        return np.stack([self._read_image(i) for i in range(start, stop)])

    def _read_array(self, start: int, stop: int) -> np.ndarray:
        parts = []
        for chunk in range(start // self.chunk_size, (stop - 1) // self.chunk_size + 1):
            path = self.folder / f"chunk-{chunk:06d}.npy"
            if not path.is_file():
                raise DataFormatError("chunk file missing although sequence.json says complete", path=path)
            lo = max(start - chunk * self.chunk_size, 0)
            hi = min(stop - chunk * self.chunk_size, self.chunk_size)
            try:
                data = np.load(path, mmap_mode="r", allow_pickle=False)
            except ValueError as e:
                raise DataFormatError(f"unreadable chunk ({e})", path=path) from e
            if data.dtype != np.uint8:
                raise DataFormatError(f"chunk has dtype {data.dtype}, expected uint8", path=path)
            parts.append(np.array(data[lo:hi]))
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def _read_image(self, index: int) -> np.ndarray:
        import cv2

        planes = []
        for name in self._names.file_names(index):
            path = self.folder / name
            flag = cv2.IMREAD_COLOR if self.kind == "frames" else cv2.IMREAD_UNCHANGED
            img = cv2.imread(str(path), flag)
            if img is None:
                raise DataFormatError("missing or unreadable image", path=path)
            planes.append(img)
        if self.kind == "frames":
            return cv2.cvtColor(planes[0], cv2.COLOR_BGR2RGB)
        if self.kind == "flow":
            return np.stack(planes, axis=-1)
        return planes[0]

    def iter_chunks(self, size: int | None = None):
        """Yield (start, items) blocks of ``size`` items (default: the stored chunk size)."""
        size = size or self.chunk_size
        for start in range(0, self.num_items, size):
            yield start, self.read(start, start + size)


def list_sequences(root: str | Path) -> list[str]:
    """Video ids with a finished sequence under ``root`` (sorted); an unsafe folder name is refused."""
    root = Path(root)
    if not root.is_dir():
        raise SurgkitError(f"{root}: no such folder")
    ids = sorted(p.parent.name for p in root.glob(f"*/{SEQ_NAME}"))
    return [safe_id(vid, root / vid, what="video id") for vid in ids]
