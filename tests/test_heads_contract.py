"""The posterior-head contract (bayes_diglm/inference/base.py), tested on every head.

To add a head, append a :class:`HeadCase` to ``HEADS`` (its constructor with fast settings, the kind of data it
takes, and a prior setting to grid-search); every test below then runs on it. scikit-learn's own estimator
checks run on the same list, with each expected failure named and justified in ``EXPECTED_FAILED_CHECKS``.
"""

from __future__ import annotations

import copy
import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from _bad_values import BAD_COUNTS, FAST, bad_features, bad_labels, bad_targets, bad_weights
from _refusal import assert_refused, assert_unchanged
from hypothesis import given
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import get_tags
from sklearn.utils.estimator_checks import parametrize_with_checks

from bayes_diglm.arviz import to_inference_data
from bayes_diglm.inference import (
    ConjugateLinearRegression,
    LaplaceClassifier,
    LaplaceRegressor,
    PosteriorHead,
    Predictive,
    SVIClassifier,
)
from bayes_diglm.inference.base import COVARIANCES, HeadTags, context_tags

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az


def _regression(n=120, seed=0):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 3))
    return Z, Z @ np.array([1.0, -0.5, 0.25]) + 0.5 + 0.5 * rng.normal(size=n)


def _binary(n=120, seed=0):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 3))
    return Z, np.where(Z @ np.array([1.5, -1.0, 0.5]) + rng.logistic(size=n) > 0, "yes", "no")


def _multiclass(n=150, seed=0):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 3))
    W = np.array([[1.5, 0.0, -0.5], [-1.0, 1.0, 0.0], [0.0, -1.0, 1.0]])
    return Z, np.array([3, 5, 8])[np.argmax(Z @ W.T + rng.gumbel(size=(n, 3)), axis=1)]


def _counts(n=150, seed=0):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 3))
    return Z, rng.poisson(np.exp(Z @ np.array([0.4, -0.3, 0.2]) + 0.5))


@dataclass
class HeadCase:
    name: str
    make: Callable[[], PosteriorHead]
    data: Callable
    grid: dict
    exact_predictive: bool  # predict_dist is exact given the posterior (else a closed-form approximation)


def _svi(**kw):
    return SVIClassifier(num_steps=200, plateau_window=100, plateau_tol=None, num_particles=2, **kw)


HEADS = [
    HeadCase("conjugate", ConjugateLinearRegression, _regression, {"prior_precision": [0.1, 10.0]}, True),
    HeadCase("laplace-binary", LaplaceClassifier, _binary, {"prior_precision": [0.1, 10.0]}, False),
    HeadCase("laplace-softmax", LaplaceClassifier, _multiclass, {"prior_precision": [0.1, 10.0]}, False),
    HeadCase("laplace-softmax-lowrank", lambda: LaplaceClassifier(covariance="lowrank", rank=4), _multiclass,
             {"prior_precision": [0.1, 10.0]}, False),
    HeadCase("laplace-poisson", LaplaceRegressor, _counts, {"prior_precision": [0.1, 10.0]}, True),
    HeadCase("laplace-gaussian", lambda: LaplaceRegressor(likelihood="gaussian", noise_variance=0.25), _regression,
             {"prior_precision": [0.1, 10.0]}, True),
    HeadCase("svi-binary", lambda: _svi(covariance="full"), _binary, {"prior_precision": [0.1, 10.0]}, False),
    HeadCase("svi-softmax-diag", lambda: _svi(covariance="diag"), _multiclass, {"prior_precision": [0.5, 2.0]},
             False),
    HeadCase("svi-softmax-kron", lambda: _svi(covariance="kron"), _multiclass, {"prior_precision": [0.5, 2.0]},
             False),
]
IDS = [case.name for case in HEADS]


@pytest.fixture(params=HEADS, ids=IDS)
def case(request):
    return request.param


def _is_classifier(head) -> bool:
    return getattr(head, "_estimator_type", None) == "classifier" or hasattr(head, "predict_proba")


# ---- construction, inputs and scikit-learn composition --------------------------------------------------


