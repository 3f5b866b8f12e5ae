"""Issue 17: the bugs found in the first SurgFusion-Net port and the mistakes its tests let through.

Each test names the mistake it catches; ``docs/skill.md`` lists them. The MAQA reference behaviour is
restated here from a reading of PAMFN ``models/pamfn.py`` (qinghuannn/PAMFN, MIT): facts only, no code.
"""

from __future__ import annotations

import dataclasses
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from surgkit.errors import LeakageError, SurgkitError
from surgkit.skill import interop
from surgkit.skill.attention import DivergenceRegulatedAttention
from surgkit.skill.config import FusionConfig, PhaseConfig, TrainConfig, load_experiment
from surgkit.skill.model import CrossStageFusionBlock, policy_mask
from surgkit.skill.protocol import RunOptions, across_tasks, check_leakage, run_cross_validation
from surgkit.skill.train import hybrid_loss, train_phase

SMALL_MODEL = {"d_model": 16, "proj_hidden": 32, "num_fusionnets": 2, "heads_csfb": 2, "heads_dfb": 2}


def tiny_experiment(e1=1, e2=1, **train):
    exp = load_experiment("table4_dra")
    tcfg = dataclasses.replace(
        exp.train,
        checkpoint_every=0,
        phase1=dataclasses.replace(exp.train.phase1, epochs=e1, lr=0.05, batch_size=4),
        phase2=dataclasses.replace(exp.train.phase2, epochs=e2, lr=5e-3, batch_size=4),
        **train,
    )
    return dataclasses.replace(exp, model=dataclasses.replace(exp.model, **SMALL_MODEL), train=tcfg)


@pytest.fixture(scope="module")
def two_tasks(tmp_path_factory):
    from surgkit.skill.synthetic import make_synthetic_skill_data

    root = tmp_path_factory.mktemp("two-tasks")
    return make_synthetic_skill_data(
        root, task=("Suturing", "Knot_Tying"), users=4, trials_per_user=2, dim=8, length=(6, 10), seed=3
    )


# -- bug: runs split by --task overwrote results.json and lost the across-task row -----------------
def test_runs_split_by_task_keep_every_task_and_the_fisher_z_row(two_tasks, tmp_path):
    from surgkit.skill.table import ACROSS, table_rows

    data, feats = two_tasks
    out = tmp_path / "run"
    for task in ("Suturing", "Knot_Tying"):
        res = run_cross_validation(
            tiny_experiment(),
            RunOptions(data, feats, out, scheme="kfold", k=2, tasks=(task,), progress=False),
        )
    saved = json.loads((out / "results.json").read_text())
    assert sorted(saved["tasks"]) == ["Knot_Tying", "Suturing"] == sorted(res["tasks"])
    scc = [saved["tasks"][t]["summary"]["fusion"]["scc_mean"] for t in ("Knot_Tying", "Suturing")]
    expected = math.tanh(np.mean(np.arctanh(scc)))
    assert saved["across_tasks"]["fusion"]["scc_fisher_z"] == pytest.approx(expected, abs=1e-12)
    rows = table_rows([out])
    assert [r["task"] for r in rows if r["task"] == ACROSS] == [ACROSS] * 1


# -- mistake: Fisher z replaced by an arithmetic mean --------------------------------------------------
def test_across_task_scc_is_the_fisher_z_mean_not_the_arithmetic_mean():
    per_task = {
        t: {"summary": {"fusion": {"scc_mean": r, "mae_mean": 1.0}}} for t, r in (("a", 0.9), ("b", 0.1))
    }
    got = across_tasks(per_task)["fusion"]["scc_fisher_z"]
    assert got == pytest.approx(math.tanh((math.atanh(0.9) + math.atanh(0.1)) / 2), abs=1e-12)  # 0.6558
    assert abs(got - 0.5) > 0.1


