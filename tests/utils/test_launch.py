"""Launch options, the Accelerator they make, and the `accelerate launch --cpu` single-process trap."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from surgkit.errors import SurgkitError
from surgkit.utils import launch as L
from tests.multiproc import accelerate_launch, check

PROBE = Path(__file__).with_name("launch_probe.py")


def test_options_are_validated_with_the_flag_named():
    with pytest.raises(SurgkitError, match="--mixed-precision 'fp8'"):
        L.LaunchOptions(mixed_precision="fp8")
    with pytest.raises(SurgkitError, match="--grad-accum must be >= 1"):
        L.LaunchOptions(grad_accum=0)
    with pytest.raises(SurgkitError, match="--report-to 'tensorbord'"):
        L.LaunchOptions(report_to="tensorbord")
    with pytest.raises(SurgkitError, match="cannot be combined"):
        L.LaunchOptions(report_to="none,tensorboard")
    with pytest.raises(SurgkitError, match="unknown launch option"):
        L.LaunchOptions.from_dict({"mixed": "no"})
    assert L.parse_report_to("TensorBoard, wandb,tensorboard") == ["tensorboard", "wandb"]


def test_default_tracker_is_tensorboard_when_installed_else_none(monkeypatch):
    names, note = L.resolve_report_to(None)
    assert names == ["tensorboard"] and "installed" in note  # tensorboard is in the dev extra
    monkeypatch.setattr(L, "tracker_installed", lambda name: False)
    names, note = L.resolve_report_to(None)
    assert names == [] and "TensorBoard is not installed" in note and "surgkit[tensorboard]" in note
    with pytest.raises(
        SurgkitError, match=r"--report-to wandb: not installed; pip install 'surgkit\[wandb\]'"
    ):
        L.resolve_report_to("wandb")
    assert L.resolve_report_to("none")[0] == []


def test_precision_and_accumulation_follow_flag_then_launcher_then_default(monkeypatch):
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    monkeypatch.delenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", raising=False)
    assert L.resolve_mixed_precision(None, cpu=True) == "no"
    assert L.resolve_mixed_precision("auto", cpu=True) == "no"
    assert L.resolve_mixed_precision("bf16", cpu=True) == "bf16"
    with pytest.raises(SurgkitError, match="fp16 needs a GPU"):
        L.resolve_mixed_precision("fp16", cpu=True)
    assert L.LaunchOptions().resolved_grad_accum() == 1
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    monkeypatch.setenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "4")
    assert L.resolve_mixed_precision(None, cpu=True) == "bf16"
    assert L.resolve_mixed_precision("no", cpu=True) == "no"
    assert L.LaunchOptions().resolved_grad_accum() == 4
    assert L.LaunchOptions(grad_accum=2).resolved_grad_accum() == 2
    acc = L.make_accelerator("cpu", launch=L.LaunchOptions(mixed_precision="no", grad_accum=3))
    assert acc.gradient_accumulation_steps == 3 and acc.mixed_precision == "no"


def test_cpu_trap_is_recognised_from_env_and_parent_command():
    env = {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    parent = ["python", "accelerate", "launch", "--cpu", "--num_processes", "2", "train.py"]
    with pytest.raises(SurgkitError, match="starts ONE process.*--multi_gpu --num_processes 2"):
        L.check_launch_environment(env, parent)
    L.check_launch_environment(env, [*parent[:-1], "--mpirun_hostfile", "hosts", "train.py"])  # MPI: fine
    L.check_launch_environment({**env, "WORLD_SIZE": "2"}, parent)  # a real process group: fine
    L.check_launch_environment(env, ["python", "accelerate", "launch", "--cpu", "train.py"])  # 1 process
    L.check_launch_environment({}, parent)


@pytest.mark.slow
def test_accelerate_launch_cpu_two_processes_is_refused_and_multi_gpu_flag_starts_two(tmp_path):
    """Accelerate's own behaviour, checked: `--cpu` takes the simple launcher (1 process)."""
    res = accelerate_launch(["--cpu", "--num_processes", "2"], [str(PROBE)])
    assert res.returncode != 0 and "starts ONE process" in res.stderr, res.stderr[-2000:]  # the probe exits 2
    res = check(
        accelerate_launch(["--multi_gpu", "--num_processes", "2", "--mixed_precision", "no"], [str(PROBE)])
    )
    ranks = sorted(re.findall(r"rank (\d+) of (\d+) (MULTI_CPU|NO)", res.stdout))  # lines may interleave
    assert ranks == [("0", "2", "MULTI_CPU"), ("1", "2", "MULTI_CPU")]


def test_sharded_launch_is_refused_for_ddp_only_trainers():
    L.check_sharding("MULTI_GPU", sharded_ok=False)
    L.check_sharding("FSDP", sharded_ok=True)
    for kind in ("FSDP", "DEEPSPEED"):
        with pytest.raises(SurgkitError, match=f"data-parallel \\(DDP\\) only, not {kind}.*multi-gpu recipe"):
            L.check_sharding(kind, sharded_ok=False)
