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


def assert_parity(
    name: str,
    one_losses,
    two_losses,
    one_weights: dict,
    two_weights: dict,
    rtol: float = 1e-5,
    atol: float = 1e-6,
    loose: tuple[str, float] | None = None,
    **extra,
) -> dict:
    """Assert that a 2-process run reproduced the 1-process run; return (and record) the max |Δ|.

    ``loose=(regex, atol)``: weights whose name matches ``regex`` (``re.search``) are only held to
    ``atol`` and reported apart — for parameters whose gradient is mathematically zero (attention key
    biases: softmax ignores a constant added to every key; a convolution bias right before a
    BatchNorm, which subtracts it again; and that BatchNorm's running mean, which absorbs it), where
    Adam turns float rounding noise into steps of up to the learning rate.

    With ``SURGKIT_PARITY_LOG`` set (``bench/scaling.py`` sets it), one JSON line per check is appended
    there, so the measured differences can be reported without re-deriving them.
    """
    import json

    import numpy as np

    a, b = np.asarray(one_losses, dtype=np.float64), np.asarray(two_losses, dtype=np.float64)
    assert a.shape == b.shape and a.size > 0, f"{name}: loss trajectories {a.shape} vs {b.shape}"
    assert set(one_weights) == set(two_weights), f"{name}: different weight names"
    dw = {k: float(np.max(np.abs(np.asarray(one_weights[k], np.float64) - np.asarray(two_weights[k], np.float64)),
                             initial=0.0)) for k in one_weights}  # fmt: skip
    import re

    lax = {k for k in dw if loose and re.search(loose[0], k)}
    record = {"name": name, "steps": int(a.size), "max_abs_loss": float(np.max(np.abs(a - b))),
              "max_abs_weight": max((v for k, v in dw.items() if k not in lax), default=0.0), "rtol": rtol,
              "atol": atol, **extra}  # fmt: skip
    if loose:
        record["zero_gradient_weights"] = {"match": loose[0], "count": len(lax), "atol": loose[1],
                                           "max_abs": max((dw[k] for k in lax), default=0.0)}  # fmt: skip
    log = os.environ.get("SURGKIT_PARITY_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
    np.testing.assert_allclose(b, a, rtol=rtol, atol=atol, err_msg=f"{name}: loss trajectory")
    for k in one_weights:
        tol = dict(rtol=0.0, atol=loose[1]) if k in lax else dict(rtol=rtol, atol=atol)
        np.testing.assert_allclose(np.asarray(two_weights[k]), np.asarray(one_weights[k]), **tol,
                                   err_msg=f"{name}: weight {k}")  # fmt: skip
    return record
