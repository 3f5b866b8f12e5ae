"""surgkit.data: native dataset readers, official splits, a leakage guard and torch datasets.

Every reader is ``surgkit.data.<dataset>.load(root, ...) -> Dataset`` (see :mod:`surgkit.data.model`);
:func:`load` dispatches by name. Readers validate as they read and raise
:class:`surgkit.errors.DataFormatError` naming the file and line; what they skip is listed in
``Dataset.skipped`` with the reason.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Any

from surgkit.errors import SurgkitError

# dataset name -> module under surgkit.data
DATASETS: dict[str, str] = {
    "jigsaws": "jigsaws",
    "cholec80": "cholec80",
    "m2cai16": "m2cai16",
    "cholect50": "cholect50",
    "cholect45": "cholect45",
    "cholec80_cvs": "cholec80_cvs",
    "endoscapes": "endoscapes",
    "autolaparo": "autolaparo",
    "surgicalactions160": "surgicalactions160",
    "cholec80_boxes": "cholec80_boxes",
    "copesd": "copesd",
    "endovis18_vqla": "endovis18_vqla",
    "endovis17_vqla": "endovis17_vqla",
    "clinical_skill": "clinical_skill",
}
ALIASES = {"m2cai16-workflow": "m2cai16", "endoscapes2023": "endoscapes", "cholec80-cvs": "cholec80_cvs",
           "cholec80-boxes": "cholec80_boxes", "endovis18": "endovis18_vqla", "endovis17": "endovis17_vqla",
           "sa160": "surgicalactions160", "clinical": "clinical_skill"}  # fmt: skip


def dataset_module(name: str):
    key = name.strip().lower().replace(" ", "")
    key = ALIASES.get(key, key).replace("-", "_")
    if key not in DATASETS:
        raise SurgkitError(f"unknown dataset {name!r} (choose from {', '.join(DATASETS)})")
    return import_module(f"surgkit.data.{DATASETS[key]}")


def load(name: str, root: str | Path, **kwargs: Any):
    """Read dataset ``name`` under ``root`` with its reader (keyword arguments go to the reader)."""
    return dataset_module(name).load(root, **kwargs)


__all__ = ["DATASETS", "dataset_module", "load"]
