"""The batched Normal-Inverse-Gamma state: k = 1 equals ConjugateLinearRegression, rank-one updates equal refits."""

import numpy as np
import pytest
import scipy.linalg
import scipy.stats

from bayes_diglm.inference.conjugate import ConjugateLinearRegression
from bayes_diglm.inference.linalg import rank_one_update_upper
from bayes_diglm.inference.nig import NormalInverseGamma

TOL = 1e-10


def _data(n=250, d=5, seed=0):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, d)) * np.array([1.0, 3.0, 0.3, 1.0, 2.0])[:d]
    y = Z @ rng.normal(size=d) + 0.7 + 0.2 * rng.normal(size=n)
    return Z, y


def _assert_equals_reference(nig, ref, model=0, tol=TOL):
    post = ref.posterior_
    np.testing.assert_allclose(nig.mean[model], post.mean, rtol=tol, atol=tol)
    np.testing.assert_allclose(nig.precision_cholesky[model], post.precision_cholesky, rtol=tol,
                               atol=tol * np.abs(post.precision_cholesky).max())
    assert nig.a[model] == pytest.approx(post.a, rel=tol)
    assert nig.b[model] == pytest.approx(post.b, rel=tol)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_k1_fit_and_sequential_updates_equal_conjugate_linear_regression(fit_intercept):
    Z, y = _data()
    kw = {"prior_precision": 0.5, "a0": 2.0, "b0": 3.0}
    ref = ConjugateLinearRegression(**kw, intercept_prior_precision=0.5, fit_intercept=fit_intercept).fit(Z, y)
    batch = NormalInverseGamma(1, Z.shape[1], **kw, fit_intercept=fit_intercept).fit(Z, y)
    _assert_equals_reference(batch, ref)
    sequential = NormalInverseGamma(1, Z.shape[1], **kw, fit_intercept=fit_intercept)
    for z, t in zip(Z, y, strict=True):
        sequential.update(0, z, t)
    _assert_equals_reference(sequential, ref)
    assert sequential.counts[0] == batch.counts[0] == len(y)
    # the predictive: Student-t with the reference head's location, scale and degrees of freedom
    Z_new = np.random.default_rng(5).normal(size=(7, Z.shape[1]))
    loc, scale, df = sequential.predictive(Z_new)
    dist = ref.predict_dist(Z_new)  # Student-t: mean loc, variance scale^2 df / (df - 2)
    assert df[0] == pytest.approx(2.0 * ref.posterior_.a, rel=TOL)
    np.testing.assert_allclose(loc[0], np.asarray(dist.mean), rtol=TOL, atol=TOL)
    np.testing.assert_allclose(scale[0] ** 2 * df[0] / (df[0] - 2.0), np.asarray(dist.variance), rtol=1e-9)


def test_intercept_prior_precision_and_fit_stats_equal_the_reference():
    Z, y = _data(seed=1)
    ref = ConjugateLinearRegression(prior_precision=0.25, intercept_prior_precision=1e-3, a0=6.0, b0=6.0).fit(Z, y)
    nig = NormalInverseGamma(1, Z.shape[1], prior_precision=0.25, intercept_prior_precision=1e-3, a0=6.0, b0=6.0)
    X = nig.design(Z)
    nig.fit_stats((X.T @ X)[None], (X.T @ y)[None], np.array([y @ y]), np.array([len(y)]))
    _assert_equals_reference(nig, ref, tol=1e-8)  # b from bare statistics loses a few digits (documented)


def test_batched_models_each_equal_their_own_fit():
    rng = np.random.default_rng(2)
    Z, y = _data(n=400, d=3, seed=2)
    models = rng.integers(0, 4, size=400)
    models[models == 3] = 2  # model 3 gets no rows: it stays at the prior
    nig = NormalInverseGamma(4, 3, prior_precision=0.25, a0=6.0, b0=6.0).fit(Z, y, models)
    seq = NormalInverseGamma(4, 3, prior_precision=0.25, a0=6.0, b0=6.0)
    for z, t, m in zip(Z, y, models, strict=True):
        seq.update(int(m), z, t)
    for m in range(3):
        rows = models == m
        ref = ConjugateLinearRegression(prior_precision=0.25, intercept_prior_precision=0.25, a0=6.0, b0=6.0)
        ref.fit(Z[rows], y[rows])
        _assert_equals_reference(nig, ref, model=m)
        _assert_equals_reference(seq, ref, model=m)
    prior = NormalInverseGamma(1, 3, prior_precision=0.25, a0=6.0, b0=6.0)
    np.testing.assert_array_equal(nig.factor[3], prior.factor[0])
    assert nig.a[3] == 6.0 and nig.b[3] == 6.0 and nig.counts[3] == 0


