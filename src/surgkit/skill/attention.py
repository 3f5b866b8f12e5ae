"""Divergence Regulated Attention (DRA), SurgFusion-Net §III-B3; equations reconstructed in spec skill.md §2.5.

Per head h, with query tokens x [B', Lq, d], key/value tokens z [B', N, d] and an additive mask M:

1. Q = x W_Q + b_Q, K = z W_K + b_K, V = z W_V + b_V, split into H heads of d_h = d / H.
2. S_h = Q_h K_hᵀ / √d_h.
3. A⁺_h = softmax_N(S_h + M) (vanilla) and A⁻_h = softmax_N(−S_h + M) (MAQA's negative attention).
4. λ_h = σ(w_hᵀ x + b_h) (one Linear(d → H); w = 0 and b_h = ±b₀ alternating over the heads at
   initialisation, b₀ = 1: λ = 0.73 / 0.27, [R]); A_h = λ_h A⁺_h + (1 − λ_h) A⁻_h. At λ = 0.5 the mixed
   map is even in S, so its gradient with respect to the queries and keys vanishes at S = 0 and the
   attention cannot leave the uniform map it starts from; leaning the heads towards the positive and
   the negative map breaks that saddle and starts them apart.
5. main pattern m over heads ("based on principal components", Eq. 14): the first right-singular vector
   of the uncentred H×N matrix [a_1; …; a_H] (``main="pca"``, default; sign fixed so Σ m ≥ 0), or the
   mean of the rows (``main="mean"``).
6. β_h = ⟨a_h, m⟩ / (⟨m, m⟩ + ε), δ_h = a_h − β_h m (orthogonal to m; Eqs. 15–16).
7. diversity factor γ_h (Eq. 15, [R]): ``gamma="divergence"`` (default)
   γ_h = κ_h · (1 − ⟨a_h, m⟩ / (‖a_h‖ ‖m‖ + ε)) with κ_h = softplus(ρ_h) learnable (κ₀ = 1): zero for a head on
   the principal direction, growing as the head turns away from it ("when a_h is similar to m, smaller
   values of δ_h and γ_h provide modest diversity promotion"); ``"param"``: γ_h = softplus(ρ_h) alone;
   ``"content"``: γ_h = softplus(Linear(x)). Â_h = A_h + γ_h δ_h (Eq. 17).
8. softmax-weighted aggregation (Eq. 18): ``final_norm="renorm"`` (default) W_h = softmax_N(log Â⁺_h / τ_f + M)
   with Â⁺ = max(Â, 0), i.e. Â⁺ renormalised over the unmasked keys (Â⁺^{1/τ_f} for τ_f ≠ 1). Â is already a
   probability-like map, so this keeps it sharp and makes λ ≡ 0 / λ ≡ 1 with γ ≡ 0 reduce *exactly* to
   negative / vanilla attention. ``"softmax"`` (softmax over the probabilities themselves, which flattens a
   0.9/0.05/0.05 row to about 0.52/0.24/0.24) and ``"none"`` (Â itself) are ablations. Attention dropout on W.
9. O_h = W_h V_h, heads concatenated; optional output projection (off, as in MAQA).

The baselines are configurations of the same module (§2.6): ``mix="positive", diversity=False,
final_norm="none"`` is vanilla scaled-dot-product attention and ``mix="negative"`` the same with −S,
i.e. MAQA's negative attention (see :meth:`DivergenceRegulatedAttention.vanilla` / ``.negative``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from surgkit.errors import SurgkitError

MASK_VALUE = -1e9  # additive value for disabled keys (finite: a fully masked row stays NaN-free)

PCA_GRAD_STEPS = 3

MIX_MODES = ("content", "positive", "negative")
MAIN_MODES = ("pca", "mean")
GAMMA_MODES = ("divergence", "param", "content")
FINAL_NORMS = ("renorm", "softmax", "none")
LOG_FLOOR = 1e-12  # log(max(Â, floor)) in the tempered renormalisation
SPACES = ("prob", "logit")


def _inverse_softplus(y: float) -> float:
    """x with softplus(x) = y (y > 0)."""
    return y + math.log(-math.expm1(-y))


@dataclass
class AttentionDetails:
    """Intermediate maps of one DRA call, each [B', H, Lq, N] (λ and γ: [B', H, Lq, 1] or broadcastable)."""

    scores: torch.Tensor
    mixed: torch.Tensor
    main: torch.Tensor | None
    beta: torch.Tensor | None
    divergence: torch.Tensor | None
    regulated: torch.Tensor
    weights: torch.Tensor
    lam: torch.Tensor | None
    gamma: torch.Tensor | None


def additive_mask(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """Turn a boolean keep-mask (True = attend, as in SDPA) or an additive float mask into an additive one."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, MASK_VALUE)
    return mask.to(dtype)


