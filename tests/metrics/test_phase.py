"""Phase metrics (spec §1): the Octave-verified §1.9 fixtures, a loop re-derivation of the relaxed
protocol, sklearn oracles for the strict and sklearn protocols, and segmental metrics."""

from __future__ import annotations

import warnings
from functools import cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import jaccard_score, precision_recall_fscore_support

from surgkit.errors import SurgkitError
from surgkit.metrics.phase import edit_score, evaluate, relaxed_difference, segmental_f1

# §1.9 A and B, 1-based ids as printed in the spec (the API takes 0-based ids)
G_A = np.array([1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 3])
P_A = np.array([1, 1, 1, 2, 1, 2, 2, 2, 3, 3, 3, 2])
G_B = np.array([1, 1, 2, 2, 2, 3, 3, 3, 3, 4, 4])
P_B = np.array([1, 1, 2, 2, 3, 3, 3, 3, 3, 4, 3])
NAN4 = [np.nan] * 4


def _relaxed(videos, **kw):
    return evaluate([g - 1 for g, _ in videos], [p - 1 for _, p in videos], 7, "relaxed", fps=0.2, **kw)


def test_fixture_a_per_video_with_tail_bug():
    assert relaxed_difference(G_A - 1, P_A - 1, fps=0.2).tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, -1]
    r = _relaxed([(G_A, P_A)])
    pv = r["per_video"]
    np.testing.assert_allclose(pv["jaccard"][:, 0], np.array([80, 57.142857, 50, *NAN4[:4]]) / 100, atol=1e-8)
    np.testing.assert_allclose(pv["precision"][:, 0], np.array([100, 80, 66.666667, *NAN4]) / 100, atol=1e-8)
    np.testing.assert_allclose(pv["recall"][:, 0], np.array([100, 80, 66.666667, *NAN4]) / 100, atol=1e-8)
    assert pv["accuracy"][0] == pytest.approx(0.75)


def test_tail_bug_switch_changes_fixture_a_accuracy():
    # the early error at the end of phase 1 (frame 4) is forgiven only with the fixed tail rule
    fixed = _relaxed([(G_A, P_A)], relaxed_fixed=True)
    assert fixed["video_accuracy"] == pytest.approx(0.9166667, abs=1e-6)
    assert relaxed_difference(G_A - 1, P_A - 1, fps=0.2, relaxed_fixed=True)[3] == 0
    assert fixed["protocol"]["relaxed_fixed"] is True
    assert "FIXED" in fixed["protocol"]["quirks"][0]
    assert "reproduced" in _relaxed([(G_A, P_A)])["protocol"]["quirks"][0]


def test_fixture_b_values_above_100_percent():
    pv = _relaxed([(G_B, P_B)])["per_video"]
    np.testing.assert_allclose(
        pv["jaccard"][:, 0], np.array([100, 66.667, 83.333, 100, *NAN4[:3]]) / 100, atol=1e-5
    )
    np.testing.assert_allclose(
        pv["precision"][:, 0], np.array([100, 100, 83.333, 200, *NAN4[:3]]) / 100, atol=1e-5
    )
    np.testing.assert_allclose(
        pv["recall"][:, 0], np.array([100, 66.667, 125, 100, *NAN4[:3]]) / 100, atol=1e-5
    )
    assert pv["accuracy"][0] == pytest.approx(0.90909, abs=1e-5)


def test_fixture_a_plus_b_mainm_aggregation():
    r = _relaxed([(G_A, P_A), (G_B, P_B)])
    np.testing.assert_allclose(
        r["jaccard_per_phase"], np.array([90, 61.905, 66.667, 100, *NAN4[:3]]) / 100, atol=1e-5
    )
    np.testing.assert_allclose(
        r["precision_per_phase"], np.array([100, 90, 75, 100, *NAN4[:3]]) / 100, atol=1e-8
    )
    np.testing.assert_allclose(
        r["recall_per_phase"], np.array([100, 73.333, 83.333, 100, *NAN4[:3]]) / 100, atol=1e-5
    )
    assert np.isnan(r["jaccard"]) and np.isnan(r["recall"])  # plain mean propagates absent phases
    assert r["precision"] == pytest.approx(0.9125) and r["precision_std"] == pytest.approx(0.118145, abs=1e-6)
    assert r["video_accuracy"] == pytest.approx(0.829545, abs=1e-6)
    assert r["video_accuracy_std"] == pytest.approx(0.112494, abs=1e-6)
    assert np.isnan(r["f1"]) and r["f1_std"] == pytest.approx(0.090353, abs=1e-6)


