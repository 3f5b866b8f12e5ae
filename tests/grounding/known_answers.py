"""A benchmark fixture whose answers are known by construction.

:class:`ScriptedVLM` is a :class:`VLMAdapter` whose behaviour is written down per frame: which class
its image embedding points to (so the zero-shot prediction is known) and which heatmap it returns
for each prompt it is asked to explain (0/1 rectangles, so every attended set is known). Text
embeddings are one-hot vectors of the prompt strings, so the explained prompt is read back from
the target embedding. Frames are 20 x 20 RGB images whose pixel (0, 0) carries the frame id; the
preprocessing keeps them unchanged, so heatmaps land on frame pixels exactly.

The frames (instrument task: several instruments, boxes of different classes, a prediction absent
from the image, a 0.5 strip for the >= / > rule, an all-zero heatmap; triplet task: valid and
invalid frames of every kind, a null-only frame) and their expected metrics, computed by hand,
are in :data:`INSTRUMENT_FRAMES` / :data:`TRIPLET_FRAMES` and the tests.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from surgkit.grounding.adapters import VLMAdapter
from surgkit.grounding.frames import GroundingFrame
from surgkit.grounding.geometry import Preprocess
from surgkit.grounding.prompts import instrument_prompts, triplet_prompts, verb_prompts
from surgkit.vocab import CHOLEC80_TOOLS, TRIPLET_COMPONENTS, TRIPLET_NAMES

S = 20  # frame and model input size


@functools.lru_cache(maxsize=1)
def prompt_index() -> dict[str, int]:
    """Every prompt the benchmark can render with the default templates -> a one-hot dimension."""
    texts: list[str] = []
    for ps in (
        instrument_prompts(CHOLEC80_TOOLS),
        triplet_prompts(pool="product"),
        triplet_prompts(pool="all"),
        verb_prompts(null_policy="render"),
    ):
        texts += ps.flat()[0]
    return {t: k for k, t in enumerate(dict.fromkeys(texts))}


def inst(name: str) -> str:
    return f"an image showing a {name} in use"


def trip(i: str, v: str, t: str) -> str:
    return f"I use a {i} to {v} the {t}"


def verb(v: str) -> str:
    return f"I am performing {v}"


def rect(
    x0: int, y0: int, x1: int, y1: int, value: float = 1.0, base: np.ndarray | None = None
) -> np.ndarray:
    """A heatmap with ``value`` on [x0, x1) x [y0, y1) (added onto ``base``)."""
    m = np.zeros((S, S), np.float32) if base is None else base.copy()
    m[y0:y1, x0:x1] = value
    return m


def image(frame_id: int) -> np.ndarray:
    img = np.full((S, S, 3), 40, np.uint8)
    img[0, 0, 0] = frame_id
    return img


class ScriptedVLM(VLMAdapter):
    """Image embedding and heatmaps per frame id, as scripted (see the module docstring)."""

    heatmap_method = "scripted"

    def __init__(self, script: dict[int, dict[str, Any]]):
        super().__init__("scripted", Preprocess("resize", S, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)))
        self.script = script
        self.index = prompt_index()
        self.prompts = list(self.index)
        self.explained: list[tuple[int, str]] = []  # (frame id, prompt) of every map returned

    probability_scale = 1.0
    score_scale = 1.0

    def _onehot(self, weights: dict[str, float]) -> torch.Tensor:
        e = torch.zeros(len(self.index))
        for text, w in weights.items():
            e[self.index[text]] = w
        return e

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        return torch.stack([self._onehot({p: 1.0}) for p in prompts])

    def _ids(self, pixels: torch.Tensor) -> list[int]:
        return [int(round(float(v) * 255)) for v in pixels[:, 0, 0, 0]]

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.stack([self._onehot(self.script[i]["image"]) for i in self._ids(pixels)])

    def explain(self, pixels, choose_targets):
        ids = self._ids(pixels)
        emb = self.encode_image(pixels)
        maps = []
        for targets in choose_targets(F.normalize(emb, dim=-1)):
            batch = []
            for i, t in zip(ids, targets, strict=True):
                prompt = self.prompts[int(torch.argmax(t))]
                self.explained.append((i, prompt))
                batch.append(
                    torch.as_tensor(self.script[i]["maps"].get(prompt, np.zeros((S, S), np.float32)))
                )
            maps.append(torch.stack(batch))
        return emb, maps

    def _explainable_forward(self, pixels):  # pragma: no cover - explain() is scripted
        raise NotImplementedError

    def _relevance(self, state, score, retain_graph):  # pragma: no cover
        raise NotImplementedError


# ------------------------------------------------------------------------------ instrument task
# boxes (x0, y0, x1, y1): grasper 10x10 = 100 px, hook 8x12 = 96 px, clipper 100 px, of 400 px
GRASPER, HOOK, CLIPPER = (0, 0, 10, 10), (12, 8, 20, 20), (10, 0, 20, 10)

INSTRUMENT_FRAMES: dict[int, dict[str, Any]] = {
    # two instruments, the prediction (hook) present: A = 100 px, 24 in grasper, 16 in hook
    1: {"video": "video01", "boxes": {"grasper": [GRASPER], "hook": [HOOK]},
        "image": {inst("hook"): 1.0, inst("grasper"): 0.2},
        "maps": {inst("hook"): rect(4, 6, 14, 16), inst("grasper"): rect(0, 0, 10, 10)}},
    # the prediction (hook) is absent; a 0.5 strip inside the clipper box: A(>=) = 150 px, A(>) = 100 px
    2: {"video": "video01", "boxes": {"grasper": [GRASPER], "clipper": [CLIPPER]},
        "image": {inst("hook"): 1.0, inst("clipper"): 0.3, inst("grasper"): 0.1},
        "maps": {inst("hook"): rect(10, 0, 20, 5, 0.5, rect(0, 10, 10, 20)), inst("clipper"): rect(*CLIPPER)}},
    # one instrument, predicted correctly: A = 200 px, 100 in the grasper box
    3: {"video": "video02", "boxes": {"grasper": [(0, 0, 20, 10)]},
        "image": {inst("grasper"): 1.0}, "maps": {inst("grasper"): rect(0, 5, 20, 15)}},
    # an all-zero heatmap: no attention, scores 0 and is counted
    4: {"video": "video02", "boxes": {"hook": [(0, 10, 20, 20)]},
        "image": {inst("hook"): 1.0}, "maps": {}},
}  # fmt: skip

# hand-computed per-frame values with the default protocol (>=, heatmap of the prediction)
INSTRUMENT_EXPECTED = {
    1: {"correct": True, "tau_ac": 40 / 100, "tau_aa": 16 / 100, "tau_ac_uniform": 196 / 400, "tau_aa_uniform": 96 / 400},
    2: {"correct": False, "tau_ac": 50 / 150, "tau_aa": 0.0, "tau_ac_uniform": 200 / 400, "tau_aa_uniform": 0.0},
    3: {"correct": True, "tau_ac": 100 / 200, "tau_aa": 100 / 200, "tau_ac_uniform": 200 / 400, "tau_aa_uniform": 0.5},
    4: {"correct": True, "tau_ac": 0.0, "tau_aa": 0.0, "tau_ac_uniform": 200 / 400, "tau_aa_uniform": 0.5},
}  # fmt: skip


def instrument_frames() -> list[GroundingFrame]:
    return [
        GroundingFrame(d["video"], fid, image(fid), boxes=d["boxes"], source=f"fixture:{fid}")
        for fid, d in INSTRUMENT_FRAMES.items()
    ]


# --------------------------------------------------------------------------------- triplet task
def comp(name: str) -> tuple[int, int, int]:
    return TRIPLET_COMPONENTS[TRIPLET_NAMES.index(name)]


TRIPLET_FRAMES: dict[int, dict[str, Any]] = {
    # exact prediction, valid; verb map: 80 of its 100 px in the hook box plus a 0.5 strip of 16 px inside
    # it (ARS 96/116 with >=, 80/100 with >); class map on the grasper box
    11: {"video": "video01", "boxes": {"grasper": [GRASPER], "hook": [HOOK]},
         "gt": ["grasper,retract,gallbladder", "hook,dissect,gallbladder"],
         "image": {trip("hook", "dissect", "gallbladder"): 1.0},
         "maps": {verb("dissect"): rect(12, 8, 20, 10, 0.5, rect(10, 10, 20, 20)),
                  trip("hook", "dissect", "gallbladder"): rect(*GRASPER)}},
    # instrument and verb right, target wrong: valid, not correct; the verb map misses the box (ARS 0)
    12: {"video": "video01", "boxes": {"grasper": [GRASPER]},
         "gt": ["grasper,retract,gallbladder"],
         "image": {trip("grasper", "retract", "liver"): 1.0},
         "maps": {verb("retract"): rect(10, 10, 20, 20), trip("grasper", "retract", "liver"): rect(*GRASPER)}},
    # verb right, instrument wrong: not valid
    13: {"video": "video02", "boxes": {"hook": [(0, 0, 20, 10)]},
         "gt": ["hook,dissect,gallbladder"],
         "image": {trip("grasper", "dissect", "gallbladder"): 1.0},
         "maps": {verb("dissect"): rect(0, 0, 20, 10)}},
    # instrument right, verb wrong: not valid
    14: {"video": "video02", "boxes": {"hook": [(0, 0, 20, 10)]},
         "gt": ["hook,dissect,cystic_duct"],
         "image": {trip("hook", "coagulate", "liver"): 1.0},
         "maps": {verb("coagulate"): rect(0, 0, 20, 10)}},
    # instrument and verb from two different GT triplets: not valid (same-triplet), valid (any-triplet)
    15: {"video": "video01", "boxes": {"grasper": [GRASPER], "hook": [HOOK]},
         "gt": ["grasper,retract,gallbladder", "hook,dissect,gallbladder"],
         "image": {trip("grasper", "dissect", "gallbladder"): 1.0, trip("hook", "dissect", "gallbladder"): 0.5},
         "maps": {verb("dissect"): rect(*GRASPER)}},
    # a null-only frame: outside the 94-triplet pool (left out by default; never valid when counted)
    16: {"video": "video02", "boxes": {"grasper": [GRASPER]},
         "gt": ["grasper,null_verb,null_target"],
         "image": {trip("grasper", "retract", "gallbladder"): 1.0},
         "maps": {verb("retract"): rect(*GRASPER)}},
}  # fmt: skip


def triplet_frames(ids: Sequence[int] | None = None) -> list[GroundingFrame]:
    return [
        GroundingFrame(
            d["video"],
            fid,
            image(fid),
            boxes=d["boxes"],
            triplets=[comp(n) for n in d["gt"]],
            source=f"fixture:{fid}",
        )  # fmt: skip
        for fid, d in TRIPLET_FRAMES.items()
        if ids is None or fid in ids
    ]


def scripted(task: str) -> ScriptedVLM:
    return ScriptedVLM(INSTRUMENT_FRAMES if task == "instrument" else TRIPLET_FRAMES)
