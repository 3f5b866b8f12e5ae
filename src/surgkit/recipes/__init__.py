"""Launch recipes shipped with surgkit: Accelerate config files and SLURM scripts users copy.

``surgkit recipes list`` shows them, ``surgkit recipes path NAME`` prints a file's path (for
``accelerate launch --config_file $(surgkit recipes path multi-gpu) -m surgkit ...``), ``show``
prints it and ``copy`` writes it to a folder to edit. Each file's first ``# surgkit:`` line is its
description. The same files are in the source tree under ``src/surgkit/recipes/``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from surgkit.errors import SurgkitError

SUFFIXES = (".yaml", ".slurm")


def _files() -> dict[str, Path]:
    root = resources.files(__name__)
    found = {}
    for entry in root.iterdir():
        name = entry.name
        if name.endswith(SUFFIXES):
            found[name.rsplit(".", 1)[0]] = Path(str(entry))
    return dict(sorted(found.items()))


def list_recipes() -> dict[str, str]:
    """``{name: one-line description}`` of every shipped recipe."""
    out = {}
    for name, path in _files().items():
        lines = path.read_text(encoding="utf-8").splitlines()
        out[name] = next((s.split(":", 1)[1].strip() for s in lines if s.startswith("# surgkit:")), "")
    return out


def recipe_path(name: str) -> Path:
    """The installed file of recipe ``name`` (with or without its suffix)."""
    files = _files()
    key = name.rsplit(".", 1)[0] if name.endswith(SUFFIXES) else name
    if key not in files:
        raise SurgkitError(f"unknown recipe '{name}'; recipes: {', '.join(files)}")
    return files[key]
