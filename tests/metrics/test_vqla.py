"""VQLA metrics (spec §4.2, §4.3): sklearn PRF, the legacy-mIoU fixture, true IoU properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from surgkit.errors import SurgkitError
from surgkit.metrics.vqla import (
    accuracy,
    box_iou,
    cxcywh_to_xyxy,
    evaluate,
    legacy_iou,
    miou,
    miou_legacy,
    prf_macro,
    vqla_gt_to_normalized,
)


def test_spec_prf_fixture():
    assert accuracy([0, 0, 1, 2], [0, 1, 1, 3]) == 0.5
    p, r, f = prf_macro([0, 0, 1, 2], [0, 1, 1, 3])
    assert (p, r) == (pytest.approx(0.625), pytest.approx(0.625)) and f == pytest.approx(1 / 3)


def test_prf_equals_sklearn_macro_zero_division_one():
    rng = np.random.default_rng(0)
    for _ in range(20):
        t, p = rng.integers(0, 18, 40), rng.integers(0, 18, 40)
        ref = precision_recall_fscore_support(t, p, average="macro", zero_division=1)
        assert prf_macro(t, p) == pytest.approx(ref[:3])
        assert accuracy(t, p) == pytest.approx(accuracy_score(t, p))


GT_PIXEL = [101, 201, 400, 500]


def test_spec_iou_fixture_legacy_vs_true():
    gt = vqla_gt_to_normalized(GT_PIXEL)
    np.testing.assert_allclose(gt, [0.078125, 0.1953125, 0.31171875, 0.48730469], atol=1e-8)
    cases = [
        (gt, 1.0, 1.0),
        ([0.6, 0.6, 0.8, 0.8], 0.262880, 0.0),
        (gt + [0.1, 0, 0.1, 0], 0.850029, 0.400468),
    ]
    for pred, legacy, true in cases:
        assert legacy_iou(pred, gt) == pytest.approx(legacy, abs=1e-6)
        assert box_iou(pred, gt) == pytest.approx(true, abs=1e-6)


def test_legacy_quirk_inflates_disjoint_and_random_boxes():
    # the +1 on normalised coordinates and the missing clamp: disjoint boxes are not 0
    a, b = np.array([0.0, 0.0, 0.1, 0.1]), np.array([0.8, 0.8, 0.9, 0.9])
    assert box_iou(a, b) == 0.0 and legacy_iou(a, b) > 0.03
    gt = vqla_gt_to_normalized(GT_PIXEL)
    assert box_iou([0.6, 0.6, 0.8, 0.8], gt) == 0.0 and legacy_iou([0.6, 0.6, 0.8, 0.8], gt) > 0.26
    rng = np.random.default_rng(1)
    c = rng.random((2000, 4))
    boxes_a = np.concatenate([np.minimum(c[:, :2], c[:, 2:]), np.maximum(c[:, :2], c[:, 2:])], axis=1)
    c = rng.random((2000, 4))
    boxes_b = np.concatenate([np.minimum(c[:, :2], c[:, 2:]), np.maximum(c[:, :2], c[:, 2:])], axis=1)
    assert miou_legacy(boxes_a, boxes_b) == pytest.approx(0.48, abs=0.03)  # spec: random pairs ~0.48
    assert miou(boxes_a, boxes_b) < 0.2


def test_evaluate_labels_legacy_score():
    gt = vqla_gt_to_normalized([GT_PIXEL, [1, 1, 640, 512]])
    pred = cxcywh_to_xyxy([[0.2, 0.35, 0.2333, 0.29], [0.25, 0.25, 0.5, 0.5]])
    res = evaluate([3, 0], [3, 1], pred, gt)
    assert res["accuracy"] == 0.5
    assert res["miou"] == pytest.approx(np.mean(box_iou(pred, gt)))
    assert res["miou_legacy"] == pytest.approx(np.mean(legacy_iou(pred, gt)))
    assert "LEGACY" in res["protocol"]["miou_legacy"]


def test_pairwise_form_and_bad_boxes():
    a = np.array([[0, 0, 2, 2], [1, 1, 3, 3]], float)
    pair = box_iou(a[:, None], a[None, :])
    np.testing.assert_allclose(pair, [[1, 1 / 7], [1 / 7, 1]])
    with pytest.raises(SurgkitError, match="x2 < x1"):
        box_iou([2, 0, 1, 1], [0, 0, 1, 1])
    with pytest.raises(SurgkitError, match="non-finite"):
        box_iou([0, 0, np.nan, 1], [0, 0, 1, 1])
    with pytest.raises(SurgkitError, match="2 true answers but 1"):
        accuracy([0, 1], [0])


coord = st.floats(0, 1, allow_nan=False)
box = st.tuples(coord, coord, coord, coord).map(
    lambda c: (min(c[0], c[2]), min(c[1], c[3]), max(c[0], c[2]), max(c[1], c[3]))
)


@settings(max_examples=100, deadline=None)
@given(box, box)
def test_iou_symmetric_and_in_range(a, b):
    ab, ba = box_iou(a, b), box_iou(b, a)
    assert ab == pytest.approx(ba, abs=1e-12)
    assert 0.0 <= ab <= 1.0 + 1e-12
    assert legacy_iou(a, b) == pytest.approx(legacy_iou(b, a), abs=1e-12)
