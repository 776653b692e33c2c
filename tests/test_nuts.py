"""The NUTS heads: Pyro model sites, chains and sample statistics, and posteriors against exact answers."""

from __future__ import annotations

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC, NUTS, Predictive
from scipy import stats

from bayes_diglm.arviz import to_inference_data
from bayes_diglm.inference import LaplaceClassifier, NUTSClassifier, NUTSRegressor

SMALL = {"num_chains": 2, "num_warmup": 100, "num_samples": 150, "seed": 0}


@pytest.fixture(scope="module")
def regression():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(80, 2))
    y = Z @ np.array([1.0, -0.5]) + 0.5 + 0.3 * rng.normal(size=80)
    return Z, y, NUTSRegressor(**SMALL).fit(Z, y)


@pytest.fixture(scope="module")
def counts():
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(80, 2))
    y = rng.poisson(np.exp(0.4 * Z[:, 0] - 0.3 * Z[:, 1] + 0.5)).astype(float)
    return Z, y, NUTSRegressor(likelihood="poisson", **SMALL).fit(Z, y)


def test_chains_sites_and_sample_stats(regression):
    Z, y, head = regression
    draws, stats = head.posterior_chains()
    assert draws["beta"].shape == (2, 150, 2)
    assert draws["intercept"].shape == (2, 150)
    assert draws["noise_variance"].shape == (2, 150) and np.all(draws["noise_variance"] > 0)
    assert set(stats) == {"diverging", "energy", "tree_depth", "step_size"}
    assert all(v.shape == (2, 150) for v in stats.values())
    assert np.all(np.isfinite(stats["energy"])) and np.all(stats["tree_depth"] >= 1)
    # the noise draws centre on the residual variance of the least-squares fit (0.3^2 here)
    X = np.hstack([Z, np.ones((len(Z), 1))])
    resid = y - X @ np.linalg.lstsq(X, y, rcond=None)[0]
    assert abs(np.median(draws["noise_variance"]) / resid.var() - 1.0) < 0.3


def test_arviz_export_keeps_chains_and_sample_stats(regression):
    Z, y, head = regression
    idata = to_inference_data(head, X=Z, y=y)
    assert idata.posterior["beta"].shape == (2, 150, 2)
    assert "diverging" in idata.sample_stats and "energy" in idata.sample_stats
    assert "Markov" in idata.posterior.attrs["draws"]
    summary = az.summary(idata, var_names=["beta"])
    assert np.all(summary["r_hat"] < 1.1)
    assert np.isfinite(az.bfmi(idata)).all()


@pytest.mark.parametrize("fixture", ["regression", "counts"])
def test_pyro_predictive_on_the_model_matches_predict_dist(fixture, request):
    """``pyro.infer.Predictive`` on ``head.pyro_model`` with the head's draws gives predict_dist's moments."""
    Z, y, head = request.getfixturevalue(fixture)
    draws, _ = head.posterior_chains()
    samples = {k: torch.as_tensor(v.reshape((-1,) + v.shape[2:])) for k, v in draws.items()}
    pyro.set_rng_seed(0)
    replicated = Predictive(head.pyro_model, posterior_samples=samples)(Z[:10])["y"].numpy()  # (S, 10)
    pred = head.predict_dist(Z[:10])
    S = replicated.shape[0]
    se = np.sqrt(pred.variance / S)
    assert np.all(np.abs(replicated.mean(axis=0) - pred.mean) < 5 * se)
    assert np.allclose(replicated.var(axis=0), pred.variance, rtol=0.3)


def test_classifier_labels_and_predictive():
    rng = np.random.default_rng(2)
    Z = rng.normal(size=(120, 2))
    y = np.where(Z @ np.array([2.0, -1.0]) + rng.logistic(size=120) > 0, "yes", "no")
    clf = NUTSClassifier(**SMALL).fit(Z, y)
    assert list(clf.classes_) == ["no", "yes"]
    proba = clf.predict_proba(Z[:5])
    assert proba.shape == (5, 2) and np.allclose(proba.sum(axis=1), 1.0)
    assert clf.score(Z, y) > 0.7
    assert clf.sample_predictive(clf.sample(3, generator=0), Z[:4], generator=0).dtype.kind == "U"


