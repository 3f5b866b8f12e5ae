"""Divergence Regulated Attention: spec skill.md §2.5 properties (a)–(i) and oracles T1–T4.

Oracles: ``torch.nn.functional.scaled_dot_product_attention`` (negated query for MAQA's negative
attention, plain for vanilla) and an independent float64 NumPy re-statement of the §2.5 equations.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from surgkit.errors import SurgkitError
from surgkit.skill.attention import MASK_VALUE, DivergenceRegulatedAttention, FeatureFusion, main_pattern

D = 16


def _inputs(b=5, lq=1, n=4, d=D, seed=0, masked=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, lq, d, generator=g)
    z = torch.randn(b, n, d, generator=g)
    mask = None
    if masked:
        keep = torch.rand(b, lq, n, generator=g) > 0.35
        keep[..., 0] = True  # at least one key per row
        mask = torch.zeros(b, lq, n).masked_fill(~keep, MASK_VALUE)
    return x, z, mask


def _randomise_gates(attn: DivergenceRegulatedAttention, seed: int = 1) -> None:
    """Move λ and γ away from their initial constants so every term of the equations matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for lin in (attn.lambda_gate, attn.gamma_gate):
            if lin is not None:
                lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) * 0.5)
                lin.bias.copy_(torch.randn(lin.bias.shape, generator=g) * 0.5)
        if attn.rho is not None:
            attn.rho.copy_(torch.randn(attn.rho.shape, generator=g))