def test_integer_and_float_inputs_give_the_same_posterior(case):
    Z, y = case.data()
    Z_int = np.round(3 * Z).astype(np.int64)
    a = case.make().fit(Z_int, y)
    b = case.make().fit(Z_int.astype(np.float64), y)
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.predict_dist(Z_int).mean, b.predict_dist(Z_int.astype(float)).mean, rtol=1e-10)
    c = case.make().fit(Z_int.astype(object), y)  # object-dtype numeric (e.g. a DataFrame of ints)
    np.testing.assert_allclose(c.coef_, a.coef_, rtol=1e-10, atol=1e-12)
    assert a.n_features_in_ == 3


def test_fitted_vocabulary(case):
    Z, y = case.data()
    head = case.make()
    with pytest.raises(NotFittedError):
        head.predict(Z)
    with pytest.raises(NotFittedError):
        head.sample(2)
    head.fit(Z, y)
    assert head.fit(Z, y) is head
    for name in ("coef_", "intercept_", "posterior_", "n_features_in_"):
        assert hasattr(head, name), name
    assert np.isfinite(head.log_evidence())
    draws = head.sample(5, generator=0)
    assert draws["beta"].shape[0] == 5 and draws["beta"].shape[-1] == 3
    np.testing.assert_array_equal(draws["beta"], head.sample(5, generator=0)["beta"])
    assert isinstance(head.predict_dist(Z[:4]), Predictive)
    if _is_classifier(head):
        np.testing.assert_array_equal(head.classes_, np.unique(y))
        assert set(head.predict(Z)) <= set(np.unique(y))
        np.testing.assert_allclose(head.predict_proba(Z).sum(axis=1), 1.0)


def test_clone_pipeline_cross_validation_and_grid_search(case):
    Z, y = case.data()
    head = case.make()
    twin = clone(head)
    assert twin.get_params() == head.get_params() and twin is not head
    pipe = make_pipeline(StandardScaler(), case.make()).fit(Z, y)
    assert pipe.predict(Z).shape == (len(y),)
    scores = cross_val_score(case.make(), Z, y, cv=3)
    assert scores.shape == (3,) and np.all(np.isfinite(scores))
    search = GridSearchCV(case.make(), case.grid, cv=3).fit(Z, y)
    assert search.best_params_["prior_precision"] in case.grid["prior_precision"]


def test_rejected_calls_leave_predictions_unchanged(case):
    Z, y = case.data()
    head = case.make().fit(Z, y)
    before = head.predict_dist(Z).mean.copy()
    bad = Z.copy()
    bad[2, 1] = np.nan
    for call in (lambda: head.fit(bad, y), lambda: head.fit(Z, y[:-1]), lambda: head.fit(Z[:, :2][:, :0], y),
                 lambda: head.predict(Z[:, :2]), lambda: head.predict_dist(Z).interval(1.5)):
        with pytest.raises(ValueError):
            call()
    assert_unchanged([before], [head.predict_dist(Z).mean], "a refused call")
    assert head.n_features_in_ == 3


# ---- the predictive against Monte Carlo of the posterior draws --------------------------------------------


