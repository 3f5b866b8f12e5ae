"""Image-caption pairs of the synthetic world for the embedded tiny CLIP (:mod:`surgkit.grounding.train_clip`).

Every training frame gets captions of five kinds, none of them a benchmark template:

* ``instrument``: one visible instrument in a varied phrase ("the hook in the field of view",
  "a grasper is visible", ...);
* ``scene``: the set of visible instruments ("grasper and hook", "no instrument");
* ``action``: one triplet ("the hook is used to dissect the gallbladder", "dissect the gallbladder
  with the hook");
* ``verb``: one action performed in the frame, without instrument or target ("the action is to
  retract"): true of every frame where some instrument performs it (what a verb prompt's heatmap, ARS,
  should find: the acting instrument);
* ``world``: the world's own sentence from ``vlm/captions.jsonl``.

Each caption carries its *meaning* (an instrument, a set of instruments, a triplet, or its exact
text), so :func:`positives` can mark every image of a batch the caption is true for: a frame with a
grasper and a hook is a positive of "a grasper is visible" and of "the hook in the field of view".
This is CLIP's InfoNCE with multi-label-aware targets; the captions say nothing the frame's labels
do not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from surgkit.errors import SurgkitError
from surgkit.grounding.frames import GroundingFrame, triplet_names
from surgkit.grounding.prompts import instrument_prompts, normalise_label, triplet_prompts, verb_prompts
from surgkit.vocab import CHOLEC80_TOOLS, INSTRUMENTS, TRIPLET_COMPONENTS, TRIPLET_NAMES

KINDS = ("instrument", "scene", "action", "verb", "world")
INSTRUMENT_PHRASES = (
    "a {i} is visible",
    "the {i} in the field of view",
    "laparoscopic view with a {i}",
    "the surgeon holds a {i}",
    "close view of the {i}",
    "{i}",
    "a {i}",
    "there is a {i} here",
    "the camera sees a {i} at work",
    "a frame from the operation with the {i}",
    "during the procedure a {i} is inside",
    "the tip of the {i} on screen",
    "we can see the {i} in this frame",
    "a laparoscopic scene where a {i} works",
)
ACTION_PHRASES = ("the {i} is used to {v} the {t}", "{v} the {t} with the {i}")
IDLE_PHRASE = "the {i} is idle in the field of view"
VERB_PHRASES = ("the action is to {v}", "an instrument is used to {v}", "the surgeon's task here: {v}", "{v}")

Names = tuple[str, str, str]


@dataclasses.dataclass(frozen=True)
class Caption:
    text: str
    kind: str
    meaning: tuple  # ("instrument", name) | ("scene", names) | ("action", triplet names) | ("text", text)


@dataclasses.dataclass
class Pair:
    """One training image with what is true of it and its captions by kind."""

    frame: GroundingFrame
    instruments: frozenset[str]
    triplets: frozenset[Names]
    texts: frozenset[str]
    captions: dict[str, list[Caption]]
    seconds: float = 0.0  # time in the video (batches of neighbouring frames share the scene)
    corpus: bool = False  # a pretraining keyframe of a surgery that is none of the world's videos


def action_text(phrase: str, triplet: Names) -> str:
    """A training phrase of a triplet; a null triplet (idle instrument) reads :data:`IDLE_PHRASE`."""
    i, v, t = triplet
    return IDLE_PHRASE.format(i=i) if v == "null verb" else phrase.format(i=i, v=v, t=t)


def make_captions(
    instruments: Iterable[str], triplets: Iterable[Names], world: Sequence[str] = ()
) -> dict[str, list[Caption]]:
    """Captions by kind for a frame with these (normalised) instruments and triplets."""
    names = sorted(set(instruments))
    out: dict[str, list[Caption]] = {k: [] for k in KINDS}
    for i in names:
        out["instrument"] += [
            Caption(p.format(i=i), "instrument", ("instrument", i)) for p in INSTRUMENT_PHRASES
        ]
    scene = " and ".join(names) if names else "no instrument"
    out["scene"] = [Caption(scene, "scene", ("scene", tuple(names)))]
    for trip in sorted(set(triplets)):
        phrases = dict.fromkeys(action_text(p, trip) for p in ACTION_PHRASES)  # an idle one reads once
        out["action"] += [Caption(text, "action", ("action", trip)) for text in phrases]
    for v in sorted({v for _, v, _ in triplets} - {"null verb"}):
        out["verb"] += [Caption(p.format(v=v), "verb", ("verb", v)) for p in VERB_PHRASES]
    out["world"] = [Caption(w, "world", ("text", w)) for w in world]
    return out


def consistent(caption: Caption, pair: Pair) -> bool:
    """Whether the caption is true of the pair's image."""
    kind, value = caption.meaning
    if kind == "instrument":
        return value in pair.instruments
    if kind == "scene":
        return frozenset(value) == pair.instruments
    if kind == "action":
        return value in pair.triplets
    if kind == "verb":
        return any(t[1] == value for t in pair.triplets)
    return value in pair.texts


