"""The DIGLM estimators: scikit-learn's own checks and feature names, the posterior option, bad input on every
method of every flavour (refused by name, the fitted model unchanged; generated bad values of each kind through
every entry, tests/_bad_values.py), and regression tests of past defects."""

from __future__ import annotations

import inspect
import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from _bad_values import BAD_COUNTS, FAST, bad_features, bad_targets
from _refusal import assert_refused, assert_unchanged
from hypothesis import given
from hypothesis import strategies as st
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import DataConversionWarning, NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks
from sklearn.utils.validation import check_is_fitted

from bayes_diglm import DIGLMClassifier, DIGLMRegressor
from bayes_diglm.inference.conjugate import ConjugateLinearRegression

# Small enough that scikit-learn's ~60 checks per estimator run in seconds, large enough that its accuracy checks
# (R^2 > 0.5 in check_regressors_train, accuracy > 0.83 in check_classifiers_train) are met honestly.
SMALL = dict(epochs=8, lr=3e-2, batch_size=100, flow_kwargs={"num_layers": 1, "hidden_dims": (8,)}, quiet=True)


# No check is skipped or expected to fail. check_fit2d_1feature passes because a coupling flow needs at least 2
# features and fit says so with the ValueError scikit-learn accepts ("... got 1 feature(s)");
# check_methods_subset_invariance passes because float64 inputs run a float64 network (as sklearn's MLPs do).
@parametrize_with_checks(
    [DIGLMRegressor(**SMALL), DIGLMRegressor(posterior="conjugate", **SMALL), DIGLMClassifier(**SMALL),
     DIGLMClassifier(posterior="laplace", **SMALL)],
    expected_failed_checks=lambda est: {},
)
def test_scikit_learn_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch's note on read-only memmaps in the memmap checks
        check(estimator)


