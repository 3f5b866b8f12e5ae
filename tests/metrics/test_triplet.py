"""Triplet mAP (spec §2) against ivtmetrics 0.1.5, the §2.8 fixture and the streaming API."""

from __future__ import annotations

import warnings

import ivtmetrics
import ivtmetrics.recognition as ivt_recognition
import numpy as np
import pytest
from sklearn.metrics import average_precision_score as sk_average_precision

from surgkit.errors import SurgkitError
from surgkit.metrics.triplet import (
    COMPONENTS,
    TripletAP,
    component_classes,
    evaluate,
    extract_component,
    top_k,
)


def _pre16_average_precision(y_true, y_score, average=None):
    """sklearn AP as scikit-learn 1.1-1.5 returned it: -0.0 for a column without positives.

    ivtmetrics 0.1.5 turns exactly the string "-0.0" into NaN (spec §2.3), so patching this in
    reproduces the reference behaviour of published CholecT50 numbers without a downgrade.
    """
    assert average is None
    y_true, y_score = np.asarray(y_true), np.asarray(y_score)
    out = np.empty(y_true.shape[1])
    for k in range(y_true.shape[1]):
        out[k] = -0.0 if not y_true[:, k].any() else sk_average_precision(y_true[:, k], y_score[:, k])
    return out


@pytest.fixture
def pre16_ivtmetrics(monkeypatch):
    monkeypatch.setattr(ivt_recognition, "average_precision_score", _pre16_average_precision)
    return ivtmetrics


def _reference(videos, component, mode, ignore_null):
    rec = ivtmetrics.Recognition(num_class=100)
    for y, s in videos:
        rec.update(y, s)
        rec.video_end()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fn = rec.compute_video_AP if mode == "video" else rec.compute_global_AP
        return fn(component, ignore_null=ignore_null)


def _random_videos(rng, n_videos=3, frames=(10, 22), p=0.08, ties=False):
    videos = []
    for _ in range(n_videos):
        f = int(rng.integers(*frames))
        y = (rng.random((f, 100)) < p).astype(int)
        s = rng.random((f, 100))
        if ties:
            s = np.round(s, 1)
        videos.append((y, s))
    return videos


