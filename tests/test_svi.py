"""SVI heads: agreement with the Laplace posterior, isolation of Pyro parameters, errors, ArviZ."""

import warnings

import numpy as np
import pyro
import pytest
from sklearn.exceptions import ConvergenceWarning, NotFittedError

from bayes_diglm.inference.laplace import LaplaceClassifier
from bayes_diglm.inference.svi import SVIClassifier


def _binary(n=500, seed=0):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 3))
    y = (rng.random(n) < 1 / (1 + np.exp(-(Z @ [1.0, -0.5, 0.25] + 0.3)))).astype(int)
    return Z, y


def test_full_rank_svi_agrees_with_laplace():
    Z, y = _binary()
    laplace = LaplaceClassifier(prior_precision=1.0).fit(Z, y)  # the bias gets the same prior in both
    lap_sd = np.sqrt(laplace.posterior_.marginal_variance()[0])
    svi = SVIClassifier(covariance="full", optimizer="adam", num_steps=600, lr=0.03, seed=0, plateau_tol=None).fit(Z, y)
    assert svi.n_iter_ == 600 and not svi.converged_
    draws = svi.sample(4000, generator=np.random.default_rng(1))
    mean = np.r_[draws["beta"].mean(0), draws["intercept"].mean()]
    sd = np.r_[draws["beta"].std(0), draws["intercept"].std()]
    # means within 0.3 Laplace posterior sd, standard deviations within 20%
    lap_mean = laplace.posterior_.mean[0]
    assert np.all(np.abs(mean - lap_mean) < 0.3 * lap_sd), (mean - lap_mean) / lap_sd
    assert np.all(np.abs(sd / lap_sd - 1) < 0.2), sd / lap_sd
    np.testing.assert_allclose(svi.predict_proba(Z[:20]), laplace.predict_proba(Z[:20]), atol=0.03)


def test_param_stores_do_not_collide():
    Z, y = _binary(n=200)
    before = set(pyro.get_param_store().keys())
    first = SVIClassifier(covariance="diag", optimizer="adam", num_steps=200, lr=0.05, seed=0).fit(Z, y)
    draws_a = first.sample(50, generator=0)["beta"]
    second = SVIClassifier(covariance="diag", optimizer="adam", num_steps=200, lr=0.05, seed=1).fit(Z, 1 - y)
    draws_b = first.sample(50, generator=0)["beta"]
    np.testing.assert_array_equal(draws_a, draws_b)  # the second head did not touch the first one's state
    assert np.all(np.sign(first.coef_) == -np.sign(second.coef_))
    assert set(pyro.get_param_store().keys()) == before  # the global store is left alone


