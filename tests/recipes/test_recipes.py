"""Shipped launch recipes: each is parsed by Accelerate and dry-run through its launcher (no GPU needed);
the CPU one is launched for real, the SLURM script is run in dry-run mode and its command parsed."""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from surgkit.recipes import list_recipes, recipe_path
from tests.multiproc import accelerate_launch, check

ROOT = Path(__file__).resolve().parents[2]
PROBE = ROOT / "tests" / "utils" / "launch_probe.py"
EXPECTED = {
    "single-gpu": "NO",
    "multi-gpu": "MULTI_GPU",
    "fsdp": "FSDP",
    "deepspeed-zero2": "DEEPSPEED",
    "deepspeed-zero3": "DEEPSPEED",
    "cpu-multiprocess": "MULTI_GPU",  # torchrun launcher; the processes find no GPU and use gloo
}


def _dry_run(config: Path, extra: list[str] = ()) -> tuple[object, object, dict[str, str], list[str] | None]:
    """What `accelerate launch --config_file CONFIG ... -m surgkit skill train` would start, without starting it."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import (
        prepare_deepspeed_cmd_env,
        prepare_multi_gpu_env,
        prepare_simple_launcher_cmd_env,
    )

    argv = ["--config_file", str(config), *extra, "-m", "surgkit", "skill", "train"]
    args, defaults, _ = _validate_launch_command(launch_command_parser().parse_args(argv))
    cmd = None
    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        cmd, env = prepare_deepspeed_cmd_env(args)
    elif args.multi_gpu or args.use_fsdp:
        env = prepare_multi_gpu_env(args)
    else:
        cmd, env = prepare_simple_launcher_cmd_env(args)
    return args, defaults, env, cmd


def test_every_recipe_is_listed_with_a_description_and_shipped_as_package_data():
    recipes = list_recipes()
    assert set(EXPECTED) | {"multi-node"} <= set(recipes)
    assert all(len(text) > 20 for text in recipes.values())
    line = re.search(r"^surgkit = \[(.*)\]$", (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    globs = re.findall(r'"([^"]+)"', line)  # [tool.setuptools.package-data] (tomllib needs python 3.11)
    for name in recipes:
        rel = recipe_path(name).relative_to(ROOT / "src" / "surgkit").as_posix()
        assert any(fnmatch.fnmatch(rel, g) for g in globs), f"{rel} is not package data"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_accelerate_config_recipes_parse_and_dry_run(name, monkeypatch):
    from accelerate.commands.config.config_args import load_config_from_file

    path = recipe_path(name)
    cfg = load_config_from_file(str(path))
    assert cfg.distributed_type.value == EXPECTED[name]
    args, _, env, cmd = _dry_run(path, ["--num_processes", "4"])
    mp = "no" if name == "cpu-multiprocess" else "bf16"
    assert env["ACCELERATE_MIXED_PRECISION"] == mp
    if name == "single-gpu":
        assert args.gpu_ids == "0" and cmd[-4:] == ["-m", "surgkit", "skill", "train"]
    elif name.startswith("deepspeed"):
        stage = name[-1]
        assert env["ACCELERATE_USE_DEEPSPEED"] == "true" and env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == stage
        # the plugin Accelerate builds from that environment in each process
        for key, value in env.items():
            if key.startswith("ACCELERATE_"):
                monkeypatch.setenv(key, value)
        from accelerate.utils import DeepSpeedPlugin

        plugin = DeepSpeedPlugin()
        assert plugin.zero_stage == int(stage)
        assert (
            plugin.deepspeed_config["train_micro_batch_size_per_gpu"] == "auto"
        )  # from the trainer's options
        if stage == "3":
            assert plugin.deepspeed_config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"]
    else:
        assert args.nproc_per_node == "4"
    if name == "fsdp":
        for key, value in env.items():
            if key.startswith(("FSDP_", "ACCELERATE_")):
                monkeypatch.setenv(key, value)
        from accelerate.utils import FullyShardedDataParallelPlugin

        plugin = FullyShardedDataParallelPlugin()
        assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
        assert plugin.state_dict_type.name == "FULL_STATE_DICT" and plugin.cpu_ram_efficient_loading


@pytest.mark.slow
def test_cpu_multiprocess_recipe_starts_two_gloo_processes():
    res = check(accelerate_launch(["--config_file", str(recipe_path("cpu-multiprocess"))], [str(PROBE)]))
    ranks = sorted(re.findall(r"rank (\d+) of (\d+) (MULTI_CPU|NO)", res.stdout))
    assert ranks == [("0", "2", "MULTI_CPU"), ("1", "2", "MULTI_CPU")]


def test_multi_node_slurm_script_launches_one_accelerate_per_node(tmp_path):
    script = recipe_path("multi-node")
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    head = script.read_text().splitlines()
    assert "#SBATCH --ntasks-per-node=1" in head
    env = {**os.environ, "DRY_RUN": "1", "SLURM_NNODES": "2", "SLURM_NODEID": "7", "SLURM_GPUS_ON_NODE": "4",
           "MASTER_ADDR": "node-a", "CONFIG": str(recipe_path("multi-gpu"))}  # fmt: skip
    res = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert (
        "--machine_rank $SLURM_NODEID" in res.stdout
    )  # expanded by each node's task, not by the batch script
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    for node in (0, 1):  # what srun's task on each node runs
        node_env = {**env, "SLURM_NODEID": str(node)}
        line = subprocess.run(
            ["bash", "-c", f"echo {res.stdout.strip()}"], capture_output=True, text=True, env=node_env
        )
        argv = shlex.split(line.stdout)
        assert argv[:2] == ["accelerate", "launch"]
        args, _, _ = _validate_launch_command(launch_command_parser().parse_args(argv[2:]))
        prepare_multi_gpu_env(args)
        assert (args.nnodes, args.node_rank, args.nproc_per_node) == ("2", node, "4")
        assert (args.main_process_ip, args.main_process_port, args.num_processes) == ("node-a", 29500, 8)
        assert args.module and args.training_script == "surgkit"
    # the default command is a real surgkit command with these options
    from typer.testing import CliRunner

    from surgkit.cli import app

    cmd = args.training_script_args
    assert cmd[:2] == ["video", "pretrain"]
    help_text = CliRunner().invoke(app, [*cmd[:2], "--help"], env={"COLUMNS": "200"}).output
    assert all(flag in help_text for flag in cmd if flag.startswith("--"))
    res = subprocess.run(["bash", str(script)], capture_output=True, text=True,
                         env={k: v for k, v in env.items() if k != "SLURM_NNODES"})  # fmt: skip
    assert res.returncode != 0 and "SLURM_NNODES" in res.stderr


def test_recipes_cli(run_cli, tmp_path):
    code, out, _ = run_cli("recipes", "list")
    assert code == 0 and "deepspeed-zero3" in out and "multi-node" in out
    code, out, _ = run_cli("recipes", "path", "fsdp")
    assert code == 0 and Path(out.strip()) == recipe_path("fsdp")
    code, out, _ = run_cli("recipes", "show", "deepspeed-zero3.yaml")
    assert code == 0 and "zero_stage: 3" in out
    code, out, _ = run_cli("recipes", "copy", "multi-node", str(tmp_path))
    assert code == 0 and os.access(tmp_path / "multi-node.slurm", os.X_OK)
    code, _, err = run_cli("recipes", "copy", "multi-node", str(tmp_path))
    assert code == 2 and "exists" in err
    code, _, err = run_cli("recipes", "path", "zero4")
    assert code == 2 and "unknown recipe 'zero4'" in err
