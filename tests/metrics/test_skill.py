"""Skill metrics (spec §3.1, §3.4) against scipy and the known-answer fixtures."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.stats import spearmanr

from surgkit.errors import SurgkitError
from surgkit.metrics.skill import (
    cross_validation_summary,
    denormalize_grs,
    fisher_z_mean,
    mae,
    rl2,
    spearman,
)

Y = [10, 15, 20, 25, 30]
YHAT = [12, 14, 22, 22, 29]


def test_spec_fixtures():
    assert spearman(YHAT, Y) == pytest.approx(0.974679, abs=1e-6)
    assert mae(YHAT, Y) == pytest.approx(1.8)
    assert fisher_z_mean([0.5, 0.7, 0.9]) == pytest.approx(0.745586, abs=1e-6)
    with pytest.warns(UserWarning, match="constant"):
        assert np.isnan(spearman([1, 2, 3], [5, 5, 5]))


def test_spearman_equals_scipy_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(30):
        n = int(rng.integers(3, 40))
        a, b = rng.integers(6, 31, n), rng.integers(6, 31, n) + rng.normal(size=n).round(0)
        if np.all(a == a[0]) or np.all(b == b[0]):
            continue
        assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)


def test_spearman_is_rank_based_so_normalisation_does_not_change_it():
    assert spearman(np.array(YHAT) / 30, Y) == pytest.approx(spearman(YHAT, Y))
    assert spearman(denormalize_grs((np.array(YHAT) - 6) / 24, "minmax"), Y) == pytest.approx(
        spearman(YHAT, Y)
    )
    np.testing.assert_allclose(denormalize_grs([0.0, 1.0], "minmax"), [6, 30])
    np.testing.assert_allclose(denormalize_grs([0.5], "div30"), [15])


def test_fisher_clips_perfect_correlations():
    assert fisher_z_mean([1.0, 1.0]) == pytest.approx(1.0, abs=1e-6)
    assert np.isfinite(fisher_z_mean([1.0, -1.0, 0.3]))
    with pytest.raises(SurgkitError, match="index 1"):
        fisher_z_mean([0.2, np.nan])


def test_rl2_formula():
    y, p = np.array(Y, float), np.array(YHAT, float)
    assert rl2(YHAT, Y) == pytest.approx(np.mean(((y - p) / 24) ** 2))
    assert rl2(YHAT, Y, 10, 30) == pytest.approx(np.mean(((y - p) / 20) ** 2))


def test_cross_validation_summary_mean_and_pooled():
    rng = np.random.default_rng(1)
    folds = []
    for k in range(4):
        t = rng.integers(6, 31, 8).astype(float)
        folds.append(
            {
                "name": f"fold{k}",
                "pred": t + rng.normal(0, 3, 8),
                "true": t,
                "ids": [f"{k}_{i}" for i in range(8)],
            }
        )
    res = cross_validation_summary(folds)
    rhos = [spearmanr(f["pred"], f["true"]).statistic for f in folds]
    assert [r["fold"] for r in res["per_fold"]] == ["fold0", "fold1", "fold2", "fold3"]
    assert res["spearman"] == pytest.approx(np.mean(rhos))
    assert res["mean_over_folds"]["spearman_std"] == pytest.approx(np.std(rhos, ddof=1))
    allp, allt = np.concatenate([f["pred"] for f in folds]), np.concatenate([f["true"] for f in folds])
    assert res["pooled"]["spearman"] == pytest.approx(spearmanr(allp, allt).statistic)
    assert res["pooled"]["mae"] == pytest.approx(np.mean(np.abs(allp - allt)))
    pooled = cross_validation_summary(folds, aggregate="pooled")
    assert pooled["spearman"] == pytest.approx(res["pooled"]["spearman"])
    assert pooled["protocol"]["aggregate"] == "pooled"


def test_cross_validation_reports_undefined_folds_and_rejects_duplicates():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the summary itself must not spray warnings
        res = cross_validation_summary([([1, 2, 3], [5, 5, 5]), ([1, 2, 3], [1, 2, 3])])
    assert res["undefined_spearman_folds"] == ["1"]
    assert res["spearman"] == pytest.approx(1.0)
    with pytest.raises(SurgkitError, match="trial 'B001' is predicted in folds a and b"):
        cross_validation_summary(
            [
                {"name": "a", "pred": [1], "true": [1], "ids": ["B001"]},
                {"name": "b", "pred": [2], "true": [2], "ids": ["B001"]},
            ]
        )


@pytest.mark.parametrize(
    ("pred", "true", "match"),
    [
        ([1, 2], [1, 2, 3], "2 predictions but 3"),
        ([1, np.nan], [1, 2], "prediction at index 1 is nan"),
        ([], [], "no samples"),
    ],
)
def test_bad_input(pred, true, match):
    with pytest.raises(SurgkitError, match=match):
        mae(pred, true)
