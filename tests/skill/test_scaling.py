"""`skill train` from the command line on 2 processes == 1 process on the same global batch: every
step's loss, the final unimodal and fusion weights, the held-out predictions; TensorBoard read back."""

from __future__ import annotations

import json

import pytest

from tests.multiproc import assert_parity, check, logged_runs, torchrun

SETTINGS = ["model.d_model=16", "model.proj_hidden=32", "model.num_fusionnets=2", "model.heads_csfb=2",
            "model.heads_dfb=2", "train.checkpoint_every=0", "train.phase1.epochs=2", "train.phase2.epochs=2",
            "train.phase1.batch_size=5", "train.phase2.batch_size=5", "train.phase1.lr=0.05", "train.phase2.lr=0.005",
            # random draws (dropout, the DFB PolicyNet's Gumbel samples) are per process by nature, as in any
            # DDP run: off, so the two runs can be compared number by number (CSFB fusion + head stay)
            "model.proj_dropout=0", "model.unimodal_head_dropout=0", "model.attn_dropout=0",
            "model.feature_dropout=0", "model.head_dropout=0", "model.use_dfb=false"]  # fmt: skip


def _weights(run, fold="Suturing/fold_0"):
    from safetensors.torch import load_file

    out = {}
    for f in sorted((run / fold).rglob("model.safetensors")):
        part = f.parent.relative_to(run / fold).as_posix()
        out.update({f"{part}/{k}": v.numpy() for k, v in load_file(str(f)).items()})
    return out


@pytest.mark.slow
@pytest.mark.parity
def test_skill_train_two_processes_equal_one_process(synthetic_skill, tmp_path, run_cli):
    from surgkit.utils.tracking import read_train_log

    data, feats = synthetic_skill
    args = ["skill", "train", "--data", str(data), "--features", str(feats), "--scheme", "kfold", "--k", "2",
            "--fold", "fold_0", "--device", "cpu", "--report-to", "tensorboard"]  # fmt: skip
    for s in SETTINGS:
        args += ["--set", s]
    code, _, err = run_cli(*args, "--out", str(tmp_path / "one"))
    assert code == 0, err
    check(torchrun(["-m", "surgkit", *args, "--out", str(tmp_path / "two")], env={"OMP_NUM_THREADS": "1"}))
    one, two = (read_train_log(tmp_path / r) for r in ("one", "two"))
    keys = [k for r in one for k in r if k.endswith("/loss")]
    assert len(keys) >= 30 and len({k.split("/")[0] for k in keys}) == 4  # 3 branches + fusion
    lo = [v for r in one for k, v in r.items() if k.endswith("/loss")]
    lt = [v for r in two for k, v in r.items() if k.endswith("/loss")]
    w1, w2 = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert any(k.startswith("fusion/") for k in w1) and any(k.startswith("unimodal/") for k in w1)
    assert_parity("skill train (SurgFusion-Net d=16, 3 branches + fusion, batch 5 = 3 + 2, SGD then AdamW)",
                  lo, lt, w1, w2, rtol=1e-4, atol=1e-5,
                  # Adam (phase 2, lr 5e-3, 10 steps) on zero-gradient weights: conv biases right before a BatchNorm
                  # (and its running mean), attention key biases, value biases whose shift the next BatchNorm removes
                  loose=(r"^fusion/.*(\.0\.bias|\.1\.running_mean|[kv]_proj\.bias)$", 0.05),
                  **logged_runs(tmp_path / "one", tmp_path / "two"))  # fmt: skip
    m1 = json.loads((tmp_path / "one" / "results.json").read_text())["tasks"]["Suturing"]["folds"][0][
        "models"
    ]
    m2 = json.loads((tmp_path / "two" / "results.json").read_text())["tasks"]["Suturing"]["folds"][0][
        "models"
    ]
    assert set(m1) == set(m2) == {"unimodal:rgb", "unimodal:flow", "unimodal:mask", "fusion", "length_only"}
    for name in m1:  # held-out predictions in score points (measured: <= 1e-4), and the SCC itself
        assert m2[name]["pred"] == pytest.approx(m1[name]["pred"], abs=1e-3), name
        assert m2[name]["scc"] == pytest.approx(m1[name]["scc"], abs=1e-9), name
    tracking = json.loads((tmp_path / "two" / "tracking.json").read_text())
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(tracking["trackers"]["tensorboard"]["logdir"])
    ea.Reload()
    fusion_tag = next(t for t in ea.Tags()["scalars"] if "fusion" in t and t.endswith("/loss"))
    assert [e.value for e in ea.Scalars(fusion_tag)] == pytest.approx(
        [r[fusion_tag] for r in two if fusion_tag in r], rel=1e-6
    )
