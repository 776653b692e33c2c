"""The posterior-head contract on the mixed heads (the GLM head on the negative binomial), with ``groups`` passed
where the contract passes nothing.

Mirrors tests/test_heads_contract.py (integer/float/object inputs, fitted vocabulary, clone, Pipeline,
cross_val_score, GridSearchCV, rejected calls, predictive moments against Monte Carlo of ``sample``, ArviZ and
``az.loo``); the mixed heads' ``fit`` needs ``groups``, which scikit-learn routes as a fit parameter.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.special import expit
from sklearn import config_context
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bayes_diglm.inference import MixedEffectsClassifier, MixedEffectsGLM, MixedEffectsPoisson, MixedEffectsRegression
from bayes_diglm.inference.base import Predictive

az = pytest.importorskip("arviz")


def _data(kind, n=150, seed=0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(10), n // 10)
    Z = rng.normal(size=(n, 3))
    eta = Z @ [0.8, -0.5, 0.3] + 0.4 + 0.7 * rng.normal(size=10)[g]
    if kind == "gaussian":
        y = eta + 0.5 * rng.normal(size=n)
    elif kind == "binary":
        y = np.where(rng.random(n) < expit(eta), "yes", "no")
    elif kind == "counts":
        y = rng.poisson(np.exp(0.5 * eta))
    else:  # over-dispersed counts: NB2 with dispersion 0.5
        y = rng.negative_binomial(2.0, 2.0 / (2.0 + np.exp(0.5 * eta)))
    return Z, y, g


def mixedeffectsglm():
    """MixedEffectsGLM on the negative binomial (named as make_pipeline names its step)."""
    return MixedEffectsGLM(likelihood="negative_binomial")


CASES = [("gaussian", MixedEffectsRegression, {"reml": [True, False]}),
         ("binary", MixedEffectsClassifier, {"fit_intercept": [True, False]}),
         ("counts", MixedEffectsPoisson, {"fit_intercept": [True, False]}),
         ("overdispersed", mixedeffectsglm, {"fit_intercept": [True, False]})]


@pytest.fixture(params=CASES, ids=[c[0] for c in CASES])
def case(request):
    return request.param


def test_inputs_vocabulary_and_composition(case):
    kind, make, grid = case
    Z, y, g = _data(kind)
    head = make()
    with pytest.raises(NotFittedError):
        head.predict(Z)
    Z_int = np.round(3 * Z).astype(np.int64)
    a = make().fit(Z_int, y, groups=g)
    b = make().fit(Z_int.astype(float), y, groups=g)
    c = make().fit(Z_int.astype(object), y, groups=g)
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(c.coef_, b.coef_, rtol=1e-10, atol=1e-12)
    for name in ("coef_", "intercept_", "posterior_", "n_features_in_"):
        assert hasattr(a, name), name
    assert np.isfinite(a.log_evidence())
    draws = a.sample(5, generator=0)
    assert draws["beta"].shape == (5, 3) and draws["u_group"].shape == (5, 10)
    np.testing.assert_array_equal(draws["beta"], a.sample(5, generator=0)["beta"])
    assert isinstance(a.predict_dist(Z_int[:4], groups=g[:4]), Predictive)
    twin = clone(a)
    assert twin.get_params() == a.get_params() and not hasattr(twin, "coef_")
    pipe = make_pipeline(StandardScaler(), make()).fit(Z, y, **{f"{make.__name__.lower()}__groups": g})
    assert pipe.predict(Z).shape == (len(y),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        scores = cross_val_score(make(), Z, y, cv=3, params={"groups": g})
        with config_context(enable_metadata_routing=True):  # groups is the splitter's name too: route it to fit
            search = GridSearchCV(make().set_fit_request(groups=True, sample_weight=False), grid, cv=3).fit(
                Z, y, groups=g)
    assert scores.shape == (3,) and np.all(np.isfinite(scores))
    assert search.best_params_[next(iter(grid))] in next(iter(grid.values()))


def test_rejected_calls_leave_predictions_unchanged(case):
    kind, make, _ = case
    Z, y, g = _data(kind)
    head = make().fit(Z, y, groups=g)
    before = head.predict_dist(Z, groups=g).mean.copy()
    bad = Z.copy()
    bad[2, 1] = np.nan
    for call in (lambda: head.fit(bad, y, groups=g), lambda: head.fit(Z, y[:-1], groups=g),
                 lambda: head.fit(Z, y, groups=g[:-1]), lambda: head.predict(Z[:, :2], groups=g),
                 lambda: head.predict(Z[:2], groups=[99, 0]),
                 lambda: head.predict_dist(Z, groups=g).interval(1.5)):
        with pytest.raises(ValueError):
            call()
    np.testing.assert_array_equal(head.predict_dist(Z, groups=g).mean, before)
    assert head.n_features_in_ == 3


def test_predict_dist_moments_match_monte_carlo_of_sample(case):
    kind, make, _ = case
    Z, y, g = _data(kind)
    head = make().fit(Z, y, groups=g)
    Zq, gq = Z[::19][:8], g[::19][:8]
    pred = head.predict_dist(Zq, groups=gq)
    S = 40_000
    draws = head.sample(S, generator=1)
    if kind == "binary":
        # p(y = classes_[1] | draw) of each draw, from the head's own log-likelihood of the draws
        p1 = np.exp(head.pointwise_log_likelihood(draws, Zq, np.full(len(Zq), head.classes_[1]), groups=gq))
        mc = p1.mean(0)
        assert np.max(np.abs(pred.mean[:, 1] - mc)) < 0.04  # MacKay's probit: approximation error
        np.testing.assert_allclose(pred.variance, pred.mean * (1 - pred.mean))
        return
    replicates = head.sample_predictive(draws, Zq, groups=gq, generator=3)
    mean, var = replicates.mean(axis=0), replicates.var(axis=0)
    assert np.max(np.abs((pred.mean - mean) / np.sqrt(pred.variance / S))) < 5.0
    np.testing.assert_allclose(var, pred.variance, rtol=6 * np.sqrt(8 / S))


def test_arviz_and_loo(case):
    kind, make, _ = case
    Z, y, g = _data(kind)
    head = make().fit(Z, y, groups=g)
    draws = head.sample(400, generator=0)
    dims, coords = head.posterior_dims()
    posterior = {k: v.reshape((2, 200) + v.shape[1:]) for k, v in draws.items()}
    ll = head.pointwise_log_likelihood(draws, Z, y, groups=g).reshape(2, 200, -1)
    rep = head.sample_predictive(draws, Z, groups=g, generator=1).reshape(2, 200, -1)
    idata = az.from_dict(posterior=posterior, log_likelihood={"y": ll}, posterior_predictive={"y": rep},
                         coords=coords, dims=dims)
    assert idata.posterior["u_group"].dims == ("chain", "draw", "group")
    if kind == "binary":
        assert set(np.unique(rep)) <= {"no", "yes"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert np.isfinite(az.loo(idata).elpd_loo)