def test_predict_dist_moments_match_monte_carlo_of_sample(case):
    Z, y = case.data()
    head = case.make().fit(Z, y)
    Zq = Z[:8]
    pred = head.predict_dist(Zq)
    S = 40_000
    draws = head.sample(S, generator=1)
    if _is_classifier(head):
        # Monte Carlo of the class probabilities over the posterior draws
        # p(y = c | z, beta_s) of each draw, through the public pointwise likelihood (S, n, K)
        probs = np.stack([np.exp(head.pointwise_log_likelihood(draws, Zq, np.full(len(Zq), c)))
                          for c in head.classes_], axis=-1)
        mc, se = probs.mean(axis=0), probs.std(axis=0) / np.sqrt(S) + 1e-12
        exact = copy.deepcopy(head).set_params(predictive="mc", n_predictive_samples=S, predictive_seed=2)
        exact = exact.predict_dist(Zq).mean
        z = (exact - mc) / (np.sqrt(2) * se)
        assert np.max(np.abs(z)) < 5.0, z  # two independent Monte Carlo estimates of the same integral
        # the closed-form (probit) predictive: approximation error, not just Monte Carlo noise (it grows with
        # the logit variance; the low-rank posterior keeps the prior's variance in the directions it drops)
        assert np.max(np.abs(pred.mean - mc)) < 0.04
        np.testing.assert_allclose(pred.variance, pred.mean * (1 - pred.mean))
        return
    replicates = head.sample_predictive(draws, Zq, generator=3)  # y ~ p(y | z, draw): the predictive
    mean, var = replicates.mean(axis=0), replicates.var(axis=0)
    z_mean = (pred.mean - mean) / np.sqrt(pred.variance / S)
    assert np.max(np.abs(z_mean)) < 5.0, z_mean
    # the sample variance of S draws has sd about var * sqrt((kurtosis - 1) / S); allow 6 of those (kurtosis <= 9)
    np.testing.assert_allclose(var, pred.variance, rtol=6 * np.sqrt(8 / S))
    lo, hi = pred.interval(0.8)
    below, above = np.mean(replicates < lo, axis=0), np.mean(replicates > hi, axis=0)
    if case.name == "laplace-poisson":  # counts: each tail outside [lo, hi] holds at most 10%
        assert np.all(below <= 0.105) and np.all(above <= 0.105)
    else:
        np.testing.assert_allclose(below, 0.1, atol=0.01)
        np.testing.assert_allclose(above, 0.1, atol=0.01)


# ---- ArviZ ------------------------------------------------------------------------------------------------