def _heads(t: torch.Tensor, h: int) -> torch.Tensor:
    b, n, d = t.shape
    return t.view(b, n, h, d // h).transpose(1, 2)


def _projections(attn, x, z):
    q = attn.q_proj(-x if attn.negate_query_input else x)
    return _heads(q, attn.heads), _heads(attn.k_proj(z), attn.heads), _heads(attn.v_proj(z), attn.heads)


# -- NumPy re-statement of §2.5 ----------------------------------------------------------------------
def _np(t):
    return None if t is None else t.detach().double().numpy()


def _softmax(a):
    e = np.exp(a - a.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _softplus(a):
    return np.log1p(np.exp(a))


def dra_numpy(attn: DivergenceRegulatedAttention, x, z, mask):
    """Reference DRA in float64 NumPy with explicit loops for the per-row main pattern."""
    h, dh = attn.heads, attn.head_dim
    xs, zs = _np(x), _np(z)

    def lin(m, a):
        return a @ _np(m.weight).T + _np(m.bias)

    def split(a):
        return a.reshape(a.shape[0], a.shape[1], h, dh).transpose(0, 2, 1, 3)

    q = split(lin(attn.q_proj, -xs if attn.negate_query_input else xs))
    k, v = split(lin(attn.k_proj, zs)), split(lin(attn.v_proj, zs))
    s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(dh)
    m_add = 0.0 if mask is None else _np(mask)[:, None]
    if attn.mix == "positive":
        a = _softmax(s + m_add)
    elif attn.mix == "negative":
        a = _softmax(-s + m_add)
    else:
        lam = 1 / (1 + np.exp(-lin(attn.lambda_gate, xs)))  # [B, Lq, H]
        lam = lam.transpose(0, 2, 1)[..., None]
        a = lam * _softmax(s + m_add) + (1 - lam) * _softmax(-s + m_add)
    regulated = a
    if attn.diversity:
        if attn.main == "mean":
            m = a.mean(1, keepdims=True)
        else:
            m = np.zeros((a.shape[0], 1, a.shape[2], a.shape[3]))
            for bi, qi in itertools.product(range(a.shape[0]), range(a.shape[2])):
                _, _, vt = np.linalg.svd(a[bi, :, qi, :])
                vec = vt[0] if vt[0].sum() >= 0 else -vt[0]
                m[bi, 0, qi] = vec
        beta = (a * m).sum(-1, keepdims=True) / ((m * m).sum(-1, keepdims=True) + attn.eps)
        delta = a - beta * m
        if attn.gamma_mode == "param":
            gamma = _softplus(_np(attn.rho)).reshape(1, h, 1, 1)
        elif attn.gamma_mode == "divergence":  # κ_h (1 − cos(a_h, m))
            cos = (a * m).sum(-1, keepdims=True) / (
                np.linalg.norm(a, axis=-1, keepdims=True) * np.linalg.norm(m, axis=-1, keepdims=True)
                + attn.eps
            )
            gamma = _softplus(_np(attn.rho)).reshape(1, h, 1, 1) * (1 - cos)
        else:
            gamma = _softplus(lin(attn.gamma_gate, xs)).transpose(0, 2, 1)[..., None]
        regulated = a + gamma * delta
    if attn.final_norm == "softmax":
        w = _softmax(regulated / attn.final_temperature + m_add)
    elif attn.final_norm == "renorm" and attn.final_temperature != 1.0:
        w = _softmax(np.log(np.maximum(regulated, 1e-12)) / attn.final_temperature + m_add)
    elif attn.final_norm == "renorm":
        w = np.clip(regulated, 0, None)
        if mask is not None:
            w = np.where(_np(mask)[:, None] <= MASK_VALUE / 2, 0.0, w)
        w = w / w.sum(-1, keepdims=True)
    else:
        w = regulated
    out = (w @ v).transpose(0, 2, 1, 3).reshape(xs.shape[0], xs.shape[1], -1)
    return out, a, w


@pytest.mark.parametrize(
    "main,final_norm,gamma,heads,temperature",
    [
        ("pca", "renorm", "divergence", 2, 1.0),  # the defaults
        ("pca", "renorm", "divergence", 4, 0.5),
        ("mean", "renorm", "divergence", 2, 1.0),
        ("mean", "softmax", "param", 4, 1.0),
        ("pca", "softmax", "param", 4, 1.0),
        ("mean", "renorm", "content", 2, 1.0),
        ("pca", "none", "content", 4, 1.0),
        ("mean", "none", "param", 1, 1.0),
        ("pca", "renorm", "param", 8, 1.0),
    ],
)
def test_dra_matches_numpy_restatement(main, final_norm, gamma, heads, temperature):
    torch.manual_seed(0)
    attn = DivergenceRegulatedAttention(
        D, heads, main=main, final_norm=final_norm, gamma=gamma, final_temperature=temperature, dropout=0.0
    )
    _randomise_gates(attn)
    attn.eval()
    x, z, mask = _inputs(lq=2)
    out, det = attn(x, z, mask, return_details=True)
    ref_out, ref_a, ref_w = dra_numpy(attn, x, z, mask)
    np.testing.assert_allclose(det.mixed.detach().double().numpy(), ref_a, atol=1e-6)
    np.testing.assert_allclose(det.weights.detach().double().numpy(), ref_w, atol=1e-5)
    np.testing.assert_allclose(out.detach().double().numpy(), ref_out, atol=1e-5)


# -- (a), (b): exact reductions ---------------------------------------------------------------------
@pytest.mark.parametrize("heads", [1, 2, 4, 8])
def test_a_negative_attention_equals_sdpa_with_negated_query(heads):
    """(a)/T1: λ ≡ 0, γ ≡ 0, final_norm none is softmax(−QKᵀ/√d_h + M)V = SDPA(−Q, K, V, M)."""
    torch.manual_seed(heads)
    attn = DivergenceRegulatedAttention.negative(D, heads, dropout=0.0).eval()
    x, z, mask = _inputs(lq=3)
    out, _ = attn(x, z, mask)
    q, k, v = _projections(attn, x, z)
    ref = F.scaled_dot_product_attention(-q, k, v, attn_mask=mask[:, None])
    ref = ref.transpose(1, 2).reshape(out.shape)
    assert (out - ref).abs().max().item() < 1e-6


@pytest.mark.parametrize("heads", [1, 4])
def test_b_vanilla_attention_equals_sdpa(heads):
    """(b)/T2: λ ≡ 1, γ ≡ 0, final_norm none is scaled-dot-product attention."""
    torch.manual_seed(10 + heads)
    attn = DivergenceRegulatedAttention.vanilla(D, heads, dropout=0.0).eval()
    x, z, mask = _inputs(lq=2)
    out, _ = attn(x, z, mask)
    q, k, v = _projections(attn, x, z)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None]).transpose(1, 2).reshape(out.shape)
    assert (out - ref).abs().max().item() < 1e-6


def test_maqa_dfb_quirk_is_vanilla_attention_with_flipped_query_bias():
    """§4 item 2: negating the query before W_Q and negating the scores = SDPA(W_Q q − b_Q, K, V)."""
    torch.manual_seed(3)
    attn = DivergenceRegulatedAttention.negative(D, 2, negate_query_input=True, dropout=0.0).eval()
    x, z, mask = _inputs()
    out, _ = attn(x, z, mask)
    q = _heads(x @ attn.q_proj.weight.T - attn.q_proj.bias, 2)
    k, v = _heads(attn.k_proj(z), 2), _heads(attn.v_proj(z), 2)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None]).transpose(1, 2).reshape(out.shape)
    assert (out - ref).abs().max().item() < 1e-6


