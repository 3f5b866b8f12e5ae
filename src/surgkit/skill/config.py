"""Configuration of SurgFusion-Net models and of their two-phase training (spec skill.md §2, §3).

Every reconstruction choice the spec marks [R] is a field here with the spec's default; docs/skill.md
lists them. An experiment file (JSON) has two sections::

    {"name": "table3_csfb_dfb_rgb_flow_mask",
     "model": {"modalities": ["rgb", "flow", "mask"], "strategy": "dra", ...},   # FusionConfig fields
     "train": {"phase1": {"epochs": 300, ...}, "phase2": {...}, "length_policy": "pad", ...}}

The shipped ablation configs (paper Tables III–V) live in ``surgkit/skill/configs/*.json``.
"""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

from surgkit.errors import SurgkitError
from surgkit.utils.modeling import ModelConfig

MODALITIES = ("rgb", "flow", "mask")
STRATEGIES = ("unimodal", "dra", "vanilla", "negative", "avg", "cat")
LENGTH_POLICIES = ("pad", "crop", "resample")
SELECTIONS = ("last", "best_test")


@dataclasses.dataclass
class UnimodalConfig(ModelConfig):
    """One unimodal branch (§2.1): projection D→hidden→d, three residual stages, sigmoid head."""

    model_type: ClassVar[str] = "surgfusion-unimodal"
    modality: str = "rgb"
    input_dim: int = 1024
    d_model: int = 256
    proj_hidden: int = 512
    proj_dropout: float = 0.3
    head_dropout: float = 0.5
    activation: str = "gelu"
    num_outputs: int = 1  # 1 (global score) or the number of rubric items
    min_length: int = 4  # [R] shorter videos are edge-padded to 4 segments so both ÷2 pools stay non-empty
    input_norm: str = "train"  # ours: standardise input features with training-fold statistics | none


@dataclasses.dataclass
class FusionConfig(ModelConfig):
    """SurgFusion-Net fusion model (§2.2–2.6); holds its frozen unimodal branches.

    ``strategy``: ``dra`` (SurgFusion-Net), ``vanilla`` / ``negative`` (CSFB and DFB with vanilla or
    MAQA negative cross-attention), ``avg`` / ``cat`` (CSFB and DFB fuse their tokens by averaging, or by
    concatenation + a fully connected layer, in place of DRA: Table IV), ``unimodal`` (one modality,
    phase 1 only: a single-modality row of Table III).
    """

    model_type: ClassVar[str] = "surgfusion"
    modalities: tuple[str, ...] = MODALITIES
    input_dims: tuple[int, ...] = (1024, 1024, 1024)
    d_model: int = 256
    proj_hidden: int = 512
    proj_dropout: float = 0.3
    unimodal_head_dropout: float = 0.5
    min_length: int = 4
    input_norm: str = (
        "train"  # ours: per-dimension standardisation of each branch's input (training fold) | none
    )
    num_outputs: int = 1  # 1: global score; n: one output per rubric item (score = sum)
    strategy: str = "dra"
    use_csfb: bool = True
    use_dfb: bool = True  # False: the DFB output is a zero placeholder (Table III "CSFB" rows)
    heads_csfb: int = 2  # [P] Table V: H = 2 is best (and Table IV's DRA row equals Table V's H = 2 row)
    heads_dfb: int = 2
    num_fusionnets: int = 10  # K [P]
    dra_main: str = "pca"  # [P] "based on principal components" | mean
    dra_gamma: str = "divergence"  # [R] divergence: κ·(1 − cos(a_h, m)) | param | content
    dra_gamma_init: float = 1.0  # [R] κ₀ (divergence) or γ₀ (param, content)
    dra_lambda_init: float = 1.0  # [R] λ logits start at ±1 (alternating heads); 0: λ = 0.5 (a saddle)
    dra_final_norm: str = "renorm"  # [R] renorm (softmax over log Â) | softmax | none
    dra_final_temperature: float = 1.0  # [R] τ_f
    dra_space: str = "prob"  # [R] prob | logit
    attn_dropout: float = 0.1  # [M]
    attn_out_proj: bool = False  # [M] MAQA has none
    csfb_kv: str = "tokens"  # [R] tokens (stack modalities) | temporal (channel concat, attend over time)
    fusion_activation: str = "relu"  # [M] relu | gelu
    feature_dropout: float = 0.5  # [M]
    head_reduction: int = 2  # [M] r
    head_dropout: float = 0.5  # [M]
    policy_mask: str = "prefix"  # [R] prefix | onehot
    policy_eval: str = "argmax"  # [R] argmax (deterministic) | gumbel (MAQA samples at eval)
    policy_tau: str = (
        "anneal"  # [R] anneal: τ from tau_init to tau_final over phase 2 | learnable ([M], τ₀ = 10)
    )
    tau_init: float = 1.0  # anneal: start (sampling ∝ softmax(π/τ)); learnable: initial value
    tau_final: float = 0.05  # anneal: end of phase 2 (≈ argmax, what evaluation uses)
    maqa_exact: bool = False  # [M] reproduce MAQA's DFB query quirk (§4 item 2)

    def __post_init__(self) -> None:
        self.modalities = tuple(self.modalities)
        self.input_dims = tuple(int(d) for d in self.input_dims)
        validate_fusion_config(self)

    def unimodal(self, modality: str) -> UnimodalConfig:
        """The config of the branch for ``modality``."""
        i = self.modalities.index(modality)
        return UnimodalConfig(
            modality=modality,
            input_dim=self.input_dims[i],
            d_model=self.d_model,
            proj_hidden=self.proj_hidden,
            proj_dropout=self.proj_dropout,
            head_dropout=self.unimodal_head_dropout,
            min_length=self.min_length,
            input_norm=self.input_norm,
            num_outputs=self.num_outputs,
        )

    @property
    def needs_phase2(self) -> bool:
        return self.strategy != "unimodal"