# ------------------------------------------------------------------ re-derivation (not an oracle)
RULES = {  # variant -> {1-based phase: (late, early)}; other phases late {-1}, early {+1}
    "cholec80": {4: ({-1}, {1, 2}), 5: ({-1}, {1, 2}), 6: ({-1, -2}, {1, 2}), 7: ({-1, -2}, {1, 2})},
    "cholec80-svrcnet": {4: ({-1}, {1, 2}), 5: ({-1}, {1, 2}), 6: ({-1, -2}, {1}), 7: ({-1, -2}, {1})},
    "m2cai16": {5: ({-1}, {1, 2}), 6: ({-1}, {1, 2}), 7: ({-1, -2}, {1, 2}), 8: ({-1, -2}, {1, 2})},
}


def _loop_evaluate_m(g, p, K, fps, variant, fixed):
    """Straightforward re-derivation of spec §1.5.1 steps 1-5 with Python loops, 1-based ids.

    Written from the spec's step list to cross-check the vectorised code; it is NOT an oracle
    (the §1.9 fixtures are the Octave-verified ones).
    """
    N, T = len(g), int(round(10 * fps))
    d = [p[n] - g[n] for n in range(N)]
    u = [0] * N
    for c in range(1, K + 1):
        late, early = RULES[variant].get(c, ({-1}, {1}))
        n = 0
        while n < N:
            if g[n] != c:
                n += 1
                continue
            s = n
            while n < N and g[n] == c:
                n += 1
            e = n - 1
            x = d[s : e + 1]
            L = e - s + 1
            t = min(T, L)
            for i in range(t):
                if x[i] in late:
                    x[i] = 0
            m = [x[L - t + j] in early for j in range(t)]
            for j in range(t):
                if m[j]:
                    if fixed:
                        x[L - t + j] = 0
                    else:
                        x[j] = 0
            for i in range(L):
                u[s + i] = x[i]
    J, P, R = [], [], []
    for c in range(1, K + 1):
        n_g = sum(1 for n in range(N) if g[n] == c)
        if n_g == 0:
            J.append(np.nan), P.append(np.nan), R.append(np.nan)
            continue
        U = [n for n in range(N) if g[n] == c or p[n] == c]
        tp = sum(1 for n in U if u[n] == 0)
        n_p = sum(1 for n in range(N) if p[n] == c)
        J.append(100 * tp / len(U))
        P.append(100 * tp / n_p if n_p else (np.inf if tp else np.nan))
        R.append(100 * tp / n_g)
    acc = 100 * sum(1 for n in range(N) if u[n] == 0) / N
    return J, P, R, acc


def _random_case(rng, K, n_videos):
    labels, preds = [], []
    for _ in range(n_videos):
        phases = sorted(rng.choice(K, size=int(rng.integers(2, K + 1)), replace=False)) + [
            int(rng.integers(0, K))
        ]
        g = np.concatenate([np.full(int(rng.integers(1, 30)), ph) for ph in phases])
        p = g.copy()
        for _ in range(int(rng.integers(0, 6))):  # shift boundaries and add noise
            i = int(rng.integers(0, g.size))
            p[i : i + int(rng.integers(1, 8))] = np.clip(p[i] + rng.integers(-2, 3), 0, K - 1)
        p[rng.random(g.size) < 0.05] = rng.integers(0, K)
        labels.append(g), preds.append(p)
    return labels, preds