def test_bool_mask_equals_additive_mask():
    attn = DivergenceRegulatedAttention(D, 4, dropout=0.0).eval()
    x, z, mask = _inputs()
    out_add, _ = attn(x, z, mask)
    out_bool, _ = attn(x, z, mask > MASK_VALUE / 2)
    torch.testing.assert_close(out_add, out_bool)


# -- (c)–(i): invariants -----------------------------------------------------------------------------
@pytest.mark.parametrize("final_norm", ["softmax", "renorm"])
@pytest.mark.parametrize("main", ["mean", "pca"])
def test_c_rows_of_mixed_and_final_maps_sum_to_one(final_norm, main):
    attn = DivergenceRegulatedAttention(D, 4, main=main, final_norm=final_norm, dropout=0.0)
    _randomise_gates(attn)
    x, z, mask = _inputs(lq=2)
    _, det = attn(x, z, mask, return_details=True)
    torch.testing.assert_close(det.mixed.sum(-1), torch.ones_like(det.mixed.sum(-1)), atol=1e-6, rtol=0)
    torch.testing.assert_close(det.weights.sum(-1), torch.ones_like(det.weights.sum(-1)), atol=1e-6, rtol=0)
    assert (det.weights >= 0).all()


@pytest.mark.parametrize("main", ["mean", "pca"])
def test_d_divergence_is_orthogonal_to_main_pattern(main):
    attn = DivergenceRegulatedAttention(D, 4, main=main, dropout=0.0)
    _randomise_gates(attn)
    x, z, mask = _inputs(b=16, lq=2, n=6)
    _, det = attn(x, z, mask, return_details=True)
    inner = (det.divergence * det.main).sum(-1)
    assert inner.abs().max().item() < 1e-6
    assert det.divergence.abs().max().item() > 1e-3  # heads do differ: the check is not vacuous


@pytest.mark.parametrize("main", ["mean", "pca"])
def test_e_single_head_has_no_divergence(main):
    attn = DivergenceRegulatedAttention(D, 1, main=main, dropout=0.0)
    _randomise_gates(attn)
    x, z, mask = _inputs(lq=2)
    _, det = attn(x, z, mask, return_details=True)
    assert det.divergence.abs().max().item() < 1e-6
    torch.testing.assert_close(det.regulated, det.mixed, atol=1e-6, rtol=0)


@pytest.mark.parametrize("main", ["mean", "pca"])
def test_f_identical_heads_have_no_divergence(main):
    heads = 4
    attn = DivergenceRegulatedAttention(D, heads, main=main, dropout=0.0)
    with torch.no_grad():  # every head gets the same Q/K projection and the same λ gate
        dh = D // heads
        for proj in (attn.q_proj, attn.k_proj):
            block_w, block_b = proj.weight[:dh].clone(), proj.bias[:dh].clone()
            proj.weight.copy_(block_w.repeat(heads, 1))
            proj.bias.copy_(block_b.repeat(heads))
        attn.lambda_gate.weight.copy_(torch.randn(1, D).repeat(heads, 1))
        attn.lambda_gate.bias.fill_(0.3)
    x, z, mask = _inputs()
    _, det = attn(x, z, mask, return_details=True)
    assert det.divergence.abs().max().item() < 1e-6


@pytest.mark.parametrize("final_norm", ["softmax", "renorm", "none"])
@pytest.mark.parametrize("mix", ["content", "positive", "negative"])
def test_g_masked_keys_get_zero_weight(final_norm, mix):
    attn = DivergenceRegulatedAttention(D, 4, mix=mix, final_norm=final_norm, dropout=0.0)
    _randomise_gates(attn)
    x, z, mask = _inputs(b=8, lq=2)
    _, det = attn(x, z, mask, return_details=True)
    masked = (mask <= MASK_VALUE / 2)[:, None].expand_as(det.weights)
    assert masked.any()
    assert det.weights[masked].abs().max().item() == 0.0