def main_pattern(rows: torch.Tensor, mode: str = "mean") -> torch.Tensor:
    """Main attention pattern across heads (Eq. 14 as reconstructed): rows [B', H, Lq, N] -> [B', 1, Lq, N].

    ``mean``: (1/H) Σ_h a_h. ``pca``: first right-singular vector of the uncentred H×N matrix
    [a_1; …; a_H], sign chosen so that its entries sum to ≥ 0. Its value comes from
    ``torch.linalg.svd``; gradients flow through ``PCA_GRAD_STEPS`` power-iteration steps on
    [a]ᵀ[a] started at that (fixed-point) vector, because the SVD backward is undefined (NaN) for the
    repeated zero singular values that masked keys create.
    """
    if mode == "mean":
        return rows.mean(dim=1, keepdim=True)
    if mode == "pca":
        mat = rows.transpose(1, 2)  # [B', Lq, H, N]
        with torch.no_grad():
            _, _, vh = torch.linalg.svd(mat, full_matrices=False)
            m = vh[..., 0, :]  # [B', Lq, N]
            m = m * torch.where(m.sum(-1, keepdim=True) >= 0, 1.0, -1.0).to(m.dtype)
        gram = mat.transpose(-1, -2) @ mat  # [B', Lq, N, N]; m is its top eigenvector
        for _ in range(PCA_GRAD_STEPS):  # value unchanged (fixed point), gradient well defined
            m = (gram @ m.unsqueeze(-1)).squeeze(-1)
            m = m / m.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return m.unsqueeze(1)
    raise SurgkitError(f"unknown DRA main pattern '{mode}' (choose from {', '.join(MAIN_MODES)})")


