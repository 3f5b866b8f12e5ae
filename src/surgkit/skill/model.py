"""SurgFusion-Net models: unimodal branch (§2.1) and the fusion branch with CSFB and DFB (§2.2–2.4).

Tensors inside the models are channel-first ``[B, C, L]``; the public ``forward`` methods take the
feature-store layout ``[B, T, D]`` per modality. All baselines of the paper's ablations (single
modality, AVG, CAT, vanilla and negative cross-attention, CSFB without DFB, modality subsets) are
configurations of :class:`SurgFusionNet` (see :class:`~surgkit.skill.config.FusionConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from surgkit.errors import SurgkitError
from surgkit.skill.attention import MASK_VALUE, DivergenceRegulatedAttention, FeatureFusion
from surgkit.skill.config import FusionConfig, UnimodalConfig
from surgkit.utils.modeling import PretrainedModel


def _act(name: str) -> nn.Module:
    return nn.GELU() if name == "gelu" else nn.ReLU()


def _first_valid(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """x[b, :, t] at the first valid position (row-major over (b, t)), detached: the shift of the sums."""
    flat = m[:, 0, :].reshape(-1)
    first = int(torch.argmax((flat > 0).to(torch.uint8))) if bool((flat > 0).any()) else 0
    return x.detach().permute(0, 2, 1).reshape(-1, x.shape[1])[first].clone()


def _all_reduce(t: torch.Tensor) -> torch.Tensor:
    """Autograd-aware sum over processes (its backward sums the gradients), as nn.SyncBatchNorm does."""
    import warnings

    from torch.distributed.nn.functional import all_reduce

    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", FutureWarning
        )  # deprecated in favour of a functional API without autograd
        return all_reduce(t)


def _world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d over [B, C, L] whose training statistics use only the valid (unpadded) positions.

    With ``mask`` [B, 1, L] (1 = valid) in training mode: μ = Σ m·x / Σ m, σ² = Σ m·(x − μ)² / Σ m
    (biased, used to normalise) and the running averages r ← (1 − momentum)·r + momentum·(μ, σ²·n/(n − 1)),
    exactly what ``nn.BatchNorm1d`` computes on the concatenation of the valid positions (the sums are
    taken relative to the first valid value, so a constant input centres to exactly zero, as in
    ``nn.BatchNorm1d``'s kernel; otherwise the sign of rounding noise decides what a following ReLU
    passes). Without a mask,
    with an all-valid mask, or in eval mode it is ``nn.BatchNorm1d`` (same parameters and state-dict keys).

    Under ``accelerate launch``/``torchrun`` (world > 1, training) the sums Σ m·x, Σ m and Σ m·(x − μ)² are
    all-reduced over the processes (autograd-aware, like ``nn.SyncBatchNorm``, which has no CPU kernel),
    so N processes normalise with the statistics of the whole global batch, as one process does.
    ``sync_processes = False`` (set by precise-BN recalibration, where every process sees the same data)
    keeps them local.
    """

    sync_processes = True

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        synced = self.training and self.sync_processes and _world_size() > 1
        if not synced and (mask is None or not self.training or bool(mask.all())):
            return super().forward(x)
        m = mask.to(x.dtype) if mask is not None else x.new_ones((x.shape[0], 1, x.shape[2]))
        # shifted sums: a constant input (the stage-1 block on Z⁰ = 0) centres to exactly zero
        ref = _first_valid(x, m)
        if synced:
            import torch.distributed as dist

            dist.broadcast(ref, src=0)  # one shift for all processes: rank 0 holds the batch's first video
        sums = torch.cat([(m * (x - ref[None, :, None])).sum((0, 2)), m.sum().reshape(1)])
        if synced:
            sums = _all_reduce(sums)
        n = sums[-1]
        if float(n.detach()) < 2:
            raise ValueError("MaskedBatchNorm1d: fewer than 2 valid positions in a training batch")
        mean = ref + sums[:-1] / n
        centred = x - mean[None, :, None]
        sq = (centred.square() * m).sum((0, 2))
        if synced:
            sq = _all_reduce(sq)
        var = sq / n
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = (
                    self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                )
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), momentum)
                unbiased = var.detach() * (n / (n - 1))
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        y = centred * torch.rsqrt(var + self.eps)[None, :, None]
        if self.affine:
            y = y * self.weight[None, :, None] + self.bias[None, :, None]
        return y