def validate_fusion_config(cfg: FusionConfig) -> None:
    """Raise SurgkitError for inconsistent model settings (named field, allowed values)."""
    choices = {
        "strategy": (cfg.strategy, STRATEGIES),
        "dra_main": (cfg.dra_main, ("pca", "mean")),
        "dra_gamma": (cfg.dra_gamma, ("divergence", "param", "content")),
        "dra_final_norm": (cfg.dra_final_norm, ("renorm", "softmax", "none")),
        "dra_space": (cfg.dra_space, ("prob", "logit")),
        "csfb_kv": (cfg.csfb_kv, ("tokens", "temporal")),
        "fusion_activation": (cfg.fusion_activation, ("relu", "gelu")),
        "policy_mask": (cfg.policy_mask, ("prefix", "onehot")),
        "policy_eval": (cfg.policy_eval, ("argmax", "gumbel")),
        "policy_tau": (cfg.policy_tau, ("anneal", "learnable")),
        "input_norm": (cfg.input_norm, ("train", "none")),
    }
    for name, (value, allowed) in choices.items():
        if value not in allowed:
            raise SurgkitError(f"model.{name}: unknown value '{value}' (choose from {', '.join(allowed)})")
    if not cfg.modalities or len(set(cfg.modalities)) != len(cfg.modalities):
        raise SurgkitError(f"model.modalities: need distinct modalities, got {list(cfg.modalities)}")
    unknown = [m for m in cfg.modalities if m not in MODALITIES]
    if unknown:
        raise SurgkitError(f"model.modalities: unknown {unknown} (choose from {', '.join(MODALITIES)})")
    if len(cfg.input_dims) != len(cfg.modalities):
        raise SurgkitError(
            f"model.input_dims has {len(cfg.input_dims)} entries for {len(cfg.modalities)} modalities"
        )
    if cfg.strategy == "unimodal" and len(cfg.modalities) != 1:
        raise SurgkitError("model.strategy 'unimodal' takes exactly one modality")
    if cfg.strategy != "unimodal" and len(cfg.modalities) < 2:
        raise SurgkitError(f"model.strategy '{cfg.strategy}' fuses modalities: give at least two")
    for name in ("heads_csfb", "heads_dfb"):
        heads = getattr(cfg, name)
        if heads < 1 or cfg.d_model % heads:
            raise SurgkitError(f"model.{name}={heads} must divide d_model={cfg.d_model}")
    if cfg.csfb_kv == "temporal" and cfg.strategy in ("avg", "cat"):
        raise SurgkitError("model.csfb_kv=temporal needs an attention strategy (dra, vanilla or negative)")
    if cfg.tau_init <= 0 or cfg.tau_final <= 0:
        raise SurgkitError(f"model.tau_init / tau_final must be > 0 (got {cfg.tau_init}, {cfg.tau_final})")
    if cfg.num_fusionnets < 1:
        raise SurgkitError("model.num_fusionnets must be >= 1")
    if cfg.min_length < 4:
        raise SurgkitError("model.min_length must be >= 4 (two ÷2 poolings)")


