"""Streaming over chunks: the streamed posterior and scores equal the in-memory ones; memory O(chunk)."""

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch
from torch.utils.data import DataLoader, TensorDataset

from bayes_diglm.data.synthetic import flights_like
from bayes_diglm.flows import realnvp
from bayes_diglm.inference.conjugate import ConjugateLinearRegression
from bayes_diglm.inference.streaming import (
    as_chunk_tensors,
    stream_evaluate,
    stream_fit_conjugate,
    stream_predict,
    stream_sufficient_stats,
)


def _data(n=3000, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.sin(X[:, 0]) + X @ np.linspace(1.0, -1.0, d) + 0.3 * rng.normal(size=n)
    return X, y


def _chunks(X, y, size):
    return [(X[i:i + size], y[i:i + size]) for i in range(0, len(y), size)]


@pytest.fixture
def flow64(float64):
    flow = realnvp(4, num_layers=2, hidden_dims=(16,))
    with torch.no_grad():  # move away from the identity so the features are a real nonlinear map
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return flow.eval()


def _assert_same_posterior(a, b, tol=1e-10):
    np.testing.assert_allclose(a.posterior_.mean, b.posterior_.mean, rtol=tol, atol=tol)
    np.testing.assert_allclose(a.posterior_.precision_cholesky, b.posterior_.precision_cholesky, rtol=tol, atol=tol)
    assert a.posterior_.a == pytest.approx(b.posterior_.a, rel=tol)
    assert a.posterior_.b == pytest.approx(b.posterior_.b, rel=tol)


def test_streamed_posterior_equals_in_memory_fit(flow64):
    X, y = _data()
    Z = flow64.features(torch.from_numpy(X)).detach()
    full = ConjugateLinearRegression(prior_precision=0.5).fit(Z, y)
    head = stream_fit_conjugate(ConjugateLinearRegression(prior_precision=0.5), flow64.features,
                                _chunks(X, y, 700), dtype=torch.float64)
    _assert_same_posterior(head, full)
    # and from bare statistics (what an all_reduce merges)
    stats = stream_sufficient_stats(flow64.features, iter(_chunks(X, y, 512)), dtype=torch.float64)
    np.testing.assert_allclose(stats.ZtZ[:4, :4], (Z.T @ Z).numpy(), rtol=1e-12)
    _assert_same_posterior(ConjugateLinearRegression(prior_precision=0.5).fit_stats(stats), full)


def test_stream_accepts_a_dataloader_and_a_generator(flow64):
    X, y = _data(1000)
    loader = DataLoader(TensorDataset(torch.from_numpy(X), torch.from_numpy(y)), batch_size=128)
    a = stream_fit_conjugate(ConjugateLinearRegression(), flow64.features, loader, dtype=torch.float64)
    b = stream_fit_conjugate(ConjugateLinearRegression(), flow64.features, (c for c in _chunks(X, y, 333)),
                             dtype=torch.float64)
    _assert_same_posterior(a, b)


def test_reset_false_adds_to_the_current_posterior(flow64):
    X, y = _data(1200)
    full = stream_fit_conjugate(ConjugateLinearRegression(), flow64.features, _chunks(X, y, 400), dtype=None)
    head = stream_fit_conjugate(ConjugateLinearRegression(), flow64.features, _chunks(X[:500], y[:500], 400),
                                dtype=None)
    stream_fit_conjugate(head, flow64.features, _chunks(X[500:], y[500:], 400), reset=False, dtype=None)
    _assert_same_posterior(head, full)


def test_stream_evaluate_matches_scipy_on_all_rows(flow64):
    X, y = _data(2000)
    head = ConjugateLinearRegression().fit(flow64.features(torch.from_numpy(X)).detach(), y)
    got = stream_evaluate(head, flow64.features, _chunks(X, y, 300), log_px_fn=flow64.log_prob, prob=0.8,
                          dtype=torch.float64)
    # independent reference: the Student-t predictive written out from the posterior's parameters
    Zd = np.column_stack([flow64.features(torch.from_numpy(X)).detach().numpy(), np.ones(len(y))])
    loc = Zd @ head.posterior_.mean
    v = scipy.linalg.solve_triangular(head.posterior_.precision_cholesky, Zd.T, lower=True)
    scale = np.sqrt(head.posterior_.b / head.posterior_.a * (1.0 + (v * v).sum(0)))
    dist = scipy.stats.t(df=2 * head.posterior_.a, loc=loc, scale=scale)
    lo, hi = dist.ppf(0.1), dist.ppf(0.9)
    assert got["n"] == 2000
    assert got["rmse"] == pytest.approx(math.sqrt(np.mean((y - loc) ** 2)), rel=1e-10)
    assert got["mean_nll"] == pytest.approx(-np.mean(dist.logpdf(y)), rel=1e-10)
    assert got["coverage"] == pytest.approx(np.mean((y >= lo) & (y <= hi)), abs=1e-12)
    assert got["mean_log_px"] == pytest.approx(float(flow64.log_prob(torch.from_numpy(X)).detach().mean()), rel=1e-10)
    means = np.concatenate([m for m, _ in stream_predict(head, flow64.features, _chunks(X, y, 300), dtype=None)])
    np.testing.assert_allclose(means, loc, rtol=1e-10, atol=1e-10)


def test_flights_stream_is_chunk_size_invariant():
    flow = realnvp(8, num_layers=1, hidden_dims=(8,)).eval()
    scale = torch.tensor([12, 31, 7, 50, 600, 5000, 1440, 1440], dtype=torch.float32)

    def features(x):
        return flow.features(x / scale)

    a = stream_sufficient_stats(features, flights_like(5000, seed=3, chunk_size=5000))
    b = stream_sufficient_stats(features, flights_like(5000, seed=3, chunk_size=1234))
    # float32 GEMMs over different chunkings: equal to float32 rounding of the largest entry
    np.testing.assert_allclose(a.ZtZ, b.ZtZ, rtol=1e-5, atol=1e-5 * np.abs(a.ZtZ).max())
    assert a.n == b.n == 5000


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="empty"):
        stream_fit_conjugate(ConjugateLinearRegression(), lambda x: x, [])
    with pytest.raises(ValueError, match="empty"):
        stream_sufficient_stats(lambda x: x, iter([]))
    with pytest.raises(TypeError, match="chunk 0 must be an"):
        list(as_chunk_tensors([np.zeros((3, 2))]))
    with pytest.raises(ValueError, match="chunk 1"):
        list(as_chunk_tensors([(np.zeros((3, 2)), np.zeros(3)), (np.zeros((3, 2)), np.zeros(2))]))
    with pytest.raises(TypeError, match="head must be"):
        stream_fit_conjugate(object(), lambda x: x, [(np.zeros((3, 2)), np.zeros(3))])
    with pytest.raises(ValueError, match="prob"):
        stream_evaluate(ConjugateLinearRegression(), lambda x: x, [], prob=1.5)