# -- mistake: hybrid loss replaced by MSE --------------------------------------------------------------
def test_hybrid_loss_is_half_mse_plus_half_mae():
    pred, target = torch.tensor([[0.2], [0.9], [0.5]]), torch.tensor([[0.5], [0.4], [0.5]])
    mse, mae = (0.09 + 0.25 + 0) / 3, (0.3 + 0.5 + 0) / 3
    assert hybrid_loss(pred, target).item() == pytest.approx(0.5 * mse + 0.5 * mae)
    assert hybrid_loss(pred, target, alpha=1.0).item() == pytest.approx(mse)


class _Linear(nn.Module):
    """A deterministic stand-in model (no dropout, no BatchNorm): score = σ(w · mean_t x + b)."""

    def __init__(self, dim):
        super().__init__()
        self.config = SimpleNamespace(min_length=1)
        self.fc = nn.Linear(dim, 1)

    def forward(self, x, lengths=None):
        return SimpleNamespace(score=torch.sigmoid(self.fc(x["flow"].mean(1))))


def test_training_minimises_the_hybrid_loss(synthetic_skill, tmp_path):
    """The trainer's loss is α·MSE + (1 − α)·MAE (paper Eq. 19): with lr = 0 the recorded epoch loss
    equals the hybrid loss of the (unchanged) predictions, which here differs from their MSE."""
    from surgkit.prep.store import FeatureStore
    from surgkit.skill.data import LabelScale, collate, load_videos
    from surgkit.utils.training import make_accelerator

    data, feats = synthetic_skill
    labels = interop.load_labels(data)
    scale = LabelScale.from_labels(labels)
    videos = list(load_videos(FeatureStore(feats), labels.items[:10], ["flow"], scale).values())
    torch.manual_seed(0)
    model = _Linear(16)
    tcfg = TrainConfig(checkpoint_every=0, bn_recalibrate=False)
    phase = PhaseConfig(epochs=1, lr=0.0, eta_min=0.0, batch_size=64, grad_clip=0.0)
    res = train_phase(model, [{"params": list(model.parameters())}], videos, phase, tcfg, optimizer_kind="sgd",
                      work_dir=tmp_path / "w", accelerator=make_accelerator("cpu"), scale=scale)  # fmt: skip
    x, y, valid = collate(videos, "pad", max(v.length for v in videos))
    with torch.no_grad():
        pred = model(x, valid).score
    hybrid = 0.5 * F.mse_loss(pred, y).item() + 0.5 * F.l1_loss(pred, y).item()
    assert res.history[0]["loss"] == pytest.approx(hybrid, rel=1e-5)
    assert abs(hybrid - F.mse_loss(pred, y).item()) > 1e-3


# -- bug: `skill predict` ignored length_policy=resample ---------------------------------------------
def test_predict_scores_like_the_run_under_resample(synthetic_skill, tmp_path):
    from surgkit.skill.predict import predict_features

    data, feats = synthetic_skill
    exp = tiny_experiment(2, 1, length_policy="resample", resample_length=5)
    res = run_cross_validation(exp, RunOptions(data, feats, tmp_path / "r", scheme="kfold", k=2, progress=False,
                                               only_folds=("fold_0",)))  # fmt: skip
    fold = res["tasks"]["Suturing"]["folds"][0]
    ckpt = tmp_path / "r" / "Suturing" / "fold_0" / "fusion"
    rows = predict_features(ckpt, feats, [f"{v}_capture1" for v in fold["test"][:4]])
    np.testing.assert_allclose([r["score"] for r in rows], fold["models"]["fusion"]["pred"][:4], atol=1e-4)
    assert json.loads((ckpt / "train_state.json").read_text())["length_policy"] == "resample"


