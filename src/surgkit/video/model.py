"""SurgVISTA models: video encoder, pretraining student (two masked-token decoders), classifier.

Written once in plain PyTorch rather than by patching HF ``VideoMAE`` (see docs/video.md): HF
lacks the 3-D sin-cos table, stochastic depth, the biased decoder projection, the distillation
decoder and the decoder LN eps, so five patches would be needed on every construction. The
weights stay exchangeable with HF through :mod:`surgkit.video.convert`.

Forward pass of the student (spec surgvista.md §2.2)::

    tok = CubeEmbed(x) + pos                      # fixed 3-D sin-cos table, before masking
    z   = norm(blocks(tok[~mask]))                # visible tokens only, ascending index
    for each decoder (vid: pixels, img: teacher tokens):
        s = [down(z) + pos_d[~mask], mask_token + pos_d[mask]]
        y = head(norm(blocks(s)[:, -N_mask:]))    # predictions for masked tokens only
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from surgkit.errors import SurgkitError
from surgkit.utils.modeling import PretrainedModel
from surgkit.video.config import SurgVistaClassifierConfig, SurgVistaConfig, SurgVistaEncoderConfig
from surgkit.video.layers import CubeEmbedding, init_official, make_blocks, position_table, sincos_3d_table
from surgkit.video.targets import (
    distillation_loss,
    pixel_targets,
    reconstruction_loss,
    select_masked,
)


def _check_mask(mask: torch.Tensor, batch: int, num_tokens: int) -> None:
    if mask.dtype != torch.bool or tuple(mask.shape) != (batch, num_tokens):
        raise SurgkitError(
            f"mask must be a bool tensor of shape ({batch}, {num_tokens}), got {mask.dtype} {tuple(mask.shape)}"
        )
    counts = mask.sum(dim=1)
    if bool((counts != counts[0]).any()):
        raise SurgkitError(f"every sample must mask the same number of tokens, got {counts.tolist()}")


class SurgVistaEncoder(PretrainedModel):
    """Cube embedding + 3-D sin-cos table + pre-norm blocks (+ final LayerNorm when ``final_norm``).

    ``forward(video, mask)`` takes ``B×C×T×H×W`` ImageNet-normalised clips and an optional
    ``B×N`` bool mask (True = hidden) and returns the visible tokens ``B × N_vis × D``.
    """

    config_class = SurgVistaEncoderConfig

    def __init__(self, config: SurgVistaEncoderConfig):
        super().__init__(config)
        c = config
        self.patch_embed = CubeEmbedding(
            c.img_size, c.patch_size, c.num_frames, c.tubelet_size, c.in_chans, c.embed_dim
        )
        self.register_buffer(
            "pos_embed", position_table(c.position_table, c.embed_dim, c.grid), persistent=False
        )
        self.blocks = make_blocks(
            c.depth, c.embed_dim, c.num_heads, c.mlp_ratio, c.qkv_bias, c.drop_path_rate, c.layer_norm_eps,
            c.attn_implementation,
        )  # fmt: skip
        self.norm = nn.LayerNorm(c.embed_dim, eps=c.layer_norm_eps) if c.final_norm else nn.Identity()
        init_official(self)

    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    def embed(self, video: torch.Tensor) -> torch.Tensor:
        """Patch tokens plus position table, all tokens: ``B × N × D``."""
        return self.patch_embed(video) + self.pos_embed.to(video.dtype)

    def forward(self, video: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embed(video)
        if mask is not None:
            _check_mask(mask, x.shape[0], x.shape[1])
            x = x[~mask].reshape(x.shape[0], -1, x.shape[-1])
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def pooled(self, video: torch.Tensor) -> torch.Tensor:
        """Mean over all tokens (no mask): a ``B × D`` clip feature."""
        return self.forward(video).mean(dim=1)


class MaskedTokenDecoder(nn.Module):
    """Light decoder that predicts a target for every masked token (visible outputs are dropped)."""

    def __init__(
        self, in_dim: int, dim: int, depth: int, num_heads: int, out_dim: int, grid: tuple[int, int, int],
        mlp_ratio: float, qkv_bias: bool, drop_path_rate: float, eps: float, impl: str,
    ):  # fmt: skip
        super().__init__()
        self.down = nn.Linear(in_dim, dim, bias=True)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos_embed", sincos_3d_table(dim, *grid), persistent=False)
        self.blocks = make_blocks(depth, dim, num_heads, mlp_ratio, qkv_bias, drop_path_rate, eps, impl)
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.head = nn.Linear(dim, out_dim)

    def forward(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b = z.shape[0]
        pos = self.pos_embed.to(z.dtype).expand(b, -1, -1)
        visible = self.down(z) + select_masked(pos, ~mask)
        hidden = self.mask_token.to(z.dtype) + select_masked(pos, mask)
        x = torch.cat([visible, hidden], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, -hidden.shape[1] :]))


@dataclasses.dataclass
class PretrainOutput:
    """What one student forward returns (predictions for masked tokens only)."""

    loss: torch.Tensor
    loss_rec: torch.Tensor
    loss_distill: torch.Tensor | None
    x_vid: torch.Tensor
    x_img: torch.Tensor | None
    pixel_target: torch.Tensor


class SurgVistaForPretraining(PretrainedModel):
    """The SurgVISTA student: encoder, reconstruction decoder (``decoder_vid``), distillation decoder (``decoder_img``)."""

    config_class = SurgVistaConfig

    def __init__(self, config: SurgVistaConfig):
        super().__init__(config)
        c = config
        self.encoder = SurgVistaEncoder(dataclasses.replace(_as_encoder_config(c), final_norm=True))
        common = dict(mlp_ratio=c.mlp_ratio, qkv_bias=c.qkv_bias, drop_path_rate=c.drop_path_rate,
                      eps=c.layer_norm_eps, impl=c.attn_implementation)  # fmt: skip
        self.decoder_vid = MaskedTokenDecoder(
            c.embed_dim,
            c.decoder_embed_dim,
            c.decoder_depth,
            c.decoder_num_heads,
            c.pixels_per_token,
            c.grid,
            **common,
        )
        self.decoder_img = MaskedTokenDecoder(
            c.embed_dim, c.distill_embed_dim, c.distill_depth, c.distill_num_heads, c.distill_target_dim, c.grid,
            **common,
        )  # fmt: skip
        init_official(self.decoder_vid)
        init_official(self.decoder_img)
        for token in (self.decoder_vid.mask_token, self.decoder_img.mask_token):
            nn.init.trunc_normal_(token, std=0.02, a=-0.02, b=0.02)

    def forward(
        self, video: torch.Tensor, mask: torch.Tensor, teacher_tokens: torch.Tensor | None = None
    ) -> PretrainOutput:
        """Losses for one batch. ``teacher_tokens``: ``B × N × C`` teacher patch tokens for all tokens.

        Without ``teacher_tokens`` (or with ``distill_loss_weight == 0``) the distillation branch
        is skipped and the loss is the reconstruction term only.
        """
        c = self.config
        z = self.encoder(video, mask)
        x_vid = self.decoder_vid(z, mask)
        with torch.no_grad():
            target_all = pixel_targets(
                video, c.tubelet_size, c.patch_size, c.mean, c.std, c.normalize_pixel_target
            )
            target = select_masked(target_all, mask).to(x_vid.dtype)
        loss_rec = reconstruction_loss(x_vid, target)
        loss = c.recon_loss_weight * loss_rec
        x_img = loss_distill = None
        if teacher_tokens is not None and c.distill_loss_weight != 0:
            x_img = self.decoder_img(z, mask)
            t = teacher_tokens.detach()
            if c.norm_teacher_features:
                t = nn.functional.layer_norm(t, t.shape[-1:], eps=1e-6)
            loss_distill = distillation_loss(x_img, select_masked(t, mask).to(x_img.dtype), c.distill_loss)
            loss = loss + c.distill_loss_weight * loss_distill
        return PretrainOutput(loss, loss_rec, loss_distill, x_vid, x_img, target)


class SurgVistaForClassification(PretrainedModel):
    """Fine-tuning model (spec §8): mean over all tokens → ``fc_norm`` (eps 1e-6) → dropout → ``head``."""

    config_class = SurgVistaClassifierConfig

    def __init__(self, config: SurgVistaClassifierConfig):
        super().__init__(config)
        c = config
        self.encoder = SurgVistaEncoder(dataclasses.replace(_as_encoder_config(c), final_norm=False))
        for m in self.encoder.modules():  # unified_base_st init for a from-scratch encoder
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
        self.fc_norm = nn.LayerNorm(c.embed_dim, eps=c.fc_norm_eps)
        self.fc_dropout = nn.Dropout(c.fc_drop_rate)
        self.head = nn.Linear(c.embed_dim, c.num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        with torch.no_grad():
            self.head.weight.mul_(c.head_init_scale)
            self.head.bias.mul_(c.head_init_scale)

    def features(self, video: torch.Tensor) -> torch.Tensor:
        """``fc_norm(mean over tokens)``: the clip feature before dropout and head, ``B × D``."""
        return self.fc_norm(self.encoder(video).mean(dim=1))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.head(self.fc_dropout(self.features(video)))

    def load_encoder(self, encoder: SurgVistaEncoder) -> None:
        """Copy a (pre-trained) encoder's weights; its final ``norm`` is discarded (spec §8)."""
        state = {k: v for k, v in encoder.state_dict().items() if not k.startswith("norm.")}
        self.encoder.load_state_dict(state, strict=True)


def _as_encoder_config(config: SurgVistaEncoderConfig) -> SurgVistaEncoderConfig:
    return SurgVistaEncoderConfig(**config.encoder_fields())


MODEL_CLASSES = {
    "surgvista": SurgVistaForPretraining,
    "surgvista-classifier": SurgVistaForClassification,
    "surgvista-encoder": SurgVistaEncoder,
}


def load_model(folder, map_location: str = "cpu", **overrides):
    """Load any surgkit SurgVISTA folder (pretraining, classifier or encoder) by its ``model_type``."""
    from pathlib import Path

    path = Path(folder) / "config.json"
    if not path.is_file():
        raise SurgkitError(f"{path}: not found (expected a surgkit model folder)")
    from surgkit.utils.modeling import read_model_config

    model_type = read_model_config(path).get("model_type")
    if model_type not in MODEL_CLASSES:
        raise SurgkitError(
            f"{path}: model_type {model_type!r} is not a SurgVISTA model ({', '.join(MODEL_CLASSES)})"
        )
    return MODEL_CLASSES[model_type].from_pretrained(folder, map_location=map_location, **overrides)
