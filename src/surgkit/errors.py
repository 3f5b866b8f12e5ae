"""Exceptions that surgkit raises for problems the user can fix.

The CLI turns every :class:`SurgkitError` into one line on stderr and exit code 2, without a
traceback. Library callers get a normal exception that is also a ``ValueError``.
"""

from __future__ import annotations

from pathlib import Path


class SurgkitError(ValueError):
    """A user-facing error: bad input, a missing file, an invalid option."""


class DataFormatError(SurgkitError):
    """Malformed dataset or prediction file; names the file and, when known, the line and field.

    >>> str(DataFormatError("unknown phase 'Foo'", path="video01-phase.txt", line=12))
    "video01-phase.txt:12: unknown phase 'Foo'"
    """

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None):
        self.path = None if path is None else Path(path)
        self.line = line
        self.reason = message
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{message}")


class LeakageError(SurgkitError):
    """Train and test data overlap; raised unless the user passes ``--allow-leakage``."""
