"""Tiny-CLIP training (contrastive loss, splits, leakage guard, resume) and the demo step."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from surgkit.errors import LeakageError, SurgkitError
from surgkit.grounding.prompts import instrument_prompts
from surgkit.grounding.train_clip import contrastive_loss, presence_names, split_videos
from surgkit.vocab import CHOLEC80_TOOLS, INSTRUMENTS

from .miniworld import write_mini_world


def test_contrastive_loss_equals_clip_loss_without_duplicates():
    from transformers.models.clip.modeling_clip import image_text_contrastive_loss

    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    scale = torch.tensor(7.0)
    logits_per_text = scale * F.normalize(txt, dim=-1) @ F.normalize(img, dim=-1).T
    ours = contrastive_loss(img, txt, scale, torch.arange(5))
    torch.testing.assert_close(ours, image_text_contrastive_loss(logits_per_text))


def test_contrastive_loss_treats_equal_captions_as_positives():
    img = torch.eye(3)
    txt = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0, 0, 1.0]])
    ids = torch.tensor([0, 0, 1])  # images 0 and 1 share a caption
    logits = 10 * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T
    targets = torch.tensor([[0.5, 0.5, 0], [0.5, 0.5, 0], [0, 0, 1.0]])
    expected = 0.5 * (
        -(targets * logits.log_softmax(1)).sum(1).mean() - (targets * logits.T.log_softmax(1)).sum(1).mean()
    )
    torch.testing.assert_close(contrastive_loss(img, txt, torch.tensor(10.0), ids), expected)


def test_multi_positive_targets_follow_caption_meaning():
    from surgkit.grounding.captions import make_pair, positives
    from surgkit.grounding.frames import GroundingFrame
    from surgkit.vocab import TRIPLET_COMPONENTS

    both = make_pair(GroundingFrame("v", 0, None, triplets=[TRIPLET_COMPONENTS[17], TRIPLET_COMPONENTS[60]]))
    hook = make_pair(GroundingFrame("v", 1, None, triplets=[TRIPLET_COMPONENTS[60]]))
    assert both.instruments == {"grasper", "hook"} and hook.instruments == {"hook"}
    grasper_cap = both.captions["instrument"][0]  # "a grasper is visible"
    hook_cap = hook.captions["instrument"][0]
    scene_cap = both.captions["scene"][0]  # "grasper and hook"
    assert (grasper_cap.text, scene_cap.text) == ("a grasper is visible", "grasper and hook")
    pos = positives([grasper_cap, hook_cap, scene_cap], [both, hook, both])
    # rows: images, columns: captions
    assert pos.tolist() == [[True, True, True], [False, True, False], [True, True, True]]
    for kind in ("instrument", "scene", "action", "verb"):
        for cap in both.captions[kind]:
            assert "image showing" not in cap.text and not cap.text.startswith(("I use", "I am performing"))
    # verb captions are true of every frame where some instrument performs the verb (17: grasper retract,
    # 60: hook dissect), never of a frame where it is absent
    verbs = {c.meaning[1] for c in both.captions["verb"]}
    assert verbs == {"retract", "dissect"} and {c.meaning[1] for c in hook.captions["verb"]} == {"dissect"}
    retract = next(c for c in both.captions["verb"] if c.meaning == ("verb", "retract"))
    dissect = next(c for c in hook.captions["verb"] if c.meaning == ("verb", "dissect"))
    assert positives([retract, dissect], [both, hook]).tolist() == [[True, True], [False, True]]


def test_contrastive_loss_with_a_positive_matrix():
    img = torch.eye(3)
    txt = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    pos = torch.tensor([[True, True, False], [False, True, False], [False, False, True]])
    logits = 5 * img @ txt.T
    ti = pos.float() / pos.float().sum(1, keepdim=True)
    tt = pos.T.float() / pos.T.float().sum(1, keepdim=True)
    expected = 0.5 * (
        -(ti * logits.log_softmax(1)).sum(1).mean() - (tt * logits.T.log_softmax(1)).sum(1).mean()
    )
    torch.testing.assert_close(contrastive_loss(img, txt, torch.tensor(5.0), pos), expected)


def test_presence_term_covers_every_class_of_both_instrument_pools():
    # the specimen bag (Cholec80's 7th tool) is never shown by the world; left out of the presence term its
    # text embedding stayed at its random init and zero-shot argmax picked it on 7 of 102 demo test frames
    names = presence_names()
    assert len(names) == len(set(names)) == 7
    for pool in (CHOLEC80_TOOLS, INSTRUMENTS):
        assert set(instrument_prompts(pool).keys) <= set(names)


def test_split_videos_holds_out_the_last():
    assert split_videos(["video03", "video01", "video02"], 0.34) == (["video01", "video02"], ["video03"])
    with pytest.raises(SurgkitError, match="at least 2 videos"):
        split_videos(["video01"], 0.3)


def test_train_resume_and_leakage_guard(tmp_path):
    from surgkit.grounding.api import bench
    from surgkit.grounding.train_clip import TrainSettings, train_clip

    world = write_mini_world(tmp_path / "w", videos=(1, 2), frames=3)
    out = tmp_path / "clip"
    settings = TrainSettings(size="test", steps=4, batch_size=4, save_every=2)
    first = train_clip(world, out, settings, progress=False)
    assert first["train_videos"] == ["video01"] and first["heldout_videos"] == ["video02"]
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert json.loads((out / "surgkit_training.json").read_text())["train_videos"] == ["video01"]
    assert (tmp_path / "clip.train" / "checkpoint-00000002").is_dir()
    again = train_clip(world, out, settings, progress=False)  # resumes from step 2: same result
    assert again["losses"] == first["losses"]
    with pytest.raises(LeakageError, match="video01"):
        bench(str(out), "synth", world, "instrument", tmp_path / "r", progress=False)
    s = bench(str(out), "synth", world, "instrument", tmp_path / "r", videos=["video02"], progress=False)
    assert set(s["videos"]) == {"video02"}


def test_demo_step_tiny(tmp_path):
    from surgkit.demo import DemoContext
    from surgkit.grounding.demo import demo_step

    world = write_mini_world(tmp_path / "world", videos=(1, 2), frames=3)
    ctx = DemoContext(workdir=tmp_path / "demo", size="tiny", artifacts={"world": str(world)})
    section = demo_step(ctx)
    assert section.key == "grounding" and len(section.tables) == 4
    assert all(p.is_file() for p, _ in section.figures)
    assert section.metrics["test_videos"] == ["video02"] and section.metrics["instrument"]["frames"] == 3
    learning = section.metrics["learning"]
    assert {"instrument_accuracy", "tau_ac", "tau_aa", "triplet_accuracy"} <= set(learning)
    inst = section.metrics["instrument"]
    assert learning["instrument_accuracy"]["baseline"] == inst["best_constant_accuracy"]
    assert (
        learning["tau_ac"]["baseline"] == inst["tau_ac_uniform"]
        and learning["tau_ac"]["model"] == inst["tau_ac"]
    )
    assert learning["tau_ac"]["baseline_kind"].startswith("uniform heatmap")
    assert "held-out" in section.summary and ctx.artifacts["grounding_clip"]
    assert "preprocessing official" in section.notes[0]
    header = section.tables[2][1]
    assert header[1:4] == [
        "tiny-CLIP (trained) ARS",
        "tiny-CLIP (trained) V/T (%)",
        "tiny-CLIP (trained) Z/V (%)",
    ]


def _write_corpus(world, surgeries=(2,), frames=3):
    """A pretraining corpus in the layout of surgkit.synth.corpus (surgery002 shares video02's number)."""
    import cv2
    import numpy as np

    lines = []
    for s in surgeries:
        for f in range(frames):
            image = f"images/surgery{s:03d}_{f * 25:06d}.png"
            (world / "corpus" / "images").mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(world / "corpus" / image), np.full((64, 96, 3), 40 * f, np.uint8))
            rec = {"image": image, "surgery": f"surgery{s:03d}", "frame": f * 25, "seconds": float(f),
                   "caption": "Cholecystectomy, preparation: the hook dissects the gallbladder.",
                   "phase": "Preparation", "triplets": ["hook,dissect,gallbladder"], "instruments": ["hook"]}  # fmt: skip
            lines.append(json.dumps(rec))
    (world / "corpus" / "captions.jsonl").write_text("\n".join(lines) + "\n")


