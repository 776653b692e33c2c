"""Every posterior head's Pyro model (``pyro_model``): Pyro's own Predictive, traces and MCMC on it agree with the
head, for every registered family; SVI runs on it with a user's guide and prior."""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import MCMC, NUTS, Predictive
from pyro.infer.autoguide import AutoLowRankMultivariateNormal, AutoNormal

from bayes_diglm import likelihoods
from bayes_diglm.inference import (
    ConjugateLinearRegression,
    LaplaceClassifier,
    LaplaceRegressor,
    NUTSClassifier,
    NUTSRegressor,
    SVIClassifier,
    SVIRegressor,
)

DRAWS = 4000  # posterior draws given to Predictive
MC_PROBS = 50_000  # draws behind a Laplace / SVI classifier's Monte Carlo predictive
NUTS_SMALL = {"num_chains": 1, "num_warmup": 150, "num_samples": 300, "seed": 0}


def _data(name: str, n: int = 80, seed: int = 0):
    """Features, targets sampled from the family at a random linear predictor, and the family's per-row context."""
    lik = likelihoods.build(name, num_classes=3)
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 2))
    f = Z @ (0.5 * rng.normal(size=(lik.num_outputs, 2))).T + 0.3
    context = {"trials": np.full(n, 5.0)} if "trials" in lik.context else {}
    y = lik.sample(torch.from_numpy(f), generator=torch.Generator().manual_seed(seed), **context).numpy()
    return Z, y, context


def _head(kind: str, name: str):
    classification = likelihoods.get(name).task == "classification"
    if kind == "conjugate":
        return ConjugateLinearRegression()
    if kind == "laplace":  # a proper intercept prior: Predictive's first run draws from the prior
        return LaplaceClassifier(likelihood=name) if classification else LaplaceRegressor(
            likelihood=name, intercept_prior_precision=1.0)
    if kind == "svi":
        return SVIClassifier(likelihood=name) if classification else SVIRegressor(likelihood=name)
    return NUTSClassifier(likelihood=name, **NUTS_SMALL) if classification else NUTSRegressor(
        likelihood=name, **NUTS_SMALL)


def _cases():
    # the package's own families: a test module may register a toy family (with context this test cannot draw)
    builtin = [name for name in likelihoods.names() if likelihoods.get(name).__module__.startswith("bayes_diglm.")]
    for name in builtin:
        kinds = ["conjugate"] if name == "gaussian" else []  # the Normal-Inverse-Gamma head's one family
        for kind in kinds + ["laplace", "svi", "nuts"]:
            marks = [pytest.mark.slow] if kind == "nuts" else []  # chains: 5-45 s a family on a loaded machine
            yield pytest.param(kind, name, marks=marks, id=f"{kind}-{name}")