@dataclasses.dataclass
class PhaseConfig:
    """Optimiser and schedule of one training phase (§3.1)."""

    epochs: int = 300
    lr: float = 1e-2
    weight_decay: float = 1e-4
    momentum: float = 0.9  # SGD only
    eta_min: float = 5e-6  # cosine floor, stepped per epoch (CosineAnnealingLR(T_max=epochs))
    batch_size: int = 16  # [P] 16 on JIGSAWS (MAQA: 32)
    grad_clip: float = 2.0
    head_lr_scale: float = 1.0  # phase 2: head lr ×0.1


def default_phase1() -> PhaseConfig:
    return PhaseConfig(epochs=300, lr=1e-2, weight_decay=1e-4)


def default_phase2() -> PhaseConfig:
    return PhaseConfig(epochs=300, lr=5e-4, weight_decay=1e-2, head_lr_scale=0.1)


@dataclasses.dataclass
class TrainConfig:
    """Two-phase training and evaluation protocol (§1.3, §1.4, §3)."""

    phase1: PhaseConfig = dataclasses.field(default_factory=default_phase1)
    phase2: PhaseConfig = dataclasses.field(default_factory=default_phase2)
    loss_alpha: float = 0.5  # [P] α·MSE + (1−α)·MAE
    target: str = "score"  # score (global GRS / M-GEARS) | items (one output per rubric item, score = sum)
    length_policy: str = "pad"  # [R] pad (to the longest training video) | crop | resample
    crop_length: int = 70  # [M] crop window (segments) for length_policy=crop
    resample_length: int = 64  # length_policy=resample
    drop_partial_tail: bool = True  # [P] T = ⌊frames/32⌋: drop a zero-padded last segment
    select: str = "last"  # [R] last (honest) | best_test (literature; flagged everywhere)
    bn_recalibrate: bool = True  # ours: precise-BN running statistics over the training set after each phase
    eval_every: int = 1  # epochs between test evaluations when select=best_test
    mae_unit: str = "points"  # [R] points (score units) | normalised
    checkpoint_every: int = 25  # epochs between resumable checkpoints
    seed: int = 0
    view: str = "capture1"  # [J] JIGSAWS camera used by MUSDL/CoRe
    unit: str = "video"  # video | segment (clinical: each scored segment is a unit, e.g. RAH phases)

    def __post_init__(self) -> None:
        if isinstance(self.phase1, dict):
            self.phase1 = _phase_from_dict(self.phase1, default_phase1(), "train.phase1")
        if isinstance(self.phase2, dict):
            self.phase2 = _phase_from_dict(self.phase2, default_phase2(), "train.phase2")
        if self.length_policy not in LENGTH_POLICIES:
            raise SurgkitError(
                f"train.length_policy: unknown '{self.length_policy}' (choose from {', '.join(LENGTH_POLICIES)})"
            )
        if self.select not in SELECTIONS:
            raise SurgkitError(f"train.select: unknown '{self.select}' (choose from {', '.join(SELECTIONS)})")
        if self.target not in ("score", "items"):
            raise SurgkitError(f"train.target: unknown '{self.target}' (score or items)")
        if self.mae_unit not in ("points", "normalised"):
            raise SurgkitError(f"train.mae_unit: unknown '{self.mae_unit}' (points or normalised)")
        if self.unit not in ("video", "segment"):
            raise SurgkitError(f"train.unit: unknown '{self.unit}' (video or segment)")
        if not 0.0 <= self.loss_alpha <= 1.0:
            raise SurgkitError(f"train.loss_alpha must be in [0, 1] (got {self.loss_alpha})")


