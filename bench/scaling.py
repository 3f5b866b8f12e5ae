"""Benchmark: the 2-process-vs-1-process parity tests — their measured differences and wall time.

Runs every test marked ``parity`` (one per trainer, plus the shared launch path; each runs its
trainer on 2 gloo CPU processes and on 1 process with the same global batch) in one pytest process
without xdist, and reports for each the max |Δ| of the loss trajectory and of the final weights
(recorded by ``tests.multiproc.assert_parity``), the learning rate at the end of both runs and the
largest difference of their lr schedules, which trackers the 2-process run wrote and how many of its
``train_log.jsonl`` scalars were read back from its TensorBoard event files (``logged_runs``), the
files compared for sharded inference (``record_identical``), plus the wall seconds and CPU seconds
(this process and its children) of the whole set and the 1-minute load average around it.

    python bench/scaling.py [--out bench/results/scaling.json] [-k EXPR]

Prints JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="Also write the JSON here.")
    ap.add_argument("-k", default=None, help="pytest -k expression to run a subset.")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "parity.jsonl"
        env = {**os.environ, "SURGKIT_PARITY_LOG": str(log), "PYTHONPATH": str(ROOT / "src")}
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-m",
            "parity",
            "-p",
            "no:xdist",
            "-p",
            "no:cacheprovider",
        ]
        if args.k:
            cmd += ["-k", args.k]
        load_start = os.getloadavg()[0]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        load_end = os.getloadavg()[0]
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        checks = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    summary = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
    out = {
        "benchmark": "scaling parity (2 gloo CPU processes vs 1 process, same global batch)",
        "pytest": summary,
        "passed": res.returncode == 0,
        "wall_s": round(wall, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "idle_wall_estimate_s": round((usage.ru_utime + usage.ru_stime) / 1.8, 1),
        "load_average_1min": [round(load_start, 2), round(load_end, 2)],  # at start and end
        "checks": checks,
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    if res.returncode != 0:
        print(res.stdout[-4000:], file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
