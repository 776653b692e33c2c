"""The evaluation functions the experiments tabulate: the density-aware predictive of a fitted DIGLM regressor,
regression rows, and every measurement of a trained flow classifier, each against an independent computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from bayes_diglm.evaluation import (
    class_nll,
    classification_metrics,
    constant_predictive,
    evaluate_classifier,
    fit_density_aware,
    predictive_entropy,
    regression_metrics,
    regression_rows,
)
from bayes_diglm.inference.conjugate import ConjugateLinearRegression
from bayes_diglm.models import DIGLMClassifier, DIGLMRegressor


@pytest.fixture(scope="module")
def regressor():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(260, 2))
    y = X[:, 0] - X[:, 1] + (0.2 + 0.3 * (X[:, 0] > 0)) * rng.normal(size=260)
    reg = DIGLMRegressor(head="heteroscedastic", posterior=ConjugateLinearRegression(a0=2.0, b0=1.5), epochs=2,
                         flow_kwargs={"num_layers": 2}, seed=0, quiet=True).fit(X[:160], y[:160])
    X[-10:] += 6.0  # far from the training inputs: low log p(x)
    return reg, X, y


def test_density_aware_weight_and_prior_predictive_equal_their_closed_forms(regressor):
    reg, X, y = regressor
    px = reg.score_samples(X)
    val, test = slice(160, 210), slice(210, 260)
    fit = fit_density_aware(reg, px[:160], (X[val], y[val], px[val]), (X[test], px[test]),
                            quantiles=(0.05, 0.25), powers=(0.0, 0.3, 1.0))
    aware, w = fit["aware"], fit["weighting"]
    # threshold: the chosen quantile of the training log p(x); weight: exp(-power max(0, t - log p(x)))
    assert w.threshold == pytest.approx(np.quantile(px[:160], w.quantile)) and w.quantile in (0.05, 0.25)
    np.testing.assert_allclose(aware.weight, np.exp(-w.power * np.maximum(0.0, w.threshold - px[test])), rtol=1e-12)
    # the prior predictive by the NIG formula with an explicit inverse: t_{2 a0}(x mu0, b0/a0 (1/w + x' L0^-1 x))
    head = reg.posterior_
    Xd = np.hstack([reg.transform(X[test]), np.ones((50, 1))])
    scale = np.sqrt(head.b0_ / head.a0_ * (1.0 / reg.noise_weights(X[test])
                                           + np.einsum("ij,jk,ik->i", Xd, np.linalg.inv(head.prior_precision_), Xd)))
    np.testing.assert_allclose(aware.prior.scale, scale, rtol=1e-9)
    np.testing.assert_allclose(aware.prior.df, 2 * head.a0_) and np.testing.assert_allclose(aware.prior.loc, 0.0)
    # the plain component is the estimator's own predictive; the mixture density by hand
    plain = reg.predict_dist(X[test])
    np.testing.assert_allclose(fit["plain_test"].mean, plain.mean, rtol=1e-12)
    by_hand = np.log(aware.weight * np.exp(plain.log_prob(y[test]))
                     + (1 - aware.weight) * scipy.stats.t.pdf(y[test], 2 * head.a0_, 0.0, scale))
    np.testing.assert_allclose(aware.log_prob(y[test]), by_hand, rtol=1e-9)
    assert fit["control"].weight.min() == fit["control"].weight.max() == fit["constant_weight"]


def test_density_aware_summary_reports_the_validation_nll_with_the_offset(regressor):
    reg, X, y = regressor
    px = reg.score_samples(X)
    val, test = slice(160, 210), slice(210, 260)
    args = (reg, px[:160], (X[val], y[val], px[val]), (X[test], px[test]))
    plain, shifted = fit_density_aware(*args)["summary"], fit_density_aware(*args, nll_offset=2.0)["summary"]
    assert plain["val_nll_plain"] == pytest.approx(-np.mean(reg.log_predictive(X[val], y[val])), rel=1e-12)
    for key in ("val_nll_plain", "val_nll_density_aware", "val_nll_constant_weight"):
        assert shifted[key] == pytest.approx(plain[key] + 2.0, rel=1e-12)
    assert plain["val_nll_density_aware"] <= plain["val_nll_plain"] + 1e-9  # power 0 is in the grid
    assert plain["test_rows_below_threshold"] == pytest.approx(np.mean(px[test] < plain["threshold_log_px"]))
    with pytest.raises(ValueError, match="val must be a tuple"):
        fit_density_aware(reg, px[:160], (X[val], y[val]), (X[test], px[test]))
    with pytest.raises(TypeError, match="fitted DIGLMRegressor"):
        fit_density_aware(object(), px[:160], (X[val], y[val], px[val]), (X[test], px[test]))


def test_regression_rows_are_the_metrics_with_the_extra_columns():
    y = np.array([0.0, 1.0, -1.0])
    preds = {"a": constant_predictive(3), "b": constant_predictive(3, loc=0.5, scale=2.0)}
    rows = regression_rows(preds, y, y_std=3.0, extra={"b": {"flow": 7.0}}, extra_columns=("flow",))
    assert [r["model"] for r in rows] == ["a", "b"] and rows[0]["flow"] == "-" and rows[1]["flow"] == 7.0
    assert {k: v for k, v in rows[1].items() if k not in ("model", "flow")} == regression_metrics(
        preds["b"], y, y_std=3.0)
    with pytest.raises(ValueError, match="extra"):
        regression_rows(preds, y, extra={"c": {}})
    with pytest.raises(ValueError, match="preds"):
        regression_rows({}, y)


def test_evaluate_classifier_rows_equal_the_metrics_of_each_head_on_the_features():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 3)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64)
    clf = DIGLMClassifier(flow="realnvp", posterior="point", epochs=2, flow_kwargs={"num_layers": 2}, seed=0,
                          quiet=True).fit(X[:200], y[:200])
    far = rng.normal(loc=4.0, size=(60, 3)).astype(np.float32)
    inputs = {"train": X[:200], "test": X[200:], "far": far}
    heads = {"point": clf.point_head()}
    out = evaluate_classifier(clf, heads, inputs, y_train=y[:200], y_test=y[200:], ood_labels={"far": None},
                              label="m", selective_head="point", n_draws=5)
    proba = heads["point"].predict_proba(clf.transform(X[200:]))
    row = out["rows"][0]
    assert (row["model"], row["head"]) == ("m", "point")
    for key, value in classification_metrics(y[200:], proba).items():
        assert row[key] == pytest.approx(value, rel=1e-12)
    far_proba = heads["point"].predict_proba(clf.transform(far))
    assert row["far entropy"] == pytest.approx(float(predictive_entropy(far_proba).mean())) and row["far NLL"] == "n/a"
    bpd = (-clf.score_samples(X[200:]) + 3 * math.log(256)) / (3 * math.log(2))  # 256 levels per dimension
    assert row["bits/dim"] == pytest.approx(float(np.mean(bpd)), rel=1e-6)
    assert [r["set"] for r in out["density_rows"]] == ["test", "far"]
    assert all(r["model"] == "m" for r in out["ood_rows"])
    labelled = evaluate_classifier(clf, heads, inputs, y_train=y[:200], y_test=y[200:], selective_head="point",
                                   ood_labels={"far": np.zeros(60, dtype=np.int64)}, n_draws=5)
    assert labelled["rows"][0]["far NLL"] == pytest.approx(class_nll(np.zeros(60, dtype=np.int64), far_proba))
    with pytest.raises(ValueError, match="inputs lacks"):
        evaluate_classifier(clf, heads, {"train": X[:200]}, y_train=y[:200], y_test=y[200:], ood_labels={},
                            selective_head="point")
    with pytest.raises(ValueError, match="heads"):
        evaluate_classifier(clf, heads, inputs, y_train=y[:200], y_test=y[200:], ood_labels={})
