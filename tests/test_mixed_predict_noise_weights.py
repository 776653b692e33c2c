"""The Gaussian mixed head's predictive takes known noise weights: ``sample_weight`` as noise precisions in
``predict_dist`` (declared in its tags), checked against the closed form and against its own posterior draws."""

from __future__ import annotations

import numpy as np
import pytest

from bayes_diglm.inference.base import context_tags
from bayes_diglm.inference.mixed import MixedEffectsRegression
from bayes_diglm.models import DIGLMRegressor


def _grouped(n=240, groups=8, seed=0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), n // groups)
    Z = rng.normal(size=(n, 2))
    w = rng.uniform(0.5, 4.0, size=n)
    y = Z @ [1.0, -0.5] + rng.normal(size=groups)[g] + rng.normal(size=n) / np.sqrt(w)
    return Z, y, g, w


def test_the_mixed_head_declares_noise_weights_in_its_tags():
    tags = context_tags(MixedEffectsRegression())
    assert tags.sample_weight == "noise" and tags.groups
    assert tags.keywords(fitting=False) == ("sample_weight", "groups")


def test_predict_dist_adds_sigma2_over_w_to_the_linear_predictors_variance():
    Z, y, g, w = _grouped()
    head = MixedEffectsRegression().fit(Z, y, groups=g, sample_weight=w)
    plain = head.predict_dist(Z[:6], groups=g[:6])
    weighted = head.predict_dist(Z[:6], groups=g[:6], sample_weight=w[:6])
    np.testing.assert_allclose(weighted.mean, plain.mean, rtol=1e-12)
    # closed form: the linear predictor's variance is the same, the noise is sigma^2 / w instead of sigma^2
    np.testing.assert_allclose(weighted.variance, plain.variance - head.sigma2_ + head.sigma2_ / w[:6], rtol=1e-10)
    np.testing.assert_allclose(head.predict_dist(Z[:6], groups=g[:6], sample_weight=np.ones(6)).variance,
                               plain.variance, rtol=1e-12)


def test_predict_dist_with_weights_matches_the_heads_own_posterior_predictive_draws():
    """Independent path: draws of (beta, random effects) and of the noise through sample_predictive, which has
    taken noise weights all along; the Monte Carlo variance agrees within its standard error."""
    Z, y, g, w = _grouped(seed=1)
    head = MixedEffectsRegression().fit(Z, y, groups=g, sample_weight=w)
    rows = np.array([0, 50, 120, 239])
    draws = head.sample(20_000, generator=np.random.default_rng(0))
    reps = head.sample_predictive(draws, Z[rows], groups=g[rows], sample_weight=w[rows],
                                  generator=np.random.default_rng(1))
    exact = head.predict_dist(Z[rows], groups=g[rows], sample_weight=w[rows])
    # the variance of a sample variance of n normal draws is 2 sigma^4 / (n - 1): 5 standard errors
    np.testing.assert_allclose(reps.var(axis=0), exact.variance, rtol=5 * np.sqrt(2 / 20_000))
    np.testing.assert_allclose(reps.mean(axis=0), exact.mean, atol=5 * np.sqrt(exact.variance.max() / 20_000))


def test_unseen_levels_with_weights_add_the_prior_variance():
    Z, y, g, w = _grouped(seed=2)
    head = MixedEffectsRegression().fit(Z, y, groups=g, sample_weight=w)
    seen = head.predict_dist(Z[:3], groups=g[:3], sample_weight=w[:3])
    unseen = head.predict_dist(Z[:3], groups=np.full(3, 99), allow_unseen=True, sample_weight=w[:3])
    assert np.all(unseen.variance > seen.variance)


@pytest.mark.parametrize("bad", [np.zeros(3), -np.ones(3), np.ones(2), np.array([1.0, np.nan, 1.0])])
def test_bad_noise_weights_are_refused(bad):
    Z, y, g, w = _grouped()
    head = MixedEffectsRegression().fit(Z, y, groups=g)
    with pytest.raises(ValueError, match="sample_weight"):
        head.predict_dist(Z[:3], groups=g[:3], sample_weight=bad)


def test_a_heteroscedastic_diglm_passes_its_noise_weights_to_the_mixed_head():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(160, 2))
    g = np.arange(160) % 4
    y = X[:, 0] + np.array([-1.0, 0.0, 0.5, 1.0])[g] + (0.2 + 0.5 * (X[:, 1] > 0)) * rng.normal(size=160)
    reg = DIGLMRegressor(posterior="mixed", epochs=3, batch_size=32, lr=1e-2, flow_kwargs={"num_layers": 2},
                         quiet=True).fit(X, y, groups=g)
    Z, context = reg.head_inputs(X[:5], groups=g[:5])
    np.testing.assert_allclose(context["sample_weight"], reg.noise_weights(X[:5]), rtol=1e-12)
    direct = reg.posterior_.predict_dist(Z, **context)
    np.testing.assert_allclose(reg.predict_dist(X[:5], groups=g[:5]).variance, direct.variance, rtol=1e-12)
    refit = MixedEffectsRegression().fit(reg.transform(X), y, groups=g, sample_weight=reg.noise_weights(X))
    np.testing.assert_allclose(reg.posterior_.coef_, refit.coef_, rtol=1e-8)