def test_training_adds_the_corpus_and_never_a_heldout_video(tmp_path):
    """Corpus keyframes are trained on (recorded); the held-out video whose number a corpus surgery
    shares stays out of training and benchmarkable; without the corpus option they are left out."""
    from surgkit.grounding.api import bench
    from surgkit.grounding.captions import load_pairs
    from surgkit.grounding.train_clip import TrainSettings, train_clip

    world = write_mini_world(tmp_path / "w", videos=(1, 2), frames=3)
    _write_corpus(world)
    pairs, sources = load_pairs(world)
    corpus = [p for p in pairs if p.corpus]
    assert len(corpus) == 3 and {p.frame.video for p in corpus} == {"surgery002"} and "corpus" in sources[-1]
    assert all(p.instruments == {"hook"} for p in corpus)
    settings = TrainSettings(size="test", steps=2, batch_size=4, save_every=100)
    with_corpus = train_clip(world, tmp_path / "a", settings, progress=False)
    own = sum(not p.corpus and p.frame.video in ("video01", "VID01") for p in pairs)
    assert with_corpus["pairs"] == own + 3 and with_corpus["corpus_pairs"] == 3
    assert with_corpus["corpus_surgeries"] == 1 and with_corpus["train_videos"] == ["video01"]
    record = json.loads((tmp_path / "a" / "surgkit_training.json").read_text())
    assert record["corpus_pairs"] == 3 and record["settings"]["corpus"] is True
    without = train_clip(world, tmp_path / "b", TrainSettings(size="test", steps=2, batch_size=4, save_every=100,
                                                              corpus=False), progress=False)  # fmt: skip
    assert without["pairs"] == own and without["corpus_pairs"] == 0
    with pytest.raises(LeakageError, match="video01"):
        bench(str(tmp_path / "a"), "synth", world, "instrument", tmp_path / "r", progress=False)
    s = bench(
        str(tmp_path / "a"), "synth", world, "instrument", tmp_path / "r", videos=["video02"], progress=False
    )
    assert set(s["videos"]) == {"video02"}


