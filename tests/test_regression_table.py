"""Evaluation contract: the regression table's columns and selective prediction against a random order."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.metrics import roc_auc_score

from bayes_diglm.evaluation import (
    constant_predictive,
    log_px_shift,
    regression_metrics,
    selective_against_random,
    selective_curve,
)
from bayes_diglm.inference.base import Predictive


def test_regression_metrics_match_scipy_in_original_units():
    rng = np.random.default_rng(0)
    loc, scale, y = rng.normal(size=200), rng.uniform(0.5, 2.0, 200), rng.normal(size=200)
    pred = Predictive(torch.distributions.Normal(torch.from_numpy(loc), torch.from_numpy(scale)))
    s = 37.5  # the standard deviation the targets were divided by
    m = regression_metrics(pred, y, y_std=s, level=0.8, unit="min")
    assert math.isclose(m["RMSE (min)"], math.sqrt(np.mean((s * y - s * loc) ** 2)), rel_tol=1e-12)
    assert math.isclose(m["NLL (nats)"], -np.mean(stats.norm.logpdf(s * y, s * loc, s * scale)), rel_tol=1e-10)
    z = stats.norm.ppf(0.9)
    assert m["80% coverage"] == pytest.approx(np.mean(np.abs(y - loc) <= z * scale))


def test_constant_predictive_is_the_standard_normal_everywhere():
    pred = constant_predictive(4, loc=1.0, scale=2.0)
    y = np.array([-1.0, 0.0, 1.0, 3.0])
    np.testing.assert_allclose(pred.log_prob(y), stats.norm.logpdf(y, 1.0, 2.0))
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError):
            constant_predictive(bad)
    with pytest.raises(ValueError):
        constant_predictive(3, scale=0.0)


def test_regression_metrics_refuse_bad_scale_and_level():
    pred = constant_predictive(2)
    with pytest.raises(ValueError, match="y_std"):
        regression_metrics(pred, [0.0, 1.0], y_std=-1.0)
    with pytest.raises(ValueError, match="level"):
        regression_metrics(pred, [0.0, 1.0], level=1.0)


def test_log_px_shift_samples_rows_and_scores_auroc_like_sklearn():
    rng = np.random.default_rng(1)
    X_train, X_test = rng.normal(size=(300, 2)), rng.normal(0.5, 1.0, size=(120, 2))
    seen = []

    def log_px(X, seed):
        seen.append((len(X), seed))
        return stats.norm.logpdf(X).sum(axis=1)

    cols, s = log_px_shift(log_px, X_train, X_test, rows=100, seed=3)
    assert seen == [(100, 3), (100, 4)]
    labels = np.r_[np.zeros(100), np.ones(100)]
    assert cols["AUROC train/test"] == pytest.approx(roc_auc_score(labels, np.r_[-s["train"], -s["test"]]))
    assert cols["mean log p(x) test"] == pytest.approx(s["test"].mean())
    # rows are a subset kept in their original order
    rng = np.random.default_rng(3)
    rows = np.sort(rng.choice(300, size=100, replace=False))
    np.testing.assert_allclose(s["train"], stats.norm.logpdf(X_train[rows]).sum(axis=1))
    with pytest.raises(TypeError):
        log_px_shift("f", X_train, X_test, rows=10)
    with pytest.raises(ValueError):
        log_px_shift(log_px, X_train, X_test, rows=0)


def test_selective_against_random_is_selective_curve_twice():
    rng = np.random.default_rng(2)
    loss, score = rng.exponential(size=50), rng.normal(size=50)
    curves = selective_against_random({"a": loss, "b": 2 * loss}, score, label="by score", seed=5)
    assert list(curves) == ["a, by score", "a, at random", "b, by score", "b, at random"]
    assert curves["a, by score"]["area"] == pytest.approx(selective_curve(loss, score)["area"])
    order = np.random.default_rng(5).permutation(50)
    assert curves["b, at random"]["area"] == pytest.approx(selective_curve(2 * loss, order)["area"])
    # brute force: area is the mean over k of the mean loss of the k inputs of lowest score
    ranked = loss[np.argsort(score, kind="stable")]
    assert curves["a, by score"]["area"] == pytest.approx(np.mean([ranked[:k].mean() for k in range(1, 51)]))
    with pytest.raises(ValueError):
        selective_against_random({}, score)
