"""Clip action recognition (SurgVISTA merge) and Endoscapes CVS metrics against sklearn (spec §3.3, §4.1)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, top_k_accuracy_score

from surgkit.errors import SurgkitError
from surgkit.metrics.classification import clip_metrics, cvs_metrics, merge_views, softmax, topk_accuracy


def _views(rng, n_clips=30, n_views=3, n_classes=6):
    labels = rng.integers(0, n_classes - 1, n_clips)  # the last class never occurs
    clip_ids = np.repeat(np.arange(n_clips), n_views)
    logits = rng.normal(size=(n_clips * n_views, n_classes)) + 2.0 * np.eye(n_classes)[labels[clip_ids]]
    return logits, labels[clip_ids], clip_ids, labels


def test_clip_metrics_equal_sklearn_on_merged_softmax():
    rng = np.random.default_rng(0)
    logits, view_labels, clip_ids, labels = _views(rng)
    probs = softmax(logits).reshape(30, 3, 6).mean(axis=1)  # reference merge written out
    res = clip_metrics(logits, view_labels, clip_ids, topk=(1, 5))
    assert res["accuracy"] == pytest.approx(accuracy_score(labels, probs.argmax(1)))
    assert res["top5_accuracy"] == pytest.approx(top_k_accuracy_score(labels, probs, k=5, labels=range(6)))
    aps = [
        average_precision_score(labels == c, probs[:, c]) if (labels == c).any() else 0.0 for c in range(6)
    ]
    assert res["ap_per_class"][5] == 0.0  # absent class counts as AP 0, as the reference
    assert res["map"] == pytest.approx(np.mean(aps))
    nan_variant = clip_metrics(logits, view_labels, clip_ids, absent_class="nan")
    assert nan_variant["map"] == pytest.approx(np.mean(aps[:5]))
    assert res["num_clips"] == 30 and res["protocol"]["name"] == "surgvista-clip-merge"


def test_merge_views_keeps_clip_order_and_checks_labels():
    names, probs, labels = merge_views(
        np.log([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]]), [1, 0, 1], ["b", "a", "b"]
    )
    assert names == ["b", "a"] and labels.tolist() == [1, 0]
    np.testing.assert_allclose(probs, [[0.35, 0.65], [0.6, 0.4]])
    with pytest.raises(SurgkitError, match="clip 'b': views disagree"):
        merge_views(np.zeros((2, 2)), [0, 1], ["b", "b"])


def test_topk_accuracy_and_label_checks():
    s = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]])
    assert topk_accuracy(s, [2, 0], 1) == 0.5 and topk_accuracy(s, [2, 0], 2) == 1.0
    with pytest.raises(SurgkitError, match="label 3 at index 1 outside 0..2"):
        topk_accuracy(s, [0, 3])
    s[1, 1] = np.inf
    with pytest.raises(SurgkitError, match=r"index \(1, 1\)"):
        topk_accuracy(s, [0, 1])


def test_cvs_pooled_equals_sklearn_per_criterion():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, (50, 3)) / 3.0  # means of 3 annotators
    probs = np.clip(labels + rng.normal(0, 0.3, labels.shape), 0, 1)
    res = cvs_metrics(probs, labels)
    hard = np.round(labels).astype(int)
    for k in range(3):
        assert res["ap_per_criterion"][k] == pytest.approx(average_precision_score(hard[:, k], probs[:, k]))
        assert res["f1_per_criterion"][k] == pytest.approx(f1_score(hard[:, k], probs[:, k] > 0.5))
    assert res["map"] == pytest.approx(np.mean(res["ap_per_criterion"]))
    assert res["brier"] == pytest.approx(np.mean((probs - labels) ** 2))  # against unrounded labels
    assert res["protocol"]["name"] == "endoscapes-cvs201"


def test_cvs_rounds_half_even_and_nan_for_criterion_without_positive():
    labels = np.array([[0.0, 1 / 3, 0.5], [2 / 3, 0.0, 0.5], [1.0, 0.0, 0.5]])
    probs = np.array([[0.1, 0.2, 0.9], [0.8, 0.3, 0.2], [0.7, 0.1, 0.6]])
    res = cvs_metrics(probs, labels)
    assert np.isnan(res["ap_per_criterion"][1]) and np.isnan(res["ap_per_criterion"][2])  # 0.5 -> 0
    assert res["map"] == pytest.approx(res["ap_per_criterion"][0])


def test_cvs_per_video_aggregation():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, (40, 3)).astype(float)
    probs = rng.random((40, 3))
    vids = np.repeat([1, 2, 3, 4], 10)
    res = cvs_metrics(probs, labels, video_ids=vids, agg="per_video")
    expected = [
        np.nanmean(
            [
                average_precision_score(labels[vids == v, k], probs[vids == v, k])
                if labels[vids == v, k].any()
                else np.nan
                for v in (1, 2, 3, 4)
            ]
        )
        for k in range(3)
    ]
    np.testing.assert_allclose(res["ap_per_criterion"], expected)
    with pytest.raises(SurgkitError, match="needs video_ids"):
        cvs_metrics(probs, labels, agg="per_video")
    with pytest.raises(SurgkitError, match=r"CVS label 1.5 at index \(0, 0\)"):
        cvs_metrics(probs[:1], np.array([[1.5, 0, 0]]))
