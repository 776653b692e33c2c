"""Per-row context beside ``y`` (``trials=`` of the binomial) through training, the estimators and their heads,
checked against scipy's binomial; the SVI classifier in a registered family other than the logistic."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy import special, stats

from bayes_diglm.inference import LaplaceClassifier, SVIClassifier
from bayes_diglm.models import DIGLMRegressor
from bayes_diglm.training import evaluate_module


@pytest.fixture(scope="module")
def binomial_fit():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(160, 2))
    trials = rng.integers(1, 12, size=160).astype(float)
    y = rng.binomial(trials.astype(int), special.expit(X[:, 0] - 0.5 * X[:, 1])).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        est = DIGLMRegressor(head="binomial", posterior="laplace", epochs=3, batch_size=40, px_weight=0.0,
                             quiet=True, val_fraction=0.25, flow_kwargs={"num_layers": 2, "hidden_dims": (8,)})
        est.fit(X, y, trials=trials)
    return est, X, y, trials


def _point_probabilities(est, X):
    with torch.no_grad():
        z = torch.from_numpy(est.transform(X)).to(next(est.model_.parameters()).dtype)
        return special.expit(est.model_.head.predictor(z).double().numpy()[:, 0])


def test_the_point_predictive_is_scipys_binomial_with_the_rows_trials(binomial_fit):
    est, X, y, trials = binomial_fit
    p = _point_probabilities(est, X[:30])
    expected = stats.binom.logpmf(y[:30], trials[:30], p)
    got = est.predict_dist(X[:30], point=True, trials=trials[:30]).log_prob(y[:30])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(est.predict(X[:30], trials=trials[:30]),
                               est.predict_dist(X[:30], trials=trials[:30]).mean)


def test_training_evaluates_the_objective_with_the_rows_trials(binomial_fit):
    est, X, y, trials = binomial_fit
    p = _point_probabilities(est, X)
    dtype = next(est.model_.parameters()).dtype
    figures = evaluate_module(est.model_, torch.from_numpy(X).to(dtype), torch.from_numpy(y).to(dtype),
                              context={"trials": torch.from_numpy(trials).to(dtype)})
    np.testing.assert_allclose(figures["log_py"], stats.binom.logpmf(y, trials, p).mean(), rtol=1e-4)
    assert len(est.history_.epochs) == 3 and np.isfinite(est.history_.epochs[-1]["val_log_py"])


def test_the_posterior_head_gets_the_trials_and_missing_or_unknown_context_is_refused(binomial_fit):
    est, X, y, trials = binomial_fit
    assert est.posterior_.likelihood_.name == "binomial"
    ll = est.pointwise_log_likelihood(est.sample(4, generator=0), X[:10], y[:10], trials=trials[:10])
    assert ll.shape == (4, 10) and np.all(np.isfinite(ll))
    with pytest.raises(ValueError, match="trials"):
        est.predict_dist(X[:5])
    with pytest.raises(TypeError, match="exposure"):
        est.predict_dist(X[:5], trials=trials[:5], exposure=np.ones(5))
    with pytest.raises(ValueError, match="trials"):
        DIGLMRegressor(head="binomial", epochs=1, quiet=True).fit(X, y)
    with pytest.raises(TypeError, match="trials"):
        DIGLMRegressor(head="poisson", epochs=1, quiet=True).fit(X, y, trials=trials)


def test_the_svi_classifier_takes_a_registered_family_as_the_laplace_classifier_does():
    rng = np.random.default_rng(3)
    Z = rng.normal(size=(300, 2))
    y = np.digitize(Z @ np.array([1.5, -1.0]) + rng.logistic(size=300), [-1.0, 1.0])
    svi = SVIClassifier(likelihood="ordinal", num_steps=200, plateau_tol=None).fit(Z, y)
    laplace = LaplaceClassifier(likelihood="ordinal").fit(Z, y)
    assert svi.likelihood_.name == laplace.likelihood_.name == "ordinal"
    # the variational and the Laplace posteriors of the same model agree closely on 300 rows
    np.testing.assert_allclose(svi.predict_proba(Z[:20]), laplace.predict_proba(Z[:20]), atol=0.03)