def test_rank_one_update_of_the_upper_factor_is_exact_and_triangular():
    rng = np.random.default_rng(3)
    A = rng.normal(size=(40, 9))
    precision = A.T @ A + np.eye(9)
    R = np.linalg.cholesky(precision).T
    x = 3.0 * rng.normal(size=9)
    p = scipy.linalg.solve_triangular(R, x, trans="T")
    new = rank_one_update_upper(R, p)
    assert np.array_equal(np.triu(new), new)
    np.testing.assert_allclose(new.T @ new, precision + np.outer(x, x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(new, np.linalg.cholesky(precision + np.outer(x, x)).T, rtol=1e-10, atol=1e-12)


def test_draws_have_the_posterior_moments_and_scale_widens_them():
    Z, y = _data(n=30, d=2, seed=4)
    nig = NormalInverseGamma(1, 2, prior_precision=0.5, a0=3.0, b0=2.0).fit(Z, y)
    rng = np.random.default_rng(0)
    draws = np.stack([nig.sample(rng)[0] for _ in range(8_000)])
    cov = nig.b[0] / (nig.a[0] - 1) * scipy.linalg.cho_solve((nig.precision_cholesky[0], True), np.eye(3))
    se = np.sqrt(np.diag(cov) / draws.shape[0])
    assert np.all(np.abs(draws.mean(0) - nig.mean[0]) < 4 * se)
    np.testing.assert_allclose(np.cov(draws.T), cov, rtol=0.08, atol=0.08 * np.abs(cov).max())
    wide = np.stack([nig.sample(rng, scale=2.0)[0] for _ in range(3_000)])
    np.testing.assert_allclose(np.cov(wide.T), 4.0 * cov, rtol=0.15, atol=0.15 * np.abs(cov).max())


def test_rejected_input_leaves_the_state_unchanged_and_names_the_problem():
    Z, y = _data(n=20, d=2)
    nig = NormalInverseGamma(2, 2).fit(Z, y, np.arange(20) % 2)
    before = {k: v.clone() for k, v in nig.state_dict().items()}
    bad = y.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        nig.fit(Z, bad, np.arange(20) % 2)
    with pytest.raises(ValueError, match="models"):
        nig.fit(Z, y, np.full(20, 5))
    with pytest.raises(ValueError, match="model"):
        nig.update(2, Z[0], 1.0)
    with pytest.raises(ValueError, match="shape"):
        nig.update(0, np.zeros(3), 1.0)
    with pytest.raises(ValueError, match="finite"):
        nig.update(0, Z[0], np.inf)
    with pytest.raises(ValueError, match="statistics"):
        nig.fit_stats(np.zeros((1, 3, 3)), np.zeros((1, 3)), np.zeros(1), np.zeros(1))
    for key, value in nig.state_dict().items():
        assert np.array_equal(value.numpy(), before[key].numpy()), key
    with pytest.raises(ValueError, match="num_models"):
        NormalInverseGamma(0, 2)
    with pytest.raises(ValueError, match="prior_precision"):
        NormalInverseGamma(1, 2, prior_precision=-1.0)
    with pytest.raises(ValueError, match="factor"):
        nig.load_state_dict({**nig.state_dict(), "factor": np.zeros((1, 3, 3))})


def test_predictive_interval_covers_at_its_level():
    rng = np.random.default_rng(6)
    beta = np.array([1.0, -1.0, 0.5])
    Z = rng.normal(size=(200, 2))
    y = Z @ beta[:2] + beta[2] + 0.3 * rng.normal(size=200)
    nig = NormalInverseGamma(1, 2, prior_precision=1e-2, a0=1.0, b0=1.0).fit(Z, y)
    Z_new = rng.normal(size=(4000, 2))
    y_new = Z_new @ beta[:2] + beta[2] + 0.3 * rng.normal(size=4000)
    loc, scale, df = nig.predictive(Z_new)
    lo, hi = scipy.stats.t.interval(0.9, df[0], loc[0], scale[0])
    assert abs(np.mean((y_new > lo) & (y_new < hi)) - 0.9) < 0.03


def test_with_prior_refuses_a_precision_the_cholesky_factor_would_not_see():
    """The factor reads one triangle: a NaN above the diagonal or an asymmetric matrix used to be accepted (and the
    refit then used the whole, inconsistent matrix); a NaN or matrix-shaped mean too."""
    good = np.eye(3)
    upper_nan, asymmetric = good.copy(), good.copy()
    upper_nan[0, 1] = np.nan
    asymmetric[0, 1] = 0.5
    for mean, precision, match in [(np.zeros(3), upper_nan, "finite symmetric"),
                                   (np.zeros(3), asymmetric, "finite symmetric"),
                                   ([0.0, np.nan, 0.0], good, "finite vector"),
                                   ([[0.0, 0.0, 0.0]], good, "finite vector")]:
        with pytest.raises(ValueError, match=match):
            NormalInverseGamma.with_prior(1, mean, precision, a0=1.0, b0=1.0, fit_intercept=True)
    state = NormalInverseGamma.with_prior(1, np.zeros(3), 2 * good, a0=1.0, b0=1.0, fit_intercept=True)
    np.testing.assert_array_equal(state.prior_precision_matrix, 2 * good)