def test_multiclass_lowrank_and_minibatches():
    rng = np.random.default_rng(2)
    Z = rng.normal(size=(300, 2))
    y = np.argmax(Z @ rng.normal(size=(3, 2)).T * 2 + rng.gumbel(size=(300, 3)), axis=1)
    svi = SVIClassifier(covariance="lowrank", rank=2, num_steps=300, lr=0.05, batch_size=64, seed=0).fit(Z, y)
    p = svi.set_params(predictive="mc", n_predictive_samples=200, predictive_seed=0).predict_proba(Z)
    assert p.shape == (300, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert svi.score(Z, y) > 0.6
    laplace = LaplaceClassifier().fit(Z, y)
    np.testing.assert_allclose(svi.predict_proba(Z), laplace.predict_proba(Z), atol=0.1)


def test_svi_errors_and_state():
    Z, y = _binary(n=100)
    clf = SVIClassifier(covariance="diag", num_steps=100, plateau_tol=None)
    with pytest.raises(NotFittedError, match="not fitted"):
        clf.predict(Z)
    clf.fit(Z, y)
    coef = clf.coef_.copy()
    with pytest.raises(ValueError, match="only one class"):
        clf.fit(Z, np.ones(100, dtype=int))
    with pytest.raises(ValueError, match="covariance"):
        SVIClassifier(covariance="flow", num_steps=10).fit(Z, y)
    with pytest.raises(ValueError, match="outside classes"):
        SVIClassifier(classes=[0, 1], num_steps=10).fit(Z, y * 2)
    bad = Z.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        clf.fit(bad, y)
    with pytest.raises(ValueError, match="batch_size"):
        clf.set_params(batch_size=1000).fit(Z, y)
    np.testing.assert_array_equal(clf.coef_, coef)


def test_svi_arviz():
    pytest.importorskip("arviz")
    from bayes_diglm.arviz import to_inference_data

    Z, y = _binary(n=100)
    clf = SVIClassifier(covariance="diag", num_steps=300, lr=0.05, seed=0).fit(Z, y)
    idata = to_inference_data(clf, X=Z, y=y, draws=200, chains=2)
    assert idata.posterior["beta"].dims == ("chain", "draw", "feature")
    assert idata.log_likelihood["y"].shape == (2, 200, 100)


@pytest.mark.parametrize("covariance", ["diag", "lowrank", "full"])
def test_guide_logit_covariance_matches_its_draws_and_the_meanfield_dense_form(covariance):
    """The guide's Gaussian after Adam: its logit covariances equal the covariance of its draws' logits (100,000
    draws); the mean-field one's also equal the dense form ``Cov(f_k, f_l) = [k = l] sum_d x_d^2 var_kd``
    written out from its marginal variances."""
    Z, y = _three_class(n=120)
    clf = SVIClassifier(covariance=covariance, optimizer="adam", num_steps=200, lr=0.05, seed=0).fit(Z, y)
    post = clf.posterior_
    X = np.hstack([Z[:5], np.ones((5, 1))])
    cov = post.logit_cov(X)
    logits = np.einsum("nd,skd->snk", X, post.sample(100_000, np.random.default_rng(0)))
    centred = logits - logits.mean(axis=0)
    mc = np.einsum("snk,snl->nkl", centred, centred) / (len(centred) - 1)
    var = np.diagonal(cov, axis1=1, axis2=2)
    se = np.sqrt((var[:, :, None] * var[:, None, :] + cov**2) / len(centred))  # of a sample covariance
    assert np.all(np.abs(cov - mc) < 5 * se), np.max(np.abs(cov - mc) / se)
    if covariance == "diag":
        dense = np.einsum("kl,nd,kd->nkl", np.eye(3), X**2, post.marginal_variance())
        np.testing.assert_allclose(cov, dense, rtol=1e-12, atol=1e-14)


# ---- the defaults converge (issue 12, defect a) -----------------------------------------------------------


def _three_class(n=200, seed=1):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 3))
    W = rng.normal(size=(3, 3)) * 1.5
    return Z, np.argmax(Z @ W.T + rng.gumbel(size=(n, 3)), axis=1)


def _exact_posterior_moments(Z, y, num=200_000, widen=1.3, seed=0):
    """Posterior mean and sd of the (K, D+1) softmax weights under the unit prior by self-normalised importance
    sampling from the Laplace Gaussian widened by ``widen`` (an independent, essentially exact reference)."""
    import scipy.linalg
    from scipy.special import log_softmax

    lap = LaplaceClassifier(prior_precision=1.0).fit(Z, y)
    mean, chol = lap.posterior_.mean.ravel(), lap.posterior_.chol
    eps = np.random.default_rng(seed).standard_normal((num, mean.size))
    theta = mean + widen * scipy.linalg.solve_triangular(chol, eps.T, lower=True, trans="T").T
    X = np.hstack([Z, np.ones((len(y), 1))])
    W = theta.reshape(num, -1, X.shape[1])
    log_lik = np.zeros(num)
    for rows in np.array_split(np.arange(num), 20):
        logits = np.einsum("nd,skd->snk", X, W[rows])
        log_lik[rows] = np.take_along_axis(log_softmax(logits, -1), np.broadcast_to(y[None, :, None],
                                           (len(rows), len(y), 1)), -1)[..., 0].sum(1)
    log_w = log_lik - 0.5 * (theta**2).sum(1) + 0.5 * (eps**2).sum(1)
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    assert 1.0 / np.sum(w**2) > 20_000  # effective sample size of the reference
    m = w @ theta
    return m, np.sqrt(w @ (theta - m) ** 2)