def test_refuses_bad_settings_without_changing_state(regression):
    Z, y, head = regression
    before = head.predict(Z[:3])
    for bad in ({"num_chains": 0}, {"target_accept": 1.5}, {"prior": "flat"}, {"likelihood": "nope"}):
        with pytest.raises((ValueError, TypeError)):
            head.set_params(**bad).fit(Z, y)
        head.set_params(**{k: v for k, v in SMALL.items()}, likelihood="gaussian", prior=None, target_accept=0.8)
    assert np.array_equal(head.predict(Z[:3]), before)
    with pytest.raises(ValueError, match="classification family"):
        NUTSRegressor(likelihood="bernoulli", **SMALL).fit(Z, (y > 0).astype(float))


def _nig_posterior(X, y, m0, v0, a0, b0):
    """Textbook Normal-Inverse-Gamma posterior: beta's marginal (a Student t) mean and sd, and E[sigma^2]."""
    prec = np.diag(1.0 / v0) + X.T @ X
    cov = np.linalg.solve(prec, np.eye(len(m0)))
    mean = cov @ (m0 / v0 + X.T @ y)
    an = a0 + len(y) / 2.0
    bn = b0 + 0.5 * (y @ y + m0 @ (m0 / v0) - mean @ prec @ mean)
    return mean, np.sqrt(bn / (an - 1.0) * np.diag(cov)), bn / (an - 1.0)


@pytest.mark.slow
def test_nuts_matches_the_exact_conjugate_posterior():
    """Gaussian family with the conjugate prior written as Pyro distributions: NUTS means and sds within four
    Monte Carlo standard errors of the exact Normal-Inverse-Gamma posterior, r_hat <= 1.01."""
    rng = np.random.default_rng(3)
    n = 60
    X = np.hstack([rng.normal(size=(n, 2)), np.ones((n, 1))])
    y = X @ np.array([0.8, -0.4, 1.0]) + 0.7 * rng.normal(size=n)
    m0, v0, a0, b0 = np.zeros(3), np.full(3, 4.0), 3.0, 2.0

    def prior(noise_variance):
        return dist.Normal(torch.as_tensor(m0), torch.sqrt(noise_variance * torch.as_tensor(v0))).to_event(1)

    head = NUTSRegressor(prior=prior, nuisance_priors={"noise_variance": dist.InverseGamma(a0, b0)},
                         fit_intercept=False, num_chains=4, num_warmup=500, num_samples=1000, seed=1).fit(X, y)
    idata = to_inference_data(head)
    mean, sd, noise = _nig_posterior(X, y, m0, v0, a0, b0)
    beta = idata.posterior["beta"]
    assert float(az.rhat(idata)["beta"].max()) <= 1.01
    mcse_mean = az.mcse(idata, method="mean")["beta"].values
    mcse_sd = az.mcse(idata, method="sd")["beta"].values
    assert np.all(np.abs(beta.mean(("chain", "draw")).values - mean) < 4 * mcse_mean)
    assert np.all(np.abs(beta.std(("chain", "draw")).values - sd) < 4 * mcse_sd)
    nv = idata.posterior["noise_variance"]
    assert abs(float(nv.mean()) - noise) < 4 * float(az.mcse(idata, method="mean")["noise_variance"])


