"""SurgFusion-Net models: sizes from the spec, shapes and lengths, policy mask (T7), freezing, persistence."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from surgkit.errors import SurgkitError
from surgkit.skill.attention import FeatureFusion
from surgkit.skill.config import ExperimentConfig, FusionConfig, load_experiment, shipped_configs
from surgkit.skill.model import SurgFusionNet, UnimodalBranch, annealed_tau, policy_mask

SMALL = {
    "d_model": 16,
    "proj_hidden": 24,
    "input_dims": (12, 12, 12),
    "num_fusionnets": 3,
    "heads_csfb": 2,
    "heads_dfb": 2,
}


def _x(b, t, mods=("rgb", "flow", "mask"), d=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(b, t, d, generator=g) for m in mods}


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_match_spec():
    """Spec §2.1/§2.2 (verified there): 1.84 M per branch, 4.49 M per DFB, 17.3 M fusion (d=256, K=10, H=1)."""
    model = SurgFusionNet(FusionConfig(heads_csfb=1, heads_dfb=1))
    branch = _count(model.branches["rgb"])
    fusion = _count(model) - _count(model.branches)
    assert round(branch / 1e6, 2) == 1.84
    assert round(_count(model.stages[0].dfb) / 1e6, 2) == 4.49
    assert round(fusion / 1e6, 1) == 17.3


@pytest.mark.parametrize("t", [1, 2, 3, 4, 16, 17, 70])
def test_stage_lengths_follow_floor_pooling(t):
    """T₁ = ⌊T/2⌋, T₂ = ⌊T₁/2⌋, stage 3 length 1; T < 4 is edge-padded to 4 segments."""
    model = SurgFusionNet(FusionConfig(**SMALL)).eval()
    out = model(_x(2, t))
    t_eff = max(t, 4)
    t1, t2 = t_eff // 2, t_eff // 4
    assert out.score.shape == (2, 1)
    assert [w.shape for w in out.csfb_attention] == [(2, t1, 3), (2, t2, 3), (2, 1, 3)]
    assert [c.shape for c in out.policy_choice] == [(2, t1), (2, t2), (2, 1)]
    assert torch.all((out.score > 0) & (out.score < 1))
    for w in out.csfb_attention:  # head-averaged CSFB weights are distributions over modalities
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]), atol=1e-5, rtol=0)


def test_single_segment_video_equals_its_constant_repetition():
    """Edge padding: a 1-segment video scores like the same segment repeated 4 times."""
    model = SurgFusionNet(FusionConfig(**SMALL)).eval()
    x1 = _x(1, 1)
    x4 = {m: v.repeat(1, 4, 1) for m, v in x1.items()}
    torch.testing.assert_close(model(x1).score, model(x4).score)


def test_batch_one_full_length_matches_batched_eval():
    """Eval is per video: batch 1 at full length gives the same score as inside a batch of equal lengths."""
    model = SurgFusionNet(FusionConfig(**SMALL)).eval()
    x = _x(3, 9)
    batched = model(x).score
    single = torch.cat([model({m: v[i : i + 1] for m, v in x.items()}).score for i in range(3)])
    torch.testing.assert_close(single, batched, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", [n for n in shipped_configs() if n.startswith("table3")])
def test_every_table3_row_builds_and_runs(name):
    exp = load_experiment(name)
    mods = exp.model.modalities
    cfg = dataclasses.replace(exp.model, **{**SMALL, "input_dims": (12,) * len(mods)})
    model = SurgFusionNet(cfg).eval()
    out = model(_x(2, 10, mods))
    assert out.score.shape == (2, 1)
    assert set(out.unimodal_scores) == set(mods)
    if cfg.strategy != "unimodal":
        assert all(w.shape[-1] == len(mods) for w in out.csfb_attention)
        assert len(out.policy_choice) == (3 if cfg.use_dfb else 0)


def test_shipped_configs_cover_tables_three_to_five():
    names = shipped_configs()
    assert sum(n.startswith("table3_") for n in names) == 11
    assert {f"table4_{s}" for s in ("avg", "cat", "vanilla_ca", "negative_ca", "dra")} <= set(names)
    assert {f"table5_heads{h}" for h in (1, 2, 4, 8)} <= set(names)
    assert load_experiment("table4_negative_ca").model.strategy == "negative"


def test_avg_and_cat_fuse_features_in_place_of_dra_and_unimodal_uses_its_head():
    """Table IV: AVG / CAT replace DRA inside CSFB and DFB (feature fusion, trained in phase 2)."""
    for strategy in ("avg", "cat"):
        model = SurgFusionNet(FusionConfig(**{**SMALL, "strategy": strategy})).eval()
        assert model.config.needs_phase2 and model.head is not None and len(model.stages) == 3
        for stage in model.stages:
            assert isinstance(stage.csfb.attn, FeatureFusion) and stage.csfb.attn.mode == strategy
            assert (
                isinstance(stage.dfb.attn, FeatureFusion) and stage.dfb.attn.tokens == SMALL["num_fusionnets"]
            )
        out = model(_x(2, 8))
        assert out.score.shape == (2, 1)
        for w in out.csfb_attention:  # the average weighs the three modalities equally
            torch.testing.assert_close(w, torch.full_like(w, 1 / 3))
    with pytest.raises(SurgkitError, match="temporal"):
        FusionConfig(**{**SMALL, "strategy": "cat", "csfb_kv": "temporal"})
    uni = SurgFusionNet(
        FusionConfig(**{**SMALL, "modalities": ("flow",), "input_dims": (12,), "strategy": "unimodal"})
    )
    out = uni.eval()(_x(2, 8, ("flow",)))
    torch.testing.assert_close(out.score, out.unimodal_scores["flow"])


def test_baseline_strategies_configure_the_same_attention_module():
    for strategy, mix, diversity in (
        ("vanilla", "positive", False),
        ("negative", "negative", False),
        ("dra", "content", True),
    ):
        model = SurgFusionNet(FusionConfig(**{**SMALL, "strategy": strategy}))
        for attn in (model.stages[0].csfb.attn, model.stages[0].dfb.attn):
            assert (attn.mix, attn.diversity) == (mix, diversity)
    exact = SurgFusionNet(FusionConfig(**{**SMALL, "strategy": "negative", "maqa_exact": True}))
    assert exact.stages[1].dfb.attn.negate_query_input and not exact.stages[1].csfb.attn.negate_query_input


def test_csfb_only_config_has_zero_dfb_placeholder():
    model = SurgFusionNet(FusionConfig(**{**SMALL, "use_dfb": False})).eval()
    assert all(stage.dfb is None for stage in model.stages) and model.tau is None
    assert model(_x(1, 8)).score.shape == (1, 1)


# -- policy (T7) ---------------------------------------------------------------------------------------
def test_policy_prefix_mask_semantics_and_straight_through_gradient():
    logits = torch.tensor([[[0.1], [2.0], [0.3], [-1.0]]], requires_grad=True)  # [B=1, K=4, L=1], k* = 1
    mask, chosen = policy_mask(logits, torch.tensor(1.0), sample=False, mode="prefix")
    assert chosen.item() == 1
    assert mask.shape == (1, 1, 4)
    assert (mask[0, 0, :2] == 0).all() and (mask[0, 0, 2:] < -1e8).all()  # FusionNets 1..k* enabled
    onehot, _ = policy_mask(logits, torch.tensor(1.0), sample=False, mode="onehot")
    assert (onehot[0, 0] == 0).tolist() == [False, True, False, False]
    tau = torch.tensor(2.0, requires_grad=True)
    sampled, _ = policy_mask(logits, tau, sample=True, mode="prefix")
    (sampled * torch.arange(4.0)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0  # gradient reaches the policy logits
    assert tau.grad is not None and torch.isfinite(tau.grad)


def test_eval_is_deterministic_and_train_samples_gumbel():
    model = SurgFusionNet(FusionConfig(**SMALL))
    x = _x(2, 12)
    model.eval()
    torch.testing.assert_close(model(x).score, model(x).score)
    gumbel = SurgFusionNet(FusionConfig(**{**SMALL, "policy_eval": "gumbel"}))
    gumbel.load_state_dict(model.state_dict())
    gumbel.eval()
    choices = {tuple(torch.cat(gumbel(x).policy_choice, 1).flatten().tolist()) for _ in range(6)}
    assert len(choices) > 1  # MAQA behaviour: stochastic at eval


# -- freezing and persistence --------------------------------------------------------------------------
def test_phase2_step_leaves_frozen_branches_untouched():
    model = SurgFusionNet(FusionConfig(**SMALL))
    model.freeze_branches()
    model.train()
    model.set_training_progress(0, 10)
    before = {k: v.clone() for k, v in model.branches.state_dict().items()}
    body, head = model.fusion_parameters()
    opt = torch.optim.AdamW(body + head, lr=1e-2)
    loss = model(_x(4, 10)).score.sum()
    loss.backward()
    opt.step()
    after = model.branches.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN running stats
    assert not model.branches.training
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in body)
    assert all(stage.dfb.policy.weight.grad.abs().sum() > 0 for stage in model.stages)  # straight-through


def test_save_and_load_pretrained_round_trip(tmp_path):
    model = SurgFusionNet(FusionConfig(**{**SMALL, "dra_main": "pca", "num_outputs": 6})).eval()
    x = _x(1, 11)
    model.save_pretrained(tmp_path / "m")
    loaded = SurgFusionNet.from_pretrained(tmp_path / "m").eval()
    assert loaded.config == model.config
    torch.testing.assert_close(loaded(x).score, model(x).score)
    assert loaded(x).score.shape == (1, 6)
    branch = UnimodalBranch(model.config.unimodal("mask"))
    branch.save_pretrained(tmp_path / "b")
    assert UnimodalBranch.from_pretrained(tmp_path / "b").config.modality == "mask"


def test_config_validation_and_experiment_round_trip(tmp_path):
    with pytest.raises(SurgkitError, match="heads_csfb"):
        FusionConfig(d_model=16, heads_csfb=3)
    with pytest.raises(SurgkitError, match="modalities"):
        FusionConfig(modalities=("rgb", "depth"), input_dims=(4, 4))
    with pytest.raises(SurgkitError, match="at least two"):
        FusionConfig(modalities=("rgb",), input_dims=(4,))
    exp = load_experiment(
        "table5_heads2", ["model.d_model=32", "train.phase1.epochs=7", "train.select=best_test"]
    )
    assert (exp.model.heads_csfb, exp.model.d_model, exp.train.phase1.epochs) == (2, 32, 7)
    again = ExperimentConfig.from_dict(exp.to_dict())
    assert again.to_dict() == exp.to_dict()
    with pytest.raises(SurgkitError, match="unknown train fields"):
        ExperimentConfig.from_dict({"train": {"epochs": 3}})
    assert np.isclose(again.train.phase2.lr, 5e-4)


def test_annealed_policy_temperature_makes_training_choices_agree_with_evaluation():
    """policy_tau=anneal: k* ~ softmax(π/τ); τ goes τ₀ → τ₁ over the phase and, at τ₁, the training draws
    are (almost) the argmax evaluation takes; MAQA's unscaled hard draw ignores τ altogether."""
    assert annealed_tau(1.0, 0.05, 0, 30) == 1.0 and np.isclose(annealed_tau(1.0, 0.05, 29, 30), 0.05)
    assert np.isclose(annealed_tau(1.0, 0.04, 1, 3), 0.2)  # geometric: 1 → 0.2 → 0.04
    torch.manual_seed(0)
    logits = torch.randn(64, 4, 50)
    best = logits.argmax(1)
    agree = {}
    for tau in (5.0, 1.0, 0.05):
        _, chosen = policy_mask(logits, torch.tensor(tau), sample=True, scaled=True)
        agree[tau] = (chosen == best).float().mean().item()
        expected = torch.softmax(logits / tau, 1).max(1).values.mean().item()  # P(draw == argmax)
        assert abs(agree[tau] - expected) < 0.03
    assert agree[5.0] < 0.45 < agree[1.0] < 0.8 < 0.95 < agree[0.05]
    _, unscaled = policy_mask(logits, torch.tensor(0.05), sample=True, scaled=False)
    assert (unscaled == best).float().mean().item() < 0.8  # τ does not sharpen MAQA's hard draw
    model = SurgFusionNet(FusionConfig(**SMALL))
    assert "tau" in dict(model.named_buffers()) and not any(n == "tau" for n, _ in model.named_parameters())
    model.set_training_progress(9, 10)
    assert np.isclose(model.tau.item(), model.config.tau_final)
    maqa = SurgFusionNet(FusionConfig(**{**SMALL, "policy_tau": "learnable", "tau_init": 10.0}))
    maqa.set_training_progress(9, 10)
    assert isinstance(maqa.tau, torch.nn.Parameter) and maqa.tau.item() == 10.0


