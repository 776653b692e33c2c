"""Fitting on dequantised inputs and choosing lambda by validation NLL (bayes_diglm.models.selection), checked
against the same steps done by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayes_diglm.flows import TabularDequantizer
from bayes_diglm.inference.conjugate import ConjugateLinearRegression
from bayes_diglm.models import DIGLMRegressor, fit_dequantized, tune_px_weight


def _data(n: int = 160, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 5, size=(n, 2)).astype(np.float32)
    y = (X[:, 0] - 0.5 * X[:, 1] + 0.3 * rng.normal(size=n)).astype(np.float32)
    return X[:100], y[:100], X[100:], y[100:]


def _template(**kw) -> DIGLMRegressor:
    return DIGLMRegressor(flow="realnvp", head="heteroscedastic", posterior=ConjugateLinearRegression(),
                          epochs=1, batch_size=32, seed=0, quiet=True, flow_kwargs={"num_layers": 2}, **kw)


def _same_flow(a: DIGLMRegressor, b: DIGLMRegressor) -> bool:
    sa, sb = a.model_.state_dict(), b.model_.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_fit_dequantized_trains_on_one_seeded_draw_and_fits_the_head_on_recorded_rows():
    X, y, X_val, y_val = _data()
    dq = TabularDequantizer([1.0, 1.0])
    reg = fit_dequantized(_template(), X, y, X_val=X_val, y_val=y_val, dequantizer=dq, seed=3)
    # by hand: the flow trained on the draws of seed 3 (train) and 4 (validation), point head only
    draw = [dq(torch.from_numpy(A), generator=torch.Generator().manual_seed(s)).numpy()
            for A, s in ((X, 3), (X_val, 4))]
    by_hand = _template().set_params(posterior="point").fit(draw[0], y, X_val=draw[1], y_val=y_val)
    assert _same_flow(reg, by_hand) and isinstance(reg.posterior, ConjugateLinearRegression)
    # the Bayesian head on the recorded rows: the conjugate head on their features and noise weights
    head = ConjugateLinearRegression().fit(reg.transform(X), y.astype(np.float64), sample_weight=reg.noise_weights(X))
    np.testing.assert_allclose(reg.posterior_.coef_, head.coef_, rtol=1e-8, atol=1e-10)
    assert int(reg.posterior_.stats_.n) == len(y)


def test_fit_dequantized_without_a_dequantiser_is_fit_and_can_leave_the_head_for_later():
    X, y, X_val, y_val = _data()
    plain = _template().fit(X, y, X_val=X_val, y_val=y_val)
    reg = fit_dequantized(_template(), X, y, X_val=X_val, y_val=y_val)
    assert _same_flow(reg, plain)
    np.testing.assert_allclose(reg.posterior_.coef_, plain.posterior_.coef_, rtol=1e-10)
    later = fit_dequantized(_template(), X, y, X_val=X_val, y_val=y_val, fit_posterior=False)
    assert _same_flow(later, plain) and later.posterior_ is None  # trained as a point model, no head fitted
    assert isinstance(later.posterior, ConjugateLinearRegression)  # set, for a later fit_posterior


def test_fit_dequantized_refuses_bad_arguments_before_training():
    X, y, _, _ = _data()
    with pytest.raises(TypeError, match="DIGLMRegressor"):
        fit_dequantized(ConjugateLinearRegression(), X, y)
    with pytest.raises(TypeError, match="dequantizer"):
        fit_dequantized(_template(), X, y, dequantizer=[1.0, 1.0])
    with pytest.raises((TypeError, ValueError), match="seed"):
        fit_dequantized(_template(), X, y, seed=-1)


def test_tune_px_weight_keeps_the_lowest_validation_nll_of_independent_fits():
    X, y, X_val, y_val = _data()
    weights = [0.0, 0.5]
    seen = []
    best, tuning = tune_px_weight(_template(), weights, X, y, X_val, y_val, before_fit=seen.append,
                                  after_fit=seen.append)
    assert seen == [0.0, 0.0, 0.5, 0.5] and [t["px_weight"] for t in tuning] == weights
    nll = []
    for w in weights:  # each weight fitted on its own, scored by hand
        reg = _template(px_weight=w).fit(X, y, X_val=X_val, y_val=y_val)
        nll.append(-float(np.mean(reg.log_predictive(X_val, y_val))))
    np.testing.assert_allclose([t["val_nll"] for t in tuning], nll, rtol=1e-10)
    assert best.px_weight == weights[int(np.argmin(nll))]


@pytest.mark.parametrize("weights", [[], [-0.1], [float("nan")], "0.1", [True]])
def test_tune_px_weight_refuses_a_bad_grid(weights):
    X, y, X_val, y_val = _data()
    with pytest.raises(ValueError, match="px_weights"):
        tune_px_weight(_template(), weights, X, y, X_val, y_val)


def test_tune_px_weight_needs_validation_rows():
    X, y, _, _ = _data()
    with pytest.raises(ValueError, match="X_val"):
        tune_px_weight(_template(), [0.1], X, y, None, None)


def test_log_cell_probability_without_a_dequantiser_is_the_density_as_recorded():
    X, y, X_val, y_val = _data()
    reg = _template().fit(X, y)
    np.testing.assert_array_equal(reg.log_cell_probability(X_val, None, seed=5), reg.score_samples(X_val))
    with pytest.raises(TypeError, match="TabularDequantizer or None"):
        reg.log_cell_probability(X_val, "cells")