@pytest.mark.slow
def test_laplace_within_a_tenth_of_a_nuts_sd_on_logistic_regression():
    rng = np.random.default_rng(4)
    n = 2000
    Z = rng.normal(size=(n, 3))
    y = (Z @ np.array([1.0, -0.5, 0.25]) + 0.3 + rng.logistic(size=n) > 0).astype(int)
    nuts = NUTSClassifier(num_chains=2, num_warmup=300, num_samples=500, seed=0).fit(Z, y)
    lap = LaplaceClassifier(prior_precision=1.0, intercept_prior_precision=1.0).fit(Z, y)
    sd = nuts.posterior_["beta"].std(axis=0)
    assert np.all(np.abs(lap.coef_.ravel() - nuts.coef_) < 0.1 * sd)


@pytest.mark.slow
def test_pyro_mcmc_on_the_head_model_agrees_with_the_head():
    """Pyro's own NUTS on ``head.pyro_model`` (traced model) and the head's sampler (direct potential) target
    the same posterior: means within 4 combined Monte Carlo standard errors."""
    rng = np.random.default_rng(5)
    Z = rng.normal(size=(60, 2))
    y = rng.poisson(np.exp(0.5 * Z[:, 0] + 0.2)).astype(float)
    head = NUTSRegressor(likelihood="poisson", num_chains=2, num_warmup=300, num_samples=600, seed=0).fit(Z, y)
    pyro.set_rng_seed(1)
    mcmc = MCMC(NUTS(head.pyro_model), num_samples=600, warmup_steps=300, disable_progbar=True)
    mcmc.run(Z, y)
    theirs = mcmc.get_samples()["beta"].numpy()
    ours = head.posterior_["beta"]
    ess = [np.array([az.ess(a[None, :, j]) for j in range(a.shape[1])]) for a in (ours, theirs)]
    se = np.sqrt(ours.var(axis=0) / ess[0] + theirs.var(axis=0) / ess[1])
    assert np.all(np.abs(ours.mean(axis=0) - theirs.mean(axis=0)) < 4 * se)


def test_docs_page_runs(capsys):
    """docs/nuts.md's code blocks run as written, in order, in one namespace."""
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parents[1] / "docs" / "nuts.md"
    namespace = {"__name__": "__docs__"}
    for block in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S):
        exec(compile(block, str(page), "exec"), namespace)
    assert "posterior predictive mean" in capsys.readouterr().out


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_estimators_take_posterior_nuts_and_save_it(task, tmp_path):
    """``posterior="nuts"`` on the DIGLM estimators: chains on the flow's features, ArviZ chains, save/load."""
    from bayes_diglm import DIGLMClassifier, DIGLMRegressor, load_estimator

    rng = np.random.default_rng(6)
    X = rng.normal(size=(120, 2))
    common = {"epochs": 2, "quiet": True, "seed": 0, "flow_kwargs": {"num_layers": 2},
              "posterior": NUTSRegressor(**SMALL) if task == "regression" else NUTSClassifier(**SMALL)}
    if task == "regression":
        est = DIGLMRegressor(head="gaussian", **common).fit(X, X[:, 0] - X[:, 1] + 0.3 * rng.normal(size=120))
    else:
        est = DIGLMClassifier(**common).fit(X, (X[:, 0] > 0).astype(int))
    idata = to_inference_data(est)
    assert idata.posterior["beta"].shape[:2] == (2, 150) and "diverging" in idata.sample_stats
    assert "Markov" in idata.posterior.attrs["draws"]
    back = load_estimator(est.save(tmp_path / "nuts.pt"))
    assert np.array_equal(back.predict(X[:5]), est.predict(X[:5]))


def test_estimators_name_nuts_and_refuse_it_for_per_row_noise():
    from bayes_diglm import DIGLMRegressor
    from bayes_diglm.models.estimators import CLASSIFICATION_POSTERIORS, REGRESSION_POSTERIORS

    assert "nuts" in REGRESSION_POSTERIORS and "nuts" in CLASSIFICATION_POSTERIORS
    X = np.random.default_rng(0).normal(size=(40, 2))
    with pytest.raises(ValueError, match="per-row noise"):
        DIGLMRegressor(head="heteroscedastic", posterior="nuts", epochs=1, quiet=True).fit(X, X[:, 0])


