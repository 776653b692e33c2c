"""SVI heads: agreement with the Laplace posterior, isolation of Pyro parameters, errors, ArviZ."""

import numpy as np
import pyro
import pytest

from bayes_diglm.inference.laplace import LaplaceClassifier
from bayes_diglm.inference.svi import SVIClassifier


def _binary(n=500, seed=0):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 3))
    y = (rng.random(n) < 1 / (1 + np.exp(-(Z @ [1.0, -0.5, 0.25] + 0.3)))).astype(int)
    return Z, y


def test_full_rank_svi_agrees_with_laplace():
    Z, y = _binary()
    laplace = LaplaceClassifier(prior_precision=1.0).fit(Z, y)  # the bias gets the same prior in both
    lap_sd = np.sqrt(laplace.posterior_.marginal_variance()[0])
    svi = SVIClassifier(guide="full").fit(Z, y, num_steps=2000, lr=0.03, seed=0, plateau_tol=None)
    assert svi.n_iter_ == 2000 and svi.elbo_history_[-200:].mean() > svi.elbo_history_[:200].mean()
    draws = svi._posterior_draws(4000, np.random.default_rng(1))
    mean = np.r_[draws["beta"].mean(0), draws["intercept"].mean()]
    sd = np.r_[draws["beta"].std(0), draws["intercept"].std()]
    # means within 0.3 Laplace posterior sd, standard deviations within 20%
    assert np.all(np.abs(mean - laplace.weights_[0]) < 0.3 * lap_sd), (mean - laplace.weights_[0]) / lap_sd
    assert np.all(np.abs(sd / lap_sd - 1) < 0.2), sd / lap_sd
    np.testing.assert_allclose(svi.predict_proba(Z[:20]), laplace.predict_proba(Z[:20]), atol=0.03)


def test_param_stores_do_not_collide():
    Z, y = _binary(n=200)
    before = set(pyro.get_param_store().keys())
    first = SVIClassifier(guide="meanfield").fit(Z, y, num_steps=200, lr=0.05, seed=0)
    draws_a = first._sample_weights(50, np.random.default_rng(0))
    second = SVIClassifier(guide="meanfield").fit(Z, 1 - y, num_steps=200, lr=0.05, seed=1)
    draws_b = first._sample_weights(50, np.random.default_rng(0))
    np.testing.assert_array_equal(draws_a, draws_b)  # the second head did not touch the first one's state
    assert np.all(np.sign(first.coef_) == -np.sign(second.coef_))
    assert set(pyro.get_param_store().keys()) == before  # the global store is left alone


def test_multiclass_lowrank_and_minibatches():
    rng = np.random.default_rng(2)
    Z = rng.normal(size=(300, 2))
    y = np.argmax(Z @ rng.normal(size=(3, 2)).T * 2 + rng.gumbel(size=(300, 3)), axis=1)
    svi = SVIClassifier(guide="lowrank", rank=2).fit(Z, y, num_steps=600, lr=0.05, batch_size=64, seed=0)
    p = svi.predict_proba(Z, method="mc", n_samples=200, generator=0)
    assert p.shape == (300, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert svi.score(Z, y) > 0.6
    laplace = LaplaceClassifier().fit(Z, y)
    np.testing.assert_allclose(svi.predict_proba(Z), laplace.predict_proba(Z), atol=0.1)


def test_svi_errors_and_state():
    Z, y = _binary(n=100)
    clf = SVIClassifier(guide="meanfield")
    with pytest.raises(RuntimeError, match="not fitted"):
        clf.predict(Z)
    clf.fit(Z, y, num_steps=100, seed=0)
    coef = clf.coef_.copy()
    with pytest.raises(ValueError, match="single class"):
        clf.fit(Z, np.ones(100, dtype=int), num_steps=10)
    with pytest.raises(ValueError, match="guide"):
        SVIClassifier(guide="flow").fit(Z, y, num_steps=10)
    with pytest.raises(ValueError, match="outside"):
        SVIClassifier(num_classes=2).fit(Z, y * 2, num_steps=10)
    bad = Z.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        clf.fit(bad, y, num_steps=10)
    with pytest.raises(ValueError, match="batch_size"):
        clf.fit(Z, y, num_steps=10, batch_size=1000)
    np.testing.assert_array_equal(clf.coef_, coef)


def test_svi_arviz():
    pytest.importorskip("arviz")
    from bayes_diglm.arviz import to_inference_data

    Z, y = _binary(n=100)
    clf = SVIClassifier(guide="meanfield").fit(Z, y, num_steps=300, lr=0.05, seed=0)
    idata = to_inference_data(clf, Z=Z, y=y, draws=200, chains=2)
    assert idata.posterior["beta"].dims == ("chain", "draw", "feature")
    assert idata.log_likelihood["y"].shape == (2, 200, 100)


def test_meanfield_logit_covariance_matches_its_dense_form():
    from bayes_diglm.inference.svi import _GaussianFromGuide

    rng = np.random.default_rng(0)
    mean, sd, X = rng.normal(size=(3, 4)), rng.uniform(0.1, 1.0, size=12), rng.normal(size=(5, 4))
    np.testing.assert_allclose(_GaussianFromGuide(mean, sd).logit_cov(X),
                               _GaussianFromGuide(mean, np.diag(sd)).logit_cov(X), rtol=1e-12, atol=1e-14)
