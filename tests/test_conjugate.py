"""Tests of the exact conjugate (Normal-Inverse-Gamma) regression head against independent results."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import BayesianRidge, Ridge

from bayes_diglm.inference.conjugate import ConjugateLinearRegression, SufficientStats, fit_on_features


def _problem(seed=0, n=40, d=3, weights=False, offset=0.0):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, d))
    beta = rng.normal(size=d)
    w = rng.uniform(0.3, 3.0, size=n) if weights else None
    noise = rng.normal(size=n) / (np.sqrt(w) if weights else 1.0)
    y = Z @ beta + 0.7 + offset + 0.5 * noise
    return Z, y, w


def _design(Z, intercept):
    return np.hstack([Z, np.ones((Z.shape[0], 1))]) if intercept else Z


def _prior_matrix(prec, intercept, intercept_prior_precision=1e-6):
    return np.diag(np.append(prec, intercept_prior_precision) if intercept else prec)


PREC = np.array([0.5, 1.0, 2.0])
MU0 = np.array([0.2, -0.1, 0.0])


def _joint_draws(head, n, generator):
    """Joint draws of (beta with the intercept last, sigma^2) from the named draws of ``head.sample``."""
    draws = head.sample(n, generator=generator)
    beta = draws["beta"] if "intercept" not in draws else np.column_stack([draws["beta"], draws["intercept"]])
    return beta, draws["sigma"] ** 2


def _head(intercept=False, **kw):
    args = dict(prior_precision=PREC, prior_mean=MU0, a0=2.5, b0=1.5, fit_intercept=intercept)
    args.update(kw)
    return ConjugateLinearRegression(**args)


# ---- math against closed forms ---------------------------------------------------------------------------


@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("intercept", [False, True])
def test_evidence_equals_multivariate_t(weights, intercept):
    Z, y, w = _problem(seed=1, n=25, weights=weights)
    head = _head(intercept, intercept_prior_precision=0.3).fit(Z, y, sample_weight=w)
    X = _design(Z, intercept)
    L0 = _prior_matrix(PREC, intercept, 0.3)
    mu0 = np.append(MU0, 0.0) if intercept else MU0
    W_inv = np.diag(1.0 / w) if weights else np.eye(len(y))
    scale = (1.5 / 2.5) * (W_inv + X @ np.linalg.solve(L0, X.T))
    expected = scipy.stats.multivariate_t(loc=X @ mu0, shape=scale, df=2 * 2.5).logpdf(y)
    assert head.log_evidence() == pytest.approx(expected, rel=1e-11, abs=1e-10)


@pytest.mark.parametrize("weights", [False, True])
def test_posterior_moments_brute_force(weights):
    Z, y, w = _problem(seed=2, weights=weights)
    w_ = np.ones(len(y)) if w is None else w
    full = np.array([[2.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 0.5]])
    head = _head(True, prior_precision=full).fit(Z, y, sample_weight=w)
    X, L0 = _design(Z, True), np.zeros((4, 4))
    L0[:3, :3], L0[3, 3] = full, 1e-6
    mu0 = np.append(MU0, 0.0)
    Ln = L0 + X.T @ (w_[:, None] * X)
    mun = np.linalg.solve(Ln, L0 @ mu0 + X.T @ (w_ * y))
    bn = 1.5 + 0.5 * (y @ (w_ * y) + mu0 @ L0 @ mu0 - mun @ Ln @ mun)
    np.testing.assert_allclose(head.posterior_.mean, mun, rtol=1e-10, atol=1e-12)
    L = head.posterior_.precision_cholesky
    np.testing.assert_allclose(L @ L.T, Ln, rtol=1e-12)
    assert np.allclose(np.triu(head.posterior_.precision_cholesky, 1), 0.0)
    assert head.posterior_.a == 2.5 + len(y) / 2
    assert head.posterior_.b == pytest.approx(bn, rel=1e-10)
    np.testing.assert_allclose(head.coef_, mun[:3], rtol=1e-10)
    assert head.intercept_ == pytest.approx(mun[3], rel=1e-10)


def test_b_n_has_no_cancellation_with_large_offset():
    # y ~ 1e7: the textbook b_n = b0 + (y'y + mu0'L0 mu0 - mu_n'L_n mu_n)/2 loses ~14 digits here.
    Z, y, _ = _problem(seed=3, n=200, offset=1e7)
    head = _head(True, intercept_prior_precision=1e-12).fit(Z, y)
    resid = y - _design(Z, True) @ head.posterior_.mean
    mu0 = np.append(MU0, 0.0)
    d = head.posterior_.mean - mu0
    exact = 1.5 + 0.5 * (resid @ resid + d @ _prior_matrix(PREC, True, 1e-12) @ d)
    assert head.posterior_.b == pytest.approx(exact, rel=1e-9)
    streamed = _head(True, intercept_prior_precision=1e-12).partial_fit(Z[:50], y[:50])
    for i in range(50, 200):
        streamed.update(Z[i], y[i])
    assert streamed.posterior_.b == pytest.approx(exact, rel=1e-8)
    X, L0 = _design(Z, True), _prior_matrix(PREC, True, 1e-12)
    textbook = 1.5 + 0.5 * (y @ y + mu0 @ L0 @ mu0 - head.posterior_.mean @ (L0 + X.T @ X) @ head.posterior_.mean)
    assert abs(textbook / exact - 1) > 1e-4  # the problem is hard enough to show the cancellation


def test_predictive_matches_monte_carlo_and_torch():
    Z, y, _ = _problem(seed=4, n=15)
    head = _head(True).fit(Z, y)
    Znew = np.random.default_rng(5).normal(size=(3, 3))
    beta, sigma2 = _joint_draws(head, 200_000, 6)
    X = _design(Znew, True)
    ynew = beta @ X.T + np.sqrt(sigma2)[:, None] * np.random.default_rng(7).standard_normal((200_000, 3))
    lo, hi = head.predict_dist(Znew).interval(0.8)
    np.testing.assert_allclose(np.quantile(ynew, 0.1, axis=0), lo, atol=0.02)
    np.testing.assert_allclose(np.quantile(ynew, 0.9, axis=0), hi, atol=0.02)
    mean, std = head.predict(Znew, return_std=True)
    np.testing.assert_allclose(ynew.mean(0), mean, atol=0.01)
    np.testing.assert_allclose(ynew.std(0), std, rtol=0.01)
    # posterior draws: E[beta] = mu_n, Cov = b_n / (a_n - 1) Lambda_n^-1
    L = head.posterior_.precision_cholesky
    np.testing.assert_allclose(beta.mean(0), head.posterior_.mean, atol=0.01)
    cov = head.posterior_.b / (head.posterior_.a - 1) * np.linalg.inv(L @ L.T)
    np.testing.assert_allclose(np.cov(beta.T), cov, rtol=0.03, atol=0.03 * np.diag(cov).max())
    pred = head.predict_dist(Znew)
    dist = pred.distribution
    assert isinstance(dist, torch.distributions.StudentT) and dist.loc.dtype == torch.float64
    assert float(dist.df[0]) == 2 * head.posterior_.a
    yq = np.array([0.1, 1.0, -2.0])
    np.testing.assert_allclose(pred.log_prob(yq), head.log_predictive(Znew, yq))
    np.testing.assert_allclose(pred.mean, mean)
    np.testing.assert_allclose(np.sqrt(pred.variance), std)
    assert isinstance(head.predict(torch.tensor(Znew, dtype=torch.float32)), np.ndarray)


# ---- streaming, rank-one updates and merging --------------------------------------------------------------


@pytest.mark.parametrize("intercept", [False, True])
def test_partial_fit_update_and_merge_equal_batch(intercept):
    Z, y, w = _problem(seed=8, n=60, weights=True)
    batch = _head(intercept).fit(Z, y, sample_weight=w)

    chunked = _head(intercept)
    for rows in np.array_split(np.arange(60), 4):
        chunked.partial_fit(Z[rows], y[rows], sample_weight=w[rows])

    rows1 = _head(intercept).fit(Z[:5], y[:5], sample_weight=w[:5])
    for i in range(5, 60):
        rows1.update(Z[i], y[i], sample_weight=w[i])

    parts = [
        SufficientStats.from_data(Z[r], y[r], w[r], fit_intercept=intercept) for r in np.array_split(np.arange(60), 3)
    ]
    merged_stats = parts[0].merge(*parts[1:])
    packed = SufficientStats.from_tensor(merged_stats.as_tensor(), has_intercept=intercept)
    from_stats = _head(intercept).fit_stats(packed)

    heads = [_head(intercept).fit(Z[r], y[r], sample_weight=w[r]) for r in np.array_split(np.arange(60), 2)]
    merged_heads = heads[0].merge(heads[1])

    for other in (chunked, rows1, from_stats, merged_heads):
        np.testing.assert_allclose(other.posterior_.mean, batch.posterior_.mean, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(other.posterior_.precision_cholesky, batch.posterior_.precision_cholesky,
                                   rtol=1e-10, atol=1e-12)
        assert other.posterior_.a == pytest.approx(batch.posterior_.a, rel=1e-14)
        assert other.posterior_.b == pytest.approx(batch.posterior_.b, rel=1e-10)
        assert other.log_evidence() == pytest.approx(batch.log_evidence(), rel=1e-10)


def test_rank_one_cholesky_update_against_numpy():
    from bayes_diglm.inference.linalg import cholesky_rank_one_update

    rng = np.random.default_rng(16)
    A = rng.normal(size=(12, 12))
    L = np.linalg.cholesky(A @ A.T + np.eye(12))
    for _ in range(5):
        x = 3.0 * rng.normal(size=12)
        expected = np.linalg.cholesky(L @ L.T + np.outer(x, x))
        L = cholesky_rank_one_update(L, x)
        np.testing.assert_allclose(L, expected, rtol=1e-10, atol=1e-12)
        assert np.all(np.triu(L, 1) == 0.0)


def test_float32_input_statistics_are_accumulated_in_float64():
    rng = np.random.default_rng(9)
    Z = rng.normal(size=(70_000, 64)).astype(np.float32)  # more rows than one chunk (65,536 at D=64)
    y = rng.normal(size=70_000)
    stats = SufficientStats.from_data(torch.from_numpy(Z), y, fit_intercept=True)
    Z64 = _design(Z.astype(np.float64), True)
    assert stats.ZtZ.dtype == np.float64
    np.testing.assert_allclose(stats.ZtZ, Z64.T @ Z64, rtol=1e-5, atol=1e-2)
    np.testing.assert_allclose(stats.Zty, Z64.T @ y, rtol=1e-4, atol=1e-1)


def test_fit_on_features_equals_fit():
    Z, y, _ = _problem(seed=10, n=90)
    X = torch.from_numpy(Z)

    def feature_fn(x):
        return torch.tanh(x) * 2.0

    head = fit_on_features(_head(True), feature_fn, X, y, batch_size=16)
    direct = _head(True).fit(feature_fn(X).numpy(), y)
    np.testing.assert_allclose(head.posterior_.mean, direct.posterior_.mean, rtol=1e-10)
    assert head.posterior_.b == pytest.approx(direct.posterior_.b, rel=1e-10)
    # with reset=False it adds to the current posterior
    more = fit_on_features(
        _head(True).fit(feature_fn(X[:30]).numpy(), y[:30]),
        feature_fn,
        X[30:],
        y[30:],
        batch_size=7,
        reset=False,
    )
    np.testing.assert_allclose(more.posterior_.mean, direct.posterior_.mean, rtol=1e-10)


# ---- scikit-learn -----------------------------------------------------------------------------------------


def test_posterior_mean_equals_bayesian_ridge_and_ridge():
    Z, y, _ = _problem(seed=11, n=80, d=3)
    br = BayesianRidge(fit_intercept=False).fit(Z, y)
    ratio = br.lambda_ / br.alpha_  # prior precision relative to sigma^2 = 1 / alpha_
    head = ConjugateLinearRegression(prior_precision=ratio, fit_intercept=False).fit(Z, y)
    np.testing.assert_allclose(head.posterior_.mean, br.coef_, rtol=1e-8)
    np.testing.assert_allclose(head.posterior_.mean, Ridge(alpha=ratio, fit_intercept=False).fit(Z, y).coef_, rtol=1e-8)


def test_optimize_prior_precision_close_to_bayesian_ridge():
    rng = np.random.default_rng(12)
    n, d = 150, 6
    Z = rng.normal(size=(n, d))
    y = Z @ rng.normal(size=d) * 0.8 + 0.3 * rng.normal(size=n)
    Zc, yc = Z - Z.mean(0), y - y.mean()
    br = BayesianRidge(fit_intercept=False).fit(Zc, yc)
    head = ConjugateLinearRegression(fit_intercept=False, prior_precision=1e3, a0=1.0, b0=1.0).fit(Zc, yc)
    before = head.log_evidence()
    head.optimize_prior_precision()
    assert head.log_evidence() > before
    Ztest = rng.normal(size=(50, d)) - Z.mean(0)
    gap = np.max(np.abs(head.predict(Ztest) - br.predict(Ztest)))
    print(f"max |prediction gap| to BayesianRidge after optimize_prior_precision: {gap:.2e} (std y {y.std():.2f})")
    assert gap < 0.01 * y.std()
    # per-feature precisions can only raise the evidence further
    scalar_evidence = head.log_evidence()
    assert head.optimize_prior_precision(per="feature").log_evidence() >= scalar_evidence - 1e-8


# ---- simulation-based calibration -------------------------------------------------------------------------


def test_simulation_based_calibration_coverage():
    reps, n, d, prob = 1000, 8, 3, 0.9
    rng = np.random.default_rng(13)
    a0, b0, prec, mu0 = 3.0, 2.0, np.array([1.0, 0.5, 2.0]), np.array([0.5, -1.0, 0.0])
    sigma2 = b0 / rng.gamma(a0, 1.0, size=reps)
    beta = mu0 + np.sqrt(sigma2)[:, None] * rng.standard_normal((reps, d)) / np.sqrt(prec)
    Z = rng.normal(size=(reps, n + 1, d))
    y = np.einsum("rnd,rd->rn", Z, beta) + np.sqrt(sigma2)[:, None] * rng.standard_normal((reps, n + 1))
    hits_beta, hits_y = np.zeros(d), 0
    for r in range(reps):
        head = ConjugateLinearRegression(prior_precision=prec, prior_mean=mu0, a0=a0, b0=b0, fit_intercept=False)
        head.fit(Z[r, :n], y[r, :n])
        lo, hi = head.beta_interval(prob)
        hits_beta += (lo <= beta[r]) & (beta[r] <= hi)
        ylo, yhi = head.predict_dist(Z[r, n:]).interval(prob)
        hits_y += int(ylo[0] <= y[r, n] <= yhi[0])
    coverage = np.append(hits_beta, hits_y) / reps
    print(f"SBC 90% coverage over {reps} replications (beta_0..beta_2, new y): {np.round(coverage, 3)}")
    assert np.all(np.abs(coverage - prob) <= 0.03)


# ---- bad input ---------------------------------------------------------------------------------------------


def test_errors_name_the_problem():
    Z, y, _ = _problem(seed=14)
    head = _head(True)
    for call in (lambda: head.predict(Z), lambda: head.sample(3), head.log_evidence, lambda: head.predict_dist(Z)):
        with pytest.raises(NotFittedError, match="not fitted"):
            call()
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        head.fit(Z, y[:-1])
    with pytest.raises(ValueError, match="NaN"):
        head.fit(np.where(np.eye(40, 3) > 0, np.nan, Z), y)
    with pytest.raises(ValueError, match="y contains"):
        head.fit(Z, np.where(np.arange(40) == 3, np.inf, y))
    with pytest.raises(ValueError, match="Z contains 3 NaN"):
        head.fit(torch.from_numpy(np.where(np.eye(40, 3) > 0, np.inf, Z)).float(), y)
    with pytest.raises(ValueError, match="overflows in torch.float32"):
        head.fit(np.full((40, 3), 1e30, dtype=np.float32), y)
    with pytest.raises(ValueError, match="Expected 2D array"):
        head.fit(Z[:, 0], y)
    with pytest.raises(ValueError, match="1d array"):
        head.fit(Z, np.column_stack([y, y]))
    with pytest.raises(ValueError, match="sample_weight must be non-negative"):
        head.fit(Z, y, sample_weight=-np.ones(40))
    with pytest.raises(ValueError, match="prior_precision must be positive"):
        _head(prior_precision=np.array([1.0, 0.0, 1.0])).fit(Z, y)
    with pytest.raises(ValueError, match="prior_precision is not positive definite"):
        _head(prior_precision=np.array([[1.0, 2.0, 0], [2.0, 1.0, 0], [0, 0, 1.0]])).fit(Z, y)
    with pytest.raises(ValueError, match="prior_precision has shape"):
        _head(prior_precision=np.ones(4)).fit(Z, y)
    with pytest.raises(ValueError, match=r"'a0' parameter .* must be a float in the range \(0.0, inf\)"):
        _head(a0=0.0).fit(Z, y)
    with pytest.raises(ValueError, match="has_intercept"):
        _head(True).fit_stats(SufficientStats.from_data(Z, y))
    fitted = _head(True).fit(Z, y)
    with pytest.raises(ValueError, match="has 2 features"):
        fitted.predict(Z[:, :2])
    with pytest.raises(ValueError, match="prob must be in"):
        fitted.predict_dist(Z).interval(1.5)


def test_failed_fit_leaves_previous_posterior_untouched():
    Z, y, _ = _problem(seed=15)
    head = _head(True).fit(Z, y)
    Zq = Z[:5]
    before = (head.predict(Zq).copy(), head.predict_dist(Zq).interval(), head.posterior_.b, head.log_evidence())
    bad_Z = Z.copy()
    bad_Z[3, 1] = np.nan
    attempts = [
        lambda: head.fit(bad_Z, y),
        lambda: head.partial_fit(bad_Z, y),
        lambda: head.partial_fit(Z[:, :2], y),
        lambda: head.update(Z[0], np.nan),
        lambda: head.update(Z[0, :2], 1.0),
        lambda: head.set_params(prior_precision=-1.0).fit(Z, y),
    ]
    for attempt in attempts:
        with pytest.raises(ValueError):
            attempt()
    after = (head.predict(Zq), head.predict_dist(Zq).interval(), head.posterior_.b, head.log_evidence())
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    assert before[2:] == after[2:]


def test_predictive_with_known_noise_weights_matches_monte_carlo():
    """With y* ~ N(x*beta, sigma^2 / w*), the predictive scale^2 is (b_n/a_n)(1/w* + x*^T Lambda_n^{-1} x*)."""
    rng = np.random.default_rng(3)
    Z = rng.normal(size=(40, 2))
    y = Z @ np.array([1.0, -0.5]) + rng.normal(size=40)
    head = ConjugateLinearRegression(a0=2.0, b0=2.0).fit(Z, y)
    z_new, w_new = Z[:2], np.array([0.25, 4.0])
    beta, sigma2 = _joint_draws(head, 400_000, np.random.default_rng(0))
    loc = beta[:, :2] @ z_new.T + beta[:, 2:]
    draws = loc + np.sqrt(sigma2[:, None] / w_new) * rng.standard_normal(loc.shape)
    mean, std = head.predict(z_new, return_std=True, sample_weight=w_new)
    np.testing.assert_allclose(draws.mean(0), mean, atol=0.02)
    np.testing.assert_allclose(draws.std(0), std, rtol=0.01)
    np.testing.assert_allclose(head.predict(z_new, return_std=True, sample_weight=np.ones(2))[1],
                               head.predict(z_new, return_std=True)[1], rtol=1e-14)
    with pytest.raises(ValueError, match="sample_weight"):
        head.predict(z_new, sample_weight=np.array([1.0, -1.0]))
