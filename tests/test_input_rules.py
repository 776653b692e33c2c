"""Property-based checks (hypothesis) of the one input rule per kind of argument (:mod:`bayes_diglm._validation`).

For every kind (features, targets, labels, weights, counts, tolerances, seeds and constructor settings) hypothesis
generates bad values and passes them to every public entry that takes that kind: the heads' and estimators'
predictors, scorers, samplers, exporters and fits. Each must refuse with a ``ValueError`` or ``TypeError`` whose
message names the argument, and leave the fitted model's predictions bit-identical. The same generators pass
through the rules themselves, so a rule and its call sites cannot drift apart.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from _refusal import assert_unchanged
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bayes_diglm import DIGLMRegressor
from bayes_diglm._validation import MAX_ELEMENTS, check_count, check_labels, check_targets, refuse_text
from bayes_diglm.inference import ConjugateLinearRegression, LaplaceClassifier, LaplaceRegressor, SVIClassifier
from bayes_diglm.inference.base import COVARIANCES

N, D = 40, 3
_rng = np.random.default_rng(0)
Z = _rng.normal(size=(N, D))
Y_REG = Z @ [1.0, -0.5, 0.2] + 0.1 * _rng.normal(size=N)
Y_CLF = (Z[:, 0] + 0.3 * _rng.normal(size=N) > 0).astype(int)
PROBE = _rng.normal(size=(5, D))
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])


def _fitted():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        heads = {
            "conjugate": ConjugateLinearRegression().fit(Z, Y_REG),
            "laplace-classifier": LaplaceClassifier().fit(Z, Y_CLF),
            "laplace-poisson": LaplaceRegressor(likelihood="poisson").fit(Z, np.round(np.exp(0.3 * Z[:, 0]))),
            "svi-classifier": SVIClassifier(num_steps=20, plateau_tol=None).fit(Z, Y_CLF),
            "estimator": DIGLMRegressor(posterior="conjugate", epochs=1, quiet=True,
                                        flow_kwargs={"num_layers": 1, "hidden_dims": (4,)}).fit(
                Z.astype("float32"), Y_REG.astype("float32")),
        }
    return heads


@pytest.fixture(scope="module")
def models():
    fitted = _fitted()
    return {name: (m, _snapshot(m)) for name, m in fitted.items()}


def _snapshot(model):
    X = PROBE.astype("float32") if isinstance(model, DIGLMRegressor) else PROBE
    out = [np.asarray(model.predict(X)), model.sample(3, generator=0)["beta"]]
    if hasattr(model, "score_samples"):
        out.append(model.score_samples(X))
    return out


def _unchanged(model, before):
    assert_unchanged(before, _snapshot(model), "a refused call")


# ---- bad values of each kind ------------------------------------------------------------------------------------

def _at(data, shape):
    return data.draw(st.integers(0, shape[0] - 1)), data.draw(st.integers(0, shape[1] - 1))


def bad_features(data, base: np.ndarray):
    """Features that break the rule: numeric text (NumPy, object lists, pandas ``string`` columns), a value whose
    square overflows float64, NaN or infinity at a random place."""
    kind = data.draw(st.sampled_from(["text", "object text", "pandas string", "overflow", "nan", "inf"]))
    X = base.copy()
    i, j = _at(data, X.shape)
    if kind == "text":
        return X.astype(str), r"(?i)string|text"
    if kind == "object text":
        out = X.astype(object)
        out[i, j] = str(out[i, j])
        return out, r"(?i)string|text"
    if kind == "pandas string":
        return pd.DataFrame(X).astype("string"), r"(?i)text|string"
    X[i, j] = data.draw(st.sampled_from([-1.0, 1.0])) * data.draw(st.floats(1.4e154, 1.7e308))
    if kind == "nan":
        X[i, j] = np.nan
    elif kind == "inf":
        X[i, j] = np.inf
    return X, r"(?i)overflow|nan|inf|finite"


def bad_targets(data, base: np.ndarray):
    """Numeric targets that break the rule: NaN, infinity or pandas' NA at a random row, numeric text."""
    kind = data.draw(st.sampled_from(["nan", "inf", "pandas NA", "text"]))
    i = data.draw(st.integers(0, base.size - 1))
    if kind == "text":
        return base.astype(str), r"(?i)string|text"
    if kind == "pandas NA":
        return pd.Series(base, dtype="Float64").mask(np.arange(base.size) == i), r"(?i)missing|nan"
    y = base.astype(float).copy()
    y[i] = np.nan if kind == "nan" else np.inf
    return y, r"(?i)nan|inf|missing|finite"


