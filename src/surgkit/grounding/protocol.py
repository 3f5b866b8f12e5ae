"""Every protocol choice of the grounding benchmark, with its default (seed 001 §3-4; vlm_bench spec §8).

The seed fixes τ = 0.5 and the metric formulas but leaves many choices open; each one moves the
numbers, so each is an explicit option, recorded in ``run_config.json``, ``summary.json`` and every
table caption, and ``surgkit ground table`` refuses to compare runs whose choices differ.

=================  ==============  ====================================================================
option             default         meaning
=================  ==============  ====================================================================
``tau``            0.5             attention threshold on the min-max normalised heatmap (seed §4.1)
``threshold``      ``>=``          attended set {H ≥ τ} (``>``: {H > τ})
``preprocessing``  ``official``    each model family's own transform: SurgVLP Resize(360, 640) + centre
                                   crop 224; CLIP processor: shorter side + centre crop (bicubic).
                                   ``full-frame``: the whole frame resized to the input size
``heatmap_target`` ``pred``        the heatmap explains the predicted class (seed §3.2); ``gt``: the
                                   ground-truth class the prediction is scored against
``triplet_pool``   ``valid``       the 94 CholecT50 triplets without null verb/target; ``all``: the
                                   100 triplets (nulls rendered "no action"/"nothing"); ``product``:
                                   every instrument x verb x target without nulls (6 x 9 x 14 = 756)
``validity``       ``same-triplet`` valid frame (ARS, V/T): one GT triplet has the predicted instrument
                                   and verb; ``any-triplet``: instrument and verb each in some GT triplet
``out_of_pool``    ``exclude``     frames whose GT triplets are all outside the pool (null-only frames
                                   with ``valid``/``product``) are left out and counted; ``count``:
                                   kept (they can never be correct or valid)
``gradcam_layer``  ``layer4``      ResNet VLMs: the block Grad-CAM explains (post-ReLU output)
``rollout_start``  0               CLIP-ViT: first block of Chefer's rollout (0 = all; -1 = last only)
``rollout_target`` ``logit``       CLIP-ViT rollout score: logit_scale.exp()·cos (Chefer) or ``cosine``
``rollout_order``  ``later-left``  R = (I + C_L)···(I + C_s) (Chefer); ``later-right``: the reverse
=================  ==============  ====================================================================
"""

from __future__ import annotations

import dataclasses
from typing import Any

from surgkit.errors import SurgkitError

TASKS = ("instrument", "triplet")
PREPROCESSING = ("official", "full-frame")
HEATMAP_TARGETS = ("pred", "gt")
TRIPLET_POOLS = ("valid", "all", "product")
VALIDITY = ("same-triplet", "any-triplet")
OUT_OF_POOL = ("exclude", "count")
THRESHOLDS = (">=", ">")
GRADCAM_LAYERS = ("layer4", "layer3", "layer2", "layer1")
ROLLOUT_TARGETS = ("logit", "cosine")
ROLLOUT_ORDERS = ("later-left", "later-right")

# Protocol keys that must agree between runs shown in one table (besides the method-specific ones).
COMPARED = (
    "task",
    "tau",
    "threshold",
    "preprocessing",
    "heatmap_target",
    "triplet_pool",
    "validity",
    "out_of_pool",
    "templates",
    "articles",
    "regions",
)


