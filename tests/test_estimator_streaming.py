"""DIGLMRegressor.fit_posterior (the Bayesian head on streamed chunks) and noise_weights (the head's weights)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from bayes_diglm.inference.conjugate import ConjugateLinearRegression
from bayes_diglm.models.estimators import DIGLMRegressor


def _data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = X[:, 0] - 0.5 * X[:, 1] + (0.2 + 0.5 * (X[:, 2] > 0)) * rng.normal(size=n)
    return X, y


@pytest.fixture(scope="module")
def fitted():
    X, y = _data()
    reg = DIGLMRegressor(posterior="conjugate", epochs=3, batch_size=64, lr=1e-2, flow_kwargs={"num_layers": 2},
                         quiet=True).fit(X, y)
    return reg, X, y


def _chunks(X, y, size):
    return ((X[i:i + size], y[i:i + size]) for i in range(0, len(y), size))


def test_streamed_head_equals_the_one_pass_head(fitted):
    reg, X, y = fitted
    one_pass = reg.posterior_
    streamed = copy.deepcopy(reg).fit_posterior(_chunks(X, y, 37))
    assert streamed.posterior_ is not one_pass and streamed.noise_normaliser_ == reg.noise_normaliser_
    np.testing.assert_allclose(streamed.posterior_.posterior_.mean, one_pass.posterior_.mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(streamed.posterior_.posterior_.b, one_pass.posterior_.b, rtol=1e-9)
    assert streamed.posterior_.posterior_.a == pytest.approx(one_pass.posterior_.a)
    np.testing.assert_allclose(streamed.predict_dist(X[:20]).log_prob(y[:20]),
                               reg.predict_dist(X[:20]).log_prob(y[:20]), rtol=1e-9)


def test_noise_weights_are_the_heads_weights(fitted):
    reg, X, y = fitted
    w = reg.noise_weights(X)
    assert w.shape == (len(y),) and np.all(w > 0)
    assert w.mean() == pytest.approx(1.0, rel=1e-6)  # normalised to mean 1 on the training rows
    out = reg.flow_outputs(X[:50])
    np.testing.assert_allclose(w[:50], out.noise_precision / reg.noise_normaliser_, rtol=1e-12)
    direct = reg.posterior_.predict_dist(out.features, sample_weight=w[:50])
    np.testing.assert_allclose(reg.predict_dist(X[:50]).log_prob(y[:50]), direct.log_prob(y[:50]), rtol=1e-12)
    # brute force on the weighted likelihood: the head streamed with these weights is a weighted least squares
    head = ConjugateLinearRegression(prior_precision=1e-10, a0=1e-10, b0=1e-10).fit(reg.transform(X), y,
                                                                                    sample_weight=w)
    D = np.column_stack([reg.transform(X), np.ones(len(y))])
    wls = np.linalg.lstsq(D * np.sqrt(w)[:, None], y * np.sqrt(w), rcond=None)[0]
    np.testing.assert_allclose(head.posterior_.mean, wls, rtol=1e-6, atol=1e-8)


def test_point_estimator_can_get_a_streamed_head():
    X, y = _data(200, seed=1)
    reg = DIGLMRegressor(epochs=2, flow_kwargs={"num_layers": 2}, quiet=True).fit(X, y)
    with pytest.raises(ValueError, match="posterior='point'"):
        reg.fit_posterior(_chunks(X, y, 50))
    with pytest.raises(ValueError, match="conjugate posterior head"):
        reg.noise_weights(X)
    reg.set_params(posterior="conjugate").fit_posterior(_chunks(X, y, 50))
    precision = reg.flow_outputs(X[:50]).noise_precision
    assert reg.noise_normaliser_ == pytest.approx(precision.mean())  # the first chunk's mean precision
    assert reg.posterior_.stats_.n == 200


def test_failed_fit_posterior_leaves_the_fitted_state(fitted):
    reg, X, y = fitted
    before = reg.predict_dist(X[:10]).log_prob(y[:10])
    head, normaliser = reg.posterior_, reg.noise_normaliser_
    y_nan = y.copy()
    y_nan[150] = np.nan

    def failing_reader():
        yield X[:50], y[:50]
        raise OSError("disk gone")

    bad_calls = [
        (lambda: _chunks(X, y_nan, 50), ValueError, "chunk 3: y holds NaN"),
        (lambda: [(X[:10, :2], y[:10])], ValueError, "features"),
        (lambda: [(X[:10], y[:9])], ValueError, "X has 10 rows, y 9"),
        (lambda: [(X[:10],)], TypeError, "chunk 0 must be an \\(X, y\\) pair"),
        (lambda: [(X[:10], np.array(["a"] * 10))], TypeError, "y must be numeric"),
        (lambda: [], ValueError, "no rows"),
        (failing_reader, OSError, "disk gone"),
        (lambda: 5, TypeError, "chunks must be an iterable of \\(X, y\\) pairs"),
        (lambda: "X.csv", TypeError, "chunks must be an iterable"),
    ]
    for chunks, error, message in bad_calls:
        with pytest.raises(error, match=message):
            reg.fit_posterior(chunks())
        assert reg.posterior_ is head and reg.noise_normaliser_ == normaliser
        np.testing.assert_array_equal(reg.predict_dist(X[:10]).log_prob(y[:10]), before)


def test_fit_posterior_fits_a_head_without_partial_fit_once_on_every_chunk():
    """A Laplace head has no ``partial_fit``: it is fitted once on the features of all chunks, equal to the
    same head fitted directly on ``transform(X)`` with the point head's nuisance as known values."""
    from bayes_diglm.inference import LaplaceRegressor

    rng = np.random.default_rng(2)
    X = rng.normal(size=(120, 2))
    y = rng.poisson(2.0, size=120)
    reg = DIGLMRegressor(head="poisson", posterior="laplace", epochs=1, flow_kwargs={"num_layers": 2},
                         quiet=True).fit(X, y)
    reg.fit_posterior(_chunks(X, y, 50))
    direct = LaplaceRegressor(likelihood="poisson").fit(reg.transform(X), y)
    np.testing.assert_allclose(reg.posterior_.coef_, direct.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(reg.posterior_.intercept_, direct.intercept_, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="head='heteroscedastic' only"):
        reg.noise_weights(X)