# -- clinical protocol: per-segment M-GEARS, range read from the data, random and surgeon folds -----
def _clinical(tmp_path, items=6, score_range=None):
    from surgkit.prep.store import FeatureStoreWriter

    names = [f"item{j}" for j in range(items)]
    rng = np.random.default_rng(0)
    videos = []
    with FeatureStoreWriter(tmp_path / "feats", backbone="synthetic", fps=1.0, segment_frames=2) as writer:
        for i in range(8):
            vid = f"rah_{i:03d}"
            segs = []
            for j, (start, end) in enumerate(((0, 20), (20, 40), (40, 60))):
                vals = {n: int(rng.integers(3, 6)) for n in names}
                segs.append({"name": f"phase{j + 1}", "start": start, "end": end,
                             "ratings": [{"rater": "R1", "items": vals}]})  # fmt: skip
            videos.append({"id": vid, "surgeon": f"S{i % 4}", "procedure": "vault_closure", "segments": segs})
            for m in ("rgb", "flow", "mask"):
                writer.write(
                    vid, m, rng.normal(size=(30, 4)).astype(np.float32), num_frames=60, source="synthetic"
                )
    scale = {"name": "M-GEARS", "items": names, "item_range": [1, 5]}
    if score_range:
        scale["score_range"] = score_range
    (tmp_path / "skill.json").write_text(json.dumps({"format": "surgkit-clinical-skill/1", "scale": scale,
                                                     "videos": videos}))  # fmt: skip
    return tmp_path, tmp_path / "feats"


def test_clinical_segments_are_units_with_the_datas_score_range(tmp_path):
    data, feats = _clinical(tmp_path)
    video = interop.load_labels(data)
    seg = interop.load_labels(data, unit="segment")
    assert video.score_range == seg.score_range == (6.0, 30.0)  # 6 items of 1-5: scores up to 30
    assert len(video.items) == 8 and len(seg.items) == 24
    assert max(it.score for it in seg.items) > 25  # a 5-item default range (5-25) would reject these
    first = [it for it in seg.items if it.video_id == "rah_000"]
    assert [it.id for it in first] == ["rah_000@phase1", "rah_000@phase2", "rah_000@phase3"]
    assert np.mean([it.score for it in first]) == pytest.approx(video.items[0].score)
    from surgkit.prep.store import FeatureStore
    from surgkit.skill.data import LabelScale, load_video

    unit = load_video(FeatureStore(feats), first[1], ["flow"], LabelScale.from_labels(seg))
    full = FeatureStore(feats).load("rah_000", "flow")
    np.testing.assert_array_equal(unit.features["flow"], full[10:20])  # segments centred in 20-40 s
    with pytest.raises(SurgkitError, match="outside the scale's range"):
        interop.load_labels(_clinical(tmp_path / "narrow", score_range=[6, 20])[0])
    with pytest.raises(SurgkitError, match="clinical"):
        interop.load_labels(data, dataset="jigsaws", unit="segment")


def test_random_kfold_keeps_a_videos_segments_together_and_surgeon_kfold_keeps_surgeons_apart(tmp_path):
    data, _ = _clinical(tmp_path)
    units = interop.load_labels(data, unit="segment").items
    video_of = {it.id: it.video_id for it in units}
    surgeon = {it.id: it.surgeon for it in units}
    rand = interop.make_folds(units, "random_kfold", k=4, seed=0)
    assert len(rand) == 4 and sorted(v for f in rand for v in f.test) == sorted(video_of)
    for f in rand:
        assert not {video_of[u] for u in f.test} & {video_of[u] for u in f.train}
        check_leakage(f, "random_kfold", surgeon, allow=False, videos=video_of)
    assert any({surgeon[u] for u in f.test} & {surgeon[u] for u in f.train} for f in rand)  # random: allowed
    for f in interop.make_folds(units, "kfold", k=4, seed=0):
        assert not {surgeon[u] for u in f.test} & {surgeon[u] for u in f.train}
    split = interop.Fold("leak", [u for u in video_of if u != "rah_000@phase1"], ["rah_000@phase1"])
    with pytest.raises(LeakageError, match="video rah_000"):
        check_leakage(split, "random_kfold", surgeon, allow=False, videos=video_of)