def test_arviz_export_and_loo(case):
    Z, y = case.data()
    head = case.make().fit(Z, y)
    idata = to_inference_data(head, X=Z, y=y, draws=200, chains=2, seed=0)
    assert idata.posterior["beta"].shape[:2] == (2, 200)
    assert idata.log_likelihood["y"].shape == (2, 200, len(y))
    assert idata.posterior_predictive["y"].shape == (2, 200, len(y))
    if _is_classifier(head):  # replicates are labels of classes_
        assert set(np.unique(idata.posterior_predictive["y"].values)) <= set(np.unique(y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # PSIS k-hat warnings on tiny data
        loo = az.loo(idata)
    assert np.isfinite(loo.elpd_loo)
    # the log-likelihood at the posterior mean is the likelihood family's own
    ll = head.pointwise_log_likelihood({k: v.mean(axis=0, keepdims=True) for k, v in head.sample(1, generator=0)
                                        .items()}, Z, y)
    assert ll.shape == (1, len(y)) and np.all(np.isfinite(ll))


# ---- scikit-learn's estimator checks ----------------------------------------------------------------------

# Each entry: check name -> why the head does not pass it. Keep this list short and every reason specific.
EXPECTED_FAILED_CHECKS: dict[str, dict[str, str]] = {}


def _check_instances():
    return [
        ConjugateLinearRegression(),
        LaplaceClassifier(),
        LaplaceClassifier(covariance="kron"),
        LaplaceRegressor(),
        LaplaceRegressor(likelihood="gaussian"),
        SVIClassifier(num_steps=30, plateau_tol=None, num_particles=1),
    ]


@parametrize_with_checks(_check_instances(),
                         expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS.get(type(est).__name__, {}))
def test_sklearn_compatible_estimator(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a MAP that stops at max_iter on the checks' odd data
        check(estimator)


# ---- one contract: the base class's fit, one predict_dist signature, per-row context declared in tags ----------


def test_every_head_has_the_base_fit_and_one_predict_dist_signature(case):
    head = case.make()
    assert type(head).fit is PosteriorHead.fit  # validation and the state kept on failure live in one place
    params = list(inspect.signature(head.predict_dist).parameters.values())
    kinds = inspect.Parameter
    assert [(p.name, p.kind) for p in params] == [("Z", kinds.POSITIONAL_OR_KEYWORD), ("context", kinds.VAR_KEYWORD)]


def test_per_row_context_is_declared_in_tags_and_others_are_refused_by_name(case):
    Z, y = case.data()
    head = case.make()
    tags = get_tags(head)
    assert isinstance(tags, HeadTags) and context_tags(head) == tags.context_tags
    assert tags.context_tags.sample_weight in ("frequency", "noise")
    with pytest.raises(TypeError, match="trials"):
        head.fit(Z, y, trials=np.ones(len(y)))
    with pytest.raises(TypeError, match="groups"):
        head.fit(Z, y, groups=np.zeros(len(y)))
    head.fit(Z, y, sample_weight=np.ones(len(y)))
    before = head.predict_dist(Z[:5]).mean.copy()
    w = np.full(5, 4.0)
    if tags.context_tags.sample_weight == "noise":  # known noise precisions: the predictive narrows with w
        assert np.all(head.predict_dist(Z[:5], sample_weight=w).variance < head.predict_dist(Z[:5]).variance)
    else:  # frequency weights belong to fit only
        with pytest.raises(ValueError, match="sample_weight"):
            head.predict_dist(Z[:5], sample_weight=w)
    with pytest.raises(TypeError, match="trials"):
        head.predict_dist(Z[:5], trials=np.ones(5))
    np.testing.assert_array_equal(head.predict_dist(Z[:5]).mean, before)


class _FailingHead(PosteriorHead):
    """A head whose ``_fit`` sets some state, then fails: the base class's fit must restore the previous one."""

    def __init__(self, *, fail: bool = False):
        self.fail = fail

    def _fit(self, Z, y, sample_weight):
        self.coef_ = np.full(Z.shape[1], np.nan)
        if self.fail:
            raise RuntimeError("failed part-way")
        self.coef_ = np.zeros(Z.shape[1])


def test_the_base_fit_keeps_the_state_when_a_subclass_fit_fails():
    Z, y = _regression()
    head = _FailingHead().fit(Z, y)
    head.set_params(fail=True)
    with pytest.raises(RuntimeError, match="part-way"):
        head.fit(Z[:, :2], y)
    np.testing.assert_array_equal(head.coef_, np.zeros(3))
    assert head.n_features_in_ == 3


def test_optimize_prior_precision_has_one_signature_and_does_not_lower_the_evidence(case):
    Z, y = case.data()
    head = case.make().fit(Z, y)
    params = inspect.signature(head.optimize_prior_precision).parameters
    assert list(params) == ["per", "tol", "max_iter"] and params["per"].default == "scalar"
    before = head.log_evidence()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SVI's short runs may not settle
        assert head.optimize_prior_precision(per="feature", max_iter=5) is head
    # type-II maximum likelihood, MacKay's fixed point and variational EM all climb the evidence; SVI's ELBO is
    # a Monte Carlo estimate (a few tenths of a nat of noise on these data)
    assert head.log_evidence() >= before - (1.0 if isinstance(head, SVIClassifier) else 1e-8 * abs(before))
    with pytest.raises(ValueError, match="per"):
        head.optimize_prior_precision(per="everything")


def test_the_mixed_heads_declare_groups_in_their_tags():
    from bayes_diglm.inference import MixedEffectsClassifier, MixedEffectsPoisson, MixedEffectsRegression

    for head in (MixedEffectsRegression(), MixedEffectsClassifier(), MixedEffectsPoisson()):
        assert context_tags(head).groups, type(head).__name__
    assert not any(context_tags(case.make()).groups for case in HEADS)


def test_every_head_class_outside_the_mixed_package_follows_the_contract():
    """Without fitting (NUTS is slow): the base class's fit, one predict_dist signature, and an
    optimize_prior_precision of one signature wherever there is a log_evidence."""
    from bayes_diglm.inference import NUTSClassifier, NUTSRegressor, SVIRegressor

    kinds = inspect.Parameter
    for cls in (ConjugateLinearRegression, LaplaceClassifier, LaplaceRegressor, SVIClassifier, SVIRegressor,
                NUTSClassifier, NUTSRegressor):
        assert cls.fit is PosteriorHead.fit, cls.__name__
        params = inspect.signature(cls.predict_dist).parameters.values()
        assert [(p.name, p.kind) for p in params][1:] == [("Z", kinds.POSITIONAL_OR_KEYWORD),
                                                          ("context", kinds.VAR_KEYWORD)], cls.__name__
        if hasattr(cls, "log_evidence"):
            assert list(inspect.signature(cls.optimize_prior_precision).parameters) == [
                "self", "per", "tol", "max_iter"], cls.__name__


# ---- bad calls particular to one head (each once gave a raw numpy/torch/Pyro error, a silent garbage result or a
# misleading message): refused by name, the head's predictions bit-identical ----------------------------------

_bad_rng = np.random.default_rng(0)
Z_BAD = _bad_rng.normal(size=(60, 3))
Y_BIN = (Z_BAD[:, 0] + 0.5 * _bad_rng.normal(size=60) > 0).astype(int)
Y_3 = np.digitize(Z_BAD[:, 0] + 0.3 * _bad_rng.normal(size=60), [-0.5, 0.5])
Y_REG = Z_BAD @ np.array([1.0, -2.0, 0.5]) + 0.3 * _bad_rng.normal(size=60)


@pytest.fixture(scope="module")
def fitted_heads():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "laplace": LaplaceClassifier().fit(Z_BAD, Y_BIN),
            "laplace3": LaplaceClassifier().fit(Z_BAD, Y_3),
            "svi": SVIClassifier(num_steps=300, seed=0).fit(Z_BAD, Y_BIN),
            "conjugate": ConjugateLinearRegression().fit(Z_BAD, Y_REG),
        }


def _mc(head, n_samples: int):
    """A copy of the fitted head whose predictive is Monte Carlo with ``n_samples`` draws (an option of the head)."""
    return copy.deepcopy(head).set_params(predictive="mc", n_predictive_samples=n_samples, predictive_seed=0)


def _head_snapshot(head) -> list:
    return [head.predict_proba(Z_BAD[:5]) if hasattr(head, "predict_proba") else head.predict(Z_BAD[:5])]


HEAD_BAD_CALLS = {
    "fit on strings": ("laplace", lambda h: h.fit(Z_BAD.astype(str), Y_BIN), r"(?i)string|numeric|convert|float"),
    "mc with negative n_samples": ("laplace", lambda h: _mc(h, -3).predict_proba(Z_BAD), r"n_predictive_samples"),
    "mc with zero n_samples": ("laplace", lambda h: _mc(h, 0).predict_proba(Z_BAD), r"n_predictive_samples"),
    "svi with zero n_samples": ("svi", lambda h: _mc(h, 0).predict_proba(Z_BAD), r"n_predictive_samples"),
    "ArviZ with y one short": ("laplace", lambda h: to_inference_data(h, X=Z_BAD, y=Y_BIN[:-1], draws=10, chains=1),
                               r"(?i)y.*(rows|length|samples)|(rows|length|samples).*y"),
    "update with a string target": ("conjugate", lambda h: h.update(Z_BAD[0], "abc"), r"(?i)\by\b|target|number"),
    "update with a huge target": ("conjugate", lambda h: h.update(Z_BAD[0], 1e200), r"(?i)overflow|large|finite"),
    "predict on huge features": ("conjugate", lambda h: h.predict(Z_BAD * 1e200, return_std=True),
                                 r"(?i)overflow|large|finite"),
    "fit on huge targets": ("conjugate", lambda h: h.fit(Z_BAD, Y_REG * 1e200), r"(?i)overflow|large|finite"),
    "3-class proba on huge features": ("laplace3", lambda h: h.predict_proba(Z_BAD * 1e200),
                                       r"(?i)overflow|large|finite"),
    "svi fit on huge features": ("svi", lambda h: h.fit(Z_BAD * 1e200, Y_BIN), r"(?i)overflow|large|finite|scale"),
    "label 1e30": ("laplace", lambda h: h.fit(Z_BAD, np.where(np.arange(60) == 0, 1e30, Y_BIN)),
                   r"(?i)label|class|continuous|integer"),
    "one class": ("laplace", lambda h: h.fit(Z_BAD, np.zeros(60, dtype=int)), r"(?i)class"),
    "negative sample_weight": ("conjugate", lambda h: h.fit(Z_BAD, Y_REG, sample_weight=-np.ones(60)),
                               r"(?i)sample_weight|negative|non-negative"),
}


@pytest.mark.parametrize("name", sorted({name for name, _, _ in HEAD_BAD_CALLS.values()}))
def test_bad_calls_particular_to_a_head_are_refused_by_name_and_change_nothing(fitted_heads, name):
    head = fitted_heads[name]
    before = _head_snapshot(head)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_refused({case: (lambda call=call: call(head), pattern)
                        for case, (owner, call, pattern) in HEAD_BAD_CALLS.items() if owner == name})
    assert_unchanged(before, _head_snapshot(head), "a refused call")


@pytest.mark.parametrize("name", ["laplace", "laplace3", "svi"])
def test_monte_carlo_probabilities_are_probabilities(fitted_heads, name):
    proba = _mc(fitted_heads[name], 50).predict_proba(Z_BAD)
    assert np.isfinite(proba).all() and np.allclose(proba.sum(axis=1), 1.0)


def test_a_scalar_sample_weight_is_broadcast_as_in_scikit_learn():
    a = LaplaceClassifier().fit(Z_BAD, Y_BIN, sample_weight=2.0)
    b = LaplaceClassifier().fit(Z_BAD, Y_BIN, sample_weight=np.full(len(Y_BIN), 2.0))
    np.testing.assert_array_equal(a.coef_, b.coef_)


# ---- generated bad values of each kind (hypothesis, tests/_bad_values.py) through every entry that takes the kind:
# refused with a ValueError or TypeError naming the argument, the head's predictions and draws bit-identical ------

N_SWEEP = 40
Z_SWEEP = Z_BAD[:N_SWEEP]
Y_SWEEP = Y_REG[:N_SWEEP]
Y_SWEEP_CLF = Y_BIN[:N_SWEEP]
PROBE = Z_BAD[N_SWEEP:N_SWEEP + 5]


@pytest.fixture(scope="module")
def swept_heads():
    """One fitted head of each kind the rules meet: Gaussian conjugate, Laplace classifier and Poisson regressor,
    SVI classifier; each with its outputs before any bad call."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        heads = {
            "conjugate": ConjugateLinearRegression().fit(Z_SWEEP, Y_SWEEP),
            "laplace-classifier": LaplaceClassifier().fit(Z_SWEEP, Y_SWEEP_CLF),
            "laplace-poisson": LaplaceRegressor(likelihood="poisson").fit(Z_SWEEP, _sweep_targets("laplace-poisson")),
            "svi-classifier": SVIClassifier(num_steps=20, plateau_tol=None).fit(Z_SWEEP, Y_SWEEP_CLF),
        }
    return {name: (head, _sweep_snapshot(head)) for name, head in heads.items()}


def _sweep_targets(name: str, n: int = N_SWEEP):
    if name == "laplace-poisson":
        return np.round(np.exp(0.3 * Z_SWEEP[:n, 0]))
    return Y_SWEEP_CLF[:n] if name.endswith("classifier") else Y_SWEEP[:n]


def _sweep_snapshot(head) -> list:
    return [np.asarray(head.predict(PROBE)), head.sample(3, generator=0)["beta"]]


HEAD_FEATURE_ENTRIES = {
    "predict": lambda h, X: h.predict(X),
    "predict_dist": lambda h, X: h.predict_dist(X),
    "pointwise_log_likelihood": lambda h, X: h.pointwise_log_likelihood(
        h.sample(2, generator=0), X, np.abs(np.round(Y_SWEEP[:len(X)])) if not hasattr(h, "classes_")
        else Y_SWEEP_CLF[:len(X)]),
    "sample_predictive": lambda h, X: h.sample_predictive(h.sample(2, generator=0), X, generator=0),
}


@FAST
@given(data=st.data())
def test_every_head_entry_refuses_generated_bad_features_and_changes_nothing(swept_heads, data):
    head, before = swept_heads[data.draw(st.sampled_from(sorted(swept_heads)))]
    entry = HEAD_FEATURE_ENTRIES[data.draw(st.sampled_from(sorted(HEAD_FEATURE_ENTRIES)))]
    X, pattern = bad_features(data, PROBE)
    with pytest.raises((ValueError, TypeError), match=pattern):
        entry(head, X)
    assert_unchanged(before, _sweep_snapshot(head), "a refused call")


@FAST
@given(data=st.data())
def test_head_fits_refuse_generated_bad_targets_and_weights_and_keep_the_fitted_state(swept_heads, data):
    name = data.draw(st.sampled_from(["conjugate", "laplace-poisson"]))
    head, before = swept_heads[name]
    if data.draw(st.booleans()):
        w, pattern = bad_weights(data, N_SWEEP)
        call = lambda: head.fit(Z_SWEEP, _sweep_targets(name), sample_weight=w)  # noqa: E731
    else:
        y, pattern = bad_targets(data, _sweep_targets(name))
        call = lambda: head.fit(Z_SWEEP, y)  # noqa: E731
    with pytest.raises((ValueError, TypeError), match=pattern):
        call()
    assert_unchanged(before, _sweep_snapshot(head), "a refused fit")


@FAST
@given(data=st.data())
def test_classifier_fits_refuse_missing_and_mixed_labels_and_keep_the_fitted_state(swept_heads, data):
    head, before = swept_heads[data.draw(st.sampled_from(["laplace-classifier", "svi-classifier"]))]
    n = data.draw(st.integers(3, 10))
    y, pattern = bad_labels(data, np.where(Y_SWEEP_CLF[:n] == 1, "yes", "no"))
    with pytest.raises((ValueError, TypeError), match=pattern):
        head.fit(Z_SWEEP[:n], y)
    assert_unchanged(before, _sweep_snapshot(head), "a refused fit")


@FAST
@given(data=st.data(), n=BAD_COUNTS)
def test_head_samplers_refuse_bad_counts_before_allocating(swept_heads, data, n):
    name = data.draw(st.sampled_from(sorted(swept_heads)))
    head, before = swept_heads[name]
    calls = [lambda: head.sample(n), lambda: head.predict_dist(PROBE).sample(n)]
    if name.endswith("classifier"):
        calls.append(lambda: head.predict_dist(PROBE, method="mc", n_samples=n))
    with pytest.raises((ValueError, TypeError), match=r"\bn\b|n_samples"):
        data.draw(st.sampled_from(calls))()
    assert_unchanged(before, _sweep_snapshot(head), "a refused call")


BAD_HEAD_SETTINGS = {
    LaplaceClassifier: {"max_iter": st.integers(max_value=0), "tol": st.floats(max_value=-1e-12) | st.just(np.nan),
                        "prior_precision": st.floats(max_value=0.0),
                        "covariance": st.text(max_size=4).filter(lambda s: s not in COVARIANCES)},
    SVIClassifier: {"num_steps": st.integers(max_value=0), "lr": st.floats(max_value=0.0),
                    "seed": st.integers(max_value=-1) | st.text(min_size=1, max_size=3)},
    ConjugateLinearRegression: {"a0": st.floats(max_value=0.0), "b0": st.just(np.nan)},
}


@FAST
@given(data=st.data())
def test_head_settings_are_checked_before_any_work(data):
    cls = data.draw(st.sampled_from(sorted(BAD_HEAD_SETTINGS, key=lambda c: c.__name__)))
    param = data.draw(st.sampled_from(sorted(BAD_HEAD_SETTINGS[cls])))
    head = cls(**{param: data.draw(BAD_HEAD_SETTINGS[cls][param])})
    with pytest.raises((ValueError, TypeError), match=f"'{param}' parameter of {cls.__name__}"):
        head.fit(Z_SWEEP, Y_SWEEP_CLF)  # refused by the constraint check, before the data are even read
    assert not hasattr(head, "n_features_in_")


@FAST
@given(tol=st.floats(max_value=-1e-12) | st.just(np.nan) | st.text(max_size=2),
       max_iter=st.integers(max_value=0) | st.just(1))
def test_optimize_prior_precision_checks_its_tolerance_and_limit(swept_heads, tol, max_iter):
    head, before = swept_heads["laplace-classifier"]
    with pytest.raises((ValueError, TypeError), match="tol|max_iter"):
        head.optimize_prior_precision(tol=tol, max_iter=max_iter)
    assert_unchanged(before, _sweep_snapshot(head), "a refused call")
