"""The pretraining corpus (surgkit.synth.corpus): deterministic, disjoint from the world's videos, and
leaving every other file of the world byte-identical."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from surgkit.synth import World, generate_world
from surgkit.synth.corpus import (
    CORPUS_FORMAT,
    corpus_plan,
    corpus_size,
    corpus_surgeons,
    keyframes,
    surgery_name,
)
from surgkit.synth.generate import LAYOUTS
from surgkit.synth.writers.base import write_png


def _digests(root, below=""):
    base = root / below if below else root
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(base.rglob("*"))
        if p.is_file() and ".lock" not in p.name and "/done/" not in p.as_posix()
    }


@pytest.fixture(scope="module")
def world_without_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("nocorpus") / "world"
    layouts = [name for name in LAYOUTS if name != "corpus"]
    generate_world(out, preset="tiny", seed=0, layouts=layouts, progress=False)
    return out


def test_every_other_file_of_the_world_is_byte_identical_with_the_corpus(tiny_world, world_without_corpus):
    root, _ = tiny_world
    with_corpus, without = _digests(root), _digests(world_without_corpus)
    added = sorted(set(with_corpus) - set(without))
    assert added and all(k.startswith("corpus/") for k in added)
    changed = sorted(k for k in without if with_corpus.get(k) != without[k])
    assert changed == [".synth/config.json", "world.json"]  # the layout list, nothing else
    new, old = (json.loads((r / "world.json").read_text()) for r in (root, world_without_corpus))
    assert new.pop("layouts").pop("corpus")["surgeries"] == corpus_size(World(0, "tiny").preset)
    old_layouts = old.pop("layouts")
    assert new == old and list(old_layouts) == [n for n in LAYOUTS if n != "corpus"]


def test_corpus_layout_and_records_follow_the_exact_ground_truth(tiny_world):
    root, manifest = tiny_world
    world = World(seed=0, preset="tiny")
    meta = json.loads((root / "corpus" / "corpus.json").read_text())
    records = [json.loads(line) for line in (root / "corpus" / "captions.jsonl").read_text().splitlines()]
    n = corpus_size(world.preset)
    assert meta["format"] == CORPUS_FORMAT and meta["surgeries"] == n == 2
    assert meta["frames"] == len(records) == manifest["layouts"]["corpus"]["frames"]
    surgeons = corpus_surgeons(world)
    assert [s.name for s in surgeons] == meta["surgeon_names"]
    for k in range(n):
        plan = corpus_plan(world, k, surgeons)
        mine = [r for r in records if r["surgery"] == surgery_name(k)]
        assert [r["frame"] for r in mine] == list(keyframes(plan)) and len(mine) >= 5
    rec = next(r for r in records if r["instruments"])  # one keyframe re-rendered from its plan
    k = int(rec["surgery"][-3:]) - 1
    rgb, truth = world.render(corpus_plan(world, k, surgeons)).render(rec["frame"])
    from surgkit.vocab import INSTRUMENTS, TRIPLET_NAMES

    assert rec["instruments"] == sorted({INSTRUMENTS[i.cls] for i in truth.instruments})
    assert rec["triplets"] == [TRIPLET_NAMES[t] for t in truth.triplets]
    check = root / "corpus" / "check.png"
    write_png(check, rgb)
    assert check.read_bytes() == (root / "corpus" / rec["image"]).read_bytes()
    check.unlink()


def test_corpus_is_deterministic_for_any_number_of_workers(tiny_world, tmp_path):
    root, _ = tiny_world
    one, two = tmp_path / "one", tmp_path / "two"
    generate_world(one, preset="tiny", seed=0, layouts="corpus", progress=False, workers=1)
    generate_world(two, preset="tiny", seed=0, layouts="corpus", progress=False, workers=2)
    assert _digests(one, "corpus") == _digests(two, "corpus") == _digests(root, "corpus")
    other = tmp_path / "seed1"
    generate_world(other, preset="tiny", seed=1, layouts="corpus", progress=False, workers=1)
    assert (
        _digests(other, "corpus")["corpus/captions.jsonl"] != _digests(one, "corpus")["corpus/captions.jsonl"]
    )


def test_corpus_surgeries_are_none_of_the_worlds_videos(tiny_world):
    """No corpus keyframe equals any 1-fps frame of the world's videos; no surgery has a video's anatomy or plan."""
    root, _ = tiny_world
    world = World(seed=0, preset="tiny")

    def pixels(path):
        import cv2

        return hashlib.sha256(cv2.imread(str(path), cv2.IMREAD_COLOR).tobytes()).hexdigest()

    corpus = {pixels(p) for p in (root / "corpus" / "images").glob("*.png")}
    videos = {pixels(p) for p in (root / "cholect50" / "videos").rglob("*.png")}
    assert len(corpus) > 10 and len(videos) > 10 and not corpus & videos
    surgeons = corpus_surgeons(world)
    for k in range(corpus_size(world.preset)):
        plan = corpus_plan(world, k, surgeons)
        for i in range(world.preset.lap_videos):
            video = world.lap_plan(i)
            assert plan.index != video.index and plan.name != video.name
            # its own anatomy (drawn from its own stream), not a benchmark video's scene
            assert not np.array_equal(plan.scene.canvas(plan.keys[0]), video.scene.canvas(video.keys[0]))
            same = min(plan.frames, video.frames)
            assert not all(
                np.array_equal(a.cls[:same], b.cls[:same])
                for a, b in zip(plan.slots, video.slots, strict=True)
            )
