"""Metrics against brute-force or textbook values."""

import numpy as np
import pytest

from bayes_diglm.evaluation import (
    abstention_curve,
    expected_calibration_error,
    interval_coverage,
    ood_scores,
    predictive_entropy,
    rmse,
)


def test_rmse_and_coverage():
    assert rmse([0, 0], [3, 4]) == pytest.approx(np.sqrt(12.5))
    assert interval_coverage([0, 1, 2, 3], [0, 0, 0, 0], [1, 1, 1, 1]) == 0.5
    with pytest.raises(ValueError, match="shape"):
        rmse([0, 1], [0])


def test_entropy_of_uniform_is_log_k():
    np.testing.assert_allclose(predictive_entropy(np.full((3, 4), 0.25)), np.log(4))


def test_ece_brute_force():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), size=500)
    y = rng.integers(0, 3, size=500)
    conf, pred = p.max(1), p.argmax(1)
    bins = np.minimum((conf * 10).astype(int), 9)
    bins[conf == 1.0] = 9
    ref = 0.0
    for b in range(10):
        m = bins == b
        if m.any():
            ref += m.mean() * abs((pred[m] == y[m]).mean() - conf[m].mean())
    assert expected_calibration_error(y, p, n_bins=10) == pytest.approx(ref, abs=1e-12)


def test_ood_scores_match_brute_force_auroc():
    rng = np.random.default_rng(1)
    s_in, s_out = rng.normal(size=300), rng.normal(1.0, 1.0, size=200)
    brute = np.mean(s_out[:, None] > s_in[None, :]) + 0.5 * np.mean(s_out[:, None] == s_in[None, :])
    r = ood_scores(s_in, s_out)
    assert r["auroc"] == pytest.approx(brute, abs=1e-12)
    thr = np.sort(s_out)[int(np.floor(0.05 * 200))]
    assert r["fpr_at_95_tpr"] == pytest.approx(np.mean(s_in >= thr), abs=0.01)


def test_abstention_rejects_least_typical_first():
    correct = np.array([1, 1, 0, 0], float)
    curve = abstention_curve(correct, keep_score=[4, 3, 2, 1], fractions=[0.0, 0.5])
    np.testing.assert_allclose(curve["accuracy"], [0.5, 1.0])
