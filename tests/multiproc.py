"""Run code in several CPU processes (gloo) the way users do: torchrun or accelerate launch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ACCELERATE = Path(sys.executable).with_name("accelerate")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[1] / "src")
    path = os.environ.get("PYTHONPATH", "")
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": src + (os.pathsep + path if path else ""),
        **(extra or {}),
    }


def torchrun(args: list[str], nproc: int = 2, timeout: float = 300, env: dict[str, str] | None = None):
    """``torchrun --nproc_per_node nproc ARGS`` (ARGS: a script path or ``-m module ...``)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--master_port", str(free_port()), *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(env), timeout=timeout)


def accelerate_launch(
    launch_args: list[str], args: list[str], timeout: float = 300, env: dict[str, str] | None = None
):
    """``accelerate launch LAUNCH_ARGS ARGS`` with a free port."""
    cmd = [str(ACCELERATE), "launch", "--main_process_port", str(free_port()), *launch_args, *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(env), timeout=timeout)


def check(res: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert res.returncode == 0, f"exit {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-6000:]}"
    return res
