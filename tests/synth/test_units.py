"""Small hand-computed cases: the VQLA box convention, instrument drawing, minimum-jerk transits."""

from __future__ import annotations

import numpy as np

from surgkit.synth.instruments import draw_prims, instrument_prims
from surgkit.synth.motion import min_jerk
from surgkit.synth.workflow import triplet
from surgkit.synth.writers.vqla import quadrant, state_of, vqla_box
from surgkit.vocab import VQLA_ANSWERS


def test_vqla_box_convention_round_trips_through_the_legacy_normalisation():
    # hand-computed: a 128x128 frame box (32, 16, 96, 64) (exclusive x2/y2) -> x10 and x8 scales
    assert vqla_box((32, 16, 96, 64), 128, 128) == (321, 129, 960, 512)
    assert vqla_box((0, 0, 128, 128), 128, 128) == (1, 1, 1280, 1024)
    # the Surgical-VQLA reader subtracts 1 and divides by (1280, 1024): the true normalised box comes back
    rng = np.random.default_rng(0)
    for _ in range(50):
        w, h = 224, 224
        x1, y1 = rng.integers(0, 200, 2)
        x2, y2 = x1 + rng.integers(1, w - x1), y1 + rng.integers(1, h - y1)
        b = vqla_box((int(x1), int(y1), int(x2), int(y2)), w, h)
        norm = np.array([(b[0] - 1) / 1280, (b[1] - 1) / 1024, b[2] / 1280, b[3] / 1024])
        np.testing.assert_allclose(norm, [x1 / w, y1 / h, x2 / w, y2 / h], atol=1 / 1024)


def test_vqla_states_and_quadrants():
    assert state_of(triplet("clipper", "clip", "cystic_duct")) == "Clipping"
    assert state_of(triplet("hook", "dissect", "gallbladder")) == "Cauterization"
    assert state_of(triplet("grasper", "retract", "gallbladder")) == "Retraction"
    assert state_of(94) == "Idle" and "Idle" in VQLA_ANSWERS
    assert quadrant((0, 0, 10, 10), 100, 100) == "left-top"
    assert quadrant((60, 70, 90, 99), 100, 100) == "right-bottom"


def test_instrument_masks_are_exactly_the_drawn_pixels():
    for cls in range(6):
        frame = np.zeros((96, 96, 3), np.uint8)
        mask = np.zeros((96, 96), np.uint8)
        prims = instrument_prims(cls, np.array([40.0, 50.0]), np.array([130.0, 120.0]), 0.8, 9.0, loaded=True)
        draw_prims(frame, [(mask, 1)], prims)
        drawn = frame.any(axis=2)
        assert mask.sum() > 50
        # frame-only decorations (highlights, bands, holes) lie inside the masked geometry
        assert not (drawn & (mask == 0)).any()
        assert (mask[drawn.nonzero()] == 1).all() and drawn[mask == 1].all()


def test_min_jerk_profile():
    p = min_jerk(np.zeros(2), np.array([10.0, 0.0]), 10)
    assert p.shape == (10, 2) and np.allclose(p[-1], [10, 0])
    np.testing.assert_allclose(
        p[4, 0], 10 * (10 * 0.5**3 - 15 * 0.5**4 + 6 * 0.5**5)
    )  # tau = 0.5 -> midpoint
    assert (np.diff(p[:, 0]) > 0).all()