@pytest.mark.parametrize("variant", ["cholec80", "cholec80-svrcnet", "m2cai16"])
@pytest.mark.parametrize("fixed", [False, True])
def test_relaxed_equals_loop_rederivation_on_random_cases(variant, fixed):
    rng = np.random.default_rng(abs(hash((variant, fixed))) % 2**32)
    K = 8 if variant == "m2cai16" else 7
    for fps in (0.2, 0.5, 1, 2):
        labels, preds = _random_case(rng, K, n_videos=4)
        r = evaluate(labels, preds, K, "relaxed", fps=fps, variant=variant, relaxed_fixed=fixed)
        loops = [
            _loop_evaluate_m(list(g + 1), list(p + 1), K, fps, variant, fixed)
            for g, p in zip(labels, preds, strict=True)
        ]
        J = np.array([x[0] for x in loops]).T
        P = np.array([x[1] for x in loops]).T
        R = np.array([x[2] for x in loops]).T
        acc = np.array([x[3] for x in loops])
        np.testing.assert_allclose(r["per_video"]["jaccard"] * 100, J, atol=1e-9)
        np.testing.assert_allclose(r["per_video"]["precision"] * 100, P, atol=1e-9)
        np.testing.assert_allclose(r["per_video"]["recall"] * 100, R, atol=1e-9)
        np.testing.assert_allclose(r["per_video"]["accuracy"] * 100, acc, atol=1e-9)
        # Main.m aggregation written out: clip, nanmean over videos, mean/nanmean over phases
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            Jc, Pc, Rc = (np.nanmean(np.minimum(X, 100), axis=1) for X in (J, P, R))
        assert r["jaccard"] * 100 == pytest.approx(np.mean(Jc), nan_ok=True)
        assert r["precision"] * 100 == pytest.approx(np.nanmean(Pc))
        assert r["recall"] * 100 == pytest.approx(np.mean(Rc), nan_ok=True)
        assert r["precision_std"] * 100 == pytest.approx(np.nanstd(Pc, ddof=1))
        assert r["video_accuracy_std"] * 100 == pytest.approx(np.std(acc, ddof=1))
        assert np.nanmax(r["precision_per_phase"]) <= 1.0  # clipped before averaging


def test_relaxed_can_exceed_one_per_video_and_fixed_accuracy_is_not_lower_here():
    r = _relaxed([(G_B, P_B)])
    assert np.nanmax(r["per_video"]["precision"]) == pytest.approx(2.0)
    assert r["precision_per_phase"][3] == pytest.approx(1.0)


def test_svrcnet_m2cai_variant_sets_never_predicted_precision_to_zero():
    g = np.array([0, 0, 1, 1, 2, 2, 2, 3, 3, 3])
    p = np.array([0, 0, 3, 3, 2, 2, 2, 3, 3, 3])  # phase 1 never predicted, d = +2 is not forgiven
    tmr = evaluate([g], [p], 8, "relaxed", fps=0.1, variant="m2cai16")
    svr = evaluate([g], [p], 8, "relaxed", fps=0.1, variant="m2cai16-svrcnet")
    assert np.isnan(tmr["per_video"]["precision"][1, 0]) and svr["per_video"]["precision"][1, 0] == 0.0
    assert svr["protocol"]["variant"] == "m2cai16-svrcnet"


def test_never_predicted_but_forgiven_phase_gives_inf_precision_clipped_to_one():
    g = np.array([0, 0, 1, 1, 2, 2, 2, 3, 3, 3])
    p = np.array([0, 0, 0, 0, 2, 2, 2, 3, 3, 3])  # phase 1 never predicted; its first frame forgiven
    r = evaluate([g], [p], 8, "relaxed", fps=0.1, variant="m2cai16")
    assert r["per_video"]["precision"][1, 0] == np.inf  # TP / 0 (spec §1.4 table)
    assert r["precision_per_phase"][1] == 1.0  # clipped at 100 % before averaging


