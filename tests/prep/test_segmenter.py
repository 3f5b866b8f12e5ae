"""The mask check of the demo: annotated pairs, the colour-threshold baseline, a SegFormer that learns."""

from __future__ import annotations

import numpy as np

from surgkit.metrics.segmentation import dice_scores
from surgkit.prep import masks
from surgkit.prep.demo_dice import user_split
from surgkit.prep.segmenter import apply_colour_threshold, fit_colour_threshold, train_segmenter


def _toy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy grey frames with a reddish square (the 'tool') at a random place."""
    rng = np.random.default_rng(seed)
    images = rng.integers(60, 120, (n, 32, 32, 3)).astype(np.uint8)
    labels = np.zeros((n, 32, 32), np.uint8)
    for i in range(n):
        y, x = rng.integers(0, 20, 2)
        images[i, y : y + 12, x : x + 12, 0] = rng.integers(170, 230, (12, 12))
        labels[i, y : y + 12, x : x + 12] = 1
    return images, labels


def test_colour_threshold_finds_the_rule():
    images, labels = _toy(6, 0)
    rule = fit_colour_threshold(images, labels)
    assert rule["feature"] in ("r", "saturation") and rule["sign"] == 1 and rule["dice"] == 1.0
    np.testing.assert_array_equal(apply_colour_threshold(images, rule), labels)


def test_user_split_holds_out_whole_users():
    vids = [f"Suturing_{u}00{i}_capture1" for u in "BCDE" for i in (1, 2)]
    train, test = user_split(vids)
    assert {v.split("_")[1][0] for v in test} == {"D", "E"} and not set(train) & set(test)
    assert user_split(vids[:4]) == (vids[:2], vids[2:4])  # two users: the last one is held out


def test_segformer_learns_the_toy_tool(tmp_path):
    images, labels = _toy(64, 1)
    folder = train_segmenter(images, labels, tmp_path / "seg", image_size=32, steps=80, lr=3e-3)
    test_images, test_labels = _toy(16, 2)
    pred = masks.ModelMasks(folder, input_size=32).predict(test_images)
    assert dice_scores(zip(pred, test_labels, strict=True), 2)["binary_dice"] > 0.8
