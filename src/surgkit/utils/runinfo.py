"""Refuse to resume a run folder with different settings: :func:`check_resume`.

A resumable command (prep, training runs, benchmarks) records the settings that determine its
output in ``<run_dir>/surgkit-run.json`` the first time it writes the folder. A later run on the
same folder with other settings (seed, fps, config, model, ...) would mix two experiments in one
folder without a trace; it is refused with one line naming the first setting that differs::

    error: runs/frames: was written with fps='1', this run has fps='5'; pass --overwrite to start
    over, or use another output folder

``overwrite=True`` accepts the new settings (the caller then starts its outputs over). Settings
that do not change the output (workers, progress bars, batch size of a pure inference step) are
not passed in.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from surgkit.errors import DataFormatError, SurgkitError
from surgkit.utils.io import to_json, write_json

RUN_INFO_NAME = "surgkit-run.json"
RUN_INFO_FORMAT = "surgkit-run/1"


def _normalise(settings: Mapping[str, Any]) -> dict[str, Any]:
    """JSON round trip: tuples become lists, numpy scalars plain numbers, paths text."""
    return json.loads(to_json(dict(settings), indent=None))


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same kind (1 and 1.0 are the same number; True is not 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or (math.isnan(a) and math.isnan(b))
    return type(a) is type(b) and a == b


def first_difference(old: Any, new: Any, prefix: str = "") -> tuple[str, Any, Any] | None:
    """The first (dotted key, old value, new value) where two settings trees differ, or None."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in old:
                return name, "<not set>", new[key]
            if key not in new:
                return name, old[key], "<not set>"
            diff = first_difference(old[key], new[key], name)
            if diff is not None:
                return diff
        return None
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            diff = first_difference(a, b, f"{prefix}[{i}]")
            if diff is not None:
                return diff
        return None
    return None if _same(old, new) else (prefix or "settings", old, new)


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def read_run_info(run_dir: str | Path) -> dict[str, Any] | None:
    """The recorded run info of ``run_dir`` or None when there is none."""
    from surgkit.utils.inputs import as_dict, read_json

    path = Path(run_dir) / RUN_INFO_NAME
    if not path.is_file():
        return None
    data = as_dict(read_json(path), path, "top level")
    if data.get("format") != RUN_INFO_FORMAT or not isinstance(data.get("settings"), dict):
        raise DataFormatError(f"not a {RUN_INFO_FORMAT} file; delete it or use another folder", path=path)
    return data


def check_resume(
    run_dir: str | Path,
    settings: Mapping[str, Any],
    overwrite: bool = False,
    *,
    command: str | None = None,
) -> str:
    """Record ``settings`` for ``run_dir`` or check them against the recorded ones.

    Returns ``"new"`` (nothing recorded yet), ``"same"`` (resume with identical settings) or
    ``"overwrite"`` (settings differed and ``overwrite`` was given: the caller starts over). Raises
    :class:`SurgkitError` naming the first differing setting otherwise.
    """
    run_dir = Path(run_dir)
    new = _normalise(settings)
    old = read_run_info(run_dir)
    if old is not None:
        diff = first_difference(old["settings"], new)
        if diff is None:
            return "same"
        if not overwrite:
            key, was, now = diff
            raise SurgkitError(
                f"{run_dir}: was written with {key}={_short(was)}, this run has {key}={_short(now)}; "
                "pass --overwrite to start over, or use another output folder"
            )
    from surgkit import __version__

    write_json(
        run_dir / RUN_INFO_NAME,
        {
            "format": RUN_INFO_FORMAT,
            "command": command,
            "surgkit_version": __version__,
            "settings": new,
        },
    )
    return "new" if old is None else "overwrite"