def test_default_full_svi_converges_to_the_posterior_sds():
    Z, y = _three_class()
    ref_mean, ref_sd = _exact_posterior_moments(Z, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # the defaults must not stop unconverged
        svi = SVIClassifier().fit(Z, y)
    assert svi.converged_ and svi.n_iter_ < svi.num_steps
    sd = np.sqrt(svi.posterior_.marginal_variance()).ravel()
    print(f"SVI defaults: {svi.n_iter_} steps, sd / exact in [{(sd / ref_sd).min():.3f}, {(sd / ref_sd).max():.3f}], "
          f"max |mean error| / sd {np.max(np.abs(svi.posterior_.mean.ravel() - ref_mean) / ref_sd):.3f}")
    assert np.all(np.abs(sd / ref_sd - 1) < 0.05)  # the aim: within 3% of NUTS at 10,000 steps
    assert np.all(np.abs(svi.posterior_.mean.ravel() - ref_mean) < 0.1 * ref_sd)
    assert svi.log_evidence() <= LaplaceClassifier().fit(Z, y).log_evidence() + 0.5  # an ELBO: a lower bound


@pytest.mark.parametrize(("optimizer", "steps"), [("adam", 20), ("natural", 2)])
def test_unconverged_svi_says_so(optimizer, steps):
    Z, y = _three_class()
    with pytest.warns(ConvergenceWarning, match="num_steps"):
        svi = SVIClassifier(optimizer=optimizer, num_steps=steps, plateau_window=10, plateau_tol=1e-6).fit(Z, y)
    assert not svi.converged_ and svi.n_iter_ == steps


@pytest.mark.slow
def test_default_full_svi_matches_nuts():
    """Against Pyro's NUTS on the same model (the issue's reference; a few minutes)."""
    import torch
    from pyro.infer import MCMC, NUTS

    Z, y = _three_class()
    X = torch.from_numpy(np.hstack([Z, np.ones((len(y), 1))]))
    yt = torch.from_numpy(y)

    def model():
        W = pyro.sample("W", pyro.distributions.Normal(torch.zeros(3, 4, dtype=torch.float64), 1.0).to_event(2))
        pyro.sample("y", pyro.distributions.Categorical(logits=X @ W.T).to_event(1), obs=yt)

    mcmc = MCMC(NUTS(model), num_samples=4000, warmup_steps=1000, num_chains=1, disable_progbar=True)
    mcmc.run()
    nuts_sd = mcmc.get_samples()["W"].reshape(4000, -1).std(0).numpy()
    sd = np.sqrt(SVIClassifier().fit(Z, y).posterior_.marginal_variance()).ravel()
    print("SVI sd / NUTS sd:", np.round(sd / nuts_sd, 3))
    assert np.all(np.abs(sd / nuts_sd - 1) < 0.07)  # 4,000 NUTS draws: about 2% Monte Carlo error per sd


# ---- natural-gradient steps: the defaults at scale (issue 30) ---------------------------------------------


def _softmax_data(n, d, k, seed=0):
    """Features and labels of a softmax head (the benchmarks' generator: scaled Gaussian features)."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, d)) / np.sqrt(d) * 3.0
    logits = Z @ rng.standard_normal((d, k)) + rng.standard_normal(k)
    return Z, (logits + rng.gumbel(size=logits.shape)).argmax(1)


def _monte_carlo_elbo(head, Z, y, num=2000, seed=0, prior=1.0):
    """``E_q[log p(y | W) + log p(W)] + H[q]`` by brute force: draws of the head's Gaussian, the softmax
    log-likelihood and the isotropic prior (precision ``prior``) written out here, the entropy from the precision's
    log-determinant."""
    from scipy.special import log_softmax

    draws = head.posterior_.sample(num, np.random.default_rng(seed))  # (num, K, D+1)
    X = np.hstack([Z, np.ones((len(y), 1))])
    log_joint = np.empty(num)
    for rows in np.array_split(np.arange(num), max(20, num // 500)):
        logits = np.einsum("nd,skd->snk", X, draws[rows])
        log_joint[rows] = log_softmax(logits, -1)[:, np.arange(len(y)), y].sum(1)
    P = draws[0].size
    log_joint += -0.5 * prior * (draws.reshape(num, -1) ** 2).sum(1) + 0.5 * P * np.log(prior / (2 * np.pi))
    entropy = 0.5 * P * (1 + np.log(2 * np.pi)) - 0.5 * head.posterior_.log_det_precision()
    return log_joint.mean() + entropy, log_joint.std() / np.sqrt(num)


def test_defaults_converge_where_adam_diverged_and_beat_the_laplace_gaussian():
    """10 classes on 12 features: the default (natural-gradient) steps settle, and the fitted Gaussian's ELBO,
    computed by brute force, is above the Laplace Gaussian's (both are members of the guide's family)."""
    Z, y = _softmax_data(1000, 12, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        svi = SVIClassifier().fit(Z, y)
    assert svi.covariance_ == "full" and svi.optimizer_ == "natural" and svi.converged_ and svi.n_iter_ < 20
    laplace = LaplaceClassifier().fit(Z, y)
    elbo_svi, se_svi = _monte_carlo_elbo(svi, Z, y)
    elbo_lap, se_lap = _monte_carlo_elbo(laplace, Z, y)
    print(f"ELBO: natural-gradient SVI {elbo_svi:.2f} +- {se_svi:.2f}, Laplace Gaussian {elbo_lap:.2f} +- "
          f"{se_lap:.2f}, SVI's own estimate {svi.log_evidence():.2f}, {svi.n_iter_} steps")
    assert elbo_svi > elbo_lap + 3 * np.hypot(se_svi, se_lap)
    assert abs(svi.log_evidence() - elbo_svi) < 5 * se_svi + 0.5


@pytest.mark.parametrize("covariance", ["full", "diag", "kron"])
def test_evidence_equals_the_brute_force_elbo_for_every_covariance(covariance):
    """``log_evidence()`` (the expected log-likelihood minus the closed-form KL of the guide's Gaussian to the
    prior, each structure its own) equals the ELBO by brute force over 20,000 draws, with a prior precision of 3
    so that the prior's terms of the KL count."""
    Z, y = _softmax_data(40, 3, 3)  # few rows: the posterior stays wide, so the KL's variance terms weigh
    svi = SVIClassifier(covariance=covariance, prior_precision=3.0).fit(Z, y)
    assert svi.covariance_ == covariance
    elbo, se = _monte_carlo_elbo(svi, Z, y, num=20_000, prior=3.0)
    assert abs(svi.log_evidence() - elbo) < 5 * se + 0.05, (svi.log_evidence(), elbo, se)