class MaskedSequential(nn.Sequential):
    """``nn.Sequential`` that hands ``mask`` [B, 1, L] to its masked BatchNorms and zeroes the padded
    positions after every layer, so a same-padded convolution sees zeros past each video's end exactly
    as it does when the video is run alone at full length."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self:
            x = layer(x, mask) if isinstance(layer, (MaskedBatchNorm1d, MaskedSequential)) else layer(x)
            if mask is not None:
                x = x * mask
        return x


def length_mask(lengths: torch.Tensor | None, length: int, device=None) -> torch.Tensor | None:
    """Validity mask [B, 1, length] (1 for t < lengths[b]); None when every video fills ``length``."""
    if lengths is None:
        return None
    lengths = torch.as_tensor(lengths, device=device)
    if bool((lengths >= length).all()):
        return None
    t = torch.arange(length, device=lengths.device)
    return (t[None, :] < lengths[:, None]).float().unsqueeze(1)


def pool_half_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """Mask after AvgPool(2, 2) (floor): an output is valid iff both of its inputs are (t < ⌊T_b/2⌋)."""
    if mask is None:
        return None
    b, _, length = mask.shape
    half = length // 2
    return mask[..., : 2 * half].reshape(b, 1, half, 2).amin(-1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Global average over the valid positions: Σ_t m·x / Σ_t m, [B, C, L] → [B, C, 1]."""
    if mask is None:
        return x.mean(-1, keepdim=True)
    return (x * mask).sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp_min(1.0)


