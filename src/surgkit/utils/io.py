"""Atomic, crash-safe file writing and small file helpers.

Every file surgkit writes goes through :func:`atomic_write`: the content lands in a temporary
file in the same folder and is renamed over the destination only once it is complete and
flushed, so a killed process never leaves a half-written file that looks finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from surgkit.utils.workers import check_parent


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", **open_kwargs: Any) -> Iterator[Any]:
    """Open a temporary file next to ``path`` and rename it to ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with open(tmp, mode, **open_kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        check_parent()  # a pool worker whose command was killed never renames a file into place
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path for writers that need a file name (video encoders, savers).

    The temporary name keeps ``path``'s suffix (or ``suffix``) so format detection still works.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sfx = path.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{sfx}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        check_parent()
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write a UTF-8 text file."""
    with atomic_write(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Atomically write a binary file."""
    with atomic_write(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def to_json(obj: Any, indent: int | None = 2) -> str:
    """JSON text with numpy scalars/arrays and paths converted; NaN is written as ``NaN``."""
    return json.dumps(obj, indent=indent, default=_json_default, sort_keys=False)


def write_json(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    """Atomically write ``obj`` as JSON (numpy-aware)."""
    return write_text(path, to_json(obj, indent) + "\n")


def save_tensors(
    path: str | Path, tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None
) -> Path:
    """Atomically save a dict of torch tensors or numpy arrays with safetensors."""
    items = dict(tensors)
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    with atomic_path(path) as tmp:
        if items and all(isinstance(v, np.ndarray) for v in items.values()):
            from safetensors.numpy import save_file as save_np

            save_np({k: np.ascontiguousarray(v) for k, v in items.items()}, str(tmp), metadata=meta)
        else:
            from safetensors.torch import save_file as save_pt

            save_pt({k: v.contiguous() for k, v in items.items()}, str(tmp), metadata=meta)
    return Path(path)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    """Stable hash of a JSON-serialisable settings object (keys sorted)."""
    text = json.dumps(obj, sort_keys=True, default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()
