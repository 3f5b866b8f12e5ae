"""CholecT45 reader: the CholecT50 reader with CholecT45's defaults (splits ``cholect45-crossval``).

Both layouts of spec §7.3 are accepted (JSON labels or the txt ``triplet/instrument/verb/target``
folders); see :mod:`surgkit.data.cholect50`.
"""

from __future__ import annotations

from pathlib import Path

from surgkit.data import cholect50
from surgkit.data.model import Dataset


def load(root: str | Path, require_media: bool = True) -> Dataset:
    """Read a CholecT45 root (either layout)."""
    return cholect50.load(root, require_media=require_media, name="cholect45")