def _assert_same(ours_ap, ours_map, ref):
    ref_ap = np.asarray(ref["AP"], dtype=float)
    np.testing.assert_array_equal(np.isnan(ours_ap), np.isnan(ref_ap))
    np.testing.assert_allclose(ours_ap, ref_ap, atol=1e-12, equal_nan=True)
    assert ours_map == pytest.approx(ref["mAP"], abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("mode", ["video", "global"])
def test_equals_ivtmetrics_pre16_semantics_including_nan_classes(pre16_ivtmetrics, seed, mode):
    rng = np.random.default_rng(seed)
    videos = _random_videos(rng, p=0.04, ties=seed == 2)
    for ignore_null in (False, True):
        res = evaluate([y for y, _ in videos], [s for _, s in videos], mode=mode, ignore_null=ignore_null)
        for comp in COMPONENTS:
            ref = _reference(videos, comp, mode, ignore_null)
            _assert_same(res["per_class"][comp], res[comp], ref)
    # the data really exercises the NaN rule: many classes lack positives in some video
    assert sum(int((~y.any(axis=0)).sum()) for y, _ in videos) > 50
    assert not np.concatenate([y for y, _ in videos]).any(axis=0).all()  # and some class in none


def test_equals_unpatched_ivtmetrics_when_every_class_has_positives():
    # with sklearn >= 1.6 the reference only agrees when the NaN rule never fires (spec §2.7)
    rng = np.random.default_rng(11)
    videos = []
    for _ in range(3):
        y = (rng.random((40, 100)) < 0.1).astype(int)
        y[rng.integers(0, 40, 100), np.arange(100)] = 1  # every class positive in every video
        videos.append((y, rng.random((40, 100))))
    for mode in ("video", "global"):
        res = evaluate(
            [y for y, _ in videos], [s for _, s in videos], mode=mode, components=("ivt", "i", "v")
        )
        for comp in ("ivt", "i", "v"):
            _assert_same(res["per_class"][comp], res[comp], _reference(videos, comp, mode, False))


def test_unpatched_ivtmetrics_counts_absent_classes_as_zero_but_surgkit_does_not():
    rng = np.random.default_rng(3)
    videos = _random_videos(rng, n_videos=2)
    ref = _reference(videos, "ivt", "video", False)
    res = evaluate([y for y, _ in videos], [s for _, s in videos], components=("ivt",))
    assert not np.isnan(ref["AP"]).any()  # sklearn >= 1.6 + ivtmetrics 0.1.5: the version trap
    assert np.isnan(res["per_class"]["ivt"]).any()
    assert res["ivt"] > ref["mAP"]


def _fixture_videos():
    # spec §2.8: positives and (score17, score60) per frame
    v1 = [({17}, 0.9, 0.2), ({17, 60}, 0.6, 0.8), ({60}, 0.7, 0.4), (set(), 0.1, 0.3)]
    v2 = [({17}, 0.8, 0.1), ({17}, 0.3, 0.6), (set(), 0.5, 0.2), ({17}, 0.4, 0.7)]
    out = []
    for video in (v1, v2):
        y, s = np.zeros((4, 100), int), np.zeros((4, 100))
        for f, (pos, s17, s60) in enumerate(video):
            y[f, list(pos)] = 1
            s[f, 17], s[f, 60] = s17, s60
        out.append((y, s))
    return out


def test_spec_fixture_2_8():
    videos = _fixture_videos()
    ys, ss = [y for y, _ in videos], [s for _, s in videos]
    vid = evaluate(ys, ss, mode="video")
    glo = evaluate(ys, ss, mode="global")
    assert vid["per_class"]["ivt"][17] == pytest.approx(0.819444, abs=1e-6)
    assert vid["per_class"]["ivt"][60] == pytest.approx(1.0)
    assert vid["ivt"] == pytest.approx(0.909722, abs=1e-6)
    assert glo["per_class"]["ivt"][17] == pytest.approx(0.826190, abs=1e-6)
    assert glo["per_class"]["ivt"][60] == pytest.approx(0.75)
    assert glo["ivt"] == pytest.approx(0.788095, abs=1e-6)
    # instruments 0 and 2 carry the values of triplets 17 and 60; target 0 is perfect
    np.testing.assert_allclose(vid["per_class"]["i"][[0, 2]], vid["per_class"]["ivt"][[17, 60]])
    np.testing.assert_allclose(glo["per_class"]["i"][[0, 2]], glo["per_class"]["ivt"][[17, 60]])
    assert vid["t"] == pytest.approx(1.0) and glo["t"] == pytest.approx(1.0)
    assert np.isnan(vid["per_class"]["ivt"][0])  # never positive -> NaN, not 0
    assert vid["protocol"]["mode"] == "video" and "NaN" in vid["protocol"]["nan_rule"]


def test_component_extraction_matches_ivtmetrics_disentangle():
    rng = np.random.default_rng(5)
    scores = rng.random((7, 100))
    ref = ivtmetrics.Disentangle()
    for comp in COMPONENTS:
        np.testing.assert_array_equal(extract_component(scores, comp), ref.extract(scores, comp))
    assert [len(component_classes(c)) for c in COMPONENTS] == [6, 10, 15, 26, 59, 100]
    assert list(component_classes("iv")[:5]) == [0, 1, 2, 8, 9]


def test_ignore_null_drops_only_the_last_six_ivt_classes():
    rng = np.random.default_rng(8)
    videos = _random_videos(rng, p=0.3)
    ys, ss = [y for y, _ in videos], [s for _, s in videos]
    full, no_null = evaluate(ys, ss), evaluate(ys, ss, ignore_null=True)
    np.testing.assert_array_equal(no_null["per_class"]["ivt"], full["per_class"]["ivt"][:94])
    for comp in ("i", "v", "t", "iv", "it"):
        np.testing.assert_array_equal(no_null["per_class"][comp], full["per_class"][comp])


def test_video_ids_grouping_equals_per_video_lists():
    rng = np.random.default_rng(9)
    videos = _random_videos(rng, n_videos=3, p=0.2)
    ids = np.concatenate(
        [np.full(len(y), name) for name, (y, _) in zip(["b", "a", "c"], videos, strict=True)]
    )
    flat = evaluate(np.concatenate([y for y, _ in videos]), np.concatenate([s for _, s in videos]), ids)
    lists = evaluate([y for y, _ in videos], [s for _, s in videos])
    for comp in COMPONENTS:
        np.testing.assert_allclose(flat["per_class"][comp], lists["per_class"][comp], equal_nan=True)
    assert flat["num_videos"] == 3
    # frames of the videos interleaved (AP ignores frame order within a video): same per-video result
    y_all, s_all = np.concatenate([y for y, _ in videos]), np.concatenate([s for _, s in videos])
    order = rng.permutation(len(ids))
    mixed = evaluate(y_all[order], s_all[order], ids[order])
    for comp in COMPONENTS:
        np.testing.assert_allclose(mixed["per_class"][comp], lists["per_class"][comp], equal_nan=True)
    assert mixed["num_videos"] == 3 and mixed["num_frames"] == len(ids)


def test_topk_equals_ivtmetrics():
    rng = np.random.default_rng(4)
    videos = _random_videos(rng, p=0.1)
    rec = ivtmetrics.Recognition(num_class=100)
    for y, s in videos:
        rec.update(y, s)
        rec.video_end()
    y, s = np.concatenate([v[0] for v in videos]), np.concatenate([v[1] for v in videos])
    for comp in ("ivt", "i", "iv"):
        for k in (1, 5, 10):
            assert top_k(y, s, k, comp) == pytest.approx(rec.topK(k, comp))
    res = evaluate([v[0] for v in videos], [v[1] for v in videos], topk=(5,), components=("ivt",))
    assert res["topk"]["ivt@5"] == pytest.approx(rec.topK(5, "ivt"))


def test_streaming_equals_batch_and_has_no_double_append(pre16_ivtmetrics):
    rng = np.random.default_rng(6)
    videos = _random_videos(rng, n_videos=3, p=0.15)
    stream = TripletAP()
    ref = ivtmetrics.Recognition(num_class=100)
    for i, (y, s) in enumerate(videos):
        for chunk in np.array_split(np.arange(len(y)), 3):
            stream.update(y[chunk], s[chunk])
            ref.update(y[chunk], s[chunk])
        if i < len(videos) - 1:
            stream.video_end()
            ref.video_end()
    # last video left open: ivtmetrics appends it again on every compute call (spec §2.5)
    first = stream.compute("video")
    second = stream.compute("video")
    batch = evaluate([y for y, _ in videos], [s for _, s in videos])
    assert first["ivt"] == second["ivt"] == pytest.approx(batch["ivt"], abs=1e-15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.compute_video_AP("ivt")
        ref.compute_video_AP("ivt")
    assert len(ref.global_targets) == 4  # the reference bug: the open 3rd video appended twice
    assert stream.num_videos == 3


def test_bad_inputs_name_the_place():
    y, s = np.zeros((3, 100), int), np.full((3, 100), 0.5)
    s[2, 7] = np.nan
    with pytest.raises(SurgkitError, match="frame 2 .*class 7"):
        evaluate(y, s, np.array(["v1", "v1", "v1"]))
    with pytest.raises(SurgkitError, match="shape"):
        evaluate(y, np.zeros((3, 99)))
    with pytest.raises(SurgkitError, match="video v2 has no frames"):
        evaluate([y, y[:0]], [s, s[:0]], ["v1", "v2"])
    with pytest.raises(SurgkitError, match="mode"):
        evaluate(y, np.zeros((3, 100)), mode="epoch")
    with pytest.raises(SurgkitError, match="component"):
        extract_component(y, "vt")
    with pytest.raises(SurgkitError, match="no frames"):
        TripletAP().video_end()
    y[0, 0] = 2
    with pytest.raises(SurgkitError, match="0/1"):
        evaluate(y, np.zeros((3, 100)))