def test_failed_stream_leaves_the_head_untouched():
    X, y = _data(600, d=2)
    head = ConjugateLinearRegression().fit(X, y)
    before = head.posterior_.mean.copy()
    bad = _chunks(X, y, 200) + [(np.full((2, 2), np.nan), np.zeros(2))]
    with pytest.raises(ValueError, match="NaN"):
        stream_fit_conjugate(head, lambda x: x, bad, reset=False, dtype=None)
    np.testing.assert_array_equal(head.posterior_.mean, before)


def test_peak_memory_does_not_grow_with_rows(tmp_path):
    """20k and 200k rows through a RealNVP's features and the exact posterior, each in a fresh process."""
    from bayes_diglm.experiments.scale import measure_stream, prepare_flow

    flow_path = prepare_flow(tmp_path / "flow.pt", train_rows=2000, epochs=1)
    small = measure_stream(20_000, flow_path, chunk_size=4096, test_rows=4096, timeout=120)
    large = measure_stream(200_000, flow_path, chunk_size=4096, test_rows=4096, timeout=120)
    assert large["test"]["n"] == small["test"]["n"] == 4096
    assert large["peak_rss_mib"] <= 1.10 * small["peak_rss_mib"], (small["peak_rss_mib"], large["peak_rss_mib"])
    # an in-memory fit would hold 200k x 8 float32 inputs and their features: at least 12 MiB more
    assert large["peak_rss_mib"] - small["peak_rss_mib"] < 12.0
