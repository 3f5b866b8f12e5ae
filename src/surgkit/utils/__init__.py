"""Shared mechanisms: atomic file IO, progress bars, model save/load, training setup."""