# ----------------------------------------------------------------------------- strict & sklearn
def test_strict_per_video_equals_sklearn_with_matlab_nan_rule():
    rng = np.random.default_rng(1)
    labels, preds = _random_case(rng, 7, n_videos=5)
    r = evaluate(labels, preds, 7, "strict")
    for v, (g, p) in enumerate(zip(labels, preds, strict=True)):
        P, R, _, _ = precision_recall_fscore_support(
            g, p, labels=range(7), average=None, zero_division=np.nan
        )
        J = jaccard_score(g, p, labels=range(7), average=None, zero_division=0)
        absent = np.bincount(g, minlength=7) == 0
        for ours, ref in (
            (r["per_video"]["precision"], P),
            (r["per_video"]["recall"], R),
            (r["per_video"]["jaccard"], J),
        ):
            ref = np.where(absent, np.nan, ref)
            np.testing.assert_allclose(ours[:, v], ref, atol=1e-12)
        assert r["per_video"]["accuracy"][v] == pytest.approx(np.mean(g == p))
    assert r["image_accuracy"] == pytest.approx(np.mean(np.concatenate(labels) == np.concatenate(preds)))
    assert r["protocol"]["name"] == "strict"


def test_sklearn_per_video_and_pooled_protocols_equal_sklearn_defaults():
    rng = np.random.default_rng(2)
    labels, preds = _random_case(rng, 7, n_videos=4)
    per_video = evaluate(labels, preds, 7, "sklearn-per-video")
    pooled = evaluate(labels, preds, 7, "sklearn-pooled")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prf = [precision_recall_fscore_support(g, p) for g, p in zip(labels, preds, strict=True)]
        jac = [jaccard_score(g, p, average=None) for g, p in zip(labels, preds, strict=True)]
        G, Pp = np.concatenate(labels), np.concatenate(preds)
        pooled_ref = precision_recall_fscore_support(G, Pp)
    for i, key in enumerate(("precision", "recall", "f1")):
        vals = np.array([x[i].mean() for x in prf])
        assert per_video[key] == pytest.approx(vals.mean())
        assert per_video[f"{key}_std"] == pytest.approx(np.std(vals))  # ddof 0 as the reference
        assert pooled[key] == pytest.approx(pooled_ref[i].mean())
    assert per_video["jaccard"] == pytest.approx(np.mean([j.mean() for j in jac]))


# ---------------------------------------------------------------------------------- segmental
GT_C = list("AAAABBBBCC")
PR_C = list("AAABBABBBC")


def test_segmental_fixture_c():
    r = segmental_f1([GT_C], [PR_C])
    assert r["f1@0.10"] == pytest.approx(0.75) and r["f1@0.25"] == pytest.approx(0.75)
    assert r["f1@0.50"] == pytest.approx(0.50)
    assert r["counts"]["f1@0.10"] == {"tp": 3, "fp": 2, "fn": 0}
    assert r["counts"]["f1@0.50"] == {"tp": 2, "fp": 3, "fn": 1}
    assert edit_score([GT_C], [PR_C]) == pytest.approx(0.6)
    ids = {"A": 0, "B": 1, "C": 2}
    strict = evaluate([[ids[x] for x in GT_C]], [[ids[x] for x in PR_C]], 3)
    assert strict["image_accuracy"] == pytest.approx(0.7)


def _segment_labels(seq):
    return [x for i, x in enumerate(seq) if i == 0 or seq[i - 1] != x]


def _lev_recursive(a, b):
    @cache
    def d(i, j):
        if i == 0 or j == 0:
            return i + j
        return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))

    return d(len(a), len(b))


def test_edit_score_equals_recursive_levenshtein_and_pooling_variants():
    rng = np.random.default_rng(3)
    labels, preds = _random_case(rng, 5, n_videos=3)
    expected = np.mean(
        [
            1
            - _lev_recursive(tuple(_segment_labels(list(p))), tuple(_segment_labels(list(g))))
            / max(len(_segment_labels(list(g))), len(_segment_labels(list(p))))
            for g, p in zip(labels, preds, strict=True)
        ]
    )
    assert edit_score(labels, preds) == pytest.approx(expected)
    pooled = segmental_f1(labels, preds)
    per_video = segmental_f1(labels, preds, average="per-video")
    for key in ("f1@0.10", "f1@0.25", "f1@0.50"):
        assert 0.0 <= pooled[key] <= 1.0 and 0.0 <= per_video[key] <= 1.0
    assert segmental_f1([GT_C], [GT_C])["f1@0.50"] == 1.0 and edit_score([GT_C], [GT_C]) == 1.0