@pytest.mark.parametrize("main", ["mean", "pca"])
def test_h_permuting_keys_with_mask_leaves_output_unchanged(main):
    attn = DivergenceRegulatedAttention(D, 4, main=main, dropout=0.0)
    _randomise_gates(attn)
    x, z, mask = _inputs(n=5)
    perm = torch.tensor([3, 0, 4, 1, 2])
    out, w = attn(x, z, mask)
    out_p, w_p = attn(x, z[:, perm], mask[..., perm])
    torch.testing.assert_close(out_p, out, atol=1e-6, rtol=0)
    torch.testing.assert_close(w_p, w[..., perm], atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "options",
    [
        {"main": "mean"},
        {"main": "pca"},
        {"main": "pca", "gamma": "content", "final_norm": "renorm"},
        {"space": "logit", "final_norm": "softmax"},
    ],
)
def test_i_gradients_are_finite(options):
    attn = DivergenceRegulatedAttention(D, 4, dropout=0.1, **options)
    _randomise_gates(attn)
    x, z, mask = _inputs(b=6, lq=2)
    x.requires_grad_(True)
    out, _ = attn(x, z, mask)
    out.square().sum().backward()
    grads = [p.grad for p in attn.parameters()] + [x.grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert attn.lambda_gate.weight.grad.abs().sum() > 0


def test_initial_lambda_and_gamma():
    """λ starts at σ(+1), σ(−1), σ(+1), … over the heads; param-γ at its γ₀; divergence-κ at 1."""
    attn = DivergenceRegulatedAttention(D, 4, gamma="param", gamma_init=0.1, dropout=0.0)
    x, z, _ = _inputs()
    _, det = attn(x, z, return_details=True)
    expected = torch.sigmoid(torch.tensor([1.0, -1.0, 1.0, -1.0])).view(1, 4, 1, 1).expand_as(det.lam)
    torch.testing.assert_close(det.lam, expected)
    torch.testing.assert_close(det.gamma.flatten(), torch.full((4,), 0.1))
    default = DivergenceRegulatedAttention(D, 2)
    assert default.heads == 2 and default.main == "pca" and default.final_norm == "renorm"
    torch.testing.assert_close(F.softplus(default.rho), torch.ones(2))


def test_logit_space_with_even_mix_gives_uniform_weights_over_unmasked_keys():
    """space=logit mixes (2λ − 1)·S: with λ = 0.5 the logits vanish and W is uniform on the kept keys."""
    attn = DivergenceRegulatedAttention(
        D, 2, space="logit", final_norm="softmax", lambda_init=0.0, dropout=0.0
    )
    x, z, mask = _inputs()
    _, w = attn(x, z, mask)
    kept = (mask > MASK_VALUE / 2).float()[:, None]
    torch.testing.assert_close(w, kept / kept.sum(-1, keepdim=True).expand_as(w), atol=1e-6, rtol=0)


def test_bad_options_raise_clear_errors():
    with pytest.raises(SurgkitError, match="divisible"):
        DivergenceRegulatedAttention(10, 4)
    with pytest.raises(SurgkitError, match="main"):
        DivergenceRegulatedAttention(D, 4, main="median")
    with pytest.raises(SurgkitError, match="final_norm"):
        DivergenceRegulatedAttention(D, 4, space="logit", final_norm="renorm")


# -- the paper's DRA by default: sharp weights, exact reductions, responsive γ ---------------------
def _pin_gates(attn: DivergenceRegulatedAttention, lam: float) -> None:
    """λ ≡ lam (0 or 1: a saturated gate) and γ ≡ 0 (κ = softplus(−100) ≈ 4e-44) in the full module."""
    with torch.no_grad():
        attn.lambda_gate.weight.zero_()
        attn.lambda_gate.bias.fill_(60.0 if lam == 1 else -60.0)
        attn.rho.fill_(-100.0)


@pytest.mark.parametrize("heads", [1, 2, 4])
@pytest.mark.parametrize("lam", [0, 1])
def test_default_dra_reduces_exactly_to_negative_and_vanilla_attention(heads, lam):
    """λ ≡ 0 / 1 with γ ≡ 0 under the *default* normalisation is MAQA's negative / vanilla attention."""
    torch.manual_seed(20 + heads + lam)
    attn = DivergenceRegulatedAttention(D, heads, dropout=0.0).eval()  # defaults: pca, divergence, renorm
    _pin_gates(attn, lam)
    x, z, mask = _inputs(lq=2)
    out, det = attn(x, z, mask, return_details=True)
    q, k, v = _projections(attn, x, z)
    ref = F.scaled_dot_product_attention(q if lam else -q, k, v, attn_mask=mask[:, None])
    assert (out - ref.transpose(1, 2).reshape(out.shape)).abs().max().item() < 1e-6
    assert det.gamma.abs().max().item() < 1e-30


def test_renorm_keeps_a_sharp_map_sharp_where_softmax_over_probabilities_flattens_it():
    """A row 0.9 / 0.05 / 0.05 stays 0.9 / 0.05 / 0.05 (renorm, default) instead of ≈ 0.54 / 0.23 / 0.23."""
    sharp = torch.tensor([[[[0.9, 0.05, 0.05]]]])
    renorm = DivergenceRegulatedAttention(D, 1, final_norm="renorm")
    torch.testing.assert_close(renorm._final(sharp, None), sharp)
    flat = DivergenceRegulatedAttention(D, 1, final_norm="softmax")._final(sharp, None)
    torch.testing.assert_close(flat, torch.softmax(sharp, -1))
    assert flat.max().item() < 0.55
    colder = DivergenceRegulatedAttention(D, 1, final_norm="renorm", final_temperature=0.5)._final(
        sharp, None
    )
    torch.testing.assert_close(colder, sharp.square() / sharp.square().sum(-1, keepdim=True))


def test_divergence_gamma_is_zero_on_the_principal_direction_and_grows_away_from_it():
    """γ_h = κ_h (1 − cos(a_h, m)): 0 for a head on m, larger for the head further from m."""
    attn = DivergenceRegulatedAttention(D, 2)
    rows = torch.tensor([[[[0.7, 0.2, 0.1]], [[0.7, 0.2, 0.1]]]])  # [1, H=2, Lq=1, N=3]
    m = torch.tensor([[[[0.7, 0.2, 0.1]]]])
    same = attn._gamma(None, rows, m)
    assert same.abs().max().item() < 1e-6
    apart = torch.tensor([[[[0.8, 0.1, 0.1]], [[0.1, 0.1, 0.8]]]])
    main = main_pattern(apart, "pca")
    gamma = attn._gamma(None, apart, main).flatten()
    cos = (apart * main).sum(-1).flatten() / (apart.norm(dim=-1).flatten() * main.norm())
    torch.testing.assert_close(gamma, 1 - cos)  # κ = 1 at initialisation
    assert (gamma > 0.05).all()


def test_gamma_scale_receives_gradient():
    """κ (ρ) is trained: the regression loss reaches it through γ δ (it stayed at 0.1 before)."""
    attn = DivergenceRegulatedAttention(D, 2, dropout=0.0)
    _randomise_gates(attn)
    x, z, mask = _inputs(b=8)
    out, _ = attn(x, z, mask)
    out.square().sum().backward()
    assert attn.rho.grad.abs().min().item() > 0


def test_lambda_at_one_half_is_a_saddle_that_the_signed_initialisation_breaks():
    """With S = 0 and λ = 0.5 the mixed map is even in S: no gradient reaches W_Q. λ = σ(±1) has one."""
    grads = {}
    for b0 in (0.0, 1.0):
        attn = DivergenceRegulatedAttention(D, 2, lambda_init=b0, dropout=0.0)
        with torch.no_grad():
            attn.q_proj.weight.zero_()
            attn.q_proj.bias.zero_()
        x, z, _ = _inputs(b=8, masked=False)
        out, _ = attn(x, z)
        (out * torch.randn_like(out)).sum().backward()
        grads[b0] = attn.q_proj.weight.grad.abs().max().item()
    assert grads[0.0] < 1e-7 < 1e-3 < grads[1.0]


def test_avg_and_cat_fusions_replace_attention_with_feature_fusion():
    """AVG: mean of the unmasked tokens; CAT: FC of the concatenated tokens, masked ones zeroed."""
    x, z, mask = _inputs(b=6, n=4)
    avg, _ = FeatureFusion(D, 4, "avg")(x, z, mask)
    kept = (mask > MASK_VALUE / 2).float()  # [B, 1, N]
    torch.testing.assert_close(avg, (kept @ z) / kept.sum(-1, keepdim=True))
    cat_fusion = FeatureFusion(D, 4, "cat")
    cat, _ = cat_fusion(x, z, mask)
    ref = cat_fusion.fc((z * kept.transpose(1, 2)).reshape(6, 1, -1))
    torch.testing.assert_close(cat, ref)
    # the PolicyNet's straight-through term, carried by the mask, reaches the output
    st = torch.zeros_like(mask, requires_grad=True)
    out, _ = FeatureFusion(D, 4, "avg")(x, z, mask + st)
    out.sum().backward()
    assert st.grad.abs().sum() > 0
