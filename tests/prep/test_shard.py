"""`--shard i/N`: shards of one job into one folder give what one unsharded run gives, byte for byte."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from surgkit.errors import SurgkitError
from surgkit.prep import masks
from surgkit.prep.shard import Shard, parse_shard, shard_of

from .conftest import damage, make_video

IDS = ["case01", "case02", "case04", "case05", "case06", "case08"]  # shards of 3: 2,2 | 0,0 | 1,1
BOOKKEEPING = ("manifest", ".shard-", ".surgkit.lock", "index.json.lock")


def test_partition_is_by_id_only_and_covers_every_video_once():
    ids = [f"video{i:03d}" for i in range(200)]
    for n in (1, 2, 3, 7):
        parts = [Shard(i, n).select(ids) if n > 1 else ids for i in range(n)]
        assert sorted(v for p in parts for v in p) == ids  # each video in exactly one shard
        assert all(abs(len(p) - 200 / n) < 0.35 * 200 / n for p in parts)  # roughly balanced
    # by id alone: the listing order and the other videos do not matter
    assert Shard(1, 3).select(ids[::-1]) == Shard(1, 3).select(ids)[::-1]
    assert Shard(1, 3).select(ids[:50]) == [v for v in Shard(1, 3).select(ids) if v in ids[:50]]
    assert shard_of("case06", 3) == int(hashlib.sha256(b"case06").hexdigest()[:16], 16) % 3 == 1
    assert parse_shard("2/3") == Shard(2, 3) and parse_shard(None) is None and parse_shard("0/1") is None
    for bad in ("3/3", "1/0", "-1/3", "a/b", "1"):
        with pytest.raises(SurgkitError, match="--shard"):
            parse_shard(bad)


def _digest(path: Path) -> str:
    """sha256 of the bytes; for safetensors of the tensors' bytes and the metadata (the Rust writer orders
    header keys differently in every process, so two unsharded runs differ there too)."""
    if path.suffix != ".safetensors":
        return hashlib.sha256(path.read_bytes()).hexdigest()
    from safetensors import safe_open

    h = hashlib.sha256()
    with safe_open(str(path), "np") as fh:
        h.update(json.dumps(fh.metadata(), sort_keys=True).encode())
        for key in sorted(fh.keys()):
            t = fh.get_tensor(key)
            h.update(f"{key}{t.dtype}{t.shape}".encode() + t.tobytes())
    return h.hexdigest()


def _tree(root: Path) -> dict[str, str]:
    """A digest of every output file, bookkeeping (manifests, locks) left out."""
    return {
        p.relative_to(root).as_posix(): _digest(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part.startswith(BOOKKEEPING) for part in p.relative_to(root).parts)
    }


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shard-videos")
    for k, vid in enumerate(IDS):
        make_video(root / f"{vid}.avi", 20 + 4 * k, 30, "mpeg4", size=(64, 48))
    damage(root / "case05.avi", root / "case09.avi", "truncated")  # fails; in shard 1 of 3
    return root


def _status(run_cli, out: Path) -> tuple[int, str]:
    code, text, err = run_cli("prep", "status", out, "--json")
    assert code in (0, 1), err
    return code, text


def test_three_shards_then_status_equals_one_unsharded_run(videos, tmp_path, run_cli):
    from transformers import VideoMAEConfig, VideoMAEModel

    torch.manual_seed(0)
    VideoMAEModel(VideoMAEConfig(image_size=32, patch_size=16, num_frames=2, tubelet_size=2, hidden_size=16,
                                 num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
                  ).save_pretrained(tmp_path / "bb")  # fmt: skip
    seg = masks.ModelMasks(lambda x: torch.stack([-x[:, 1], x[:, 1]], 1), input_size=32)

    def run(out: Path, shard: list[str]) -> None:
        f, fl, m, ft = (out / s for s in ("frames", "flow", "masks", "feat"))
        run_cli("prep", "frames", videos, "-o", f, "--fps", "10", "--format", "array", "--workers", "1", "-q",
                *shard)  # fmt: skip
        code, _, err = run_cli("prep", "flow", f, "-o", fl, "--workers", "1", "-q", *shard)
        assert code == 0, err
        assert masks.compute(f, m, seg, progress=False, shard=shard[1] if shard else None).ok
        code, _, err = run_cli("prep", "features", "-o", ft, "--backbone", tmp_path / "bb", "--frames", f,
                               "--flow", fl, "--masks", m, "--segment-frames", "4", "-q", *shard)  # fmt: skip
        assert code == 0, err

    run(tmp_path / "one", [])
    for i in range(3):
        run(tmp_path / "three", ["--shard", f"{i}/3"])
    for step in ("frames", "flow", "masks", "feat"):
        one, three = tmp_path / "one" / step, tmp_path / "three" / step
        assert _status(run_cli, three) == _status(run_cli, one), step
        assert _tree(three) == _tree(one), step
        assert sorted(p.name for p in three.glob("manifest*.json")) == [
            f"manifest.shard-{i}-of-3.json" for i in range(3)
        ]
    code, text = _status(run_cli, tmp_path / "one" / "frames")
    report = json.loads(text)
    assert code == 1 and report["counts"] == {"done": 6, "failed": 1, "partial": 0, "missing": 0}
    assert report["videos"]["case09"]["status"] == "failed" and report["videos"]["case01"]["status"] == "done"
    assert json.loads(_status(run_cli, tmp_path / "one" / "feat")[1])["counts"]["done"] == 6
    assert _tree(tmp_path / "one" / "feat")["index.json"]  # one index, merged from the three shards


def test_status_names_what_a_shard_that_never_ran_left_missing(videos, tmp_path, run_cli):
    for i in (0, 2):
        run_cli("prep", "frames", videos, "-o", tmp_path / "f", "--fps", "10", "--format", "array",
                "--workers", "1", "-q", "--shard", f"{i}/3")  # fmt: skip
    code, text, _ = run_cli("prep", "status", tmp_path / "f", "--by-shard")
    assert code == 1
    assert shard_of("case09", 3) == 1
    assert "MISSING  case06\nMISSING  case08\nMISSING  case09\n" in text
    assert "4 done, 0 failed, 0 partial, 3 missing (7 videos)" in text
    assert "shard 1/3: NOT RUN (3 videos)" in text
    # the missing shard runs later; an unsharded run then has nothing left to do but the failed video
    run_cli("prep", "frames", videos, "-o", tmp_path / "f", "--fps", "10", "--format", "array",
            "--workers", "1", "-q", "--shard", "1/3")  # fmt: skip
    code, text, _ = run_cli("prep", "status", tmp_path / "f")
    assert code == 1 and "6 done, 1 failed, 0 partial, 0 missing" in text
    from surgkit.prep.frames import extract

    again = extract(videos, tmp_path / "f", fps=10, fmt="array", workers=1, progress=False)
    assert sorted(again.skipped) == IDS and list(again.failed) == ["case09"]


def test_status_of_a_folder_without_manifest_is_a_clear_error(tmp_path, run_cli):
    code, _, err = run_cli("prep", "status", tmp_path)
    assert code == 2 and "no prep manifest" in err
    code, _, err = run_cli("prep", "frames", tmp_path, "-o", tmp_path / "o", "--shard", "3/3")
    assert code == 2 and "0 <= i < N" in err


def test_feature_store_writers_of_concurrent_shards_keep_each_others_videos(tmp_path):
    import numpy as np

    from surgkit.prep.store import FeatureStore, FeatureStoreWriter

    kw = dict(backbone="b", fps=10.0, segment_frames=4)
    w1, w2 = (
        FeatureStoreWriter(tmp_path, **kw),
        FeatureStoreWriter(tmp_path, **kw),
    )  # both open an empty store
    w1.write("a", "rgb", np.zeros((2, 3)), num_frames=8)
    w2.write("b", "rgb", np.ones((1, 3)), num_frames=4)
    w1.write("c", "rgb", np.zeros((3, 3)), num_frames=12)  # w1 never saw b: it must not drop it
    w2.close()
    w1.close()
    store = FeatureStore(tmp_path)
    assert store.video_ids == ["a", "b", "c"] and store.info("b")["num_segments"] == 1


def _hold(out: Path, shard: str | None):
    """Another process holding prep_lock(out, shard) until its stdin closes."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom surgkit.prep.shard import parse_shard, prep_lock\n"
        f"with prep_lock({str(out)!r}, parse_shard({shard!r}), 'surgkit prep test'):\n"
        "    print('held', flush=True)\n    sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_shards_lock_side_by_side_but_never_beside_an_unsharded_run(tmp_path):
    from surgkit.prep.shard import prep_lock
    from surgkit.utils.lock import FolderInUseError

    holder = _hold(tmp_path, "0/3")
    try:
        with prep_lock(tmp_path, Shard(1, 3), "surgkit prep frames"):
            pass  # another shard of the same folder: fine
        with pytest.raises(FolderInUseError, match="in use by"), prep_lock(tmp_path, Shard(0, 3), "x"):
            pass  # the same shard twice: refused
        with pytest.raises(SurgkitError, match="shard-0-of-3 still running"), prep_lock(tmp_path, None, "x"):
            pass
    finally:
        holder.communicate("")
    holder = _hold(tmp_path, None)
    try:
        with (
            pytest.raises(SurgkitError, match="an unsharded run is writing"),
            prep_lock(tmp_path, Shard(2, 3), "x"),
        ):
            pass
    finally:
        holder.communicate("")
    with prep_lock(tmp_path, None, "surgkit prep frames"):
        pass  # everything released


