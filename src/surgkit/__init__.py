"""surgkit: an open toolkit for surgical video understanding."""

from __future__ import annotations

__version__ = "0.1.0"

from surgkit.errors import DataFormatError, SurgkitError  # noqa: E402

__all__ = ["__version__", "SurgkitError", "DataFormatError"]
