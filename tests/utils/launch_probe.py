"""Run by tests/utils/test_launch.py under accelerate launch: print rank and world size, or the error."""

from __future__ import annotations

import sys

from surgkit.errors import SurgkitError
from surgkit.utils.launch import make_accelerator

try:
    acc = make_accelerator("cpu")
except SurgkitError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
print(f"rank {acc.process_index} of {acc.num_processes} {acc.distributed_type.value}", flush=True)