def _dfb_inputs(cfg, length=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    d = cfg.d_model
    c, s = torch.randn(2, d, length, generator=g), torch.randn(2, d, length, generator=g)
    feats = [torch.randn(2, d, 2 * length, generator=g) for _ in cfg.modalities]
    return c, s, feats


def test_dfb_query_uses_the_csfb_output():
    """§2.4: the DFB query is W_p [C_i; S_i]; changing only the CSFB output S_i changes the DFB output,
    and the query the attention receives equals W_p applied to the concatenation."""
    from surgkit.skill.model import _pool_half

    cfg = FusionConfig(**{**SMALL, "dra_final_norm": "none"})
    dfb = SurgFusionNet(cfg).stages[0].dfb.eval()
    c, s, feats = _dfb_inputs(cfg)
    tau = torch.tensor(1.0)
    seen = {}

    def keep_query(module, args, output):
        seen.setdefault("q", args[0])

    dfb.attn.register_forward_hook(keep_query)
    out, _ = dfb(c, s, feats, _pool_half, tau)
    expected_q = dfb.query(torch.cat([c, s], 1)).transpose(1, 2).reshape(-1, 1, cfg.d_model)
    torch.testing.assert_close(seen["q"], expected_q)
    out2, _ = dfb(c, s + 1.0, feats, _pool_half, tau)
    assert (out2 - out).abs().max().item() > 1e-4


def test_fusionnet_weights_are_a_softmax_over_modalities():
    """§2.4: α_{m,k,t} sums to 1 over the modalities m (not over the K FusionNets) and X̃_k = Σ_m α X_m."""
    cfg = FusionConfig(**{**SMALL, "num_fusionnets": 4})
    dfb = SurgFusionNet(cfg).stages[0].dfb.eval()
    _, _, feats = _dfb_inputs(cfg)
    alpha = dfb.modality_weights(feats)  # [B, N, K, L]
    assert alpha.shape == (2, 3, 4, 12)
    torch.testing.assert_close(alpha.sum(1), torch.ones(2, 4, 12))
    assert (alpha.sum(2) - 1).abs().max().item() > 0.1  # not normalised over K
    logits = torch.stack([g[1](g[0](x)) for g, x in zip(dfb.weight_heads, feats, strict=True)], 1)
    manual = torch.softmax(logits, dim=1)
    torch.testing.assert_close(alpha, manual)
    fused = sum(manual[:, m, :, None] * feats[m][:, None] for m in range(3))  # [B, K, d, L]
    flat = fused.reshape(2, -1, 12)
    expected = torch.nn.functional.avg_pool1d(flat + dfb.refine(flat), 2, 2).reshape(2, 4, cfg.d_model, -1)
    torch.testing.assert_close(
        dfb.fusion_nets(feats, lambda t: torch.nn.functional.avg_pool1d(t, 2, 2)), expected
    )


def test_input_standardisation_makes_branches_blind_to_the_feature_scale():
    """Per-dimension standardisation with training statistics: features at 1e-6 (a random tiny I3D) and
    the same features × 1e6 give the same branch output; without it the first BatchNorm's ε erases them."""
    cfg = FusionConfig(**SMALL).unimodal("flow")
    g = torch.Generator().manual_seed(0)
    train = [torch.randn(9, 12, generator=g) * 1e-6 + 3e-6 for _ in range(5)]
    x = torch.randn(2, 9, 12, generator=g) * 1e-6 + 3e-6
    torch.manual_seed(0)
    small = UnimodalBranch(cfg)
    small.fit_input_normalisation(train)
    torch.manual_seed(0)
    big = UnimodalBranch(cfg)
    big.fit_input_normalisation([t * 1e6 for t in train])
    small.eval(), big.eval()
    torch.testing.assert_close(small(x).score, big(x * 1e6).score, atol=1e-5, rtol=1e-4)
    allv = torch.cat(train)
    torch.testing.assert_close(small.input_mean, allv.mean(0))
    raw = UnimodalBranch(dataclasses.replace(cfg, input_norm="none"))
    raw.fit_input_normalisation(train)  # a no-op
    assert torch.equal(raw.input_std, torch.ones(12))
