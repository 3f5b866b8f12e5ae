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
    _record_check(record)
    np.testing.assert_allclose(b, a, rtol=rtol, atol=atol, err_msg=f"{name}: loss trajectory")
    for k in one_weights:
        tol = dict(rtol=0.0, atol=loose[1]) if k in lax else dict(rtol=rtol, atol=atol)
        np.testing.assert_allclose(np.asarray(two_weights[k]), np.asarray(one_weights[k]), **tol,
                                   err_msg=f"{name}: weight {k}")  # fmt: skip
    return record


def _record_check(record: dict) -> None:
    """Append ``record`` to ``$SURGKIT_PARITY_LOG`` (one JSON line; ``bench/scaling.py`` sets it)."""
    import json

    log = os.environ.get("SURGKIT_PARITY_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")


def record_identical(name: str, files: list[str], **extra) -> None:
    """Record a sharded-inference check whose outputs were compared byte for byte (or array for array)."""
    _record_check({"name": name, "identical_files": sorted(files), **extra})


def _logged_numbers(records: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """``train_log.jsonl`` records -> {key: [(step, value)]} for the finite numbers (what trackers get)."""
    import math

    out: dict[str, list[tuple[int, float]]] = {}
    for r in records:
        for k, v in r.items():
            if k != "step" and isinstance(v, int | float) and math.isfinite(v):
                out.setdefault(k, []).append((int(r["step"]), float(v)))
    return out


def logged_runs(one: Path, two: Path, lr_rtol: float = 1e-9) -> dict:
    """Check and summarise what a 1-process and a 2-process run logged, for :func:`assert_parity`'s record.

    - learning rate: every ``lr`` (or ``*/lr``) value of ``train_log.jsonl``, step by step, equal in both
      runs (the schedule's length is counted the same way); ``lr_end`` = the last one of each run.
    - trackers of the 2-process run: the names in its ``tracking.json``; for TensorBoard the event files
      are read back and every finite number of ``train_log.jsonl`` must be there under the same tag and
      step (float32 in the event file: relative difference ``tracker_max_rel`` < 1e-6).
    """
    import json

    import numpy as np

    from surgkit.utils.tracking import read_train_log

    logs = [read_train_log(d) for d in (one, two)]
    lrs = [[v for k, seq in _logged_numbers(log).items() if k == "lr" or k.endswith("/lr") for _, v in seq]
           for log in logs]  # fmt: skip
    assert len(lrs[0]) == len(lrs[1]), f"lr logged {len(lrs[0])} vs {len(lrs[1])} times"
    np.testing.assert_allclose(lrs[1], lrs[0], rtol=lr_rtol, atol=0, err_msg="learning-rate schedule")
    out: dict = {"lr_logged": len(lrs[0]), "lr_end": [lrs[0][-1], lrs[1][-1]] if lrs[0] else None,
                 "max_abs_lr": float(np.max(np.abs(np.subtract(lrs[0], lrs[1])), initial=0.0))}  # fmt: skip
    info = json.loads((Path(two) / "tracking.json").read_text())
    out["trackers"] = sorted(info["trackers"])
    board = info["trackers"].get("tensorboard")
    if board:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        ea = EventAccumulator(board["logdir"], size_guidance={"scalars": 0})
        ea.Reload()
        tags = set(ea.Tags()["scalars"])
        logged = _logged_numbers(logs[1])
        assert logged and set(logged) <= tags, f"not in TensorBoard: {sorted(set(logged) - tags)}"
        worst = 0.0
        for tag, seq in logged.items():
            events = [(e.step, e.value) for e in ea.Scalars(tag)]
            assert [s for s, _ in events] == [s for s, _ in seq], f"TensorBoard steps of {tag}"
            for (_, ev), (_, lv) in zip(events, seq, strict=True):
                worst = max(worst, abs(ev - lv) / max(abs(lv), 1e-30))
        assert worst < 1e-6, f"TensorBoard values differ from train_log.jsonl by {worst:.2e} (relative)"
        out.update(tensorboard_tags=len(logged), tensorboard_points=sum(map(len, logged.values())),
                   tracker_max_rel=worst, run_id=board.get("run_id"))  # fmt: skip
    return out