@pytest.mark.slow
def test_simulation_based_calibration_of_the_poisson_nuts_head():
    """Simulation-based calibration (Talts et al. 2018) on the Poisson family: beta and the intercept drawn from
    the head's own prior, counts simulated, the head refitted; the 90% central intervals of the draws must cover
    the truth 87-93% of the time over 300 data sets x 3 parameters (900 indicators: sd of the coverage 1%)."""
    rng = np.random.default_rng(11)
    hits = []
    for r in range(300):
        Z = 0.5 * rng.normal(size=(40, 2))
        beta, intercept = rng.normal(size=2), rng.normal()
        y = rng.poisson(np.exp(Z @ beta + intercept)).astype(float)
        head = NUTSRegressor(likelihood="poisson", prior_precision=1.0, intercept_prior_precision=1.0,
                             num_chains=1, num_warmup=200, num_samples=300, seed=r).fit(Z, y)
        draws = np.column_stack([head.posterior_["beta"], head.posterior_["intercept"]])
        lo, hi = np.quantile(draws, [0.05, 0.95], axis=0)
        truth = np.append(beta, intercept)
        hits.extend((lo <= truth) & (truth <= hi))
    coverage = float(np.mean(hits))
    print(f"SBC coverage of 90% intervals: {coverage:.3f} over {len(hits)} parameter-data sets")
    assert 0.87 <= coverage <= 0.93


def test_a_fixed_nuisance_value_reaches_every_predictive():
    """``nuisance_priors={"noise_variance": v}`` fixes sigma^2: the draws hold no noise site, and the pointwise
    log-likelihood and the predictive both use v (checked against scipy at the posterior draws)."""
    from scipy import stats

    rng = np.random.default_rng(8)
    Z = rng.normal(size=(60, 1))
    y = 0.7 * Z[:, 0] + 0.5 * rng.normal(size=60)
    head = NUTSRegressor(nuisance_priors={"noise_variance": 0.25}, **SMALL).fit(Z, y)
    draws = head.sample(5, generator=0)
    assert "noise_variance" not in draws
    f = Z[:3] @ draws["beta"].T + draws["intercept"]  # (3, 5)
    np.testing.assert_allclose(head.pointwise_log_likelihood(draws, Z[:3], y[:3]),
                               stats.norm.logpdf(y[:3, None], f, 0.5).T, rtol=1e-10)
    f_all = Z[:3] @ head.posterior_["beta"].T + head.posterior_["intercept"]  # every stored draw
    np.testing.assert_allclose(head.predict_dist(Z[:3]).variance, 0.25 + f_all.var(axis=1), rtol=1e-6)


@pytest.mark.slow
def test_softmax_nuts_within_a_tenth_of_a_sd_of_laplace_at_large_n():
    """Categorical (softmax, K = 3) family: at n = 2,000 the Laplace approximation's mean is within 0.1 NUTS sd of
    the NUTS posterior mean for every weight and intercept (the over-parametrised softmax included)."""
    rng = np.random.default_rng(9)
    n = 2000
    Z = rng.normal(size=(n, 2))
    logits = Z @ np.array([[1.0, 0.0], [-0.5, 0.8], [0.0, -0.6]]).T + np.array([0.2, 0.0, -0.2])
    y = (logits + rng.gumbel(size=logits.shape)).argmax(axis=1)
    nuts = NUTSClassifier(num_chains=2, num_warmup=300, num_samples=600, seed=0).fit(Z, y)
    lap = LaplaceClassifier(prior_precision=1.0, intercept_prior_precision=1.0).fit(Z, y)
    draws = np.concatenate([nuts.posterior_["beta"], nuts.posterior_["intercept"][..., None]], axis=2)
    assert np.all(np.abs(lap.posterior_.mean - draws.mean(axis=0)) < 0.1 * draws.std(axis=0))