def divergence(rows: torch.Tensor, main: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """β_h = ⟨a_h, m⟩ / (⟨m, m⟩ + ε) and δ_h = a_h − β_h m (Eqs. 15–16 as reconstructed)."""
    beta = (rows * main).sum(-1, keepdim=True) / ((main * main).sum(-1, keepdim=True) + eps)
    return beta, rows - beta * main


def misalignment(rows: torch.Tensor, main: torch.Tensor, eps: float) -> torch.Tensor:
    """1 − cos(a_h, m) = 1 − ⟨a_h, m⟩ / (‖a_h‖ ‖m‖ + ε), [B', H, Lq, 1]: 0 on the principal direction."""
    dot = (rows * main).sum(-1, keepdim=True)
    return 1.0 - dot / (rows.norm(dim=-1, keepdim=True) * main.norm(dim=-1, keepdim=True) + eps)


class DivergenceRegulatedAttention(nn.Module):
    """Multi-head cross-attention mixing positive and negative maps and promoting head diversity.

    Args:
        dim: model width d (query, key and value tokens are projected to d; d % heads == 0).
        heads: number of heads H (2: the paper's best, Table V).
        kv_dim: width of the key/value tokens (default d).
        mix: ``content`` (λ = σ(Linear(x)), the DRA), ``positive`` (λ ≡ 1) or ``negative`` (λ ≡ 0).
        diversity: apply the divergence step (γ δ); off means γ ≡ 0.
        main: ``pca`` (default) or ``mean`` main pattern (§2.5 step 5).
        gamma: ``divergence`` (γ = κ·(1 − cos(a_h, m)), default), ``param`` (one learnable scalar per
            head) or ``content`` (softplus(Linear(x))).
        gamma_init: initial κ (``divergence``) or γ (``param``, ``content``).
        lambda_init: b₀, the initial |logit| of λ; head h starts at σ(+b₀) (even h) or σ(−b₀) (odd h).
            0 gives λ = 0.5 everywhere (a saddle, see step 4).
        final_norm: ``renorm`` (default), ``softmax`` or ``none`` (§2.5 step 8).
        final_temperature: τ_f of the final normalisation.
        space: ``prob`` (mix softmax maps, default) or ``logit`` (mix logits: (2λ − 1) S, diversity on
            logits, then a softmax).
        dropout: attention dropout on W (0.1 as in MAQA).
        out_proj: add a d→d output projection (off, as in MAQA).
        negate_query_input: feed −x to the query projection (MAQA's cross-modal decoder quirk, §4 item 2).
        eps: ε of the projection coefficient and of the cosine.
    """

    def __init__(
        self,
        dim: int,
        heads: int = 2,
        *,
        kv_dim: int | None = None,
        mix: str = "content",
        diversity: bool = True,
        main: str = "pca",
        gamma: str = "divergence",
        gamma_init: float = 1.0,
        lambda_init: float = 1.0,
        final_norm: str = "renorm",
        final_temperature: float = 1.0,
        space: str = "prob",
        dropout: float = 0.1,
        out_proj: bool = False,
        negate_query_input: bool = False,
        eps: float = 1e-8,
    ):
        super().__init__()
        _check_choice("mix", mix, MIX_MODES)
        _check_choice("main", main, MAIN_MODES)
        _check_choice("gamma", gamma, GAMMA_MODES)
        _check_choice("final_norm", final_norm, FINAL_NORMS)
        _check_choice("space", space, SPACES)
        if heads < 1 or dim % heads:
            raise SurgkitError(f"DRA: dim {dim} must be divisible by heads {heads}")
        if space == "logit" and final_norm != "softmax":
            raise SurgkitError("DRA: space='logit' mixes logits and needs final_norm='softmax'")
        if final_temperature <= 0:
            raise SurgkitError(f"DRA: final_temperature must be > 0 (got {final_temperature})")
        kv_dim = dim if kv_dim is None else kv_dim
        self.dim, self.heads, self.head_dim = dim, heads, dim // heads
        self.mix, self.diversity, self.main, self.gamma_mode = mix, diversity, main, gamma
        self.final_norm, self.final_temperature, self.space = final_norm, final_temperature, space
        self.negate_query_input, self.eps = negate_query_input, eps
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(kv_dim, dim)
        self.v_proj = nn.Linear(kv_dim, dim)
        self.lambda_gate = nn.Linear(dim, heads) if mix == "content" else None
        if self.lambda_gate is not None:
            nn.init.zeros_(self.lambda_gate.weight)
            signs = torch.tensor([1.0 if h % 2 == 0 else -1.0 for h in range(heads)])
            with torch.no_grad():
                self.lambda_gate.bias.copy_(float(lambda_init) * signs)
        rho0 = _inverse_softplus(gamma_init) if gamma_init > 0 else -20.0
        self.rho: nn.Parameter | None = None
        self.gamma_gate: nn.Linear | None = None
        if diversity and gamma in ("param", "divergence"):
            self.rho = nn.Parameter(torch.full((heads,), rho0))
        elif diversity:
            self.gamma_gate = nn.Linear(dim, heads)
            nn.init.zeros_(self.gamma_gate.weight)
            nn.init.constant_(self.gamma_gate.bias, rho0)
        self.attn_dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(dim, dim) if out_proj else None

    # -- presets (the ablation baselines of §2.6) ---------------------------------------------------
    @classmethod
    def vanilla(cls, dim: int, heads: int = 1, **kwargs: Any) -> DivergenceRegulatedAttention:
        """softmax(S + M) V: DRA with λ ≡ 1, γ ≡ 0 (any final normalisation but softmax is then exact)."""
        return cls(dim, heads, mix="positive", diversity=False, final_norm="none", **kwargs)

    @classmethod
    def negative(cls, dim: int, heads: int = 1, **kwargs: Any) -> DivergenceRegulatedAttention:
        """softmax(−S + M) V (MAQA): DRA with λ ≡ 0, γ ≡ 0."""
        return cls(dim, heads, mix="negative", diversity=False, final_norm="none", **kwargs)

    # -- pieces ------------------------------------------------------------------------------------
    def _split(self, t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        return t.view(b, n, self.heads, self.head_dim).transpose(1, 2)  # [B', H, n, d_h]

    def _lambda(self, x: torch.Tensor) -> torch.Tensor | None:
        if self.lambda_gate is None:
            return None
        return torch.sigmoid(self.lambda_gate(x)).transpose(1, 2).unsqueeze(-1)  # [B', H, Lq, 1]

    def _gamma(self, x: torch.Tensor, rows: torch.Tensor, main: torch.Tensor) -> torch.Tensor:
        """γ [B', H, Lq, 1] (or broadcastable) for the configured ``gamma`` mode."""
        if self.gamma_gate is not None:
            return F.softplus(self.gamma_gate(x)).transpose(1, 2).unsqueeze(-1)
        kappa = F.softplus(self.rho).view(1, -1, 1, 1)
        if self.gamma_mode == "param":
            return kappa
        return kappa * misalignment(rows, main, self.eps)

    def _mixed(
        self, scores: torch.Tensor, mask: torch.Tensor | None, lam: torch.Tensor | None
    ) -> torch.Tensor:
        """A = λ A⁺ + (1 − λ) A⁻ (prob space) or (2λ − 1) S with masked entries zeroed (logit space)."""
        if self.space == "logit":
            sign = {"positive": 1.0, "negative": -1.0}.get(self.mix)
            mixed = scores * sign if lam is None else scores * (2.0 * lam - 1.0)
            return mixed if mask is None else mixed.masked_fill(mask <= MASK_VALUE / 2, 0.0)
        m = 0.0 if mask is None else mask
        if self.mix == "positive":
            return torch.softmax(scores + m, dim=-1)
        if self.mix == "negative":
            return torch.softmax(-scores + m, dim=-1)
        return lam * torch.softmax(scores + m, dim=-1) + (1.0 - lam) * torch.softmax(-scores + m, dim=-1)

    def _final(self, regulated: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if self.final_norm == "none":
            return regulated
        if self.final_norm == "softmax":
            logits = regulated / self.final_temperature
            return torch.softmax(logits if mask is None else logits + mask, dim=-1)
        if self.final_temperature != 1.0:  # softmax(log Â⁺ / τ_f + M) = Â⁺^{1/τ_f} renormalised
            logits = torch.log(regulated.clamp_min(LOG_FLOOR)) / self.final_temperature
            return torch.softmax(logits if mask is None else logits + mask, dim=-1)
        w = regulated.clamp_min(0.0)
        if mask is not None:
            w = w.masked_fill(mask <= MASK_VALUE / 2, 0.0)
        return w / w.sum(-1, keepdim=True).clamp_min(1e-12)

    # -- forward -----------------------------------------------------------------------------------
    def forward(
        self,
        x: torch.Tensor,
        z: torch.Tensor,
        mask: torch.Tensor | None = None,
        return_details: bool = False,
    ) -> tuple[torch.Tensor, AttentionDetails | torch.Tensor]:
        """Attend from ``x`` [B', Lq, d] to ``z`` [B', N, kv_dim]; ``mask`` [B', Lq, N] (or broadcastable).

        Returns ``(out [B', Lq, d], weights [B', H, Lq, N])``, or ``(out, AttentionDetails)`` when
        ``return_details``.
        """
        if x.dim() != 3 or z.dim() != 3 or x.shape[0] != z.shape[0]:
            raise SurgkitError(
                f"DRA expects x [B, Lq, d] and z [B, N, d]; got {tuple(x.shape)}, {tuple(z.shape)}"
            )
        add_mask = additive_mask(mask, x.dtype)
        if add_mask is not None:
            add_mask = add_mask.unsqueeze(1) if add_mask.dim() == 3 else add_mask  # [B', 1, Lq, N]
        q = self._split(self.q_proj(-x if self.negate_query_input else x))
        k = self._split(self.k_proj(z))
        v = self._split(self.v_proj(z))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)  # [B', H, Lq, N]
        lam = self._lambda(x)
        mixed = self._mixed(scores, add_mask, lam)
        main = beta = delta = gamma = None
        regulated = mixed
        if self.diversity:
            main = main_pattern(mixed, self.main)
            beta, delta = divergence(mixed, main, self.eps)
            gamma = self._gamma(x, mixed, main)
            regulated = mixed + gamma * delta
        weights = self._final(regulated, add_mask)
        out = self.attn_dropout(weights) @ v  # [B', H, Lq, d_h]
        out = out.transpose(1, 2).reshape(x.shape[0], x.shape[1], self.dim)
        if self.out_proj is not None:
            out = self.out_proj(out)
        if return_details:
            details = AttentionDetails(scores, mixed, main, beta, delta, regulated, weights, lam, gamma)
            return out, details
        return out, weights


class FeatureFusion(nn.Module):
    """AVG / CAT fusion of the key/value tokens in place of DRA (paper §IV-D2, Table IV).

    Same call as :class:`DivergenceRegulatedAttention` (the query is not used): ``avg`` averages the tokens
    over the unmasked keys, O = softmax_N(M) z ("the average of the modality features"); ``cat``
    concatenates them and reduces with a fully connected layer, O = FC([g_1 z_1; …; g_N z_N]) with
    g = exp(M) (1 for enabled keys, 0 for masked ones). Both route the PolicyNet's straight-through term
    (carried by M) into the output, like the attention they replace. Weights returned: softmax_N(M).
    """

    def __init__(self, dim: int, tokens: int, mode: str = "avg", *, kv_dim: int | None = None):
        super().__init__()
        if mode not in ("avg", "cat"):
            raise SurgkitError(f"feature fusion: unknown mode '{mode}' (avg or cat)")
        kv_dim = dim if kv_dim is None else kv_dim
        if mode == "avg" and kv_dim != dim:
            raise SurgkitError(f"feature fusion avg: token width {kv_dim} must equal the model width {dim}")
        self.mode, self.tokens, self.dim = mode, tokens, dim
        self.fc = nn.Linear(tokens * kv_dim, dim) if mode == "cat" else None

    def forward(
        self, x: torch.Tensor, z: torch.Tensor, mask: torch.Tensor | None = None, return_details: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` [B', Lq, d] (only its shape is used), ``z`` [B', N, d], ``mask`` [B', Lq, N] → [B', Lq, d]."""
        b, lq, n = x.shape[0], x.shape[1], z.shape[1]
        if n != self.tokens:
            raise SurgkitError(f"feature fusion {self.mode}: built for {self.tokens} tokens, got {n}")
        add_mask = additive_mask(mask, z.dtype)
        logits = z.new_zeros(b, lq, n) if add_mask is None else add_mask.expand(b, lq, n)
        weights = torch.softmax(logits, dim=-1)  # [B', Lq, N]
        if self.fc is None:
            out = weights @ z
        else:
            gate = torch.exp(logits)  # 1 enabled (+ the policy's straight-through term), 0 masked
            out = self.fc((gate.unsqueeze(-1) * z.unsqueeze(1)).reshape(b, lq, -1))
        return out, weights.unsqueeze(1)


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise SurgkitError(f"DRA: unknown {name} '{value}' (choose from {', '.join(allowed)})")