def _regression(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    noise = 0.1 + 0.6 * (X[:, 2] > 0)
    return X, X[:, 0] - 2 * X[:, 1] + noise * rng.normal(size=n)


def _fast(cls, **kwargs):
    return cls(**{**SMALL, "epochs": 15, **kwargs})


# -- parameters ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [DIGLMRegressor, DIGLMClassifier])
def test_every_parameter_is_spelled_out(cls):
    signature = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    assert cls._get_param_names() == sorted(signature)
    assert {"flow", "flow_kwargs", "posterior", "px_weight", "epochs", "seed", "quiet"} <= set(signature)
    assert all(p.kind is p.KEYWORD_ONLY for p in list(inspect.signature(cls.__init__).parameters.values())[1:])
    for klass in cls.__mro__[: cls.__mro__.index(BaseEstimator)]:  # scikit-learn's own methods, not ours
        assert not {"get_params", "set_params", "__repr__", "_get_param_names"} & set(vars(klass)), klass


def test_scikit_learn_repr_and_nested_posterior_parameters():
    reg = DIGLMRegressor(posterior=ConjugateLinearRegression(prior_precision=2.0), epochs=3)
    assert " ".join(repr(reg).split()) == (
        "DIGLMRegressor(epochs=3, posterior=ConjugateLinearRegression(prior_precision=2.0))")
    reg.set_params(posterior__prior_precision=5.0)
    assert reg.get_params()["posterior__prior_precision"] == 5.0
    copy = clone(reg)
    assert copy.posterior is not reg.posterior and copy.posterior.prior_precision == 5.0
    X, y = _regression()
    copy.set_params(**SMALL).fit(X, y)
    assert copy.posterior_ is not copy.posterior and copy.posterior_.prior_precision == 5.0
    with pytest.raises(NotFittedError):  # the template stays unfitted
        check_is_fitted(copy.posterior)


def test_a_bad_posterior_is_refused_before_training():
    X, y = _regression(60)
    with pytest.raises(ValueError, match="posterior must be one of"):
        DIGLMRegressor(posterior="hmc", epochs=1, quiet=True).fit(X, y)
    with pytest.raises(TypeError, match="posterior head"):
        DIGLMRegressor(posterior=3.0, epochs=1, quiet=True).fit(X, y)
    with pytest.raises(ValueError, match="head='poisson' takes posterior='laplace'"):
        DIGLMRegressor(head="poisson", posterior="conjugate", epochs=1, quiet=True).fit(X, np.ones(60))


# -- past defects -------------------------------------------------------------------------------------------


def test_poisson_head_takes_integer_counts():
    X, _ = _regression(200)
    counts = np.random.default_rng(1).poisson(np.exp(0.5 * X[:, 0]))
    assert counts.dtype.kind == "i"
    reg = _fast(DIGLMRegressor, head="poisson").fit(X, counts)
    assert np.all(reg.predict(X) > 0)
    with pytest.raises(ValueError, match="non-negative integer counts"):
        _fast(DIGLMRegressor, head="poisson").fit(X, counts - 0.5)


def test_integer_and_object_numeric_X_are_accepted():
    X, y = _regression(200)
    X_int = np.round(10 * X).astype(np.int64)
    reference = _fast(DIGLMRegressor).fit(X_int.astype(np.float64), y).predict(X_int.astype(np.float64))
    frame = pd.DataFrame(X_int, columns=["a", "b", "c"])
    for X_in in (X_int, frame, X_int.astype(object)):
        reg = _fast(DIGLMRegressor).fit(X_in, y)
        np.testing.assert_array_equal(reg.predict(X_in), reference)
    assert list(_fast(DIGLMRegressor).fit(frame, y).feature_names_in_) == ["a", "b", "c"]


def test_pandas_series_of_strings_are_labels():
    X, _ = _regression(200)
    labels = pd.Series(np.where(X[:, 0] + X[:, 1] > 0, "up", "down"))
    clf = _fast(DIGLMClassifier).fit(X, labels)
    assert list(clf.classes_) == ["down", "up"]
    assert set(clf.predict(X)) <= {"down", "up"}
    assert clf.score(X, labels) > 0.8


def test_a_continuous_target_is_refused_by_the_classifier():
    X, _ = _regression(50)
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        DIGLMClassifier(epochs=1, quiet=True).fit(X, np.random.default_rng(0).normal(size=50))


@pytest.mark.parametrize("cls", [DIGLMRegressor, DIGLMClassifier])
def test_a_column_vector_y_is_flattened_with_a_warning(cls):
    X, y = _regression(100)
    if cls is DIGLMClassifier:
        y = (y > 0).astype(int)
    flat = _fast(cls).fit(X, y).predict(X)
    with pytest.warns(DataConversionWarning):
        column = _fast(cls).fit(X, y[:, None]).predict(X)
    np.testing.assert_array_equal(column, flat)


# -- the posterior over beta --------------------------------------------------------------------------------


def test_conjugate_posterior_uses_the_learned_noise_precisions_as_known_weights():
    """The estimator's predictive equals the recipe done by hand: NIG fit on z with weights exp(-log var(z))."""
    X, y = _regression(300)
    reg = _fast(DIGLMRegressor, posterior="conjugate", epochs=30).fit(X, y)
    Z = reg.transform(X)
    with torch.no_grad():
        log_var = reg.model_.head.noise_log_var(torch.from_numpy(Z)).numpy()
    precision = np.exp(-log_var)
    w = precision / precision.mean()
    head = ConjugateLinearRegression().fit(Z, y, sample_weight=w)
    X_new = _regression(20, seed=5)[0]
    Z_new = reg.transform(X_new)
    with torch.no_grad():
        w_new = np.exp(-reg.model_.head.noise_log_var(torch.from_numpy(Z_new)).numpy()) / precision.mean()
    y_new = _regression(20, seed=5)[1]
    ours, by_hand = reg.predict_dist(X_new), head.predict_dist(Z_new, sample_weight=w_new)
    np.testing.assert_allclose(ours.log_prob(y_new), by_hand.log_prob(y_new), rtol=1e-10)
    np.testing.assert_allclose(ours.mean, by_hand.mean, rtol=1e-10)
    assert reg.noise_normaliser_ == pytest.approx(precision.mean(), rel=1e-12)
    # The learned noise is larger where X[:, 2] > 0, so the predictive there is wider.
    sd = reg.predict_dist(X).stddev
    assert sd[X[:, 2] > 0.5].mean() > 1.5 * sd[X[:, 2] < -0.5].mean()


def test_point_predictive_is_the_trained_head():
    X, y = _regression(200)
    reg = _fast(DIGLMRegressor).fit(X, y)
    pred = reg.predict_dist(X[:10])
    with torch.no_grad():
        dist = reg.model_.predict_dist(torch.from_numpy(X[:10]))
    np.testing.assert_allclose(pred.mean, dist.mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(pred.stddev, dist.stddev.numpy(), rtol=1e-12)
    np.testing.assert_allclose(reg.log_predictive(X[:10], y[:10]), dist.log_prob(torch.from_numpy(y[:10])).numpy(),
                               rtol=1e-12)
    lo, hi = pred.interval(0.9)
    assert np.all(lo < pred.mean) and np.all(pred.mean < hi)
    with pytest.raises(ValueError, match="posterior='point'"):
        reg.sample(3)


def test_one_pass_through_the_flow_gives_features_density_and_noise():
    X, y = _regression(200)
    reg = _fast(DIGLMRegressor, posterior="conjugate").fit(X, y)
    model = reg.model_
    x = torch.from_numpy(X[:7])
    with torch.no_grad():
        out = model.outputs(x)
        torch.testing.assert_close(out.features, model.features(x))
        torch.testing.assert_close(out.log_px, model.log_px(x))
        torch.testing.assert_close(out.noise_precision, torch.exp(-model.head.noise_log_var(model.features(x))))
    calls = []
    handle = model.flow.register_forward_hook(lambda *args: calls.append(1))
    try:
        reg.predict_dist(X)
        assert len(calls) == 1  # features and noise weights of all 200 rows from one flow pass
        reg.score_samples(X)
        assert len(calls) == 2
    finally:
        handle.remove()


def test_sample_and_dims_come_from_the_fitted_head():
    X, y = _regression(200)
    reg = _fast(DIGLMRegressor, posterior="conjugate").fit(X, y)
    with pytest.raises(NotFittedError):
        DIGLMRegressor(posterior="conjugate").sample(2)
    draws = reg.sample(50, generator=np.random.default_rng(0))
    assert draws["beta"].shape == (50, 3)
    dims, coords = reg.posterior_dims()
    assert coords["feature"] == ["z0", "z1", "z2"]
    ll = reg.pointwise_log_likelihood(draws, X[:9], y[:9])
    assert ll.shape == (50, 9) and np.all(np.isfinite(ll))
    assert reg.sample_predictive(draws, X[:9], generator=0).shape == (50, 9)


def test_a_failed_fit_keeps_the_previous_posterior():
    X, y = _regression(200)
    reg = _fast(DIGLMRegressor, posterior="conjugate").fit(X, y)
    before = reg.predict_dist(X).mean
    head = reg.posterior_
    with pytest.raises(ValueError):
        reg.fit(np.hstack([X, X]), np.full(200, np.nan))
    with pytest.raises(ValueError):
        reg.set_params(posterior="nuts").fit(X, y)
    reg.set_params(posterior="conjugate")
    assert reg.posterior_ is head and reg.n_features_in_ == 3
    np.testing.assert_array_equal(reg.predict_dist(X).mean, before)


SAVE_CASES = [
    (DIGLMRegressor, "point", "regression"), (DIGLMRegressor, "conjugate", "regression"),
    (DIGLMRegressor, "laplace", "counts"), (DIGLMRegressor, "mixed", "regression"),
    (DIGLMRegressor, "instance", "regression"),
    (DIGLMClassifier, "point", "labels"), (DIGLMClassifier, "laplace", "labels"), (DIGLMClassifier, "svi", "labels"),
    (DIGLMClassifier, "mixed", "labels"),
]


@pytest.mark.parametrize(("cls", "posterior", "data"), SAVE_CASES, ids=[f"{c.__name__}-{p}" for c, p, _ in SAVE_CASES])
def test_save_and_load_round_trip_every_posterior(cls, posterior, data, tmp_path):
    """save() stores the posterior head too (tensors + JSON, weights_only): the loaded estimator predicts the same."""
    from bayes_diglm import load_estimator
    from bayes_diglm.inference import SVIClassifier

    X, y = _regression(120)
    kw = {"head": "poisson"} if data == "counts" else {}
    if data == "counts":
        y = np.random.default_rng(3).poisson(np.exp(0.5 * X[:, 0]))
    if data == "labels":
        y = np.where(y > np.median(y), "high", "low")
    groups = np.arange(120) % 4 if posterior == "mixed" else None
    spec = {"instance": ConjugateLinearRegression(prior_precision=3.0),
            "svi": SVIClassifier(num_steps=100, plateau_tol=None)}.get(posterior, posterior)
    est = _fast(cls, epochs=2, posterior=spec, **kw).fit(X, y, groups=groups)
    loaded = load_estimator(est.save(tmp_path / "m.pt"))
    assert type(loaded) is cls and repr(loaded) == repr(est)
    assert loaded.get_params().keys() == est.get_params().keys()
    Xq, gq = X[:15], None if groups is None else groups[:15]
    a, b = est.predict_dist(Xq, groups=gq), loaded.predict_dist(Xq, groups=gq)
    np.testing.assert_array_equal(b.mean, a.mean)
    np.testing.assert_array_equal(b.variance, a.variance)
    np.testing.assert_array_equal(loaded.predict(Xq, groups=gq), est.predict(Xq, groups=gq))
    if posterior != "point":
        np.testing.assert_array_equal(loaded.sample(5, generator=0)["beta"], est.sample(5, generator=0)["beta"])


def test_a_posterior_state_naming_a_foreign_class_is_refused():
    from bayes_diglm.inference.persistence import from_state, to_state

    state = to_state(ConjugateLinearRegression().fit(np.eye(3), np.arange(3.0)))
    with pytest.raises(ValueError, match="not a bayes_diglm class"):
        from_state({**state, "json": state["json"].replace("bayes_diglm.inference.conjugate", "os", 1)})
    with pytest.raises(TypeError, match="cannot store"):
        to_state(ConjugateLinearRegression(prior_mean=pd.Series([0.0, 0.0, 0.0])))


def test_a_posterior_state_naming_bayes_diglm_main_is_refused_without_importing_it(monkeypatch):
    """Importing bayes_diglm.__main__ runs the command line with this process's argv and exits: a crafted state
    must not reach that import (nor dunder attributes of a module)."""
    import sys

    from bayes_diglm.inference.persistence import from_state

    monkeypatch.setattr(sys, "argv", ["bayes_diglm", "--help"])
    monkeypatch.delitem(sys.modules, "bayes_diglm.__main__", raising=False)
    for name in ("bayes_diglm.__main__:X", "bayes_diglm.inference.conjugate:__builtins__",
                 "bayes_diglm.inference..conjugate:ConjugateLinearRegression"):
        with pytest.raises(ValueError, match="refused to rebuild"):
            from_state({"json": json.dumps({"object": name, "attrs": {}}), "tensors": {}})
    assert "bayes_diglm.__main__" not in sys.modules


def test_load_refuses_a_checkpoint_whose_posterior_is_not_a_head(tmp_path):
    """A (checksummed) file whose posterior state is another bayes_diglm object, or whose parameters are not a
    dict, is a CheckpointError at load, not an AttributeError at the first prediction."""
    from bayes_diglm.inference.persistence import to_state
    from bayes_diglm.training import CheckpointError, TrainHistory, load_checkpoint, save_checkpoint

    X, y = _regression(60)
    path = _fast(DIGLMRegressor, epochs=1, posterior="conjugate").fit(X, y).save(tmp_path / "m.pt")
    ckpt = load_checkpoint(path)
    for key, state, match in (("posterior", to_state(TrainHistory()), "field 'posterior' is a TrainHistory, but "
                                                                      "posterior='conjugate' makes a Conjugate"),
                              ("params", to_state([1, 2]), "not a dict")):
        save_checkpoint({**ckpt, key: state}, tmp_path / "bad.pt")
        with pytest.raises(CheckpointError, match=match):
            DIGLMRegressor.load(tmp_path / "bad.pt")


@pytest.mark.parametrize("node", [{"scalar": "|V8", "value": 50_000_000},  # np.void(n) allocates n bytes
                                  {"scalar": "<M8[s]", "value": 5},
                                  {"items": ["x"], "dtype": "<U10000000", "shape": [1]},  # 40 MB for one item
                                  {"ndarray": "0", "dtype": "|V100"},
                                  {"scalar": "no such dtype", "value": 1}])
def test_a_posterior_state_cannot_choose_what_is_allocated(node):
    """The dtypes a state names are those to_state writes; a file could otherwise allocate any size it declares
    (a MemoryError, which load does not turn into a CheckpointError)."""
    from bayes_diglm.inference.persistence import from_state

    with pytest.raises(ValueError, match="dtype|width"):
        from_state({"json": json.dumps(node), "tensors": {"0": torch.zeros(2)}})


def test_the_network_runs_in_the_inputs_float_dtype():
    X, y = _regression(100)
    X32 = X.astype(np.float32)
    cases = [(X, torch.float64), (X32, torch.float32), (torch.from_numpy(X32), torch.float32),
             (np.round(X).astype(int), torch.float64)]
    for X_in, dtype in cases:
        reg = _fast(DIGLMRegressor, epochs=1).fit(X_in, y)
        assert next(reg.model_.parameters()).dtype == dtype
        assert reg.transform(X_in).dtype == np.float64


def test_weighted_conjugate_predictive_is_the_posterior_mixture():
    """Brute force: average N(y | z beta + b, sigma^2 / w) over exact posterior draws of (beta, b, sigma^2), with
    w the heteroscedastic head's relative noise precision at the new row."""
    X, y = _regression(300)
    reg = _fast(DIGLMRegressor, posterior="conjugate", epochs=30).fit(X, y)
    x_new = _regression(1, seed=7)[0]
    out = reg.flow_outputs(x_new)
    w = out.noise_precision[0] / reg.noise_normaliser_
    draws = reg.sample(200_000, generator=np.random.default_rng(2))
    loc = draws["beta"] @ out.features[0] + draws["intercept"]
    pred = reg.predict_dist(x_new)
    for y_val in pred.mean[:, None] + np.array([[-3.0, -1.0, 0.0, 0.5, 2.5]]).T * pred.stddev:
        mc = np.mean(np.exp(-0.5 * w * (y_val - loc) ** 2 / draws["sigma"] ** 2) / draws["sigma"]) * np.sqrt(
            w / (2 * np.pi))
        assert mc == pytest.approx(np.exp(pred.log_prob(y_val)[0]), rel=0.02)


def _labels(X):
    return np.where(X[:, 0] + X[:, 1] > 0, "up", "down")


@pytest.mark.parametrize("posterior", ["laplace", "svi"])
def test_classifier_posteriors_delegate_to_the_head_on_the_features(posterior):
    X, _ = _regression(300)
    y = _labels(X)
    clf = _fast(DIGLMClassifier, posterior=posterior).fit(X, y)
    Z = clf.transform(X[:20])
    head_probs = clf.posterior_.predict_dist(Z).probs
    np.testing.assert_allclose(clf.predict_proba(X[:20]), head_probs, rtol=1e-12)
    assert list(clf.predict_dist(X[:20]).classes) == ["down", "up"]
    assert set(clf.predict_dist(X[:20]).sample(5, generator=0).ravel()) <= {"down", "up"}
    draws = clf.sample(40, generator=0)
    assert draws["beta"].shape[0] == 40
    replicates = clf.sample_predictive(draws, X[:9], generator=1)
    assert replicates.shape == (40, 9) and set(replicates.ravel()) <= {"down", "up"}
    ll = clf.pointwise_log_likelihood(draws, X[:9], y[:9])
    assert ll.shape == (40, 9) and np.all(ll <= 0)


def test_arviz_export_of_the_estimator_and_loo():
    import arviz as az

    from bayes_diglm.arviz import to_inference_data

    X, y = _regression(300)
    reg = _fast(DIGLMRegressor, posterior="conjugate").fit(X, y)
    idata = to_inference_data(reg, X=X[:60], y=y[:60], draws=200, chains=2)
    assert idata.posterior["beta"].shape == (2, 200, 3)
    assert list(idata.posterior["beta"].coords["feature"].values) == ["z0", "z1", "z2"]
    # the log-likelihood uses the features and noise weights at X: the estimator's own predictive per draw
    draws = {k: idata.posterior[k].values.reshape(400, *idata.posterior[k].shape[2:]) for k in ("beta", "intercept",
                                                                                                "sigma")}
    np.testing.assert_allclose(idata.log_likelihood["y"].values.reshape(400, 60),
                               reg.pointwise_log_likelihood(draws, X[:60], y[:60]), rtol=1e-10)
    loo = az.loo(idata)
    assert np.isfinite(loo.elpd_loo)
    with pytest.raises(ValueError, match="posterior='point'"):
        to_inference_data(_fast(DIGLMRegressor, epochs=1).fit(X, y), draws=10, chains=1)


def test_poisson_head_with_a_laplace_posterior():
    X, _ = _regression(300)
    counts = np.random.default_rng(3).poisson(np.exp(0.5 * X[:, 0]))
    reg = _fast(DIGLMRegressor, head="poisson", posterior="laplace").fit(X, counts)
    pred = reg.predict_dist(X[:5])
    lo, hi = pred.interval(0.9)
    assert np.all(lo <= hi) and np.all(lo == np.round(lo))
    np.testing.assert_allclose(pred.mean, reg.posterior_.predict_dist(reg.transform(X[:5])).mean, rtol=1e-12)


def test_mixed_posterior_takes_groups():
    """Random intercepts per group on the flow features pick up offsets the point head (no groups) cannot see."""
    X, y = _regression(300)
    groups = np.arange(300) % 6
    offsets = np.array([-1.0, -0.5, 0.0, 0.3, 0.6, 1.0])[groups]
    y = y + offsets
    reg = _fast(DIGLMRegressor, posterior="mixed").fit(X, y, groups=groups)
    mixed, point = reg.predict(X, groups=groups), reg.predict_dist(X, point=True).mean
    assert np.mean((mixed - y) ** 2) < np.mean((point - y) ** 2)
    assert np.corrcoef(mixed - point, offsets)[0, 1] > 0.5


@pytest.mark.parametrize("structure", ["autoregressive", "coupling"])
def test_spline_flow_option_fits_saves_and_loads(tmp_path, structure):
    """flow='spline' builds the neural spline flow (either structure) and survives save / load."""
    from bayes_diglm.flows.base import SequentialFlow
    from bayes_diglm.models.estimators import load_estimator

    X, y = _regression(200)
    reg = _fast(DIGLMRegressor, flow="spline", epochs=3,
                flow_kwargs={"num_layers": 1, "hidden_dims": (8,), "structure": structure}).fit(X, y)
    assert isinstance(reg.model_.flow, SequentialFlow)
    kinds = {type(t).__name__ for t in reg.model_.flow.transforms}
    assert ("_SplineAutoregressive" if structure == "autoregressive" else "_SplineCoupling") in kinds
    pred = reg.predict(X[:20])
    assert np.all(np.isfinite(pred)) and np.all(np.isfinite(reg.score_samples(X[:20])))
    loaded = load_estimator(reg.save(tmp_path / "spline.pt"))
    np.testing.assert_allclose(loaded.predict(X[:20]), pred, rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match="flow='spline' needs 2-D X"):
        DIGLMRegressor(flow="spline", quiet=True).fit(X[:, :, None, None], y)


def test_validation_split_is_the_fits_hold_out_and_checks_its_input():
    """The rows a fit with ``val_fraction`` holds out: its predictions equal, to the bit, those of a fit on the
    other rows given these as ``X_val``; a bad ``n`` and a fraction that leaves no training rows are refused."""
    X, y = _regression(120)
    est = _fast(DIGLMRegressor, epochs=2, val_fraction=0.25, seed=3)
    train_rows, val_rows = est.validation_split(120)
    assert len(val_rows) == 30 and sorted([*train_rows, *val_rows]) == list(range(120))
    split = est.fit(X, y)
    given = _fast(DIGLMRegressor, epochs=2, seed=3).fit(X[train_rows], y[train_rows], X_val=X[val_rows],
                                                        y_val=y[val_rows])
    np.testing.assert_array_equal(split.predict(X[:10]), given.predict(X[:10]))
    rows, none = DIGLMRegressor().validation_split(7)
    assert none is None and list(rows) == list(range(7))
    assert_refused({"n = 0": (lambda: est.validation_split(0), r"\bn\b"),
                    "n = 2.5": (lambda: est.validation_split(2.5), r"\bn\b"),
                    "no training rows": (lambda: DIGLMRegressor(val_fraction=0.9).validation_split(1), "val_fraction")})


@pytest.mark.parametrize("form", ["dict", "DataFrame"])
def test_groups_of_several_factors_are_sliced_per_factor(form):
    """With a validation split the estimator slices ``groups`` to the training rows factor by factor, keeping
    the factors' names (np.asarray(groups)[rows] broke a dict or a DataFrame of several factors)."""
    from bayes_diglm.inference.mixed import MixedEffectsRegression, RandomEffect

    X, y = _regression(200)
    rng = np.random.default_rng(5)
    factors = {"a": rng.integers(0, 4, 200), "b": np.array(list("pqrst"))[rng.integers(0, 5, 200)]}
    groups = factors if form == "dict" else pd.DataFrame(factors)
    head = MixedEffectsRegression(random_effects=[RandomEffect("a"), RandomEffect("b")])
    reg = _fast(DIGLMRegressor, epochs=1, posterior=head, val_fraction=0.25).fit(X, y, groups=groups)
    train_rows, val_rows = reg.validation_split(200)
    assert len(val_rows) == 50 and sorted([*train_rows, *val_rows]) == list(range(200))
    # the head's inputs as the estimator gives them (features, the heteroscedastic head's noise weights, groups)
    Z, context = reg.head_inputs(X[train_rows], groups={k: v[train_rows] for k, v in factors.items()})
    direct = clone(head).fit(Z, y[train_rows], **context)
    Z_new, context_new = reg.head_inputs(X[:20], groups={k: v[:20] for k, v in factors.items()})
    np.testing.assert_allclose(reg.predict(X[:20], groups={k: v[:20] for k, v in factors.items()}),
                               direct.predict_dist(Z_new, **context_new).mean, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="grouping column 'b' has 199 entries"):
        _fast(DIGLMRegressor, epochs=1, posterior=head).fit(X, y, groups={**factors, "b": factors["b"][:-1]})


@pytest.mark.parametrize("head", ["heteroscedastic", "gaussian"])
def test_laplace_posterior_for_gaussian_heads_takes_the_learned_noise_as_known(head):
    """posterior='laplace' on a Gaussian head: N(beta | m, S) with the point head's noise variances sigma^2(z_i)
    as known, against the weighted least-squares closed form; the predictive adds sigma^2(z*) at each new row."""
    from bayes_diglm.inference import LaplaceRegressor

    X, y = _regression(150)
    y = y * (1.0 + 0.5 * np.abs(X[:, 0]))
    reg = _fast(DIGLMRegressor, head=head, posterior="laplace").fit(X, y)
    assert isinstance(reg.posterior_, LaplaceRegressor) and reg.posterior_.likelihood == "gaussian"
    Z = reg.transform(X)
    with torch.no_grad():
        zt = torch.from_numpy(Z).to(next(reg.model_.parameters()).dtype)
        if head == "heteroscedastic":
            var = torch.exp(reg.model_.head.noise_log_var(zt)).double().numpy()
        else:
            var = np.full(150, float(reg.model_.head.likelihood.noise_variance))
    A = np.column_stack([Z, np.ones(150)])
    prior = np.diag([reg.posterior_.prior_precision] * Z.shape[1] + [reg.posterior_.intercept_prior_precision])
    precision = A.T @ (A / var[:, None]) + prior
    mean = np.linalg.solve(precision, A.T @ (y / var))
    np.testing.assert_allclose(np.append(reg.posterior_.coef_, reg.posterior_.intercept_), mean, rtol=1e-6, atol=1e-8)
    pred = reg.predict_dist(X[:10])
    quad = np.einsum("ij,ij->i", A[:10], np.linalg.solve(precision, A[:10].T).T)
    np.testing.assert_allclose(pred.mean, A[:10] @ mean, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(pred.variance, quad + var[:10], rtol=1e-5)


# -- scikit-learn's feature-name contract: get_feature_names_out, set_output(transform="pandas") ----------------


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(60, 3)), columns=["age", "dose", "weight"], index=np.arange(100, 160))
    return X, X["age"].to_numpy() - X["dose"].to_numpy() + 0.1 * rng.normal(size=60)


@pytest.mark.parametrize("cls", [DIGLMRegressor, DIGLMClassifier])
def test_pandas_output_names_the_features(cls, frame):
    X, y = frame
    target = y if cls is DIGLMRegressor else (y > 0).astype(int)
    est = cls(epochs=1, quiet=True, seed=0).fit(X, target)
    plain = est.transform(X)
    names = est.get_feature_names_out()
    assert list(names) == [f"z{j}" for j in range(plain.shape[1])]
    out = est.set_output(transform="pandas").transform(X)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == list(names) and out.index.equals(X.index)
    np.testing.assert_array_equal(out.to_numpy(), plain)
    # In a pipeline, the next step sees the names too.
    piped = make_pipeline(cls(epochs=1, quiet=True, seed=0), StandardScaler()).set_output(transform="pandas")
    assert list(piped.fit(X, target).transform(X).columns) == list(names)


def test_input_features_must_match_fit(frame):
    X, y = frame
    est = DIGLMRegressor(epochs=1, quiet=True, seed=0).fit(X, y)
    assert len(est.get_feature_names_out(["age", "dose", "weight"])) == 3
    with pytest.raises(ValueError, match="input_features"):
        est.get_feature_names_out(["a", "b", "c"])
    with pytest.raises(ValueError, match="input_features"):
        est.get_feature_names_out(["age", "dose"])


def test_names_need_a_fitted_estimator():
    with pytest.raises(NotFittedError):
        DIGLMRegressor().get_feature_names_out()


# -- bad input on every method of every flavour (posterior=): refused by name, the fitted model unchanged ------
# Every (method, kind of bad X) pair runs, one item per flavour and method; each item reports every pair it
# found accepted or refused without naming the problem.

BAD_D = 3
_bad_rng = np.random.default_rng(0)
X_TRAIN = _bad_rng.normal(size=(80, BAD_D)).astype("float32")
Y_REG = (X_TRAIN[:, 0] - X_TRAIN[:, 1] + 0.1 * _bad_rng.normal(size=80)).astype("float32")
Y_CLF = np.where(X_TRAIN[:, 0] > 0, "yes", "no")
PROBE = _bad_rng.normal(size=(7, BAD_D)).astype("float32")
TINY = {"epochs": 1, "quiet": True, "flow_kwargs": {"num_layers": 2, "hidden_dims": (8,)}}

FLAVOURS = {
    "regressor-point": lambda: DIGLMRegressor(posterior="point", **TINY),
    "regressor-conjugate": lambda: DIGLMRegressor(posterior="conjugate", **TINY),
    "classifier-point": lambda: DIGLMClassifier(posterior="point", **TINY),
    "classifier-laplace": lambda: DIGLMClassifier(posterior="laplace", **TINY),
    "classifier-svi": lambda: DIGLMClassifier(posterior="svi", **TINY),
}


def _nan_frame():
    frame = pd.DataFrame(PROBE, columns=[f"x{i}" for i in range(BAD_D)])
    frame.iloc[2, 1] = np.nan
    return frame


def _at_4(value):
    return np.where(np.arange(7 * BAD_D).reshape(7, BAD_D) == 4, value, PROBE)


#: bad X -> a pattern its error message must match
BAD_X = {
    "nan": (lambda: _at_4(np.nan), r"(?i)nan|finite|missing"),
    "inf": (lambda: _at_4(np.inf), r"(?i)inf|finite"),
    "too many features": (lambda: np.zeros((7, BAD_D + 1), "float32"), r"(?i)feature|shape"),
    "1-D": (lambda: PROBE[:, 0], r"(?i)2d|2-d|dimension|shape|reshape"),
    "3-D": (lambda: PROBE[:, :, None], r"(?i)dimension|shape|dim"),
    "empty": (lambda: np.zeros((0, BAD_D), "float32"), r"(?i)0 sample|empty|at least|no rows|minimum"),
    "strings": (lambda: PROBE.astype(str).astype(object) + "x", r"(?i)string|numeric|convert|float|could not"),
    "DataFrame with missing values": (_nan_frame, r"(?i)nan|missing|finite"),
    "complex": (lambda: PROBE.astype(np.complex64), r"(?i)complex"),
}


def _targets(flavour: str, n: int):
    return np.resize(Y_CLF, n) if flavour.startswith("classifier") else np.resize(Y_REG, n)


def _methods(flavour: str) -> dict:
    common = {
        "predict": lambda est, X: est.predict(X),
        "predict_dist": lambda est, X: est.predict_dist(X),
        "score_samples": lambda est, X: est.score_samples(X),
        "transform": lambda est, X: est.transform(X),
        "score": lambda est, X: est.score(X, _targets(flavour, len(np.asarray(X)))),
        "log_predictive": lambda est, X: est.log_predictive(X, _targets(flavour, len(np.asarray(X)))),
    }
    if flavour.startswith("classifier"):
        common["predict_proba"] = lambda est, X: est.predict_proba(X)
    else:
        common["predict(return_std)"] = lambda est, X: est.predict(X, return_std=True)
    return common


def _snapshot(est) -> list:
    out = [np.asarray(est.predict(PROBE)), est.score_samples(PROBE)]
    if hasattr(est, "predict_proba"):
        out.append(est.predict_proba(PROBE))
    return out


class _Fitted(dict):
    """Fit each flavour once, when a test first asks for it (so one broken flavour fails only its own tests)."""

    def __missing__(self, name):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = FLAVOURS[name]().fit(X_TRAIN, _targets(name, len(X_TRAIN)))
        self[name] = (est, _snapshot(est))
        return self[name]


@pytest.fixture(scope="module")
def fitted():
    return _Fitted()


def _refused_and_unchanged(est, before, cases: dict, what: str):
    assert_refused(cases)
    assert_unchanged(before, _snapshot(est), what)


METHOD_CASES = [(f, m) for f in FLAVOURS for m in _methods(f)]


@pytest.mark.parametrize(("flavour", "method"), METHOD_CASES, ids=["/".join(c) for c in METHOD_CASES])
def test_every_method_refuses_every_kind_of_bad_X_by_name_and_changes_nothing(fitted, flavour, method):
    est, before = fitted[flavour]
    call = _methods(flavour)[method]
    _refused_and_unchanged(est, before, {bad: (lambda make=make: call(est, make()), pattern)
                                         for bad, (make, pattern) in BAD_X.items()}, method)


BAD_Y = {
    "nan target": (lambda f, n: np.where(np.arange(n) == 1, np.nan, Y_REG[:n]) if not f.startswith("classifier")
                   else np.where(np.arange(n) == 1, None, Y_CLF[:n]), r"(?i)nan|finite|missing|none|label"),
    "wrong length": (lambda f, n: _targets(f, n + 2), r"(?i)length|samples|rows|inconsistent|shape"),
    "unseen label": (lambda f, n: np.where(np.arange(n) == 0, "maybe", Y_CLF[:n]) if f.startswith("classifier")
                     else np.where(np.arange(n) == 0, "maybe", Y_REG[:n].astype(str)),
                     r"(?i)label|class|unseen|string|numeric|convert|float|could not"),
}


@pytest.mark.parametrize("flavour", list(FLAVOURS))
@pytest.mark.parametrize("method", ["score", "log_predictive"])
def test_bad_targets_are_refused_by_name_and_change_nothing(fitted, flavour, method):
    est, before = fitted[flavour]
    # accuracy against a label the model never predicts is well defined (it counts as wrong)
    bads = [b for b in BAD_Y if not (method == "score" and b == "unseen label" and flavour.startswith("classifier"))]
    _refused_and_unchanged(est, before, {
        bad: (lambda bad=bad: getattr(est, method)(PROBE, BAD_Y[bad][0](flavour, len(PROBE))), BAD_Y[bad][1])
        for bad in bads}, method)


# (a refit on more features is a legal new fit, so it is not in this list)
REFIT_BAD_X = ["nan", "inf", "1-D", "empty", "strings", "DataFrame with missing values", "complex"]


@pytest.mark.parametrize("flavour", list(FLAVOURS))
def test_a_refused_refit_leaves_the_fitted_model_alone(fitted, flavour):
    est, before = fitted[flavour]

    def refit(make):
        X = make()
        return est.fit(X, _targets(flavour, len(np.asarray(X))))

    _refused_and_unchanged(est, before, {bad: (lambda bad=bad: refit(BAD_X[bad][0]), BAD_X[bad][1])
                                         for bad in REFIT_BAD_X}, "fit")


@pytest.mark.parametrize("flavour", list(FLAVOURS))
def test_sample_refuses_a_bad_number_of_draws(fitted, flavour):
    est, before = fitted[flavour]
    pattern = r"(?i)needs a posterior" if flavour.endswith("point") else r"(?i)\bn\b|draws|positive|integer"
    _refused_and_unchanged(est, before, {repr(n): (lambda n=n: est.sample(n), pattern)
                                         for n in [0, -1, 2.5, "3", True]}, "sample")


@pytest.mark.parametrize("flavour", ["regressor-point", "classifier-point", "classifier-laplace"])
def test_joint_sampler_refuses_a_bad_number_of_samples(fitted, flavour):
    est, before = fitted[flavour]
    cases = {repr(n): (lambda n=n: est.sample_joint(n), r"(?i)\bn\b|positive|integer") for n in [0, -1, 2.5, "3"]}
    if flavour == "classifier-point":
        cases["unseen label"] = (lambda: est.sample_joint(3, y="maybe"), r"(?i)label|class|maybe")
    _refused_and_unchanged(est, before, cases, "sample_joint")


@pytest.mark.parametrize("flavour", ["regressor-conjugate", "classifier-laplace"])
def test_semi_supervised_fit_refuses_bad_unlabelled_rows_and_keeps_the_model(fitted, flavour):
    est, before = fitted[flavour]
    y = _targets(flavour, len(X_TRAIN))
    bads = ["nan", "inf", "too many features", "1-D", "strings", "DataFrame with missing values"]
    _refused_and_unchanged(est, before, {
        bad: (lambda bad=bad: est.fit(X_TRAIN, y, X_unlabeled=BAD_X[bad][0]()),
              "(?i)(" + BAD_X[bad][1].replace("(?i)", "") + "|X_unlabeled)")
        for bad in bads}, "fit(X_unlabeled=)")


# -- generated bad values of each kind (hypothesis, tests/_bad_values.py) through every entry of a fitted estimator
# that takes the kind: refused naming the argument, the estimator's predictions, densities and draws unchanged

SWEPT = "regressor-conjugate"
PROBE64 = PROBE.astype(np.float64)  # float64 probes: a square beyond float64 stays finite until the rule sees it

ESTIMATOR_FEATURE_ENTRIES = {
    "predict": lambda est, X: est.predict(X),
    "predict_dist": lambda est, X: est.predict_dist(X),
    "pointwise_log_likelihood": lambda est, X: est.pointwise_log_likelihood(est.sample(2, generator=0), X,
                                                                           Y_REG[:len(X)]),
    "sample_predictive": lambda est, X: est.sample_predictive(est.sample(2, generator=0), X, generator=0),
    "score_samples": lambda est, X: est.score_samples(X),
    "transform": lambda est, X: est.transform(X),
    "flow_outputs": lambda est, X: est.flow_outputs(X),
    "log_predictive": lambda est, X: est.log_predictive(X, Y_REG[:len(X)]),
}


def _swept_snapshot(est) -> list:
    return [*_snapshot(est), est.sample(3, generator=0)["beta"]]


@FAST
@given(data=st.data())
def test_every_entry_refuses_generated_bad_features_and_changes_nothing(fitted, data):
    est = fitted[SWEPT][0]
    before = _swept_snapshot(est)
    entry = ESTIMATOR_FEATURE_ENTRIES[data.draw(st.sampled_from(sorted(ESTIMATOR_FEATURE_ENTRIES)))]
    X, pattern = bad_features(data, PROBE64)
    with pytest.raises((ValueError, TypeError), match=pattern):
        entry(est, X)
    assert_unchanged(before, _swept_snapshot(est), "a refused call")


@FAST
@given(data=st.data())
def test_fit_refuses_generated_bad_targets_and_keeps_the_fitted_state(fitted, data):
    est = fitted[SWEPT][0]
    before = _swept_snapshot(est)
    y, pattern = bad_targets(data, Y_REG)
    with pytest.raises((ValueError, TypeError), match=pattern):
        est.fit(X_TRAIN, y)
    assert_unchanged(before, _swept_snapshot(est), "a refused fit")


@FAST
@given(data=st.data(), n=BAD_COUNTS)
def test_samplers_refuse_generated_bad_counts_before_allocating(fitted, data, n):
    est = fitted[SWEPT][0]
    before = _swept_snapshot(est)
    with pytest.raises((ValueError, TypeError), match=r"\bn\b|n_samples"):
        data.draw(st.sampled_from([lambda: est.sample(n), lambda: est.predict_dist(PROBE).sample(n)]))()
    assert_unchanged(before, _swept_snapshot(est), "a refused call")


BAD_SETTINGS = {"seed": st.text(min_size=1, max_size=3), "epochs": st.integers(max_value=0),
                "val_fraction": st.floats(1.0, 10.0), "lr": st.floats(max_value=0.0)}


@FAST
@given(data=st.data())
def test_generated_bad_settings_are_refused_before_any_work(data):
    param = data.draw(st.sampled_from(sorted(BAD_SETTINGS)))
    est = DIGLMRegressor(**{param: data.draw(BAD_SETTINGS[param])})
    with pytest.raises((ValueError, TypeError), match=f"'{param}' parameter of DIGLMRegressor"):
        est.fit(X_TRAIN, Y_REG)  # refused by the constraint check, before the data are even read
    assert not hasattr(est, "n_features_in_")


def _ood_functions() -> dict:
    from bayes_diglm.evaluation import ood

    return {
        "neg_log_px": lambda est, X: ood.neg_log_px(est, X),
        "bits_per_dim_score": lambda est, X: ood.bits_per_dim_score(est, X, num_bins=None),
        "predictive_entropy_score": lambda est, X: ood.predictive_entropy_score(est, X),
    }


@pytest.mark.parametrize("function", list(_ood_functions()))
def test_ood_scores_on_an_estimator_refuse_bad_input_by_name(fitted, function):
    score = _ood_functions()[function]
    for flavour in ("classifier-point", "classifier-laplace"):
        est, before = fitted[flavour]
        bads = ["nan", "inf", "too many features", "1-D", "empty", "strings", "DataFrame with missing values"]
        _refused_and_unchanged(est, before, {
            f"{flavour}/{bad}": (lambda bad=bad, est=est: score(est, BAD_X[bad][0]()),
                                 "(?i)(" + BAD_X[bad][1].replace("(?i)", "") + "|X must|shape|empty)")
            for bad in bads}, function)


def test_predictive_refuses_bad_targets_whatever_torch_validation_says():
    """zuko turns torch's argument validation off for the whole process when imported; the predictive's own
    support check still refuses a NaN target and a count outside the support by name."""
    from bayes_diglm.inference import Predictive

    previous = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(False)
    try:
        normal = Predictive(torch.distributions.Normal(torch.zeros(3, dtype=torch.float64), 1.0))
        with pytest.raises(ValueError, match="finite"):
            normal.log_prob([0.0, float("nan"), 1.0])
        counts = Predictive(torch.distributions.Poisson(torch.ones(3, dtype=torch.float64)))
        with pytest.raises(ValueError, match="support"):
            counts.log_prob([0.0, -1.0, 2.5])
        assert np.all(np.isfinite(counts.log_prob([0.0, 1.0, 2.0])))
    finally:
        torch.distributions.Distribution.set_default_validate_args(previous)