def positives(captions: Sequence[Caption], pairs: Sequence[Pair]) -> np.ndarray:
    """(B, B) bool: entry (a, b) is True when caption b is true of image a (the diagonal always is)."""
    return np.array([[consistent(c, p) for c in captions] for p in pairs], dtype=bool)


def make_pair(
    frame: GroundingFrame, instruments: Iterable[str] = (), world: Sequence[str] = (), seconds: float = 0.0,
    corpus: bool = False,
) -> Pair:  # fmt: skip
    trip = {triplet_names(c) for c in frame.triplets}
    inst = {normalise_label(i) for i in instruments} | {t[0] for t in trip}
    caps = make_captions(inst, trip, world)
    return Pair(frame, frozenset(inst), frozenset(trip), frozenset(world), caps, float(seconds), corpus)


def _caption_file(world: Path) -> Path | None:
    for name in ("vlm/captions.jsonl", "captions.jsonl"):
        if (world / name).is_file():
            return world / name
    return None


def _caption_records(path: Path, fps: float = 25.0, corpus: bool = False) -> list[Pair]:
    """``vlm/captions.jsonl``: one record per frame; ``frame`` is the 25-fps video frame number.

    ``corpus``: the world's pretraining corpus (``corpus/captions.jsonl``, :mod:`surgkit.synth.corpus`),
    whose records name a ``surgery`` (none of the world's videos) instead of a ``video``."""
    from surgkit.utils.inputs import as_dict, as_int, as_list, as_str, get, read_jsonl

    index = {n: TRIPLET_COMPONENTS[k] for k, n in enumerate(TRIPLET_NAMES)}
    pairs = []
    for line, raw in read_jsonl(path):
        rec = as_dict(raw, path, "record", line)
        image = as_str(get(rec, "image", path), path, "image", line)
        names = [
            as_str(t, path, "triplets", line)
            for t in as_list(rec.get("triplets", []), path, "triplets", line)
        ]
        unknown = [t for t in names if t not in index]
        if unknown:
            raise SurgkitError(f"{path}:{line}: unknown triplet {unknown[0]!r}")
        key = "surgery" if corpus else "video"
        frame = GroundingFrame(as_str(get(rec, key, path), path, key, line),
                               as_int(rec.get("frame", line), path, "frame", line), (path.parent / image).resolve(),
                               triplets=[index[t] for t in names], source=f"{path}:{line}")  # fmt: skip
        inst = [
            as_str(i, path, "instruments", line)
            for i in as_list(rec.get("instruments", []), path, "instruments", line)
        ]
        caption = as_str(get(rec, "caption", path), path, "caption", line)
        pairs.append(make_pair(frame, inst, [caption], frame.frame / fps, corpus=corpus))
    return pairs


def load_pairs(world: str | Path, corpus: bool = True) -> tuple[list[Pair], list[str]]:
    """Training pairs of a synthetic world root and where they came from.

    Pairs come from the world's ``vlm/captions.jsonl`` (its sentence plus captions derived from the
    record's labels), from the 1-fps CholecT50 frames (derived captions only) and, with ``corpus``,
    from the pretraining corpus ``corpus/captions.jsonl`` (keyframes of surgeries that are none of the
    world's videos; :mod:`surgkit.synth.corpus`), marked ``Pair.corpus``.
    """
    from surgkit.grounding.frames import frames_from_triplets

    world = Path(world)
    pairs: list[Pair] = []
    sources = []
    cap = _caption_file(world)
    if cap is not None:
        pairs += _caption_records(cap)
        sources.append(f"{cap.relative_to(world)} ({len(pairs)} pairs)")
    t50 = world / "cholect50"
    if t50.is_dir():
        from surgkit.data import load

        ds = load("cholect50", t50, require_media=False)
        frames = [f for f in frames_from_triplets(ds, keep_empty=True) if f.image is not None]
        pairs += [make_pair(f, seconds=f.frame) for f in frames]  # 1-fps frame index = seconds
        sources.append(f"cholect50 1-fps frames with captions from their triplets ({len(frames)} pairs)")
    corpus_file = world / "corpus" / "captions.jsonl"
    if corpus and corpus_file.is_file():
        extra = _caption_records(corpus_file, corpus=True)
        pairs += extra
        sources.append(
            f"corpus/captions.jsonl (pretraining keyframes of other surgeries, {len(extra)} pairs)"
        )
    if not pairs:
        raise SurgkitError(f"{world}: no image-caption pairs (expected vlm/captions.jsonl or cholect50/)")
    return pairs, sources


def tokenizer_corpus(pairs: Sequence[Pair]) -> list[str]:
    """Every caption plus every benchmark prompt, so the BPE vocabulary covers both."""
    prompts = []
    for ps in (instrument_prompts(CHOLEC80_TOOLS), instrument_prompts(INSTRUMENTS), triplet_prompts(pool="all"),
               verb_prompts(null_policy="render")):  # fmt: skip
        prompts += ps.flat()[0]
    texts = [c.text for p in pairs for caps in p.captions.values() for c in caps]
    return texts + prompts