def test_action_vocabulary_all_holds_every_triplet_also_unseen():
    from surgkit.grounding.frames import triplet_names
    from surgkit.grounding.train_clip import action_text, action_vocabulary
    from surgkit.vocab import NULL_TRIPLETS, TRIPLET_COMPONENTS

    every = action_vocabulary("all", [])
    assert len(every) == len(set(every)) == len(TRIPLET_COMPONENTS) - len(NULL_TRIPLETS) == 94
    assert ("grasper", "retract", "cystic plate") in every  # a combination the world never shows
    assert not any(v == "null verb" for _, v, _ in every)
    assert set(every) == {
        triplet_names(c) for k, c in enumerate(TRIPLET_COMPONENTS) if k not in NULL_TRIPLETS
    }
    idle = action_vocabulary("all-idle", [])
    assert len(idle) == 100 and set(idle) - set(every) == {
        triplet_names(TRIPLET_COMPONENTS[k]) for k in NULL_TRIPLETS
    }
    assert action_text("{v} the {t} with the {i}", ("grasper", "null verb", "null target")) == (
        "the grasper is idle in the field of view"
    )
    assert action_text("{v} the {t} with the {i}", ("hook", "dissect", "gallbladder")) == (
        "dissect the gallbladder with the hook"
    )
    with pytest.raises(SurgkitError, match="unknown action vocabulary"):
        action_vocabulary("most", [])


def test_action_term_softmax_against_hand_computation():
    from surgkit.grounding.train_clip import action_term

    logits = torch.tensor([[2.0, 0.5, -1.0, 0.0], [0.3, 0.1, 0.2, 0.4], [1.0, 1.0, 1.0, 1.0]])
    labels = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 1.0], [0, 0, 0, 0]])  # the third frame has no triplet
    p0 = torch.softmax(logits[0], 0)
    p1 = torch.softmax(logits[1], 0)
    want = -(torch.log(p0[0]) + 0.5 * (torch.log(p1[1]) + torch.log(p1[3]))) / 2
    assert torch.allclose(action_term("softmax", logits, labels), want)
    assert torch.allclose(
        action_term("bce", logits, labels), F.binary_cross_entropy_with_logits(logits, labels)
    )
    assert action_term("softmax", logits, torch.zeros_like(labels)) == 0
    with pytest.raises(SurgkitError, match="unknown action loss"):
        action_term("hinge", logits, labels)


def test_train_clip_refuses_an_unknown_action_term_before_any_work(tmp_path):
    from surgkit.grounding.train_clip import TrainSettings, train_clip

    world = write_mini_world(tmp_path / "w", videos=(1, 2), frames=3)
    for bad in ({"action_vocab": "most"}, {"action_loss": "hinge"}):
        with pytest.raises(SurgkitError, match="unknown action"):
            train_clip(world, tmp_path / "clip", TrainSettings(size="test", steps=2, **bad), progress=False)
        assert not (tmp_path / "clip").exists()


def test_demo_recipe_trains_the_triplet_term_over_every_triplet():
    from surgkit.grounding.demo import ACTION_TERM
    from surgkit.grounding.train_clip import TrainSettings

    s = TrainSettings(**ACTION_TERM)
    assert s.action_presence > 0 and s.action_vocab == "all-idle" and s.action_loss == "softmax"