def bad_weights(data, n: int):
    kind = data.draw(st.sampled_from(["negative", "nan", "text", "overflow", "zero", "length"]))
    w = np.ones(n)
    i = data.draw(st.integers(0, n - 1))
    if kind == "negative":
        w[i] = -data.draw(st.floats(1e-6, 1e6))
    elif kind == "nan":
        w[i] = np.nan
    elif kind == "text":
        return w.astype(str), r"(?i)string|text"
    elif kind == "overflow":
        w[i] = data.draw(st.floats(1.4e154, 1.7e308))
    elif kind == "zero":
        w[:] = 0.0
    else:
        w = np.ones(n + data.draw(st.integers(1, 5)))
    return w, r"(?i)sample_weight"


BAD_COUNTS = st.one_of(st.integers(max_value=0), st.integers(MAX_ELEMENTS + 1, 10**15),
                       st.floats(allow_nan=True), st.text(max_size=3), st.booleans(), st.none())


# ---- the rules, directly ----------------------------------------------------------------------------------------

@FAST
@given(data=st.data())
def test_the_feature_rules_refuse_every_generated_bad_array(data):
    from bayes_diglm._validation import refuse_overflow

    X, pattern = bad_features(data, Z)
    with pytest.raises((ValueError, TypeError), match=pattern):
        refuse_text(X, "X")
        refuse_overflow(np.asarray(X, dtype=np.float64), "X")


@FAST
@given(data=st.data())
def test_the_target_rule_refuses_every_generated_bad_target(data):
    y, pattern = bad_targets(data, Y_REG)
    with pytest.raises((ValueError, TypeError), match=pattern):
        check_targets(y, "y")


@FAST
@given(n=BAD_COUNTS)
def test_the_count_rule_refuses_before_allocating(n):
    with pytest.raises((ValueError, TypeError), match=r"\bn\b"):
        check_count(n, "n")


@FAST
@given(labels=st.lists(st.sampled_from(["a", "b"]), min_size=3, max_size=10),
       odd=st.sampled_from([None, np.nan, np.inf, pd.NA, 1.5]), at=st.integers(0, 9))
def test_the_label_rule_refuses_missing_and_mixed_labels(labels, odd, at):
    y = np.asarray(labels, dtype=object)
    y[at % len(y)] = odd
    with pytest.raises((ValueError, TypeError), match=r"(?i)missing|mixes"):
        check_labels(y, "y")


# ---- every entry that takes the kind ----------------------------------------------------------------------------

FEATURE_ENTRIES = {
    "predict": lambda m, X: m.predict(X),
    "predict_dist": lambda m, X: m.predict_dist(X),
    "pointwise_log_likelihood": lambda m, X: m.pointwise_log_likelihood(m.sample(2, generator=0), X,
                                                                       _targets_for(m, len(X))),
    "sample_predictive": lambda m, X: m.sample_predictive(m.sample(2, generator=0), X, generator=0),
}
ESTIMATOR_ENTRIES = {
    "score_samples": lambda m, X: m.score_samples(X),
    "transform": lambda m, X: m.transform(X),
    "flow_outputs": lambda m, X: m.flow_outputs(X),
    "log_predictive": lambda m, X: m.log_predictive(X, Y_REG[:len(X)]),
}


def _targets_for(model, n):
    return Y_CLF[:n] if hasattr(model, "classes_") else np.abs(np.round(Y_REG[:n]))


