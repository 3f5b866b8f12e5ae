"""Safe identifiers: a name read from data (a video file stem, an id in an annotation file, a record
id) becomes a path only through :func:`safe_id` / :func:`safe_child`, and nothing is deleted except
through :func:`safe_reset`.

Why: a video called ``..mp4`` has the stem ``.``; ``output / "."`` is the output folder itself, so
"reset this video's folder" used to delete every other video's output. ``...mp4`` (stem ``..``)
reached the folder above. An id is therefore refused (one line naming the file it came from) when
it is empty, ``.`` or ``..``, contains a path separator (``/`` or ``\\``), a NUL or another control
character, looks like an absolute or drive path (``C:``), starts with ``.`` (reserved for surgkit's
own hidden files: locks, temporary files, state), has leading/trailing white space, is not valid
UTF-8, or is longer than :data:`MAX_ID_BYTES` bytes (file systems allow 255 per name, and surgkit
adds suffixes).

:func:`safe_reset` removes a previous output only when it lies strictly inside the given root with
symlinks resolved; it renames the target aside first (atomic: the name is free at once and a crash
never leaves a half-deleted folder under the real name) and then deletes the renamed copy.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import unicodedata
import uuid
from pathlib import Path

from surgkit.errors import DataFormatError, SurgkitError

MAX_ID_BYTES = 200
_DRIVE = re.compile(r"^[A-Za-z]:")
_ASIDE_TAG = ".surgkit-deleting-"


def id_problem(name: object) -> str | None:
    """Why ``name`` cannot be used as a file or folder name, or None when it is safe."""
    if not isinstance(name, str):
        return f"expected text, got {type(name).__name__}"
    if name == "":
        return "empty"
    if name in (".", ".."):
        return f"{name!r} is a relative path, not a name"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    if any(unicodedata.category(c) in ("Cc", "Cs") or c in "\u2028\u2029" for c in name):
        bad = next(c for c in name if unicodedata.category(c) in ("Cc", "Cs") or c in "\u2028\u2029")
        return f"contains the control or invalid character U+{ord(bad):04X}"
    if _DRIVE.match(name) or os.path.isabs(name):
        return "is an absolute or drive path"
    if name.startswith("."):
        return "starts with '.' (reserved for hidden files)"
    if name != name.strip():
        return "has leading or trailing white space"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    if size > MAX_ID_BYTES:
        return f"is {size} bytes long (at most {MAX_ID_BYTES})"
    return None


def safe_id(name: object, source: str | Path | None, *, line: int | None = None, what: str = "id") -> str:
    """Return ``name`` when it is safe as one path component; else raise one line naming ``source``.

    >>> safe_id("video01", "cholec80/videos/video01.mp4")
    'video01'
    >>> safe_id("..", "in/...mp4")
    Traceback (most recent call last):
    ...
    surgkit.errors.DataFormatError: in/...mp4: unsafe video id '..': '..' is a relative path, not a name
    """
    problem = id_problem(name)
    if problem is None:
        return name  # type: ignore[return-value]
    shown = repr(name)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    msg = f"unsafe {what} {shown}: {problem}"
    if source is None:
        raise SurgkitError(msg)
    raise DataFormatError(msg, path=source, line=line)


def safe_child(
    root: str | Path,
    name: object,
    source: str | Path | None,
    *,
    line: int | None = None,
    what: str = "id",
) -> Path:
    """``root / name`` after :func:`safe_id`; the result is always a direct child of ``root``."""
    return Path(root) / safe_id(name, source, line=line, what=what)


def safe_relative(rel: object, source: str | Path, key: str = "path") -> str:
    """A relative path read from data (``frames/video01/000050.jpg``) that stays below the folder it
    is relative to: every component is a safe name (no ``..``, no absolute path, no control
    characters). Symlinks inside the dataset are allowed, since the check is on the text."""
    if not isinstance(rel, str) or not rel:
        raise DataFormatError(f"{key}: expected a relative path, got {rel!r}", path=source)
    parts = [p for p in rel.replace("\\", "/").split("/") if p not in ("", ".")]
    if rel.startswith(("/", "\\")) or _DRIVE.match(rel) or not parts:
        raise DataFormatError(f"{key}: {rel!r} is not a relative path", path=source)
    for part in parts:
        problem = id_problem(part)
        if problem is not None and not (part.startswith(".") and part not in (".", "..")):
            raise DataFormatError(f"{key}: unsafe path {rel!r} ({part!r} {problem})", path=source)
    return "/".join(parts)


def is_strictly_inside(path: str | Path, root: str | Path) -> bool:
    """True when ``path`` (its parent's symlinks resolved, its own name kept) lies strictly inside
    ``root`` (symlinks resolved). A symlink named ``path`` counts as the link, not its target."""
    path = Path(path)
    if path.name in ("", ".", ".."):
        return False
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(path.parent)) / path.name
    return real != real_root and real_root in real.parents


def safe_reset(path: str | Path, root: str | Path) -> bool:
    """Delete ``path`` (file, folder or symlink) when it lies strictly inside ``root``.

    The target is first renamed to a hidden sibling, then deleted; a symlink is removed as a link,
    never followed. Returns True when something was removed. Raises :class:`SurgkitError` (nothing
    touched) when ``path`` is ``root`` itself, above it, or outside it once symlinks are resolved.
    """
    path = Path(path)
    if not is_strictly_inside(path, root):
        raise SurgkitError(f"refusing to delete {path}: it is not strictly inside the output folder {root}")
    real = Path(os.path.realpath(path.parent)) / path.name
    _sweep_leftovers(real.parent, real.name)
    if not os.path.lexists(real):
        return False
    aside = real.parent / f".{real.name[:100]}{_ASIDE_TAG}{uuid.uuid4().hex[:12]}"
    os.rename(real, aside)
    _remove(aside)
    return True


def _remove(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    else:
        shutil.rmtree(path)


def _sweep_leftovers(folder: Path, name: str) -> None:
    """Finish deleting copies set aside by an earlier reset of ``name`` that was interrupted."""
    prefix = f".{name[:100]}{_ASIDE_TAG}"
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            if entry.name.startswith(prefix):
                with contextlib.suppress(OSError):
                    _remove(entry)
