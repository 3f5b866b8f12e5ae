"""An image-caption pretraining corpus: keyframes of extra cholecystectomies that are no benchmark video.

Vision-language models of surgery are pretrained on large narrated corpora (SurgVLP: lecture videos)
that share no video with the benchmarks they are evaluated on. The world's corpus plays that part:
``surgeries`` extra cholecystectomies, planned by the same planner and drawn by the same renderer as
the world's videos, but from their own random streams and performed by their own surgeons, and
written only as 1-fps keyframes with captions (no video encoding)::

    corpus/corpus.json                       manifest (format, seed streams, surgeries, frames, size)
    corpus/captions.jsonl                    {"image", "surgery", "frame", "seconds", "caption", "phase",
                                              "triplets", "instruments"}
    corpus/images/surgery001_000025.png      keyframes (RGB PNG, the world's lap frame size)

``frame`` is the 25-fps frame number of the surgery, ``seconds`` = frame / fps. Captions use the
world's caption template (:func:`surgkit.synth.writers.vlm.caption`); ``triplets`` / ``instruments``
are the exact CholecT50 names of the frame's ground truth.

Disjointness: the world's videos are drawn from streams ``[seed, 2, i]`` with plan index ``i < 1000``
(surgeons from ``[seed, 0]``); the corpus uses ``[seed, 21, k]`` (plans), ``[seed, 20]`` (its
surgeons), ``[seed, 22, k, t]`` (caption wording) and plan indices ``1000 + k`` (the renderer's
smoke texture stream is ``[index, 7]``). No draw of the world's other files changes: every other
file of a world is byte-identical with and without the corpus (tested).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from surgkit.synth.writers.base import LayoutWriter
from surgkit.utils.io import to_json, write_json, write_text
from surgkit.vocab import CHOLEC80_PHASES, INSTRUMENTS, TRIPLET_NAMES

CORPUS_FORMAT = "surgkit-synth-corpus/1"
CORPUS_INDEX_BASE = 1000  # plan indices of corpus surgeries (benchmark videos use 0..lap_videos-1)
CORPUS_EVERY_SECONDS = 1.0
# surgeries per preset (a preset not listed gets twice its number of videos)
CORPUS_SURGERIES: dict[str, int] = {"tiny": 2, "demo": 48, "small": 40, "full": 80}
STREAM_SURGEONS, STREAM_PLANS, STREAM_CAPTIONS = 20, 21, 22


def corpus_size(preset: Any) -> int:
    """Number of corpus surgeries of a preset (:data:`CORPUS_SURGERIES`)."""
    return CORPUS_SURGERIES.get(preset.name, 2 * preset.lap_videos)


def surgery_name(k: int) -> str:
    return f"surgery{k + 1:03d}"


def corpus_plan(world: Any, k: int, surgeons: list[Any]) -> Any:
    """Plan of corpus surgery ``k`` (0-based): the world's lap planner on the corpus streams."""
    from surgkit.synth.lap import plan_lap_video

    pr = world.preset
    rng = np.random.default_rng([world.seed, STREAM_PLANS, k])
    return plan_lap_video(CORPUS_INDEX_BASE + k, surgery_name(k), surgeons[k % len(surgeons)], pr.lap_seconds,
                          rng, *pr.lap_size, fps=pr.lap_fps, tempo=pr.lap_tempo, pace=pr.pace,
                          short=pr.lap_short)  # fmt: skip


def corpus_surgeons(world: Any) -> list[Any]:
    """The corpus's own surgeons (as many as the world's lap surgeons, drawn from their own stream)."""
    from surgkit.synth.skill import make_surgeons

    n = world.preset.lap_surgeons
    return make_surgeons(
        np.random.default_rng([world.seed, STREAM_SURGEONS]), n, [f"C{k + 1:02d}" for k in range(n)]
    )


def keyframe_record(plan: Any, t: int, truth: Any, image: str, seed: int) -> dict[str, Any]:
    """The captions.jsonl record of keyframe ``t``."""
    from surgkit.synth.writers.vlm import caption

    rng = np.random.default_rng([seed, STREAM_CAPTIONS, plan.index - CORPUS_INDEX_BASE, t])
    return {
        "image": image,
        "surgery": plan.name,
        "frame": t,
        "seconds": round(t / plan.fps, 3),
        "caption": caption(truth, rng),
        "phase": CHOLEC80_PHASES[truth.phase],
        "triplets": [TRIPLET_NAMES[k] for k in truth.triplets],
        "instruments": sorted({INSTRUMENTS[i.cls] for i in truth.instruments}),
    }


def keyframes(plan: Any) -> range:
    """The frames of a corpus surgery that are rendered and written (every ``CORPUS_EVERY_SECONDS``)."""
    return range(0, plan.frames, max(1, int(round(plan.fps * CORPUS_EVERY_SECONDS))))


class CorpusWriter(LayoutWriter):
    """The ``corpus`` layout: receives the corpus surgeries (job kind ``corpus``, keyframes only).

    The generator plans them with :func:`corpus_plan` and renders only :func:`keyframes` (no video
    encoding), in its worker processes like the world's videos; ``finish`` writes captions.jsonl
    and corpus.json.
    """

    name = "corpus"
    kinds: frozenset[str] = frozenset({"corpus"})
    description = (
        "pretraining keyframes + captions of extra surgeries: corpus/{corpus.json,captions.jsonl,images/}"
    )
    shared_state = (*LayoutWriter.shared_state, "records", "frames")

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.records: list[str] = []
        self.frames = 0

    def begin(self, plan) -> None:
        self.plan = plan

    def frame(self, t, rgb, truth) -> None:
        image = f"images/{self.plan.name}_{t:06d}.png"
        self.put_png(self.root / "corpus" / image, rgb)
        self.records.append(
            to_json(keyframe_record(self.plan, t, truth, image, self.world.seed), indent=None)
        )
        self.frames += 1

    def end(self, plan) -> None:
        self.count += 1

    def finish(self) -> dict[str, Any]:
        out = self.root / "corpus"
        write_text(out / "captions.jsonl", "".join(r + "\n" for r in self.records))
        surgeons = corpus_surgeons(self.world)
        write_json(out / "corpus.json", {
            "format": CORPUS_FORMAT,
            "seed": self.world.seed,
            "surgeries": self.count,
            "frames": self.frames,
            "every_seconds": CORPUS_EVERY_SECONDS,
            "size": list(self.world.preset.lap_size),
            "streams": {"surgeons": [self.world.seed, STREAM_SURGEONS], "plans": [self.world.seed, STREAM_PLANS, "k"],
                        "captions": [self.world.seed, STREAM_CAPTIONS, "k", "t"],
                        "plan_index": f"{CORPUS_INDEX_BASE} + k"},
            "surgeon_names": [s.name for s in surgeons],
            "note": "pretraining keyframes of surgeries that are none of the world's videos (no split: train only)",
        })  # fmt: skip
        return {"path": "corpus", "format": CORPUS_FORMAT, "surgeries": self.count, "frames": self.frames}