@FAST
@given(data=st.data())
def test_every_entry_refuses_bad_features_by_name_and_changes_nothing(models, data):
    name = data.draw(st.sampled_from(sorted(models)))
    model, before = models[name]
    entries = {**FEATURE_ENTRIES, **(ESTIMATOR_ENTRIES if isinstance(model, DIGLMRegressor) else {})}
    entry = data.draw(st.sampled_from(sorted(entries)))
    X, pattern = bad_features(data, PROBE)
    with pytest.raises((ValueError, TypeError), match=pattern):
        entries[entry](model, X)
    _unchanged(model, before)


@FAST
@given(data=st.data())
def test_fits_refuse_bad_targets_and_weights_and_keep_the_fitted_state(models, data):
    name = data.draw(st.sampled_from(["conjugate", "laplace-poisson", "estimator"]))
    model, before = models[name]
    if data.draw(st.booleans()) and name != "estimator":
        w, pattern = bad_weights(data, N)
        call = lambda: model.fit(Z, _targets_for(model, N), sample_weight=w)  # noqa: E731
    else:
        y, pattern = bad_targets(data, _targets_for(model, N))
        X = Z.astype("float32") if name == "estimator" else Z
        call = lambda: model.fit(X, y)  # noqa: E731
    with pytest.raises((ValueError, TypeError), match=pattern):
        call()
    _unchanged(model, before)


@FAST
@given(data=st.data(), n=BAD_COUNTS)
def test_samplers_refuse_bad_counts_before_allocating(models, data, n):
    name = data.draw(st.sampled_from(sorted(models)))
    model, before = models[name]
    X = PROBE.astype("float32") if name == "estimator" else PROBE
    calls = [lambda: model.sample(n), lambda: model.predict_dist(X).sample(n)]
    if name.endswith("classifier"):
        calls.append(lambda: model.predict_dist(X, method="mc", n_samples=n))
    with pytest.raises((ValueError, TypeError), match=r"\bn\b|n_samples"):
        data.draw(st.sampled_from(calls))()
    _unchanged(model, before)


BAD_SETTINGS = {
    LaplaceClassifier: {"max_iter": st.integers(max_value=0), "tol": st.floats(max_value=-1e-12) | st.just(np.nan),
                        "prior_precision": st.floats(max_value=0.0),
                        "covariance": st.text(max_size=4).filter(lambda s: s not in COVARIANCES)},
    SVIClassifier: {"num_steps": st.integers(max_value=0), "lr": st.floats(max_value=0.0),
                    "seed": st.integers(max_value=-1) | st.text(min_size=1, max_size=3)},
    ConjugateLinearRegression: {"a0": st.floats(max_value=0.0), "b0": st.just(np.nan)},
    DIGLMRegressor: {"seed": st.text(min_size=1, max_size=3), "epochs": st.integers(max_value=0),
                     "val_fraction": st.floats(1.0, 10.0), "lr": st.floats(max_value=0.0)},
}


@FAST
@given(data=st.data())
def test_constructor_settings_are_checked_before_any_work(data):
    cls = data.draw(st.sampled_from(sorted(BAD_SETTINGS, key=lambda c: c.__name__)))
    param = data.draw(st.sampled_from(sorted(BAD_SETTINGS[cls])))
    value = data.draw(BAD_SETTINGS[cls][param])
    est = cls(**{param: value})
    with pytest.raises((ValueError, TypeError), match=f"'{param}' parameter of {cls.__name__}"):
        est.fit(Z, Y_CLF)  # refused by the constraint check, before the data are even read
    assert not hasattr(est, "n_features_in_")


@FAST
@given(tol=st.floats(max_value=-1e-12) | st.just(np.nan) | st.text(max_size=2),
       max_iter=st.integers(max_value=0) | st.just(1))
def test_optimize_prior_precision_checks_its_tolerance_and_limit(models, tol, max_iter):
    model, before = models["laplace-classifier"]
    with pytest.raises((ValueError, TypeError), match="tol|max_iter"):
        model.optimize_prior_precision(tol=tol, max_iter=max_iter)
    _unchanged(model, before)


def test_flow_sample_is_bounded_before_it_allocates():
    from bayes_diglm.flows import build_flow

    flow = build_flow({"kind": "realnvp", "dim": 3, "num_layers": 2})
    with pytest.raises(ValueError, match="would allocate"):
        flow.sample(10**12)
    assert flow.sample(4).shape == (4, 3)