# ------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("labels", "preds", "kwargs", "match"),
    [
        ([[0, 1, 2]], [[0, 1]], {}, "video 0: 3 labels but 2 predictions"),
        ([[0, 1], [0, 7]], [[0, 1], [0, 1]], {}, "video 1, frame 1: label 7 outside 0..6"),
        ([[0, 1], []], [[0, 1], []], {}, "video 1 is empty"),
        ([[0.0, 1.0]], [[0.0, np.nan]], {}, "video 0, frame 1: prediction nan is not an integer"),
        ([[0, 1]], [[0, 1]], {"protocol": "relaxed", "fps": 0.15}, "10\\*fps must be a positive integer"),
        ([[0, 1]], [[0, 1]], {"protocol": "relaxed", "variant": "m2cai16"}, "defined for 8 phases"),
        ([[0, 1]], [[0, 1]], {"protocol": "fuzzy"}, "unknown phase protocol"),
        ([[0, 1]], [[0, 1], [0]], {}, "1 label videos but 2 prediction videos"),
    ],
)
def test_bad_input_raises_naming_video_and_frame(labels, preds, kwargs, match):
    with pytest.raises(SurgkitError, match=match):
        evaluate(labels, preds, 7, **kwargs)


def test_video_names_appear_in_errors():
    with pytest.raises(SurgkitError, match="video video41, frame 0: label -1"):
        evaluate([[-1, 0]], [[0, 0]], 7, video_names=["video41"])


def test_strict_options_never_predicted_and_nanmean_over_phases():
    g, p = [0, 0, 1, 1, 2, 2], [0, 0, 0, 0, 2, 2]  # phase 1 never predicted
    nan_rule = evaluate([g], [p], 7)
    zero_rule = evaluate([g], [p], 7, never_predicted="zero")
    assert (
        np.isnan(nan_rule["per_video"]["precision"][1, 0])
        and zero_rule["per_video"]["precision"][1, 0] == 0.0
    )
    assert zero_rule["precision"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert nan_rule["precision"] == pytest.approx((0.5 + 1) / 2)
    assert np.isnan(nan_rule["jaccard"])  # phases 3..6 absent: the reference mean propagates NaN
    lenient = _relaxed([(G_A, P_A), (G_B, P_B)], phase_mean="nanmean")
    assert lenient["jaccard"] == pytest.approx(np.mean([0.9, 0.619048, 0.666667, 1.0]), abs=1e-6)
    assert lenient["recall"] == pytest.approx(np.mean([1.0, 0.733333, 0.833333, 1.0]), abs=1e-6)
    assert "non-reference" in lenient["protocol"]["aggregation"]
    with pytest.raises(SurgkitError, match="phase_mean"):
        evaluate([g], [p], 7, phase_mean="median")
    with pytest.raises(SurgkitError, match="strict and relaxed protocols only"):
        evaluate([g], [p], 7, "sklearn-pooled", phase_mean="nanmean")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=40),
        min_size=1,
        max_size=3,
    ),
    st.sampled_from(["strict", "relaxed"]),
    st.booleans(),
)
def test_aggregated_phase_metrics_are_fractions(videos, protocol, fixed):
    labels = [np.array([a for a, _ in v]) for v in videos]
    preds = [np.array([b for _, b in v]) for v in videos]
    r = (
        evaluate(labels, preds, 7, protocol, fps=0.5, relaxed_fixed=fixed)
        if protocol == "relaxed"
        else evaluate(labels, preds, 7)
    )
    for key in ("image_accuracy", "video_accuracy", "precision", "recall", "jaccard", "f1"):
        assert np.isnan(r[key]) or 0.0 <= r[key] <= 1.0
    for key in ("precision_per_phase", "recall_per_phase", "jaccard_per_phase"):
        vals = r[key][~np.isnan(r[key])]
        assert np.all((vals >= 0) & (vals <= 1))
    if protocol == "relaxed":
        strict = evaluate(labels, preds, 7)
        assert r["video_accuracy"] >= strict["video_accuracy"] - 1e-12  # forgiveness never hurts accuracy
