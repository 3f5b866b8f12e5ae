"""Downstream protocols: metrics against their oracles, the official augmentation, presets.

Oracles: ivtmetrics 0.1.5 (triplet AP per video, nulls excluded), scikit-learn (CVS/action accuracy
and one-vs-rest mAP as engine_for_clip.merge computes it), surgkit.metrics.phase (strict, relaxed),
hand-computed cases for the augmentation maths.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from surgkit.errors import SurgkitError
from surgkit.video.protocols import PRESETS, default_preset, evaluate_predictions

# ------------------------------------------------------------------------------------ triplet AP


def _triplet_pred(rng, videos=3, frames=12):
    ys, ss, vids, fr = [], [], [], []
    for v in range(videos):
        y = (rng.random((frames, 100)) < 0.08).astype(np.float32)
        y[:, 94 + v] = rng.random(frames) < 0.5  # null triplets present: they must not count for AP_IVT
        ys.append(y)
        ss.append(rng.random((frames, 100)).astype(np.float32))
        vids += [f"VID{v:02d}"] * frames
        fr += list(range(frames))
    order = rng.permutation(len(vids))  # the gathered order is arbitrary: the protocol sorts by video/frame
    return {"scores": np.concatenate(ss)[order], "labels": np.concatenate(ys)[order],
            "video_ids": [vids[i] for i in order], "frames": np.asarray(fr)[order]}, ys, ss  # fmt: skip


def test_triplet_ap_is_per_video_with_null_triplets_excluded(monkeypatch):
    import ivtmetrics
    import ivtmetrics.recognition as ivt_recognition

    from ..metrics.test_triplet import _pre16_average_precision

    # the sklearn < 1.6 NaN rule behind published CholecT50 numbers (see tests/metrics/test_triplet.py)
    monkeypatch.setattr(ivt_recognition, "average_precision_score", _pre16_average_precision)
    pred, ys, ss = _triplet_pred(np.random.default_rng(0))
    m = evaluate_predictions("triplet", pred, 100)
    rec = ivtmetrics.Recognition(num_class=100)
    for y, s in zip(ys, ss, strict=True):
        rec.update(y.astype(int), s)
        rec.video_end()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = {
            c: rec.compute_video_AP(c, ignore_null=True)["mAP"] for c in ("i", "v", "t", "iv", "it", "ivt")
        }
        with_null = rec.compute_video_AP("ivt", ignore_null=False)["mAP"]
        global_ap = rec.compute_global_AP("ivt", ignore_null=True)["mAP"]
    for c, v in ref.items():
        assert m[c] == pytest.approx(v, abs=1e-12), c
    assert m["primary"] == "ivt" and "94-99" in m["protocol"]["ivt_classes"]
    assert abs(m["ivt"] - with_null) > 1e-4 and abs(m["ivt"] - global_ap) > 1e-4  # both mistakes would show


# ------------------------------------------------------------------------------------ CVS / action


def test_cvs_classes_accuracy_and_map_as_the_official_merge():
    from sklearn.metrics import accuracy_score, average_precision_score

    rng = np.random.default_rng(1)
    labels = np.array([0, 1, 2, 1, 0, 2, 2, 1, 0, 1])  # class 3 of 4 absent from the test set
    logits = rng.normal(size=(10, 4)) + np.eye(4)[labels] * 1.5
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    pred = {"scores": probs, "labels": labels, "video_ids": [f"v{i // 3}" for i in range(10)],
            "frames": np.arange(10)}  # fmt: skip
    m = evaluate_predictions("cvs", pred, 4, cvs_form="4class")
    assert m["accuracy"] == pytest.approx(accuracy_score(labels, probs.argmax(1)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the absent class: sklearn warns and returns 0, which np.mean keeps
        ref_map = np.mean([average_precision_score(labels == k, probs[:, k]) for k in range(4)])
    assert m["map"] == pytest.approx(ref_map, abs=1e-12) and m["primary"] == "map"
    shuffled = {**pred, "scores": probs[rng.permutation(10)]}  # a constant or label-blind mAP would not move
    assert evaluate_predictions("cvs", shuffled, 4, cvs_form="4class")["map"] != pytest.approx(m["map"])
    action = evaluate_predictions("action", pred, 4)
    assert action["primary"] == "accuracy" and action["map"] == pytest.approx(ref_map)


def test_cvs_criteria_form_uses_the_endoscapes_benchmark():
    probs = np.array([[0.9, 0.2, 0.1], [0.4, 0.7, 0.2], [0.2, 0.1, 0.8], [0.6, 0.6, 0.3]])
    labels = np.array([[1, 0, 0], [0, 1, 1 / 3], [0, 0, 2 / 3], [1, 2 / 3, 0]])
    m = evaluate_predictions("cvs", {"scores": probs, "labels": labels, "video_ids": list("abcd"),
                                     "frames": np.arange(4)}, 3, cvs_form="criteria")  # fmt: skip
    assert m["protocol"]["name"] == "endoscapes-cvs201" and 0 < m["map"] <= 1


def test_cvs_label_forms():
    from surgkit.video.finetune_data import cvs_label

    assert cvs_label((1.0, 2 / 3, 1 / 3), "mean_of_annotators", "4class") == 2  # majority per criterion
    assert cvs_label((0.5, 0.5, 0.5), "mean_of_annotators", "4class") == 0  # round half to even
    assert cvs_label((2, 1, 2), "0-2", "6class") == 5
    assert cvs_label((2, 2, 2), "0-2", "6class") is None  # score 6 dropped, as the official lists
    assert cvs_label((2, 1, 0), "0-2", "4class") == 1  # fully achieved criteria only
    np.testing.assert_allclose(cvs_label((2, 1, 0), "0-2", "criteria"), [1.0, 0.5, 0.0])
    with pytest.raises(SurgkitError, match="0/1/2"):
        cvs_label((1, 0, 0), "mean_of_annotators", "6class")


# -------------------------------------------------------------------------------------------- phase


def test_phase_reports_strict_and_relaxed_beside_each_other():
    from surgkit.metrics import phase

    rng = np.random.default_rng(3)
    gs = [np.repeat(np.arange(7), n) for n in (20, 15)]
    ps = [np.clip(g + (rng.random(g.size) < 0.2) * rng.choice([-1, 1], g.size), 0, 6) for g in gs]
    scores = np.concatenate([np.eye(7)[p] for p in ps])
    pred = {"scores": scores, "labels": np.concatenate(gs), "frames": np.concatenate([np.arange(g.size) for g in gs]),
            "video_ids": ["a"] * gs[0].size + ["b"] * gs[1].size}  # fmt: skip
    m = evaluate_predictions("phase", pred, 7, fps=1.0)
    strict = phase.evaluate(gs, ps, 7, protocol="strict")
    relaxed = phase.evaluate(gs, ps, 7, protocol="relaxed", fps=1.0)
    hand = np.mean([np.mean(g == p) for g, p in zip(gs, ps, strict=True)])  # video-level accuracy
    assert m["video_accuracy"] == pytest.approx(hand) == pytest.approx(strict["video_accuracy"])
    assert m["jaccard"] == pytest.approx(strict["jaccard"])
    assert (
        m["relaxed"]["jaccard"] == pytest.approx(relaxed["jaccard"])
        and m["relaxed"]["jaccard"] > m["jaccard"]
    )
    assert m["relaxed"]["video_accuracy"] > m["video_accuracy"]  # boundary errors forgiven
    half = evaluate_predictions("phase", pred, 7, fps=1 / 3)  # every 3rd frame: a 10-s window is not whole
    assert "relaxed" not in half and any("not a whole number" in n for n in half["protocol"]["notes"])


# ------------------------------------------------------------------------------------ augmentation


def test_rand_augment_spec_and_one_plan_per_clip():
    from surgkit.video.augment import RandAugmentSpec, rand_augment_clip, rand_augment_plan

    spec = RandAugmentSpec.parse("rand-m7-n4-mstd0.5-inc1")
    assert spec == RandAugmentSpec(magnitude=7.0, num_ops=4, magnitude_std=0.5, increasing=True)
    with pytest.raises(SurgkitError, match="cannot read"):
        RandAugmentSpec.parse("rand-m7-x3")
    plans = [rand_augment_plan(spec, np.random.default_rng(s)) for s in range(400)]
    kept = np.mean([len(p) for p in plans])
    assert kept == pytest.approx(2.0, abs=0.2)  # 4 ops, each kept with probability 0.5
    names = {n for p in plans for n, _ in p}
    assert "PosterizeIncreasing" in names and "Posterize" not in names  # the 'inc1' op list
    frame = np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    clip = np.stack([frame, frame, frame])
    out = rand_augment_clip(clip, spec, np.random.default_rng(5))
    assert out.shape == clip.shape and out.dtype == np.uint8
    assert np.array_equal(out[0], out[1]) and np.array_equal(out[1], out[2])  # same ops and args every frame


def test_crop_erasing_and_mixup_maths():
    from surgkit.video.augment import (
        Mixup,
        cutmix_box,
        random_erase_cube,
        random_resized_crop_box,
        resized_crop_flip,
        smooth_mix_targets,
        soft_target_cross_entropy,
    )

    rng = np.random.default_rng(0)
    for _ in range(200):
        top, left, h, w = random_resized_crop_box(40, 60, (0.7, 1.0), (0.75, 1.3333), rng)
        assert 0 <= top <= 40 - h and 0 <= left <= 60 - w and 0.6 <= h * w / 2400 <= 1.0
    assert random_resized_crop_box(10, 100, (0.99, 1.0), (0.75, 1.3333), rng) == (
        0,
        43,
        10,
        13,
    )  # central fallback: (100 − 13) // 2
    clip = torch.randn(3, 4, 16, 16)
    assert resized_crop_flip(clip, 8, (0.7, 1.0), (0.75, 1.33), True, rng).shape == (3, 4, 8, 8)
    erased = random_erase_cube(clip, 1.0, np.random.default_rng(2))
    changed = (erased != clip).any(0)  # T × H × W
    assert changed.any() and all(
        torch.equal(changed[0], changed[t]) for t in range(4)
    )  # one box for all frames
    assert not torch.equal(erased[:, 0][:, changed[0]], erased[:, 1][:, changed[0]])  # fresh noise per frame
    (yl, yh, xl, xh), lam = cutmix_box(20, 20, 0.75, np.random.default_rng(0))
    assert lam == pytest.approx(1 - (yh - yl) * (xh - xl) / 400)
    t = smooth_mix_targets(torch.tensor([0, 2]), 3, lam=0.7, smoothing=0.1)
    expected0 = 0.7 * np.array([0.1 / 3 + 0.9, 0.1 / 3, 0.1 / 3]) + 0.3 * np.array(
        [0.1 / 3, 0.1 / 3, 0.1 / 3 + 0.9]
    )
    np.testing.assert_allclose(t[0].numpy(), expected0, atol=1e-6)
    assert torch.allclose(t.sum(1), torch.ones(2))
    logits = torch.randn(4, 3)
    y = torch.tensor([0, 1, 2, 1])
    soft = soft_target_cross_entropy(logits, smooth_mix_targets(y, 3, 1.0, 0.1))
    assert soft == pytest.approx(
        torch.nn.functional.cross_entropy(logits, y, label_smoothing=0.1).item(), abs=1e-6
    )
    x, target = Mixup(3)(torch.randn(4, 3, 2, 8, 8), y, np.random.default_rng(1))
    assert target.shape == (4, 3) and torch.allclose(target.sum(1), torch.ones(4))
    with pytest.raises(SurgkitError, match="even batch"):
        Mixup(3)(torch.randn(3, 3, 2, 8, 8), y[:3], np.random.default_rng(1))


# ---------------------------------------------------------------------------------------- presets


def test_presets_are_the_official_scripts():
    assert PRESETS["triplet"]["warmup_epochs"] == 5 and PRESETS["triplet"]["mixup"] == 0  # BCE, no mixup
    assert (PRESETS["phase"]["epochs"], PRESETS["phase"]["base_lr"], PRESETS["phase"]["batch_size"]) == (
        50,
        5e-4,
        32,
    )
    assert (
        PRESETS["phase-m2cai16"]["base_lr"] == 1e-4 and default_preset("phase", "m2cai16") == "phase-m2cai16"
    )
    assert PRESETS["cvs-endoscapes"]["num_frames"] == 8 and PRESETS["cvs-endoscapes"]["base_lr"] == 5e-5
    assert PRESETS["cvs-cholec80"]["cvs_form"] == "6class" and PRESETS["cvs-cholec80"]["warmup_epochs"] == 50
    assert all(
        p["rand_augment"] == "rand-m7-n4-mstd0.5-inc1" and p["reprob"] == 0.25 for p in PRESETS.values()
    )
    from surgkit.video.finetune import FinetuneSettings

    s = FinetuneSettings.from_preset(None, "cholec80", "/x", "phase")
    assert s.preset == "phase" and s.cut_black and s.min_lr == 1e-6
    with pytest.raises(SurgkitError, match="is for task 'triplet'"):
        FinetuneSettings.from_preset("triplet", "cholec80", "/x", "phase")