def _choice(name: str, value: Any, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        raise SurgkitError(f"unknown {name} {value!r} (choose from {', '.join(map(str, choices))})")


@dataclasses.dataclass(frozen=True)
class HeatmapOptions:
    """Settings of the heatmap methods; each adapter uses the ones of its method."""

    gradcam_layer: str = "layer4"
    rollout_start: int = 0
    rollout_target: str = "logit"
    rollout_order: str = "later-left"

    def __post_init__(self) -> None:
        _choice("Grad-CAM layer", self.gradcam_layer, GRADCAM_LAYERS)
        _choice("rollout target", self.rollout_target, ROLLOUT_TARGETS)
        _choice("rollout order", self.rollout_order, ROLLOUT_ORDERS)
        if not isinstance(self.rollout_start, int) or isinstance(self.rollout_start, bool):
            raise SurgkitError(f"rollout start block must be an integer, got {self.rollout_start!r}")


@dataclasses.dataclass
class BenchSettings:
    """Protocol switches of a benchmark run (defaults: see the module table)."""

    task: str = "instrument"
    tau: float = 0.5
    threshold: str = ">="
    preprocessing: str = "official"
    heatmap_target: str = "pred"
    triplet_pool: str = "valid"
    validity: str = "same-triplet"
    out_of_pool: str = "exclude"
    gradcam_layer: str = "layer4"
    rollout_start: int = 0
    rollout_target: str = "logit"
    rollout_order: str = "later-left"
    articles: bool = False  # a -> an fix in rendered prompts
    templates: str | None = None  # templates JSON (default: surgkit/grounding/templates.json)
    batch_size: int = 8
    save_heatmaps: bool = True
    max_frames: int | None = None
    strict: bool = False  # raise on a frame that cannot be scored instead of skipping it

    def __post_init__(self) -> None:
        _choice("task", self.task, TASKS)
        _choice("threshold rule", self.threshold, THRESHOLDS)
        _choice("preprocessing", self.preprocessing, PREPROCESSING)
        _choice("heatmap target", self.heatmap_target, HEATMAP_TARGETS)
        _choice("triplet pool", self.triplet_pool, TRIPLET_POOLS)
        _choice("validity rule", self.validity, VALIDITY)
        _choice("out-of-pool policy", self.out_of_pool, OUT_OF_POOL)
        if not 0.0 < self.tau <= 1.0:
            raise SurgkitError(f"tau must be in (0, 1], got {self.tau}")
        if self.batch_size < 1:
            raise SurgkitError("batch size must be at least 1")
        if self.max_frames is not None and self.max_frames < 1:
            raise SurgkitError("max frames must be at least 1")
        self.heatmap_options()  # validates the heatmap settings

    def heatmap_options(self) -> HeatmapOptions:
        return HeatmapOptions(self.gradcam_layer, self.rollout_start, self.rollout_target, self.rollout_order)

    def output_settings(self) -> dict[str, Any]:
        """The settings that determine the output (recorded for the resume check)."""
        return dataclasses.asdict(self)

    def protocol(self, adapter: Any) -> dict[str, Any]:
        """Everything a reader of the numbers needs to know (written into every result file)."""
        triplet = self.task == "triplet"
        return {
            "task": self.task,
            "tau": self.tau,
            "threshold": self.threshold,
            "normalisation": "per-image min-max in frame coordinates (constant map -> all zeros)",
            "empty_attention": "an all-zero heatmap scores 0 and is counted",
            "preprocessing": self.preprocessing,
            "preprocess": adapter.describe()["preprocess"],
            "heatmap_target": self.heatmap_target,
            "heatmap": adapter.describe_heatmap(),
            "model": adapter.describe(),
            "multi_label_rule": "top-1 prediction is correct if it is among the frame's GT labels",
            "tau_ac_empty_gt": "frames without any GT region are excluded from tau-AC",
            "tau_aa_class": "the explained class (the prediction by default): 0 when it is absent",
            "triplet_pool": self.triplet_pool if triplet else None,
            "validity": self.validity if triplet else None,
            "out_of_pool": self.out_of_pool if triplet else None,
            "ars_heatmap": (
                "separate heatmap of the secondary prompt 'I am performing {verb}' (verb of the explained "
                "triplet = the predicted verb on valid frames), inside the GT box of the predicted instrument"
                if triplet
                else None
            ),
            "templates": self.templates or "default",
            "articles": self.articles,
            "text_embedding": "mean of L2-normalised prompt embeddings, re-normalised",
        }


def heatmap_caption(heatmap: dict[str, Any]) -> str:
    """One phrase for a heatmap description (``VLMAdapter.describe_heatmap``)."""
    method = heatmap.get("method")
    if method == "gradcam":
        return f"Grad-CAM on {heatmap.get('layer')}"
    if method == "chefer_rollout":
        return (
            f"Chefer rollout (blocks {heatmap.get('blocks')}, target {heatmap.get('target')}, "
            f"order {heatmap.get('order')})"
        )
    return str(method)


def caption(protocol: dict[str, Any], heatmaps: list[dict[str, Any]] | None = None) -> str:
    """The protocol in one line, for table captions."""
    parts = [
        f"τ = {protocol.get('tau')} ({protocol.get('threshold')})",
        f"preprocessing {protocol.get('preprocessing')}",
        f"heatmap target {protocol.get('heatmap_target')}",
    ]
    if protocol.get("task") == "triplet":
        parts += [
            f"triplet pool {protocol.get('triplet_pool')}",
            f"validity {protocol.get('validity')}",
            f"out-of-pool frames {protocol.get('out_of_pool')}",
        ]
    if protocol.get("regions"):
        parts.append(f"regions {protocol.get('regions')}")
    if protocol.get("templates") not in (None, "default"):
        parts.append(f"templates {protocol.get('templates')}")
    methods = {heatmap_caption(h): None for h in (heatmaps or [protocol.get("heatmap") or {}])}
    parts.append("; ".join(methods))
    return ", ".join(parts)


def protocol_conflicts(protocols: list[dict[str, Any]]) -> list[str]:
    """Human-readable differences between protocols (empty when they can share a table column).

    The keys of :data:`COMPARED` must agree between all runs; heatmap settings must agree between
    runs of the same heatmap method (Grad-CAM and rollout runs naturally differ).
    """
    out = []
    for key in COMPARED:
        values = {repr(p.get(key)) for p in protocols}
        if len(values) > 1:
            out.append(f"{key}: {' vs '.join(sorted(values))}")
    by_method: dict[str, set[str]] = {}
    for p in protocols:
        h = p.get("heatmap") or {}
        by_method.setdefault(str(h.get("method")), set()).add(repr(sorted(h.items())))
    for method, values in sorted(by_method.items()):
        if len(values) > 1:
            out.append(f"{method} settings: {' vs '.join(sorted(values))}")
    return out
