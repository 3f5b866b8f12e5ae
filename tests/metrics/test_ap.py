"""The AP primitive (spec §0) against sklearn, its NaN rule and its invariances."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score

from surgkit.errors import SurgkitError
from surgkit.metrics.ap import average_precision, mean_ap


def test_spec_single_class_fixture():
    # spec §2.8: scores (.9, .8, .7, .6), labels (1, 0, 1, 0) -> 0.5*1 + 0.5*(2/3)
    assert average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.6]) == pytest.approx(0.833333333, abs=1e-9)


@pytest.mark.parametrize("decimals", [None, 1, 2])
def test_equals_sklearn_per_column_with_and_without_ties(decimals):
    rng = np.random.default_rng(7)
    for _ in range(40):
        n, c = int(rng.integers(1, 80)), int(rng.integers(1, 12))
        y = rng.random((n, c)) < rng.uniform(0.05, 0.6)
        s = rng.random((n, c))
        if decimals is not None:
            s = np.round(s, decimals)  # many ties: tied items must enter together
        ours = average_precision(y, s)
        for k in range(c):
            if y[:, k].any():
                assert ours[k] == pytest.approx(average_precision_score(y[:, k], s[:, k]), abs=1e-12)
            else:
                assert np.isnan(ours[k])


def test_no_positive_is_nan_by_default_and_configurable():
    y = np.array([[0, 1], [0, 0], [0, 1]])
    s = np.array([[0.2, 0.3], [0.5, 0.1], [0.9, 0.8]])
    ap = average_precision(y, s)
    assert np.isnan(ap[0]) and ap[1] == 1.0
    assert average_precision(y, s, no_positive=0.0)[0] == 0.0
    assert mean_ap(ap) == 1.0
    assert np.isnan(mean_ap([np.nan, np.nan]))


def test_all_tied_scores_give_prevalence():
    y = np.array([1, 0, 0, 1, 0])
    assert average_precision(y, np.full(5, 0.3)) == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("y", "s", "match"),
    [
        ([1, 0], [0.1, np.nan], r"non-finite value \(nan\) at index \(1,\)"),
        ([1, 2], [0.1, 0.2], r"must be 0/1, found 2 at index \(1,\)"),
        ([1, 0, 1], [0.1, 0.2], "shape"),
    ],
)
def test_bad_input_names_the_index(y, s, match):
    with pytest.raises(SurgkitError, match=match):
        average_precision(y, s)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.floats(-5, 5, allow_nan=False)), min_size=1, max_size=40),
    st.sampled_from(["exp", "affine", "cube", "sigmoid"]),
)
def test_invariant_under_strictly_increasing_transform(pairs, kind):
    y = np.array([p[0] for p in pairs])
    s = np.array([p[1] for p in pairs])
    f = {
        "exp": np.exp,
        "affine": lambda x: 3.0 * x - 7.0,
        "cube": lambda x: x**3,
        "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    }[kind]
    t = f(s)
    # a transform may merge distinct values in floating point (saturation); only compare when
    # it keeps the tie structure, which is what "strictly increasing" means numerically
    if len(np.unique(t)) != len(np.unique(s)):
        return
    a, b = average_precision(y, s), average_precision(y, t)
    if y.any():
        assert a == pytest.approx(b, abs=1e-12)
        assert 0.0 < a <= 1.0
    else:
        assert np.isnan(a) and np.isnan(b)


def test_signed_zero_ties_and_huge_range_fallback_equal_sklearn():
    # -0.0 and +0.0 are the same score (a tie) for sklearn; scores spanning +-1e300 exceed the
    # packed-key fast path and use the argsort fallback
    rng = np.random.default_rng(3)
    y = rng.random((300, 4)) < 0.3
    y[0] = True
    zeros = np.where(rng.random((300, 4)) < 0.5, -0.0, 0.0) + np.round(rng.random((300, 4)))
    huge = rng.normal(size=(300, 4)) * 1e300
    for s in (zeros, huge, np.round(huge, -299)):
        ours = average_precision(y, s)
        ref = [average_precision_score(y[:, k], s[:, k]) for k in range(4)]
        np.testing.assert_allclose(ours, ref, atol=1e-12)


@pytest.mark.parametrize("spacing", [1e-12, 1e-9, 0.0])
def test_scores_equal_in_float32_but_not_in_float64_equal_sklearn(spacing):
    # Rows are ordered by float32-rounded scores first; a positive that shares its float32 value
    # with another item is only ordered correctly by the float64 redo (spacing 0: true ties).
    rng = np.random.default_rng(11)
    n, c = 400, 30
    y = rng.random((n, c)) < 0.3
    y[0] = True
    base = rng.choice([0.25, 0.5, 0.75], size=(n, c))
    s = base + spacing * rng.integers(0, 50, size=(n, c))  # float32 rounds each cluster to one value
    s[:, ::2] = rng.random((n, 15))  # and untied columns beside them (not redone)
    ours = average_precision(y, s)
    ref = [average_precision_score(y[:, k], s[:, k]) for k in range(c)]
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


def test_scores_beyond_float32_range_and_subnormal_equal_sklearn():
    rng = np.random.default_rng(5)
    y = rng.random((200, 3)) < 0.4
    y[0] = True
    s = np.stack([rng.random(200) * 1e200, rng.random(200) * 1e-300, rng.random(200)], axis=1)
    ours = average_precision(y, s)
    ref = [average_precision_score(y[:, k], s[:, k]) for k in range(3)]
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)
