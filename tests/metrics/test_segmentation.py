"""Dice on hand-computed cases, and against sklearn's F1 (Dice = pixel F1)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from surgkit.metrics.segmentation import confusion, dice_scores


def test_hand_case():
    truth = np.array([[0, 1, 1], [0, 2, 2], [0, 0, 2]])
    pred = np.array([[0, 1, 0], [1, 2, 2], [0, 0, 0]])
    # class 1: P = {(0,1), (1,0)}, T = {(0,1), (0,2)}, |P∩T| = 1 -> 2/4; class 2: P = 2, T = 3, ∩ = 2 -> 4/5
    # background: P = 5, T = 4, ∩ = 3 -> 6/9; tool vs background: P = 4, T = 5, ∩ = 3 -> 6/9
    out = dice_scores([(pred, truth)], 3)
    assert out["per_class"] == pytest.approx([6 / 9, 0.5, 0.8])
    assert out["mean_dice"] == pytest.approx(0.65) and out["binary_dice"] == pytest.approx(6 / 9)
    assert confusion(pred, truth, 3).sum() == 9


def test_pooled_over_frames_and_absent_classes():
    empty = np.zeros((2, 2), int)
    tool = np.array([[1, 1], [0, 0]])
    # frame 1 has no tool in either map: pooled, it adds nothing; frame 2 misses the tool entirely
    out = dice_scores([(empty, empty), (empty, tool)], 3)
    assert out["per_class"][1] == 0.0 and out["per_class"][2] is None and out["mean_dice"] == 0.0


def test_equals_sklearn_f1():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, (5, 16, 16))
    pred = np.where(rng.random(truth.shape) < 0.7, truth, rng.integers(0, 4, truth.shape))
    out = dice_scores(list(zip(pred, truth, strict=True)), 4)
    want = f1_score(truth.ravel(), pred.ravel(), labels=[0, 1, 2, 3], average=None)
    np.testing.assert_allclose(out["per_class"], want, rtol=1e-12)
    with pytest.raises(ValueError, match="labels must be in"):
        dice_scores([(pred, truth)], 3)
