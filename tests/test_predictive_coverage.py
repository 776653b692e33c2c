"""Interval coverage of any predictive (``predictive_coverage``) and the class NLL (``class_nll``), against
closed forms, the intervals themselves and scikit-learn's ``log_loss``."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch
from sklearn.metrics import log_loss

from bayes_diglm.evaluation import DensityAwarePredictive, class_nll, predictive_coverage
from bayes_diglm.inference.base import Predictive


class _IntervalsOnly:
    """A predictive that gives its central intervals and nothing else (the path without a CDF)."""

    def __init__(self, pred):
        self.pred = pred

    def interval(self, prob):
        return self.pred.interval(prob)


def test_coverage_of_a_normal_is_the_share_inside_its_closed_form_interval():
    rng = np.random.default_rng(0)
    loc, scale = rng.normal(size=500), rng.uniform(0.5, 2.0, size=500)
    y = loc + scale * rng.standard_t(3, size=500)
    pred = Predictive(torch.distributions.Normal(torch.from_numpy(loc), torch.from_numpy(scale)))
    levels = [0.1, 0.5, 0.9, 0.99]
    expected = [np.mean(np.abs(y - loc) <= scipy.stats.norm.ppf(0.5 + p / 2) * scale) for p in levels]
    np.testing.assert_allclose(predictive_coverage(pred, y, levels), expected, atol=0)


def test_the_cdf_path_equals_the_interval_path_for_a_mixture():
    rng = np.random.default_rng(1)
    plain = torch.distributions.Normal(torch.from_numpy(rng.normal(size=300)), 1.0)
    prior = torch.distributions.StudentT(3.0, torch.zeros(300, dtype=torch.float64), 5.0)
    mix = DensityAwarePredictive(plain, prior, rng.uniform(size=300))
    y = rng.normal(scale=3.0, size=300)
    levels = [0.2, 0.8, 0.95]
    np.testing.assert_array_equal(predictive_coverage(mix, y, levels),
                                  predictive_coverage(_IntervalsOnly(mix), y, levels))


@pytest.mark.parametrize("levels", [[0.0], [1.0], [0.5, 1.2]])
def test_levels_outside_the_open_unit_interval_are_refused(levels):
    pred = Predictive(torch.distributions.Normal(torch.zeros(3, dtype=torch.float64), 1.0))
    with pytest.raises(ValueError, match="levels"):
        predictive_coverage(pred, np.zeros(3), levels)


def test_a_predictive_without_cdf_or_interval_is_refused():
    with pytest.raises(TypeError, match="cdf or an interval"):
        predictive_coverage(object(), np.zeros(3), [0.5])


def test_class_nll_is_scikit_learns_log_loss():
    rng = np.random.default_rng(2)
    proba = rng.dirichlet(np.ones(4), size=200)
    y = rng.integers(0, 4, size=200)
    assert class_nll(y, proba) == pytest.approx(log_loss(y, proba, labels=range(4)), rel=1e-12)
    assert class_nll(y.astype(float), proba) == pytest.approx(class_nll(y, proba), rel=0)


def test_class_nll_counts_a_zero_probability_as_a_large_finite_loss():
    assert class_nll([1], [[1.0, 0.0]]) == pytest.approx(-np.log(1e-300))


@pytest.mark.parametrize("labels, match", [([0, 4], "0..3"), ([0, -1], "0..3"), ([0.5, 1], "integer"),
                                           ([0, 1, 2], "one label per row")])
def test_class_nll_refuses_labels_outside_the_classes(labels, match):
    with pytest.raises(ValueError, match=match):
        class_nll(labels, np.full((2, 4), 0.25))