def test_prep_array_slurm_recipe_tasks_shard_the_job(videos, tmp_path, run_cli):
    """The shipped SLURM array script: the command of each array task, run, gives the unsharded result."""
    import shlex
    import subprocess

    from surgkit.recipes import recipe_path

    script = recipe_path("prep-array")
    args = f"frames {videos} --out {tmp_path / 'sharded'} --fps 10 --format array --workers 1"
    lines = []
    for task in (4, 5, 6):  # --array=4-6: shards 0, 1, 2 of 3
        env = {"PATH": "/usr/bin:/bin", "DRY_RUN": "1", "PREP_ARGS": args, "SLURM_ARRAY_TASK_ID": str(task),
               "SLURM_ARRAY_TASK_MIN": "4", "SLURM_ARRAY_TASK_COUNT": "3"}  # fmt: skip
        res = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env)
        assert res.returncode == 0, res.stderr
        lines.append(shlex.split(res.stdout))
    assert [argv[argv.index("--shard") + 1] for argv in lines] == ["0/3", "1/3", "2/3"]
    for argv in lines:
        assert argv[:2] == ["surgkit", "prep"]
        code, _, err = run_cli(*argv[1:])
        assert code in (0, 1), err
    run_cli("prep", "frames", videos, "-o", tmp_path / "one", "--fps", "10", "--format", "array", "--workers", "1",
            "-q")  # fmt: skip
    assert _status(run_cli, tmp_path / "sharded") == _status(run_cli, tmp_path / "one")
    assert _tree(tmp_path / "sharded") == _tree(tmp_path / "one")
