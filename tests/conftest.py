"""Test-wide settings: offline hub, deterministic torch threads, a CLI runner."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# pytest-xdist runs one worker per core: one BLAS/torch thread per worker avoids oversubscription.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# ../shared beside the repository (specs, golden fixtures); SURGKIT_SHARED overrides (e.g. a git worktree).
SHARED = Path(os.environ.get("SURGKIT_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")


def shared_fixtures(name: str) -> Path:
    """``../shared/fixtures/<name>``: golden outputs of reference code, read in place (never copied)."""
    folder = SHARED / "fixtures" / name
    if not folder.is_dir():
        raise RuntimeError(
            f"expected the golden fixtures at {folder} (set SURGKIT_SHARED to the shared folder)"
        )
    return folder


@pytest.fixture
def run_cli(capsys):
    """Run ``surgkit ARGS`` in-process through the real entry point; return (exit_code, stdout, stderr)."""
    from surgkit.cli import main

    def _run(*args: str) -> tuple[int, str, str]:
        code = 0
        try:
            main([str(a) for a in args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        out = capsys.readouterr()
        return code, out.out, out.err

    return _run


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ../shared folder beside the repository (specs, fixtures)."""
    if not SHARED.is_dir():
        raise RuntimeError(f"expected the shared folder at {SHARED}")
    return SHARED