def test_clinical_segment_run_end_to_end(tmp_path):
    data, feats = _clinical(tmp_path)
    exp = tiny_experiment(1, 1, unit="segment")
    res = run_cross_validation(exp, RunOptions(data, feats, tmp_path / "run", scheme="random_kfold", k=4,
                                               progress=False))  # fmt: skip
    task = res["tasks"]["vault_closure"]
    assert sum(len(f["test"]) for f in task["folds"]) == 24 and res["score_range"] == [6.0, 30.0]
    assert any("scoring unit: segment" in n for n in res["protocol"])
    assert any("random k-fold" in n for n in res["protocol"])
    assert {"fusion", "length_only", "unimodal:rgb"} <= set(task["summary"])


# -- MAQA reference behaviour (PAMFN models/pamfn.py, read and restated) -----------------------------
class MaqaAttention(nn.Module):
    """MAQA's multi-head attention as the reference defines it: three d→d linear layers for Q, K, V
    (``linear_layers.0/1/2``), heads by splitting the last dimension, scores −QKᵀ/√(d/H), the additive
    mask broadcast over the heads and added after the negation, softmax, dropout on the weights, heads
    concatenated, no output projection and no residual (its LayerNorm is built but never applied)."""

    def __init__(self, heads: int, dim: int):
        super().__init__()
        self.heads, self.dim = heads, dim
        self.linear_layers = nn.ModuleList(nn.Linear(dim, dim) for _ in range(3))

    def forward(self, query, key, value, mask=None):
        b, dh = value.shape[0], self.dim // self.heads
        q, k, v = (
            lin(t).reshape(b, -1, self.heads, dh).permute(0, 2, 1, 3)
            for lin, t in zip(self.linear_layers, (query, key, value), strict=True)
        )
        logits = -(q @ k.transpose(-1, -2)) / math.sqrt(dh)
        if mask is not None:
            logits = logits + mask.unsqueeze(1)
        return (torch.softmax(logits, -1) @ v).permute(0, 2, 1, 3).reshape(b, -1, self.dim)


def maqa_prefix_mask(one_hot: torch.Tensor) -> torch.Tensor:
    """The reference's policy mask [B, K, L] from a hard one-hot choice: −1e9 for FusionNets ranked after
    the chosen one, plus the straight-through term one_hot − stopgrad(one_hot)."""
    k = one_hot.shape[1]
    rank = torch.arange(k).view(1, k, 1).expand_as(one_hot)
    chosen = (one_hot * rank).sum(1, keepdim=True)
    return torch.where(rank > chosen, -1e9, 0.0) + one_hot - one_hot.detach()


def _load_maqa_weights(ours: DivergenceRegulatedAttention, ref: MaqaAttention) -> None:
    names = {"q_proj": 0, "k_proj": 1, "v_proj": 2}
    state = {
        f"linear_layers.{i}.{p}": getattr(getattr(ours, n), p)
        for n, i in names.items()
        for p in ("weight", "bias")
    }
    ref.load_state_dict(state)


@pytest.mark.parametrize("heads", [1, 2, 4, 8])
def test_negative_attention_matches_maqa_reference_with_its_policy_mask(heads):
    torch.manual_seed(heads)
    d, k = 16, 5
    ours = DivergenceRegulatedAttention.negative(d, heads, dropout=0.0).eval()
    ref = MaqaAttention(heads, d).eval()
    _load_maqa_weights(ours, ref)
    logits = torch.randn(3, k, 4)  # [B, K, L] policy logits
    one_hot = F.one_hot(logits.argmax(1), k).transpose(1, 2).float()
    mask, _ = policy_mask(logits, torch.tensor(1.0), sample=False, mode="prefix")  # [B, L, K]
    torch.testing.assert_close(mask, maqa_prefix_mask(one_hot).transpose(1, 2))
    q, keys = torch.randn(12, 1, d), torch.randn(12, k, d)
    flat = mask.reshape(12, 1, k)
    out, _ = ours(q, keys, flat)
    assert (out - ref(q, keys, keys, flat)).abs().max().item() < 1e-6
    # MAQA's cross-modal decoder negates its query before the attention (maqa_exact reproduces it)
    quirk = DivergenceRegulatedAttention.negative(d, heads, dropout=0.0, negate_query_input=True).eval()
    quirk.load_state_dict(ours.state_dict())
    out_quirk, _ = quirk(q, keys, flat)
    assert (out_quirk - ref(-q, keys, keys, flat)).abs().max().item() < 1e-6


