"""The GLMM heads' ``pyro_model``: its log-density at the fitted mode (``pyro_mode``) is the penalised objective
written out here, its deterministic random effects are the conditional modes, Pyro's Predictive and NUTS run on
it."""

import numpy as np
import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import MCMC, NUTS, Predictive
from pyro.infer.autoguide import init_to_value
from scipy.special import gammaln

from bayes_diglm.inference.mixed import MixedEffectsClassifier, MixedEffectsGLM, RandomEffect


def _binomial_data(seed=0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(8), 6)
    Z = rng.normal(size=(48, 2))
    trials = rng.integers(1, 15, size=48).astype(float)
    p = 1 / (1 + np.exp(-(Z @ [0.6, -0.4] + 0.2 + 0.8 * rng.normal(size=8)[g] + 0.5 * rng.normal(size=8)[g] * Z[:, 0])))
    return Z, rng.binomial(trials.astype(int), p).astype(float), g, trials


def test_log_density_at_the_mode_is_the_penalised_objective():
    Z, y, g, trials = _binomial_data()
    head = MixedEffectsGLM(likelihood="binomial", random_effects=RandomEffect(slopes=(0,))).fit(Z, y, groups=g,
                                                                                                 trials=trials)
    values = head.pyro_mode()
    model = poutine.condition(head.pyro_model, data=values)
    trace = poutine.trace(model).get_trace(Z, y, groups=g, trials=trials)
    # independent: the binomial log-likelihood at the fitted predictor, written out, and N(0, I) on the effects
    eta = Z @ head.coef_ + head.intercept_ + np.einsum("nq,nq->n", np.c_[np.ones(48), Z[:, 0]],
                                                     head.random_effects_["group"][g])
    loglik = np.sum(gammaln(trials + 1) - gammaln(y + 1) - gammaln(trials - y + 1) + y * eta
                    - trials * np.logaddexp(0, eta))
    u = head.system_.u
    prior = -0.5 * u @ u - 0.5 * u.size * np.log(2 * np.pi)
    assert float(trace.log_prob_sum()) == pytest.approx(loglik + prior, rel=1e-10)
    np.testing.assert_allclose(trace.nodes["u_group"]["value"].numpy(), head.random_effects_["group"], atol=1e-12)
    # the Laplace value is that objective less half the log-determinant
    assert head.log_likelihood_ == pytest.approx(loglik - 0.5 * u @ u - 0.5 * head.system_.chol.logdet, rel=1e-10)


def test_predictive_and_nuts_run_on_the_model():
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(6), 8)
    Z = rng.normal(size=(48, 1))
    y = (rng.random(48) < 1 / (1 + np.exp(-(Z[:, 0] + rng.normal(size=6)[g])))).astype(int)
    head = MixedEffectsClassifier().fit(Z, y, groups=g)
    pyro.set_rng_seed(0)
    kernel = NUTS(head.pyro_model, init_strategy=init_to_value(values=head.pyro_mode()), max_plate_nesting=1)
    mcmc = MCMC(kernel, num_samples=30, warmup_steps=30, disable_progbar=True)
    mcmc.run(Z, y, groups=g)  # flat priors on the fixed effects, as the head's posterior
    samples = mcmc.get_samples()
    assert samples["beta"].shape == (30, 1) and samples["z_group"].shape == (30, 6, 1)
    assert torch.isfinite(samples["beta"]).all()
    # Predictive needs a proper prior on the fixed effects (flat ones cannot be sampled)
    sim = Predictive(head.pyro_model, posterior_samples=samples)(Z, None, groups=g, prior_scale=10.0)
    assert sim["y"].shape == (30, 48) and set(np.unique(sim["y"].numpy())) <= {0.0, 1.0}
    assert sim["u_group"].squeeze(1).shape == (30, 6)  # Pyro pads sites outside the data plate with a 1
    prior = Predictive(head.pyro_model, num_samples=5)(Z, None, groups=g, prior_scale=1.0)
    assert prior["beta"].numel() == 5 and prior["y"].shape == (5, 48)
    with pytest.raises(NotImplementedError):
        Predictive(head.pyro_model, num_samples=5)(Z, None, groups=g)


def test_pyro_model_checks_its_inputs():
    Z, y, g, trials = _binomial_data()
    head = MixedEffectsGLM(likelihood="binomial").fit(Z, y, groups=g, trials=trials)
    with pytest.raises(ValueError, match="trials"):
        head.pyro_model(Z, y, groups=g)
    with pytest.raises(ValueError, match="not seen in fit"):
        head.pyro_model(Z, y, groups=g + 100, trials=trials)
    with pytest.raises(ValueError, match="prior_scale"):
        head.pyro_model(Z, y, groups=g, trials=trials, prior_scale=-1.0)
    with pytest.raises(ValueError, match="mismatched"):
        head.pyro_model(Z, y[:-1], groups=g, trials=trials)


@pytest.mark.slow
def test_nuts_on_the_model_agrees_with_the_laplace_posterior():
    """Counts with 40 rows per group, where the conditional posterior is close to Gaussian: Pyro's NUTS on
    ``pyro_model`` and the head's Laplace draws agree on the fixed effects' means (0.25 Laplace sd) and sds (20%)."""
    from bayes_diglm.inference.mixed import MixedEffectsPoisson

    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(6), 40)
    Z = rng.normal(size=(240, 1))
    y = rng.poisson(np.exp(0.5 + 0.4 * Z[:, 0] + 0.5 * rng.normal(size=6)[g])).astype(float)
    head = MixedEffectsPoisson().fit(Z, y, groups=g)
    pyro.set_rng_seed(0)
    kernel = NUTS(head.pyro_model, init_strategy=init_to_value(values=head.pyro_mode()), max_plate_nesting=1)
    mcmc = MCMC(kernel, num_samples=600, warmup_steps=300, disable_progbar=True)
    mcmc.run(Z, y, groups=g)
    nuts = mcmc.get_samples()
    laplace = head.sample(20_000, generator=0)
    for name in ("beta", "intercept"):
        a, b = nuts[name].numpy().reshape(600, -1), laplace[name].reshape(20_000, -1)
        assert np.all(np.abs(a.mean(0) - b.mean(0)) < 0.25 * b.std(0)), name
        np.testing.assert_allclose(a.std(0), b.std(0), rtol=0.2)
