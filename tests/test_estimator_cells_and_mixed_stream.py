"""Estimator contract: the dequantised log p(x) of integer rows and the mixed-effects head streamed over chunks."""

import math

import numpy as np
import pytest
import torch

from bayes_diglm.flows import TabularDequantizer
from bayes_diglm.inference.mixed import MixedEffectsRegression
from bayes_diglm.models import DIGLMRegressor


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 6, size=(240, 2)).astype(np.float32)
    g = rng.integers(0, 5, size=240)
    y = (X[:, 0] - 0.5 * X[:, 1] + 0.7 * (g - 2) + 0.3 * rng.normal(size=240)).astype(np.float32)
    reg = DIGLMRegressor(head="heteroscedastic", posterior="conjugate", epochs=2, seed=0, quiet=True,
                         flow_kwargs={"num_layers": 2, "hidden_dims": (8,)}).fit(X, y)
    return reg, X, y, g


def test_log_cell_probability_is_the_documented_monte_carlo_bound(fitted):
    reg, X, _, _ = fitted
    widths = np.array([1.0, 0.5])
    dq = TabularDequantizer(widths)
    got = reg.log_cell_probability(X[:30], dq, draws=3, seed=7)
    # the formula written out: mean over draws of log p(x + w (u - 1/2)) plus sum log w, u from the seeded stream
    gen = torch.Generator().manual_seed(7)
    x = torch.from_numpy(X[:30])
    total = np.zeros(30)
    for _ in range(3):
        u = torch.rand(x.shape, generator=gen, dtype=x.dtype)
        total += reg.score_samples((x + (u - 0.5) * torch.from_numpy(widths).float()).numpy())
    np.testing.assert_allclose(got, total / 3 + np.log(widths).sum(), rtol=1e-6, atol=1e-6)
    assert got.dtype == np.float64 and got.shape == (30,)
    np.testing.assert_array_equal(got, reg.log_cell_probability(X[:30], dq, draws=3, seed=7))
    assert not np.array_equal(got, reg.log_cell_probability(X[:30], dq, draws=3, seed=8))


@pytest.mark.parametrize("kwargs, err", [
    ({"dequantizer": "dq"}, TypeError), ({"draws": 0}, ValueError), ({"draws": 1.5}, ValueError),
    ({"seed": -1}, ValueError), ({"draws": True}, ValueError),
])
def test_log_cell_probability_refuses_bad_arguments(fitted, kwargs, err):
    reg, X, _, _ = fitted
    args = {"dequantizer": TabularDequantizer([1.0, 1.0]), **kwargs}
    dq = args.pop("dequantizer")
    with pytest.raises(err):
        reg.log_cell_probability(X[:5], dq, **args)


def test_fit_mixed_head_streamed_equals_the_head_fitted_on_all_rows(fitted):
    reg, X, y, g = fitted
    before = reg.posterior_
    levels = {"g": np.arange(5)}
    chunks = ((X[i:i + 70], y[i:i + 70], {"g": g[i:i + 70]}) for i in range(0, 240, 70))
    streamed = reg.fit_mixed_head(chunks, levels=levels)
    # the independent route: features and noise weights of every row at once, the head's own fit
    Z, noise = reg.head_inputs(X)
    whole = MixedEffectsRegression().fit(Z, y.astype(np.float64), groups={"g": g}, **noise)
    np.testing.assert_allclose(streamed.coef_, whole.coef_, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(streamed.theta_, whole.theta_, rtol=1e-5, atol=1e-8)
    assert math.isclose(streamed.log_likelihood_, whole.log_likelihood_, rel_tol=1e-8)
    assert reg.posterior_ is before  # returned, not stored


@pytest.mark.parametrize("chunks, kwargs, err", [
    ("text", {}, TypeError), ([], {}, ValueError), ([(np.zeros((2, 2)), np.zeros(2))], {}, TypeError),
    ([(np.zeros((2, 2)), np.zeros(2), {"g": [0, 1]})], {"levels": {}}, TypeError),
    ([(np.zeros((2, 2)), np.zeros(2), {"g": [0, 1]})], {"head": "mixed"}, TypeError),
])
def test_fit_mixed_head_refuses_bad_arguments(fitted, chunks, kwargs, err):
    reg = fitted[0]
    with pytest.raises(err):
        reg.fit_mixed_head(chunks, **{"levels": {"g": np.arange(2)}, **kwargs})