def test_negative_csfb_matches_maqa_modality_fusion():
    """MAQA's modality-specific decoder: query = 1×1 conv of the stage features per timestep, keys and
    values the stacked modality tokens of that timestep, negative attention; our CSFB with
    strategy=negative computes the same."""
    torch.manual_seed(0)
    cfg = FusionConfig(
        **{**SMALL_MODEL, "input_dims": (8, 8, 8), "strategy": "negative", "attn_dropout": 0.0}
    )
    csfb = CrossStageFusionBlock(cfg).eval()
    ref = MaqaAttention(2, 16)
    _load_maqa_weights(csfb.attn, ref)
    c = torch.randn(2, 16, 5)
    feats = [torch.randn(2, 16, 5) for _ in range(3)]
    s, _ = csfb(c, feats)
    q = csfb.query(c).permute(0, 2, 1).reshape(10, 1, 16)
    tokens = torch.stack(feats, 2).permute(0, 3, 2, 1).reshape(10, 3, 16)
    expected = ref(q, tokens, tokens).reshape(2, 5, 16).permute(0, 2, 1)
    assert (s - expected).abs().max().item() < 1e-6


def test_folds_in_worker_processes_give_the_sequential_records(synthetic_skill, tmp_path):
    """--workers 2 trains folds in spawned processes; every fold seeds itself, so records are identical;
    the workers use the launch options (here --grad-accum 2) and their per-step logs reach the run's
    train_log.jsonl (and trackers) in fold order."""
    from surgkit.utils.launch import LaunchOptions
    from surgkit.utils.tracking import read_train_log

    data, feats = synthetic_skill
    exp = tiny_experiment(2, 1)
    launch = LaunchOptions(grad_accum=2, report_to="none")
    seq = run_cross_validation(
        exp, RunOptions(data, feats, tmp_path / "a", scheme="kfold", k=2, progress=False, launch=launch)
    )
    par = run_cross_validation(
        exp,
        RunOptions(
            data, feats, tmp_path / "b", scheme="kfold", k=2, progress=False, workers=2, launch=launch
        ),
    )
    assert par["tasks"]["Suturing"]["folds"] == seq["tasks"]["Suturing"]["folds"]

    def logged(run):
        return [
            {k: v for k, v in r.items() if not k.endswith("samples_per_second")} for r in read_train_log(run)
        ]

    assert logged(tmp_path / "b") == logged(tmp_path / "a")
    assert sum(k.endswith("/loss") for r in logged(tmp_path / "a") for k in r) >= 8


def test_length_only_baseline_is_a_least_squares_line_fitted_on_the_training_fold():
    """The skeptic's baseline: score = a + b·T fitted on the training videos only (oracle: np.polyfit),
    applied to the held-out videos; a fit that peeks at the test fold would differ."""
    from surgkit.skill.data import ScoredVideo
    from surgkit.skill.protocol import length_only_predictions

    rng = np.random.default_rng(4)

    def video(i, length, target):
        feats = {"flow": np.zeros((length, 2), np.float32)}
        return ScoredVideo(f"v{i}", f"v{i}", "B", feats, 0.0, np.array([target]), {})

    train = [
        video(i, int(t), y)
        for i, (t, y) in enumerate(zip(rng.integers(5, 40, 12), rng.uniform(0, 1, 12), strict=True))
    ]
    test = [video(100 + i, t, y) for i, (t, y) in enumerate([(3, 0.9), (50, 0.1), (20, 0.5)])]
    slope, intercept = np.polyfit([v.length for v in train], [v.target[0] for v in train], 1)
    expected = intercept + slope * np.array([3.0, 50.0, 20.0])
    np.testing.assert_allclose(length_only_predictions(train, test)[:, 0], expected, rtol=1e-10, atol=1e-12)