def _phase_from_dict(data: dict[str, Any], base: PhaseConfig, where: str) -> PhaseConfig:
    names = {f.name for f in dataclasses.fields(PhaseConfig)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise SurgkitError(f"{where}: unknown fields {', '.join(unknown)}")
    return dataclasses.replace(base, **data)


@dataclasses.dataclass
class ExperimentConfig:
    """A named model + training configuration (one row of an ablation table)."""

    name: str = "surgfusion"
    model: FusionConfig = dataclasses.field(default_factory=FusionConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.model.to_dict(), "train": dataclasses.asdict(self.train)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> ExperimentConfig:
        unknown = sorted(set(data) - {"name", "model", "train", "description"})
        if unknown:
            raise SurgkitError(f"{where}: unknown sections {', '.join(unknown)} (use name, model, train)")
        model_data = dict(data.get("model", {}))
        train_data = dict(data.get("train", {}))
        tnames = {f.name for f in dataclasses.fields(TrainConfig)}
        bad = sorted(set(train_data) - tnames)
        if bad:
            raise SurgkitError(f"{where}: unknown train fields {', '.join(bad)}")
        try:
            model = FusionConfig.from_dict(model_data)
        except TypeError as e:
            raise SurgkitError(f"{where}: bad model section ({e})") from None
        return cls(name=str(data.get("name", "surgfusion")), model=model, train=TrainConfig(**train_data))


def load_experiment(path_or_name: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load an experiment JSON file, or a shipped config by name (e.g. ``table3_csfb_dfb_rgb_flow_mask``).

    ``overrides`` are ``section.field=value`` strings (value parsed as JSON when possible), e.g.
    ``model.heads_csfb=2`` or ``train.phase1.epochs=50``.
    """
    path = Path(path_or_name)
    if path.is_file():
        text, where = path.read_text(encoding="utf-8"), str(path)
    else:
        name = str(path_or_name).removesuffix(".json")
        shipped = resources.files("surgkit.skill") / "configs" / f"{name}.json"
        if not shipped.is_file():
            raise SurgkitError(
                f"{path_or_name}: no such config file or shipped config (shipped: {', '.join(shipped_configs())})"
            )
        text, where = shipped.read_text(encoding="utf-8"), f"surgkit/skill/configs/{name}.json"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise SurgkitError(f"{where}:{e.lineno}: invalid JSON ({e.msg})") from None
    for item in overrides or []:
        _apply_override(data, item)
    return ExperimentConfig.from_dict(data, where)


def shipped_configs() -> list[str]:
    """Names of the configs shipped in the package (Tables III–V of the paper)."""
    folder = resources.files("surgkit.skill") / "configs"
    return sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json"))


def _apply_override(data: dict[str, Any], item: str) -> None:
    if "=" not in item:
        raise SurgkitError(f"override '{item}': expected section.field=value")
    key, raw = item.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    parts = key.strip().split(".")
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise SurgkitError(f"override '{item}': '{p}' is not a section")
    node[parts[-1]] = value
