"""Mixed-effects heads against statsmodels MixedLM (ML), scikit-learn, and their error contract."""

import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from bayes_diglm.inference.mixed import MixedEffectsClassifier, MixedEffectsRegression

sm = pytest.importorskip("statsmodels.api")


def _grouped(seed=0, num_groups=30, slope_sd=0.5):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(10, 25, size=num_groups)
    groups = np.repeat(np.arange(num_groups), sizes)
    n = groups.size
    Z = rng.normal(size=(n, 3))
    u0, u1 = 0.8 * rng.normal(size=num_groups), slope_sd * rng.normal(size=num_groups)
    y = Z @ [1.0, -0.5, 0.3] + 2.0 + u0[groups] + u1[groups] * Z[:, 0] + 0.7 * rng.normal(size=n)
    return Z, y, groups


def _statsmodels(Z, y, groups, exog_re=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sm.MixedLM(y, np.column_stack([Z, np.ones(len(y))]), groups, exog_re=exog_re).fit(reml=False)


def test_random_intercept_matches_statsmodels():
    Z, y, groups = _grouped(slope_sd=0.0)
    ours = MixedEffectsRegression().fit(Z, y, groups)
    ref = _statsmodels(Z, y, groups)
    # measured: fixed effects agree to ~3e-7 relative, variance components to ~2e-4
    np.testing.assert_allclose(ours.beta_, ref.fe_params, rtol=1e-3)
    np.testing.assert_allclose(ours.re_cov_, ref.cov_re, rtol=0.05)
    assert ours.sigma2_ == pytest.approx(ref.scale, rel=0.05)
    assert ours.log_likelihood_ >= ref.llf - 1e-6  # same objective, at least as well maximised
    blups = np.array([np.asarray(ref.random_effects[g])[0] for g in ours.groups_])
    np.testing.assert_allclose(ours.u_mean_[:, 0], blups, atol=1e-3)


def test_random_slope_full_covariance_matches_statsmodels():
    Z, y, groups = _grouped(seed=1)
    ours = MixedEffectsRegression(random_slopes=[0], re_covariance="full").fit(Z, y, groups)
    ref = _statsmodels(Z, y, groups, exog_re=np.column_stack([np.ones(len(y)), Z[:, 0]]))
    np.testing.assert_allclose(ours.beta_, ref.fe_params, rtol=1e-3)
    np.testing.assert_allclose(np.diag(ours.re_cov_), np.diag(ref.cov_re), rtol=0.05)
    scale = np.sqrt(np.prod(np.diag(ours.re_cov_)))
    assert ours.re_cov_[0, 1] == pytest.approx(np.asarray(ref.cov_re)[0, 1], abs=0.05 * scale)
    assert ours.sigma2_ == pytest.approx(ref.scale, rel=0.05)
    blups = np.array([np.asarray(ref.random_effects[g]) for g in ours.groups_])
    np.testing.assert_allclose(ours.u_mean_, blups, atol=2e-3)
    diag = MixedEffectsRegression(random_slopes=[0]).fit(Z, y, groups)
    assert diag.re_cov_[0, 1] == 0.0 and diag.log_likelihood_ <= ours.log_likelihood_ + 1e-8


def test_blup_posterior_matches_brute_force():
    """u_g | y, beta_hat from the dense joint Gaussian (no Woodbury) equals the per-group formulas."""
    Z, y, groups = _grouped(seed=2, num_groups=6)
    head = MixedEffectsRegression(random_slopes=[0], re_covariance="full").fit(Z, y, groups)
    X = np.column_stack([Z, np.ones(len(y))])
    A = np.column_stack([np.ones(len(y)), Z[:, 0]])
    G, q = 6, 2
    Abig = np.zeros((len(y), G * q))
    for i, g in enumerate(groups):
        Abig[i, g * q:(g + 1) * q] = A[i]
    prior_cov = np.kron(np.eye(G), head.re_cov_)
    V = Abig @ prior_cov @ Abig.T + head.sigma2_ * np.eye(len(y))
    resid = y - X @ head.beta_
    mean = prior_cov @ Abig.T @ np.linalg.solve(V, resid)
    cov = prior_cov - prior_cov @ Abig.T @ np.linalg.solve(V, Abig @ prior_cov)
    np.testing.assert_allclose(head.u_mean_.ravel(), mean, atol=1e-8)
    for g in range(G):
        np.testing.assert_allclose(head.u_cov_[g], cov[g * q:(g + 1) * q, g * q:(g + 1) * q], atol=1e-10)
    # GLS covariance of beta is (X^T V^{-1} X)^{-1}
    prec = X.T @ np.linalg.solve(V, X)
    np.testing.assert_allclose(head.beta_precision_chol_ @ head.beta_precision_chol_.T, prec, rtol=1e-6)


def test_predict_seen_and_unseen_groups():
    Z, y, groups = _grouped(seed=3)
    labels = np.array([f"site{g}" for g in groups])
    head = MixedEffectsRegression(random_slopes=[0]).fit(Z, y, labels)
    pred = head.predict(Z, labels)
    assert np.mean((y - pred) ** 2) < np.mean((y - Z @ head.coef_ - head.intercept_) ** 2)
    with pytest.raises(ValueError, match="site_new"):
        head.predict(Z[:2], ["site_new", "site1"])
    both = head.predict(Z[:2], ["site_new", labels[1]], allow_unseen=True)
    assert both[0] == pytest.approx(Z[0] @ head.coef_ + head.intercept_)
    assert both[1] == pytest.approx(pred[1])


def test_mixed_regression_errors_and_state():
    Z, y, groups = _grouped(seed=4)
    head = MixedEffectsRegression()
    with pytest.raises(RuntimeError, match="not fitted"):
        head.predict(Z, groups)
    head.fit(Z, y, groups)
    beta = head.beta_.copy()
    bad = y.copy()
    bad[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        head.fit(Z, bad, groups)
    with pytest.raises(ValueError, match="groups"):
        head.fit(Z, y, groups[:-1])
    with pytest.raises(ValueError, match="single group"):
        head.fit(Z, y, np.zeros(len(y)))
    with pytest.raises(ValueError, match="random_slopes"):
        MixedEffectsRegression(random_slopes=[7]).fit(Z, y, groups)
    with pytest.raises(ValueError, match="re_covariance"):
        MixedEffectsRegression(re_covariance="banded").fit(Z, y, groups)
    np.testing.assert_array_equal(head.beta_, beta)


def test_mixed_regression_arviz():
    pytest.importorskip("arviz")
    from bayes_diglm.arviz import to_inference_data

    Z, y, groups = _grouped(seed=5, num_groups=8)
    head = MixedEffectsRegression(random_slopes=[0]).fit(Z, y, groups)
    idata = to_inference_data(head, Z=Z, y=y, groups=groups, draws=1000, chains=2, seed=0)
    u = idata.posterior["u"]
    assert u.dims == ("chain", "draw", "group", "effect") and u.shape == (2, 1000, 8, 2)
    # draws integrate over beta, so their mean is the BLUP (u | beta is linear in beta)
    np.testing.assert_allclose(u.mean(("chain", "draw")).values, head.u_mean_, atol=0.05)
    assert idata.log_likelihood["y"].shape == (2, 1000, len(y))
    assert float(idata.posterior["sigma"].std()) < 1e-12  # plug-in, documented


# ---- the binary classifier ---------------------------------------------------------------------------------


def _grouped_binary(seed=0, num_groups=12, per_group=60, tau=1.0):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(num_groups), per_group)
    Z = rng.normal(size=(groups.size, 2))
    u = tau * rng.normal(size=num_groups)
    logits = Z @ [1.5, -1.0] + 0.3 + u[groups]
    y = (rng.random(groups.size) < 1 / (1 + np.exp(-logits))).astype(int)
    return Z, y, groups


def test_classifier_map_matches_sklearn_on_rescaled_design():
    """Prior precisions alpha_j equal a unit L2 penalty on columns x_j / sqrt(alpha_j) (sklearn, C=1)."""
    Z, y, groups = _grouped_binary()
    clf = MixedEffectsClassifier(prior_precision=2.0, tau=0.5).fit(Z, y, groups)
    onehot = (groups[:, None] == np.arange(12)).astype(float)
    X = np.column_stack([Z, np.ones(len(y)), onehot])
    scale = np.sqrt(np.r_[2.0, 2.0, 2.0, np.full(12, 1 / 0.25)])
    ref = LogisticRegression(C=1.0, fit_intercept=False, tol=1e-12, max_iter=10_000).fit(X / scale, y)
    np.testing.assert_allclose(np.r_[clf.beta_, clf.u_mean_[:, 0]], ref.coef_[0] / scale, atol=1e-4)


def test_classifier_estimates_tau_and_predicts():
    Z, y, groups = _grouped_binary(seed=1, num_groups=20, tau=1.0)
    clf = MixedEffectsClassifier(tau=None).fit(Z, y, groups)
    assert 0.5 < clf.tau_[0] < 1.6  # truth 1.0 from 20 groups
    np.testing.assert_allclose(clf.coef_, [1.5, -1.0], atol=0.3)
    probit = clf.predict_proba(Z[:50], groups[:50])
    mc = clf.predict_proba(Z[:50], groups[:50], method="mc", n_samples=40_000, generator=0)
    assert np.abs(probit - mc).max() < 0.02
    # an unseen group integrates its effect over the prior: predictions pulled towards 1/2
    seen = clf.predict_proba(Z[:50], groups[:50])[:, 1]
    new = clf.predict_proba(Z[:50], np.full(50, 99), allow_unseen=True)[:, 1]
    population = 1 / (1 + np.exp(-(Z[:50] @ clf.coef_ + clf.intercept_)))
    assert np.all(np.abs(new - 0.5) <= np.abs(population - 0.5) + 1e-12)
    assert not np.allclose(seen, new)
    with pytest.raises(ValueError, match="99"):
        clf.predict(Z[:2], [99, 0])
    assert clf.score(Z, y, groups) > 0.7


def test_classifier_errors_and_arviz():
    Z, y, groups = _grouped_binary(seed=2, num_groups=5, per_group=30)
    clf = MixedEffectsClassifier()
    with pytest.raises(RuntimeError, match="not fitted"):
        clf.predict_proba(Z, groups)
    with pytest.raises(ValueError, match="outside"):
        clf.fit(Z, y + 1, groups)
    with pytest.raises(ValueError, match="single class"):
        clf.fit(Z, np.ones_like(y), groups)
    clf.fit(Z, y, groups)
    u = clf.u_mean_.copy()
    bad = Z.copy()
    bad[1, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        clf.fit(bad, y, groups)
    np.testing.assert_array_equal(clf.u_mean_, u)
    pytest.importorskip("arviz")
    from bayes_diglm.arviz import to_inference_data

    idata = to_inference_data(clf, Z=Z, y=y, groups=groups, draws=300, chains=2)
    assert idata.posterior["u"].dims == ("chain", "draw", "group")
    assert idata.log_likelihood["y"].shape == (2, 300, len(y))