def test_adam_divergence_names_the_step_size():
    Z, y = _softmax_data(2000, 8, 3)
    with pytest.raises(FloatingPointError, match=r"lr=10 per step, .* times the posterior sd in its narrowest "
                                                 r"direction .*use lr <= .* or optimizer='natural'"):
        SVIClassifier(optimizer="adam", lr=10.0, num_steps=200).fit(Z, y)


def test_natural_steps_refuse_minibatches_and_take_real_weights():
    Z, y = _three_class()
    with pytest.raises(ValueError, match="batch_size=50 needs optimizer='adam'"):
        SVIClassifier(optimizer="natural", batch_size=50).fit(Z, y)
    with pytest.raises(ValueError, match="optimizer"):
        SVIClassifier(optimizer="sgd").fit(Z, y)
    w = np.random.default_rng(0).uniform(0.5, 1.5, size=len(y))
    weighted = SVIClassifier().fit(Z, y, sample_weight=w)
    lap = LaplaceClassifier().fit(Z, y, sample_weight=w)
    sd_lap = np.sqrt(lap.posterior_.marginal_variance())
    # a weight scales the row's log-likelihood: both heads see the same posterior, near each other
    assert weighted.converged_ and np.all(np.abs(weighted.posterior_.mean - lap.posterior_.mean) < sd_lap)