def _fitted(kind: str, name: str):
    Z, y, context = _data(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an unconverged SVI is still a posterior to compare with its own model
        return _head(kind, name).fit(Z, y, **context), Z, y, context


def _within(empirical, expected, var, draws, components=math.inf):
    """``|empirical - expected| <= 5`` standard errors: ``draws`` replicated targets, and the head's predictive a
    Monte Carlo mixture of ``components`` (its own error) where it is one."""
    se = np.sqrt(np.asarray(var) * (1.0 / draws + 1.0 / components))
    return np.abs(np.asarray(empirical) - np.asarray(expected)) <= 5.0 * se + 1e-9


@pytest.mark.parametrize(("kind", "name"), list(_cases()))
def test_pyro_predictive_on_every_heads_model_matches_predict_dist(kind, name):
    """Predictive(head.pyro_model, posterior_samples=head.sample(...)) replicates targets whose class frequencies,
    probabilities of small counts, central-interval coverage and means are predict_dist's within Monte Carlo error."""
    head, Z, _, context = _fitted(kind, name)
    lik = head.likelihood_ if kind != "conjugate" else likelihoods.build("gaussian")
    new = {key: value[:6] for key, value in context.items()}
    samples = {key: torch.as_tensor(v) for key, v in head.sample(DRAWS, generator=0).items()}
    pyro.set_rng_seed(0)
    replicated = Predictive(head.pyro_model, posterior_samples=samples, parallel=True)(Z[:6], None, **new)["y"]
    replicated = replicated.numpy()
    assert replicated.shape == (DRAWS, 6)
    mc_classifier = lik.task == "classification" and kind in ("laplace", "svi")
    if mc_classifier:  # the Monte Carlo predictive is an option of the head
        head.set_params(predictive="mc", n_predictive_samples=MC_PROBS, predictive_seed=1)
    pred = head.predict_dist(Z[:6], **new)
    # a Monte Carlo predictive's own error: the classifiers' "mc", a family's predictive for several outputs
    components = MC_PROBS if mc_classifier else (
        lik.predictive_samples if lik.num_outputs > 1 and kind in ("laplace", "svi") else math.inf)
    if lik.task == "classification":
        probs = pred.probs
        freq = np.stack([(replicated == c).mean(axis=0) for c in range(probs.shape[1])], axis=1)
        assert np.all(_within(freq, probs, probs * (1 - probs), DRAWS, components)), (freq, probs)
        return
    if lik.discrete:
        for j in range(6):
            p = np.exp(pred.log_prob(np.full(6, float(j))))
            assert np.all(_within((replicated == j).mean(axis=0), p, p * (1 - p), DRAWS, components)), j
    else:
        for prob in (0.5, 0.9):
            lo, hi = pred.interval(prob)
            inside = ((replicated >= lo) & (replicated <= hi)).mean(axis=0)
            assert np.all(_within(inside, prob, prob * (1 - prob), DRAWS, components)), (prob, inside)
    if np.all(np.isfinite(pred.variance)):
        assert np.all(_within(replicated.mean(axis=0), pred.mean, pred.variance, DRAWS, components))


@pytest.mark.parametrize(("kind", "name"), [("conjugate", "gaussian"), ("laplace", "binomial"),
                                            ("laplace", "categorical"), ("svi", "negative_binomial")])
def test_the_models_observation_site_is_the_heads_pointwise_log_likelihood(kind, name):
    """What ``az.from_pyro`` reads as the log-likelihood (the ``y`` site's log-density per row, given a draw)
    equals the head's ``pointwise_log_likelihood``, which ``to_inference_data`` exports."""
    head, Z, y, context = _fitted(kind, name)
    draws = head.sample(3, generator=0)
    ours = head.pointwise_log_likelihood(draws, Z, y, **context)  # classes here are 0..K-1: labels are indices
    for s in range(3):
        conditioned = poutine.condition(head.pyro_model, data={k: torch.as_tensor(v[s]) for k, v in draws.items()})
        trace = poutine.trace(conditioned).get_trace(Z, y, **context)
        trace.compute_log_prob()
        assert trace.nodes["y"]["is_observed"]
        assert np.allclose(trace.nodes["y"]["log_prob"].numpy(), ours[s], atol=1e-10)


def _nig_marginals(X, y, v0, a0, b0):
    """Textbook Normal-Inverse-Gamma posterior (prior mean 0, prior covariance ``sigma^2 diag(v0)``): the means and
    sds of the weights' Student-t marginals."""
    prec = np.diag(1.0 / v0) + X.T @ X
    cov = np.linalg.solve(prec, np.eye(len(v0)))
    mean = cov @ (X.T @ y)
    an, bn = a0 + len(y) / 2.0, b0 + 0.5 * (y @ y - mean @ prec @ mean)
    return mean, np.sqrt(bn / (an - 1.0) * np.diag(cov))


@pytest.mark.slow
def test_pyro_mcmc_on_the_conjugate_heads_model_recovers_its_exact_posterior():
    """Pyro's own NUTS on ``ConjugateLinearRegression.pyro_model``: beta's means and sds within 4 Monte Carlo standard
    errors of the exact Normal-Inverse-Gamma posterior that the head computes in closed form."""
    import arviz as az

    rng = np.random.default_rng(6)
    Z = rng.normal(size=(40, 2))
    y = Z @ np.array([0.8, -0.4]) + 1.0 + 0.7 * rng.normal(size=40)
    head = ConjugateLinearRegression(prior_precision=0.5, a0=2.0, b0=1.0, intercept_prior_precision=0.1).fit(Z, y)
    pyro.set_rng_seed(0)
    mcmc = MCMC(NUTS(head.pyro_model), num_samples=1000, warmup_steps=400, num_chains=1, disable_progbar=True)
    mcmc.run(Z, y)
    idata = az.from_pyro(mcmc)
    assert "y" in idata.log_likelihood  # the real obs= site is what ArviZ finds
    samples = mcmc.get_samples()
    draws = np.column_stack([samples["beta"].numpy(), samples["intercept"].numpy()])
    mean, sd = _nig_marginals(np.column_stack([Z, np.ones(40)]), y, np.array([2.0, 2.0, 10.0]), 2.0, 1.0)
    ess = np.array([az.ess(draws[None, :, j]) for j in range(3)])
    assert np.all(np.abs(draws.mean(axis=0) - mean) < 4 * sd / np.sqrt(ess))
    assert np.all(np.abs(draws.std(axis=0) - sd) < 4 * sd / np.sqrt(2 * ess))


def test_svi_runs_on_its_model_with_a_users_guide():
    """An AutoGuide class, a partial of one and a guide function: each trains on the head's model, and the head's
    posterior is the guide's (means near the Laplace approximation's on a well-identified logistic posterior)."""
    rng = np.random.default_rng(7)
    Z = rng.normal(size=(200, 2))
    y = (Z @ np.array([1.0, -1.0]) + rng.logistic(size=200) > 0).astype(int)
    laplace = LaplaceClassifier().fit(Z, y)
    sd = np.sqrt(laplace.posterior_.marginal_variance())

    def guide(Z, y, subsample_size=None):
        loc = pyro.param("loc", torch.zeros(2, dtype=torch.float64))
        pyro.sample("beta", dist.Normal(loc, 0.1).to_event(1))
        pyro.sample("intercept", dist.Normal(pyro.param("b", torch.tensor(0.0, dtype=torch.float64)), 0.1))

    for user in (AutoNormal, functools.partial(AutoLowRankMultivariateNormal, rank=1), guide):
        head = SVIClassifier(guide=user, num_steps=150, lr=0.05, plateau_tol=None, seed=0).fit(Z, y)
        assert head.optimizer_ == "adam"
        assert np.all(np.abs(head.posterior_.mean - laplace.posterior_.mean) < 0.5 * sd), user
        assert head.sample(5, generator=0)["beta"].shape == (5, 2)
        assert np.isfinite(head.elbo_)
    with pytest.raises(ValueError, match="guide"):
        SVIClassifier(guide=AutoNormal, optimizer="natural").fit(Z, y)
    with pytest.raises(TypeError, match="guide"):
        SVIClassifier(guide="normal").fit(Z, y)


def test_svi_with_a_users_prior_moves_the_posterior_as_the_prior_says():
    """A Laplace prior on a weight whose data say little: SVI on the model with ``prior=`` shrinks it as the same
    prior does under NUTS (its own model), and the head's ``pyro_model`` carries the prior."""
    rng = np.random.default_rng(8)
    Z = rng.normal(size=(40, 2))
    y = rng.poisson(np.exp(0.8 * Z[:, 0] + 0.2)).astype(float)
    prior = dist.Laplace(torch.zeros(2, dtype=torch.float64), torch.full((2,), 0.05, dtype=torch.float64))
    svi = SVIRegressor(likelihood="poisson", prior=prior, num_steps=500, lr=0.03, plateau_tol=None, seed=0).fit(Z, y)
    plain = SVIRegressor(likelihood="poisson", seed=0).fit(Z, y)
    assert svi.optimizer_ == "adam" and plain.optimizer_ == "natural"
    # a sharp Laplace(0, 0.05) prior pulls both weights towards 0, well below the Gaussian-prior fit
    assert abs(svi.coef_[0, 0]) < 0.8 * abs(plain.coef_[0, 0])
    trace = poutine.trace(svi.pyro_model).get_trace(Z, y)
    assert isinstance(trace.nodes["beta"]["fn"], dist.Independent)
    assert isinstance(trace.nodes["beta"]["fn"].base_dist, dist.Laplace)
    with pytest.raises(TypeError, match="prior"):
        SVIRegressor(likelihood="poisson", prior="laplace").fit(Z, y)


def test_every_head_has_the_same_sites():
    """The conjugate, Laplace, SVI and NUTS heads' models share site names and shapes: beta (D,) or (k, D),
    intercept () or (k,), y (n,) observed in the "data" plate; nuisance sites where the head samples them."""
    Z, y, _ = _data("gaussian")
    heads = [ConjugateLinearRegression().fit(Z, y), LaplaceRegressor(likelihood="gaussian").fit(Z, y),
             SVIRegressor(likelihood="gaussian").fit(Z, y)]
    for head in heads:
        trace = poutine.trace(head.pyro_model).get_trace(Z, y)
        assert trace.nodes["beta"]["value"].shape == (2,)
        assert trace.nodes["intercept"]["value"].shape == ()
        assert trace.nodes["y"]["is_observed"] and trace.nodes["y"]["value"].shape == (80,)
        assert [f.name for f in trace.nodes["y"]["cond_indep_stack"]] == ["data"]
    assert "noise_variance" in poutine.trace(heads[0].pyro_model).get_trace(Z, y).nodes
    Zc, yc, _ = _data("categorical")
    clf = LaplaceClassifier().fit(Zc, yc)
    trace = poutine.trace(clf.pyro_model).get_trace(Zc, np.searchsorted(clf.classes_, yc))  # class indices
    assert trace.nodes["beta"]["value"].shape == (3, 2) and trace.nodes["intercept"]["value"].shape == (3,)
    with pytest.raises(ValueError, match="shape"):
        clf.pyro_model(Zc[:, :1])


def test_laplace_and_conjugate_heads_refuse_a_non_gaussian_prior_by_name():
    """The Laplace heads take a zero-mean Gaussian ``prior=`` (the same posterior as its ``prior_precision``, and
    their model carries it) and refuse any other prior naming it; the conjugate head's prior is its own."""
    Z, y, _ = _data("poisson")
    student = dist.StudentT(3.0, torch.zeros(2, dtype=torch.float64), 1.0)
    gaussian = dist.Normal(torch.zeros(2, dtype=torch.float64), 0.5)
    with pytest.raises(TypeError, match="StudentT"):
        LaplaceRegressor(likelihood="poisson", prior=student).fit(Z, y)
    with pytest.raises(ValueError, match="zero-mean"):
        LaplaceRegressor(likelihood="poisson", prior=dist.Normal(torch.ones(2, dtype=torch.float64), 1.0)).fit(Z, y)
    with_prior = LaplaceRegressor(likelihood="poisson", prior=gaussian).fit(Z, y)
    with_precision = LaplaceRegressor(likelihood="poisson", prior_precision=4.0).fit(Z, y)
    assert np.allclose(with_prior.coef_, with_precision.coef_)
    trace = poutine.trace(with_prior.pyro_model).get_trace(Z, y)
    assert np.allclose(trace.nodes["beta"]["fn"].base_dist.scale.numpy(), 0.5)
    Zc, yc, _ = _data("bernoulli")
    with pytest.raises(TypeError, match="Laplace"):
        LaplaceClassifier(prior=dist.Laplace(torch.zeros(2, dtype=torch.float64), 1.0)).fit(Zc, yc)
    Zg, yg, _ = _data("gaussian")
    for prior in (student, gaussian, lambda noise_variance: gaussian):
        with pytest.raises(TypeError, match="Normal-Inverse-Gamma"):
            ConjugateLinearRegression(prior=prior).fit(Zg, yg)