def conv_bn_act(cin: int, cout: int, kernel: int, act: str, groups: int = 1) -> MaskedSequential:
    """Conv1d (same padding) → BatchNorm1d (masked) → activation."""
    return MaskedSequential(
        nn.Conv1d(cin, cout, kernel, padding=kernel // 2, groups=groups), MaskedBatchNorm1d(cout), _act(act)
    )


def pad_to_min_length(x: torch.Tensor, min_length: int) -> torch.Tensor:
    """Edge-pad ``x`` [B, T, D] along T to at least ``min_length`` segments ([R]: keeps both ÷2 pools
    non-empty for T < 4; a replicated segment leaves the average-pooled content unchanged)."""
    t = x.shape[1]
    if t >= min_length:
        return x
    if t == 0:
        raise SurgkitError("a video with 0 segments cannot be scored")
    return torch.cat([x, x[:, -1:].expand(-1, min_length - t, -1)], dim=1)


class UnimodalStage(nn.Module):
    """Residual block x ↦ x + g₂(g₁(x)), g = Conv1d(k=3) → BN → GELU (§2.1 step 2, paper Eq. 1)."""

    def __init__(self, d: int, act: str = "gelu"):
        super().__init__()
        self.g1 = conv_bn_act(d, d, 3, act)
        self.g2 = conv_bn_act(d, d, 3, act)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return x + self.g2(self.g1(x, mask), mask)


@dataclass
class UnimodalOutput:
    score: torch.Tensor  # [B, num_outputs] in (0, 1)
    features: list[torch.Tensor]  # U⁰ [B,d,T], U¹ [B,d,T₁], U² [B,d,T₂], U³ [B,d,1]
    masks: list[torch.Tensor | None] = field(default_factory=list)  # validity [B,1,L] per level (None: all)


class UnimodalBranch(PretrainedModel):
    """One modality's branch (§2.1): projection, three residual stages with pooling, sigmoid head."""

    config_class = UnimodalConfig

    def __init__(self, config: UnimodalConfig):
        super().__init__(config)
        c = config
        self.proj = MaskedSequential(
            nn.Conv1d(c.input_dim, c.proj_hidden, 1),
            MaskedBatchNorm1d(c.proj_hidden),
            nn.ReLU(),
            nn.Conv1d(c.proj_hidden, c.d_model, 1),
            MaskedBatchNorm1d(c.d_model),
            nn.ReLU(),
            nn.Dropout(c.proj_dropout),
        )
        self.stages = nn.ModuleList([UnimodalStage(c.d_model, c.activation) for _ in range(3)])
        self.head = nn.Sequential(nn.Dropout(c.head_dropout), nn.Conv1d(c.d_model, c.num_outputs, 1))
        # ours: per-dimension standardisation of the input features with training-set statistics
        self.register_buffer("input_mean", torch.zeros(c.input_dim))
        self.register_buffer("input_std", torch.ones(c.input_dim))

    @torch.no_grad()
    def fit_input_normalisation(self, features: list[torch.Tensor] | list) -> None:
        """Set the input standardisation from the training videos' segments (each [T, D]): x ↦ (x − μ)/σ.

        Backbones put features on very different scales (a random tiny I3D gives ~1e-6, where the first
        BatchNorm's ε = 1e-5 would erase them); the statistics come from the training fold only."""
        if self.config.input_norm == "none" or not len(features):
            return
        x = torch.cat(
            [torch.as_tensor(f, dtype=torch.float32).reshape(-1, self.config.input_dim) for f in features]
        )
        self.input_mean.copy_(x.mean(0))
        std = x.std(0, unbiased=False)
        self.input_std.copy_(torch.where(std > 0, std, torch.ones_like(std)))

    def features(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> list[torch.Tensor]:
        """[U⁰, U¹, U², U³] from ``x`` [B, T, D] (U¹ = AvgPool(Block₁(U⁰)), …, U³ = global average)."""
        return self.features_and_masks(x, lengths)[0]

    def features_and_masks(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        """Features and validity masks of every level. ``lengths`` [B]: valid segments of each zero-padded
        video (None: all valid). Padded positions are excluded from BatchNorm statistics and from the
        global average and held at zero, so a video's output does not depend on its padding."""
        if x.dim() != 3 or x.shape[-1] != self.config.input_dim:
            raise SurgkitError(
                f"{self.config.modality} branch expects [B, T, {self.config.input_dim}], got {tuple(x.shape)}"
            )
        x = pad_to_min_length(x, self.config.min_length)
        if lengths is not None:  # videos shorter than min_length are edge-padded by the caller (collate)
            lengths = torch.as_tensor(lengths, device=x.device).clamp(self.config.min_length, x.shape[1])
        mask = length_mask(lengths, x.shape[1], x.device)
        masks = [mask]
        x = (x - self.input_mean) / self.input_std
        feats = [self.proj(x.transpose(1, 2), mask)]
        for i, stage in enumerate(self.stages):
            h = stage(feats[-1], masks[-1])
            if i < 2:
                masks.append(pool_half_mask(masks[-1]))
                pooled = F.avg_pool1d(h, 2, 2)
                feats.append(pooled if masks[-1] is None else pooled * masks[-1])
            else:
                feats.append(masked_mean(h, masks[-1]))
                masks.append(None)
        return feats, masks

    def forward(
        self, x: torch.Tensor | dict[str, torch.Tensor], lengths: torch.Tensor | None = None
    ) -> UnimodalOutput:
        """``x``: features [B, T, D], or a modality → features dict (its own modality is used);
        ``lengths`` [B]: valid segments per zero-padded video (default: all)."""
        if isinstance(x, dict):
            if self.config.modality not in x:
                raise SurgkitError(f"{self.config.modality} branch: input has only {sorted(x)}")
            x = x[self.config.modality]
        feats, masks = self.features_and_masks(x, lengths)
        score = torch.sigmoid(self.head(feats[-1])).flatten(1)
        return UnimodalOutput(score=score, features=feats, masks=masks)


def make_attention(
    cfg: FusionConfig, heads: int, block: str, tokens: int
) -> DivergenceRegulatedAttention | FeatureFusion:
    """The token fusion of a CSFB or DFB for ``cfg.strategy``: DRA, vanilla or negative attention, or
    the AVG / CAT feature fusions that replace it in Table IV (``tokens``: N, needed by CAT's FC)."""
    if cfg.strategy in ("avg", "cat"):
        return FeatureFusion(cfg.d_model, tokens, cfg.strategy)
    common = {"dropout": cfg.attn_dropout, "out_proj": cfg.attn_out_proj}
    quirk = cfg.maqa_exact and block == "dfb"
    if cfg.strategy == "vanilla":
        return DivergenceRegulatedAttention.vanilla(cfg.d_model, heads, **common)
    if cfg.strategy == "negative":
        return DivergenceRegulatedAttention.negative(cfg.d_model, heads, negate_query_input=quirk, **common)
    return DivergenceRegulatedAttention(
        cfg.d_model,
        heads,
        mix="content",
        diversity=True,
        main=cfg.dra_main,
        gamma=cfg.dra_gamma,
        gamma_init=cfg.dra_gamma_init,
        lambda_init=cfg.dra_lambda_init,
        final_norm=cfg.dra_final_norm,
        final_temperature=cfg.dra_final_temperature,
        space=cfg.dra_space,
        negate_query_input=quirk,
        **common,
    )


class FusionResBlock(nn.Module):
    """C = act(BN(conv3(act(BN(conv3(Z)))))) + act(BN(conv1(Z))), 3d → d (§2.2 step 1)."""

    def __init__(self, cin: int, d: int, act: str):
        super().__init__()
        self.body = nn.Sequential(conv_bn_act(cin, d, 3, act), conv_bn_act(d, d, 3, act))
        self.shortcut = conv_bn_act(cin, d, 1, act)

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.body[1](self.body[0](z, mask), mask) + self.shortcut(z, mask)


def tokens_per_step(feats: list[torch.Tensor]) -> torch.Tensor:
    """Stack N tensors [B, d, L] into per-timestep token sets [B·L, N, d]."""
    stacked = torch.stack(feats, dim=1)  # [B, N, d, L]
    b, n, d, length = stacked.shape
    return stacked.permute(0, 3, 1, 2).reshape(b * length, n, d)


class CrossStageFusionBlock(nn.Module):
    """CSFB (§2.3): query W_s C_i[:, t], keys/values the modality tokens U^i_m[:, t], DRA per timestep.

    ``csfb_kv="temporal"`` instead projects the channel-concatenated U^i (1×1 conv N·d → d) and
    attends over the L_i timesteps.
    """

    def __init__(self, cfg: FusionConfig):
        super().__init__()
        d = cfg.d_model
        self.mode = cfg.csfb_kv
        self.query = nn.Conv1d(d, d, 1)
        self.kv = nn.Conv1d(len(cfg.modalities) * d, d, 1) if self.mode == "temporal" else None
        self.attn = make_attention(cfg, cfg.heads_csfb, "csfb", len(cfg.modalities))

    def forward(
        self, c: torch.Tensor, feats: list[torch.Tensor], mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns S [B, d, L] and head-averaged weights ([B, L, N] for tokens, [B, L, L] temporal).

        ``mask`` [B, 1, L]: valid timesteps; with ``csfb_kv="temporal"`` padded timesteps are masked out
        of the keys (token mode attends within one timestep, so padding never mixes in)."""
        b, d, length = c.shape
        q = self.query(c)
        if self.kv is not None:
            kv = self.kv(torch.cat(feats, dim=1)).transpose(1, 2)  # [B, L, d]
            keep = None if mask is None else mask.bool()  # [B, 1, L]: broadcast over the L queries
            out, w = self.attn(q.transpose(1, 2), kv, keep)
            return out.transpose(1, 2), w.mean(1)
        out, w = self.attn(q.transpose(1, 2).reshape(b * length, 1, d), tokens_per_step(feats))
        s = out.reshape(b, length, d).transpose(1, 2)
        return s, w.mean(1).reshape(b, length, -1)


def policy_mask(
    logits: torch.Tensor, tau: torch.Tensor, sample: bool, mode: str = "prefix", scaled: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """PolicyNet mask (§2.4): 1-out-of-K choice k* per timestep turned into an additive mask [B, L, K].

    ``sample``: a hard straight-through Gumbel-softmax draw; otherwise argmax (evaluation).
    ``scaled`` (``policy_tau="anneal"``): k* ~ softmax(π / τ), drawn as argmax(π / τ + g), so the
    temperature sets how random training choices are and τ → 0 approaches the argmax that evaluation
    takes. Unscaled (MAQA): F.gumbel_softmax(π, τ), whose hard draw argmax(π + g) does not depend on τ
    (τ only shapes the straight-through gradient). ``prefix`` enables FusionNets 1…k* (MAQA's ranked
    FusionNets), ``onehot`` only k*. The value y − stopgrad(y) (zero) is added so gradients reach the
    policy logits. Returns (mask, k*).
    """
    if sample and scaled:
        y = F.gumbel_softmax(logits / tau.clamp_min(1e-4), tau=1.0, hard=True, dim=1)
    elif sample:
        y = F.gumbel_softmax(logits, tau=tau.clamp_min(1e-2), hard=True, dim=1)
    else:
        y = F.one_hot(logits.argmax(1), logits.shape[1]).transpose(1, 2).to(logits.dtype)
    enabled = y.flip(1).cumsum(1).flip(1) if mode == "prefix" else y
    mask = (1.0 - enabled.detach()) * MASK_VALUE + (y - y.detach())
    return mask.transpose(1, 2), y.argmax(1)


def annealed_tau(start: float, end: float, epoch: int, epochs: int) -> float:
    """Exponential schedule τ_e = τ₀ (τ₁/τ₀)^{e/(E−1)}: τ₀ at the first epoch, τ₁ at the last."""
    if epochs <= 1:
        return float(end)
    frac = min(max(epoch / (epochs - 1), 0.0), 1.0)
    return float(start * (end / start) ** frac)


class DynamicFusionBlock(nn.Module):
    """DFB (§2.4): K FusionNets (content/time-dependent modality weights + refinement), PolicyNet, DRA.

    The K refinement blocks h_k run as one grouped convolution (groups = K), identical to K
    separate conv3 → BN → act → conv3 → BN → act blocks.
    """

    def __init__(self, cfg: FusionConfig):
        super().__init__()
        d, k, n = cfg.d_model, cfg.num_fusionnets, len(cfg.modalities)
        self.k, self.policy_mode = k, cfg.policy_mask
        self.sample_at_eval = cfg.policy_eval == "gumbel"
        self.scaled_policy = cfg.policy_tau == "anneal"
        self.weight_heads = nn.ModuleList(
            [nn.Sequential(conv_bn_act(d, d, 1, "relu"), nn.Conv1d(d, k, 1)) for _ in range(n)]
        )
        act = cfg.fusion_activation
        self.refine = MaskedSequential(
            conv_bn_act(k * d, k * d, 3, act, groups=k), conv_bn_act(k * d, k * d, 3, act, groups=k)
        )
        self.policy = nn.Conv1d(n * d, k, 1)
        self.query = nn.Conv1d(2 * d, d, 1)
        self.attn = make_attention(cfg, cfg.heads_dfb, "dfb", k)

    def modality_weights(self, feats: list[torch.Tensor], mask: torch.Tensor | None = None) -> torch.Tensor:
        """α [B, N, K, L']: per FusionNet k and timestep, softmax over the N modalities of G_m(X_m)_k."""
        logits = torch.stack(
            [g[1](g[0](x, mask)) for g, x in zip(self.weight_heads, feats, strict=True)], dim=1
        )
        return torch.softmax(logits, dim=1)

    def fusion_nets(self, feats: list[torch.Tensor], pool, mask: torch.Tensor | None = None) -> torch.Tensor:
        """E_k = Pool(X̃_k + h_k(X̃_k)), X̃_k = Σ_m α_{m,k} ⊙ X_m; returns [B, K, d, L]."""
        alpha = self.modality_weights(feats, mask)  # [B, N, K, L'] (sums to 1 over N)
        fused = torch.einsum("bnkl,bndl->bkdl", alpha, torch.stack(feats, dim=1))
        b, k, d, length = fused.shape
        flat = fused.reshape(b, k * d, length)
        return pool(flat + self.refine(flat, mask)).reshape(b, k, d, -1)

    def policy_logits(self, feats: list[torch.Tensor], pool) -> torch.Tensor:
        """PolicyNet logits π = Pool(P([X_1; X_2; X_3])), [B, K, L_i]."""
        return pool(self.policy(torch.cat(feats, dim=1)))

    def forward(
        self,
        c: torch.Tensor,
        s: torch.Tensor,
        feats: list[torch.Tensor],
        pool,
        tau: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """F_i [B, d, L_i] and the chosen k* per timestep [B, L_i]. ``mask``: validity of ``feats``;
        ``pool`` maps their length to L_i (a masked global mean at stage 3)."""
        b, d, length = c.shape
        experts = self.fusion_nets(feats, pool, mask)  # [B, K, d, L]
        logits = self.policy_logits(feats, pool)  # [B, K, L]
        sample = self.training or self.sample_at_eval
        mask, chosen = policy_mask(logits, tau, sample, self.policy_mode, self.scaled_policy)
        q = self.query(torch.cat([c, s], dim=1)).transpose(1, 2).reshape(b * length, 1, d)
        keys = experts.permute(0, 3, 1, 2).reshape(b * length, self.k, d)
        out, _ = self.attn(q, keys, mask.reshape(b * length, 1, self.k))
        return out.reshape(b, length, d).transpose(1, 2), chosen


class FusionStage(nn.Module):
    """One fusion stage: residual block, CSFB, DFB; output Z^i = [C_i; S_i; F_i] (§2.2)."""

    def __init__(self, cfg: FusionConfig):
        super().__init__()
        d = cfg.d_model
        self.res = FusionResBlock(3 * d, d, cfg.fusion_activation)
        self.csfb = CrossStageFusionBlock(cfg) if cfg.use_csfb else None
        self.dfb = DynamicFusionBlock(cfg) if cfg.use_dfb else None


def _pool_half(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool1d(x, 2, 2)


def regression_head(cin: int, d: int, reduction: int, dropout: float, outputs: int = 1) -> nn.Sequential:
    """Dropout(0) → 1×1 conv cin→d/r → BN → ReLU → Dropout(p) → 1×1 conv → 1 (sigmoid applied by caller)."""
    hidden = max(1, d // reduction)
    return nn.Sequential(
        nn.Conv1d(cin, hidden, 1),
        MaskedBatchNorm1d(hidden),  # nn.BatchNorm1d without a mask; synchronised over processes
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Conv1d(hidden, outputs, 1),
    )


@dataclass
class FusionOutput:
    score: torch.Tensor  # [B, num_outputs] in (0, 1)
    unimodal_scores: dict[str, torch.Tensor]
    csfb_attention: list[torch.Tensor] = field(default_factory=list)  # per stage [B, L_i, N]
    policy_choice: list[torch.Tensor] = field(default_factory=list)  # per stage [B, L_i] (k*, 0-based)


class SurgFusionNet(PretrainedModel):
    """Fusion model with its (frozen) unimodal branches; one class for every ablation row."""

    config_class = FusionConfig

    def __init__(self, config: FusionConfig):
        super().__init__(config)
        cfg = config
        d = cfg.d_model
        self.branches = nn.ModuleDict({m: UnimodalBranch(cfg.unimodal(m)) for m in cfg.modalities})
        self.feature_dropout = nn.Dropout(cfg.feature_dropout)
        self.stages = nn.ModuleList()
        self.head: nn.Module | None = None
        tau = None
        if cfg.strategy != "unimodal":
            self.stages = nn.ModuleList([FusionStage(cfg) for _ in range(3)])
            tau = torch.tensor(float(cfg.tau_init)) if cfg.use_dfb else None
        if tau is not None and cfg.policy_tau == "learnable":
            self.tau = nn.Parameter(tau)  # [M] trained by the optimiser
        else:
            self.register_buffer("tau", tau)  # annealed by set_training_progress (None without a DFB)
        if cfg.strategy != "unimodal":
            self.head = regression_head(3 * d, d, cfg.head_reduction, cfg.head_dropout, cfg.num_outputs)

    def set_training_progress(self, epoch: int, epochs: int) -> None:
        """Called by the trainer at the start of every phase-2 epoch (0-based): anneals the PolicyNet
        temperature from ``tau_init`` to ``tau_final`` (``policy_tau="anneal"``); a learnable τ is left alone."""
        cfg = self.config
        if self.tau is not None and cfg.policy_tau == "anneal":
            self.tau.fill_(annealed_tau(cfg.tau_init, cfg.tau_final, epoch, epochs))

    # -- branch handling ------------------------------------------------------------------------------
    def load_branch(self, modality: str, branch: UnimodalBranch) -> None:
        """Copy a trained phase-1 branch into this model."""
        self.branches[modality].load_state_dict(branch.state_dict())

    def freeze_branches(self) -> None:
        """Phase 2: the unimodal branches are frozen (no gradient, BN/dropout in eval mode)."""
        for p in self.branches.parameters():
            p.requires_grad_(False)
        self.branches.eval()

    def train(self, mode: bool = True) -> SurgFusionNet:
        super().train(mode)
        if self.config.needs_phase2:
            self.branches.eval()  # frozen: running statistics must not drift (MAQA bug, §4 item 5)
        return self

    def fusion_parameters(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(body, head) trainable parameters of phase 2 (the head gets lr × head_lr_scale)."""
        head = list(self.head.parameters()) if self.head is not None else []
        head_ids = {id(p) for p in head}
        body = [
            p for n, p in self.named_parameters() if not n.startswith("branches.") and id(p) not in head_ids
        ]
        return body, head

    # -- forward ------------------------------------------------------------------------------------
    def _check_inputs(self, x: dict[str, torch.Tensor]) -> None:
        missing = [m for m in self.config.modalities if m not in x]
        if missing:
            raise SurgkitError(f"model needs modalities {list(self.config.modalities)}; missing {missing}")
        lengths = {m: x[m].shape[1] for m in self.config.modalities}
        if len(set(lengths.values())) > 1:
            raise SurgkitError(f"modalities disagree on the number of segments T: {lengths}")

    def forward(self, x: dict[str, torch.Tensor], lengths: torch.Tensor | None = None) -> FusionOutput:
        """``x`` maps modality → features [B, T, D]; ``lengths`` [B]: valid segments per zero-padded
        video (default: all). Padding never changes a video's output (masked BatchNorm and pooling)."""
        self._check_inputs(x)
        cfg = self.config
        with torch.set_grad_enabled(torch.is_grad_enabled() and not cfg.needs_phase2):
            outs = {m: self.branches[m](x[m], lengths) for m in cfg.modalities}
        uni = {m: o.score for m, o in outs.items()}
        if cfg.strategy == "unimodal":
            return FusionOutput(score=uni[cfg.modalities[0]], unimodal_scores=uni)
        feats = {m: [self.feature_dropout(u.detach()) for u in o.features] for m, o in outs.items()}
        return self._fuse(feats, uni, outs[cfg.modalities[0]].masks)

    def _fuse(
        self,
        feats: dict[str, list[torch.Tensor]],
        uni: dict[str, torch.Tensor],
        masks: list[torch.Tensor | None],
    ) -> FusionOutput:
        cfg = self.config
        mods = cfg.modalities
        ref = feats[mods[0]][1]
        z = ref.new_zeros(ref.shape[0], 3 * cfg.d_model, ref.shape[-1])  # Z⁰ = 0, not learnable
        out = FusionOutput(score=ref.new_zeros(0), unimodal_scores=uni)
        for i, stage in enumerate(self.stages, start=1):
            z_in = z if i == 1 else (_pool_half(z) if i == 2 else masked_mean(z, masks[2]))
            if i == 2 and masks[2] is not None:
                z_in = z_in * masks[2]  # a pooled pair half in the padding is padding too
            c = stage.res(z_in, masks[i])
            s = torch.zeros_like(c)
            if stage.csfb is not None:
                s, w = stage.csfb(c, [feats[m][i] for m in mods], masks[i])
                out.csfb_attention.append(w)
            f = torch.zeros_like(c)
            if stage.dfb is not None:
                pool = _pool_half if i < 3 else (lambda t: masked_mean(t, masks[2]))
                f, chosen = stage.dfb(c, s, [feats[m][i - 1] for m in mods], pool, self.tau, masks[i - 1])
                out.policy_choice.append(chosen)
            z = torch.cat([c, s, f], dim=1)
            if masks[i] is not None:
                z = z * masks[i]
        out.score = torch.sigmoid(self.head(z)).flatten(1)
        return out