def _grid_posterior(log_lik, log_scale_prior, beta_grid, u_grid):
    """Posterior means and sds of beta and exp(u) by brute-force quadrature on a (beta, u = log nuisance) grid,
    beta ~ N(0, 1) and u ~ N(u0, 2^2) (the NUTS head's default priors, the nuisance's on its log scale)."""
    B, U = np.meshgrid(beta_grid, u_grid, indexing="ij")
    log_post = log_lik(B, np.exp(U)) + stats.norm.logpdf(B) + log_scale_prior(U)
    w = np.exp(log_post - log_post.max())
    w /= w.sum()
    out = {}
    for name, v in (("beta", B), ("nuisance", np.exp(U))):
        m = (w * v).sum()
        out[name] = (m, np.sqrt((w * (v - m) ** 2).sum()))
    return out


def _check_against_grid(head, reference, nuisance: str):
    idata = to_inference_data(head)
    assert float(az.rhat(idata)["beta"].max()) <= 1.01
    for site, key in (("beta", "beta"), (nuisance, "nuisance")):
        draws = idata.posterior[site]
        mean, sd = reference[key]
        mcse_mean = float(az.mcse(idata, method="mean")[site].max())
        mcse_sd = float(az.mcse(idata, method="sd")[site].max())
        assert abs(float(draws.mean()) - mean) < 4 * mcse_mean, (site, float(draws.mean()), mean)
        assert abs(float(draws.std()) - sd) < 4 * mcse_sd, (site, float(draws.std()), sd)


@pytest.mark.slow
def test_negative_binomial_nuts_matches_brute_force_quadrature():
    """NB2 family, one weight and the dispersion alpha: NUTS means and sds within 4 Monte Carlo standard errors
    of a 2-D quadrature of the same posterior, with scipy's negative binomial as the likelihood."""
    rng = np.random.default_rng(10)
    z = rng.normal(size=150)
    mu = np.exp(0.7 * z)
    alpha = 0.5
    y = rng.negative_binomial(1 / alpha, 1 / (1 + alpha * mu)).astype(float)
    head = NUTSRegressor(likelihood="negative_binomial", fit_intercept=False, num_chains=2, num_warmup=500,
                         num_samples=1500, seed=0).fit(z[:, None], y)

    def log_lik(b, a):
        m = np.exp(b[..., None] * z)
        return stats.nbinom.logpmf(y, 1 / a[..., None], 1 / (1 + a[..., None] * m)).sum(axis=-1)

    reference = _grid_posterior(log_lik, lambda u: stats.norm.logpdf(u, np.log(0.5), 2.0),
                                np.linspace(0.2, 1.3, 301), np.linspace(np.log(1e-4), np.log(3.0), 401))
    _check_against_grid(head, reference, "alpha")


@pytest.mark.slow
def test_student_t_nuts_matches_brute_force_quadrature():
    """Student-t family with df fixed at 4 (``nuisance_priors``), one weight and the scale: NUTS means and sds
    within 4 Monte Carlo standard errors of a 2-D quadrature with scipy's t density."""
    rng = np.random.default_rng(11)
    z = rng.normal(size=120)
    y = 1.2 * z + 0.8 * rng.standard_t(4, size=120)
    head = NUTSRegressor(likelihood="student_t", nuisance_priors={"df": 4.0}, fit_intercept=False, num_chains=2,
                         num_warmup=500, num_samples=1500, seed=0).fit(z[:, None], y)

    def log_lik(b, s):
        return stats.t.logpdf(y, 4.0, loc=b[..., None] * z, scale=s[..., None]).sum(axis=-1)

    reference = _grid_posterior(log_lik, lambda u: stats.norm.logpdf(u, np.log(1.0), 2.0),
                                np.linspace(0.6, 1.8, 301), np.linspace(np.log(0.3), np.log(2.0), 301))
    _check_against_grid(head, reference, "scale")
