"""The family registry: a user's family, registered in this file and nowhere else, works everywhere a built-in one
does; and every registered family keeps the contract (config round trip, predictive moments against sampling)."""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest
import torch
from scipy import integrate, optimize, stats
from sklearn.base import clone
from torch.distributions import constraints

from bayes_diglm import likelihoods
from bayes_diglm.arviz import to_inference_data
from bayes_diglm.inference import LaplaceClassifier, LaplaceRegressor, Predictive, SVIRegressor
from bayes_diglm.likelihoods import Likelihood, Nuisance
from bayes_diglm.models import DIGLMClassifier, DIGLMRegressor, make_head


@likelihoods.register
class DoubleExponential(Likelihood):
    r"""Robust regression: :math:`y \sim \mathrm{Laplace}(f, b)`, the scale ``b`` a nuisance parameter.

    The curvature is the Fisher information :math:`1 / b^2` (the Hessian of :math:`-|y - f| / b` is zero away
    from :math:`y = f`), so the Laplace head's Gaussian is the Fisher-scoring one.
    """

    name = "test_double_exponential"
    nuisance = {"scale": Nuisance(constraints.positive, 1.0, "the scale b")}

    def __init__(self, scale=1.0):
        if not isinstance(scale, torch.Tensor) and not float(scale) > 0:
            raise ValueError(f"scale must be positive, got {scale!r}")
        self.scale = scale

    def _b(self, f):
        b = self.scale
        return b.to(f.dtype) if isinstance(b, torch.Tensor) else torch.tensor(float(b), dtype=f.dtype)

    def _dist(self, f):
        loc = f[..., 0]
        return torch.distributions.Laplace(loc, self._b(f).expand_as(loc))

    def _curvature(self, f, y):
        return (torch.ones_like(f[..., 0]) / self._b(f) ** 2)[..., None, None]


@likelihoods.register
class ExposurePoisson(Likelihood):
    r"""Counts over an exposure known per row: :math:`y \sim \mathrm{Poisson}(t\, e^f)` (context ``exposure``)."""

    name = "test_exposure_poisson"
    discrete = True
    link = "log"
    context = ("exposure",)

    def _check_target(self, y, exposure):
        if not np.all((y >= 0) & (y == np.round(y))) or not np.all(exposure > 0):
            raise ValueError("y must hold counts and exposure be positive")
        return y

    def _dist(self, f, exposure):
        return torch.distributions.Poisson(exposure * torch.exp(f[..., 0]))

    def _curvature(self, f, y, exposure):
        return (exposure * torch.exp(f[..., 0]))[..., None, None]


@likelihoods.register
class Probit(Likelihood):
    r"""Binary targets with the probit link, :math:`p(y = 1) = \Phi(f)` (not canonical: curvature from autograd)."""

    name = "test_probit"
    task = "classification"
    discrete = True
    link = "probit"

    @property
    def num_classes(self):
        return 2

    def _p1(self, f):
        return torch.special.ndtr(f[..., 0]).clamp(1e-15, 1 - 1e-15)

    def _dist(self, f):
        return torch.distributions.Bernoulli(probs=self._p1(f))

    def _probs(self, f):
        p1 = self._p1(f)
        return torch.stack([1 - p1, p1], dim=-1)


def _robust_data(n=160, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    return X, X[:, 0] - 0.5 * X[:, 1] + 0.3 + rng.laplace(scale=0.4, size=n)


def _neg_log_posterior(theta, Z, y, scale, prior, intercept_prior):
    f = Z @ theta[:-1] + theta[-1]
    return (np.abs(y - f).sum() / scale + 0.5 * prior * (theta[:-1] ** 2).sum()
            + 0.5 * intercept_prior * theta[-1] ** 2)


def _brute_force_map(Z, y, scale, prior, intercept_prior):
    """The MAP by derivative-free searches (the objective has kinks where a residual is 0): Powell's, which can
    stop on a kink, then Nelder-Mead's simplex from there."""
    args = (Z, y, scale, prior, intercept_prior)
    res = optimize.minimize(_neg_log_posterior, np.zeros(Z.shape[1] + 1), args=args, method="Powell",
                            options={"xtol": 1e-10, "ftol": 1e-14, "maxiter": 100_000})
    res = optimize.minimize(_neg_log_posterior, res.x, args=args, method="Nelder-Mead",
                            options={"xatol": 1e-12, "fatol": 1e-14, "maxiter": 200_000, "maxfev": 200_000})
    return res.x


def _point_predictor(reg, X) -> np.ndarray:
    head = reg.model_.head
    with torch.no_grad():
        return head.predictor(torch.from_numpy(reg.transform(X)).to(head.linear.weight.dtype)).double().numpy()[:, 0]


def _scale(reg) -> float:
    return float(reg.model_.head.likelihood.scale.detach())


def _predictor_moments(head, Z):
    """Mean (n, 1) and variance (n, 1, 1) of the linear predictor under a Gaussian head's posterior, from its public
    fitted state: the posterior's covariance of each row of the design [Z, 1]."""
    design = np.column_stack([Z, np.ones(len(Z))])
    return (Z @ np.ravel(head.coef_) + np.ravel(head.intercept_)[0])[:, None], head.posterior_.logit_cov(design)


@pytest.fixture(scope="module")
def trained():
    X, y = _robust_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the Laplace MAP stops at a kink of |y - f|
        reg = DIGLMRegressor(head="test_double_exponential", posterior="laplace", epochs=40, lr=2e-2,
                             batch_size=80, flow_kwargs={"num_layers": 2, "hidden_dims": (16,)}, px_weight=0.0,
                             quiet=True, seed=0).fit(X, y)
    return reg, X, y


def test_the_point_head_learns_the_nuisance_with_beta(trained):
    reg, X, y = trained
    head = reg.model_.head
    assert head.family == "test_double_exponential"
    assert sorted(name for name, _ in head.named_parameters()) == ["linear.bias", "linear.weight",
                                                                   "nuisance.scale"]
    f = _point_predictor(reg, X)
    scale = _scale(reg)
    # the maximum-likelihood scale given the predictor is the mean absolute residual
    assert scale == pytest.approx(np.abs(y - f).mean(), rel=0.05)
    assert 0.25 < scale < 0.6  # the data's 0.4, through a trained flow
    assert reg.score(X, y) > 0.6


def test_point_predictive_is_the_family_at_the_learned_scale(trained):
    reg, X, y = trained
    pred = reg.predict_dist(X[:20], point=True)
    f = _point_predictor(reg, X[:20])
    b = _scale(reg)
    ref = stats.laplace(loc=f, scale=b)
    np.testing.assert_allclose(pred.mean, f, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(pred.variance, ref.var(), rtol=1e-6)
    np.testing.assert_allclose(pred.log_prob(y[:20]), ref.logpdf(y[:20]), rtol=1e-6)
    lo, hi = pred.interval(0.8)
    np.testing.assert_allclose(lo, ref.ppf(0.1), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(hi, ref.ppf(0.9), rtol=1e-6, atol=1e-6)
    assert pred.sample(3, generator=0).shape == (3, 20)


def test_laplace_head_takes_the_learned_scale_and_matches_a_brute_force_map(trained):
    """The estimator's Laplace head is in the toy family at the learned scale. Its MAP, refitted by L-BFGS,
    equals a derivative-free search (Newton with the Fisher curvature stalls at the kinks of |y - f|, within
    about 1e-3 of the optimum's objective: see the report of the registry branch)."""
    reg, X, y = trained
    post = reg.posterior_
    assert isinstance(post, LaplaceRegressor) and post.likelihood == "test_double_exponential"
    b = _scale(reg)
    assert post.likelihood_kwargs["scale"] == pytest.approx(b, rel=1e-6)
    Z = reg.transform(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        refit = clone(post).set_params(optimizer="lbfgs").fit(Z, y)
    brute = _brute_force_map(Z, y, b, post.prior_precision, post.intercept_prior_precision)
    found = np.append(refit.coef_, refit.intercept_)
    np.testing.assert_allclose(found, brute, atol=1e-4 * (1 + np.abs(brute).max()))


def test_laplace_predictive_of_the_toy_family_against_quadrature(trained):
    reg, X, y = trained
    pred = reg.predict_dist(X[:5])
    m, v = _predictor_moments(reg.posterior_, reg.transform(X[:5]))
    b = _scale(reg)
    np.testing.assert_allclose(pred.mean, m[:, 0], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(pred.variance, 2 * b**2 + v[:, 0, 0], rtol=1e-8)
    lo, hi = pred.interval(0.9)
    for i in range(5):  # the mixture's CDF by adaptive quadrature over f ~ N(m, v)
        sd = math.sqrt(v[i, 0, 0])

        def cdf(t, i=i, sd=sd):
            return integrate.quad(lambda f: stats.laplace.cdf(t, f, b) * stats.norm.pdf(f, m[i, 0], sd),
                                  m[i, 0] - 12 * sd, m[i, 0] + 12 * sd, epsabs=1e-12)[0]

        assert cdf(lo[i]) == pytest.approx(0.05, abs=2e-4)
        assert cdf(hi[i]) == pytest.approx(0.95, abs=2e-4)
        density = integrate.quad(lambda f, i=i, sd=sd: stats.laplace.pdf(y[i], f, b) * stats.norm.pdf(f, m[i, 0], sd),
                                 m[i, 0] - 12 * sd, m[i, 0] + 12 * sd, points=[y[i]], epsabs=1e-13)[0]
        assert pred.log_prob(y[:5])[i] == pytest.approx(math.log(density), abs=2e-3)
    draws = pred.sample(4000, generator=1)
    np.testing.assert_allclose(draws.mean(axis=0), pred.mean, atol=6 * pred.stddev.max() / math.sqrt(4000))


def test_arviz_export_of_the_toy_family(trained):
    reg, X, y = trained
    idata = to_inference_data(reg, X=X[:30], y=y[:30], draws=50, chains=2, seed=0)
    assert idata.log_likelihood["y"].shape == (2, 50, 30)
    draws = reg.sample(4, generator=0)
    ll = reg.pointwise_log_likelihood(draws, X[:3], y[:3])
    Z = reg.transform(X[:3])
    f = draws["beta"] @ Z.T + draws["intercept"][:, None]
    b = _scale(reg)
    np.testing.assert_allclose(ll, stats.laplace.logpdf(y[:3], f, b), rtol=1e-10)


def test_svi_head_in_the_toy_family_agrees_with_its_laplace_start():
    rng = np.random.default_rng(3)
    Z = rng.normal(size=(200, 2))
    y = Z @ np.array([1.0, -0.5]) + 0.2 + rng.laplace(scale=0.3, size=200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        head = SVIRegressor(likelihood="test_double_exponential", likelihood_kwargs={"scale": 0.3},
                            covariance="diag", num_steps=300, num_particles=2, plateau_tol=None,
                            seed=0).fit(Z, y)
    brute = _brute_force_map(Z, y, 0.3, 1.0, 1.0)
    # the posterior mean of a 200-row L1 regression is within a posterior sd of its MAP
    sd = np.sqrt(head.posterior_.marginal_variance().ravel())
    assert np.all(np.abs(np.append(head.coef_, head.intercept_) - brute) < sd)
    pred = head.predict_dist(Z[:4])
    assert np.all(np.isfinite(pred.log_prob(y[:4])))
    lo, hi = pred.interval(0.9)
    assert np.all(lo < pred.mean) and np.all(pred.mean < hi)
    assert np.isfinite(head.log_evidence())


def test_per_row_context_reaches_the_family_in_the_laplace_head_and_arviz():
    rng = np.random.default_rng(4)
    Z = rng.normal(size=(300, 2))
    exposure = rng.uniform(0.5, 5.0, size=300)
    y = rng.poisson(exposure * np.exp(0.4 * Z[:, 0] - 0.3 * Z[:, 1] + 0.1))
    head = LaplaceRegressor(likelihood="test_exposure_poisson", prior_precision=1e-6).fit(Z, y, exposure=exposure)
    # the same model is a Poisson GLM with offset log(exposure): statsmodels' maximum likelihood (flat prior)
    sm = pytest.importorskip("statsmodels.api")
    ref = sm.GLM(y, sm.add_constant(Z), family=sm.families.Poisson(), offset=np.log(exposure)).fit()
    np.testing.assert_allclose(np.append(head.intercept_, head.coef_), ref.params, rtol=1e-5, atol=1e-7)
    pred = head.predict_dist(Z[:10], exposure=exposure[:10])
    m, v = _predictor_moments(head, Z[:10])
    np.testing.assert_allclose(pred.mean, exposure[:10] * np.exp(m[:, 0] + v[:, 0, 0] / 2), rtol=1e-8)
    with pytest.raises(ValueError, match="exposure"):
        head.predict_dist(Z[:10])
    with pytest.raises(TypeError, match="no per-row keyword"):
        head.predict_dist(Z[:10], exposure=exposure[:10], trials=np.ones(10))
    idata = to_inference_data(head, X=Z[:20], y=y[:20], draws=20, chains=2, exposure=exposure[:20])
    draws = {"beta": idata.posterior["beta"].values.reshape(40, 2),
             "intercept": idata.posterior["intercept"].values.reshape(40)}
    rate = exposure[:20] * np.exp(draws["beta"] @ Z[:20].T + draws["intercept"][:, None])
    np.testing.assert_allclose(idata.log_likelihood["y"].values.reshape(40, 20), stats.poisson.logpmf(y[:20], rate),
                               rtol=1e-8)


def test_a_registered_classification_family_in_the_laplace_classifier():
    """A probit family: the MAP under a flat prior is statsmodels' probit maximum likelihood, and the predictive
    under the Laplace Gaussian (quadrature through the family) is the exact probit integral Phi(m / sqrt(1 + v))."""
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(5)
    Z = rng.normal(size=(400, 2))
    y = (Z @ np.array([0.8, -0.6]) + 0.2 + rng.normal(size=400) > 0).astype(int)
    head = LaplaceClassifier(likelihood="test_probit", prior_precision=1e-10, intercept_prior_precision=0.0).fit(Z, y)
    ref = sm.Probit(y, sm.add_constant(Z)).fit(disp=0, tol=1e-12)
    np.testing.assert_allclose(np.append(head.intercept_, head.coef_), ref.params, rtol=1e-5)
    pred = head.predict_dist(Z[:8])
    m, v = _predictor_moments(head, Z[:8])
    p1 = stats.norm.cdf(m[:, 0] / np.sqrt(1 + v[:, 0, 0]))
    np.testing.assert_allclose(pred.probs[:, 1], p1, atol=1e-6)
    plug_in = copy.deepcopy(head).set_params(predictive="map").predict_proba(Z[:8])
    np.testing.assert_allclose(plug_in[:, 1], stats.norm.cdf(m[:, 0]), rtol=1e-10)
    with pytest.raises(ValueError, match="not a classification family"):
        LaplaceClassifier(likelihood="test_double_exponential").fit(Z, y)
    with pytest.raises(ValueError, match="classification family"):
        LaplaceRegressor(likelihood="test_probit").fit(Z, y)


def test_a_registered_family_has_a_point_head_by_name():
    head = make_head("test_double_exponential", 3)
    assert head.config() == {"family": "test_double_exponential", "dim": 3}
    fixed = make_head("test_double_exponential", 3, fixed=["scale"], scale=0.5)
    assert [name for name, p in fixed.named_parameters() if p.requires_grad] == ["linear.weight", "linear.bias"]
    assert float(fixed.likelihood.scale) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="not nuisance parameters"):
        make_head("test_double_exponential", 3, fixed=["df"])


# ---- the contract of every registered family --------------------------------------------------------------



def _instance(name: str) -> Likelihood:
    """A family with its default settings (and the constructor arguments that have no default)."""
    return likelihoods.build(name, num_classes=3)


def _context(lik: Likelihood, n: int) -> dict:
    return {key: torch.full((n,), 3.0, dtype=torch.float64) for key in lik.context}


@pytest.mark.parametrize("name", likelihoods.names())
def test_every_family_rebuilds_from_its_config(name):
    lik = _instance(name)
    again = type(lik)(**lik.config())
    assert again.config() == lik.config()
    f = torch.randn(7, lik.num_outputs, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ctx = _context(lik, 7)
    y = lik.sample(f, torch.Generator().manual_seed(1), **ctx)
    np.testing.assert_allclose(again.log_prob(f, y, **ctx), lik.log_prob(f, y, **ctx), rtol=1e-12)


@pytest.mark.parametrize("name", likelihoods.names())
def test_every_family_predictive_moments_match_sampling(name):
    """The predictive under f ~ N(m, S) against Monte Carlo: draw f, then y from the family."""
    lik = _instance(name)
    lik.predictive_samples = 20_000  # a Monte Carlo predictive (several outputs) as precise as the reference
    k, n, draws = lik.num_outputs, 4, 20_000
    gen = torch.Generator().manual_seed(2)
    mean = 0.5 * torch.randn(n, k, generator=gen, dtype=torch.float64)
    A = 0.3 * torch.randn(n, k, k, generator=gen, dtype=torch.float64)
    cov = A @ A.transpose(-1, -2) + 0.05 * torch.eye(k, dtype=torch.float64)
    ctx = _context(lik, n)
    pred = Predictive(lik.predictive(mean, cov, generator=torch.Generator().manual_seed(3), **ctx),
                      classes=None if lik.task == "regression" else np.arange(lik.num_classes),
                      discrete=lik.discrete)
    f = mean + torch.einsum("nkl,snl->snk", torch.linalg.cholesky(cov),
                            torch.randn(draws, n, k, generator=gen, dtype=torch.float64))
    draw_ctx = {key: v.expand(draws, n) for key, v in ctx.items()}
    y = np.asarray(lik.sample(f, torch.Generator().manual_seed(4), **draw_ctx), dtype=np.float64)
    if lik.task == "classification":
        freq = np.stack([(y == c).mean(axis=0) for c in range(lik.num_classes)], axis=1)
        # closed-form (probit-style) predictives are approximations: agree to a few hundredths
        np.testing.assert_allclose(pred.probs, freq, atol=0.03)
        return
    # the variance by the law of total variance over the same draws of f (the sample variance of heavy-tailed
    # y, a Student-t's, converges too slowly to check against)
    cond = lik.dist(f, **draw_ctx)
    cond_mean = np.asarray(lik.mean(f, **draw_ctx))
    total_var = np.asarray(cond.variance).mean(axis=0) + cond_mean.var(axis=0)
    np.testing.assert_allclose(pred.mean, y.mean(axis=0), atol=5 * np.sqrt(total_var.max() / draws))
    np.testing.assert_allclose(pred.variance, total_var, rtol=0.05)
    lo, hi = pred.interval(0.9)
    coverage = ((y >= lo) & (y <= hi)).mean(axis=0)
    assert np.all(coverage > 0.885) and (lik.discrete or np.all(coverage < 0.915)), coverage


def test_a_registered_classification_family_trains_in_the_diglm_classifier():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(200, 2))
    y = np.where(X[:, 0] - X[:, 1] + 0.3 * rng.normal(size=200) > 0, "up", "down")
    clf = DIGLMClassifier(head="test_probit", posterior="laplace", epochs=5, batch_size=50, quiet=True,
                          flow_kwargs={"num_layers": 2, "hidden_dims": (8,)}).fit(X, y)
    assert clf.model_.head.family == "test_probit" and clf.posterior_.likelihood_.name == "test_probit"
    Z = clf.transform(X[:6])
    f = Z @ clf.posterior_.coef_[0] + clf.posterior_.intercept_[0]
    plug_in = copy.deepcopy(clf.posterior_).set_params(predictive="map").predict_proba(Z)
    np.testing.assert_allclose(plug_in[:, 1], stats.norm.cdf(f), rtol=1e-10)
    assert clf.predict(X[:6]).dtype == y.dtype and clf.score(X, y) > 0.8
    with pytest.raises(ValueError, match="registered classification families"):
        DIGLMClassifier(head="test_double_exponential", epochs=1, quiet=True).fit(X, y)


@pytest.mark.parametrize("name", likelihoods.names())
def test_every_family_trains_in_an_estimator_with_a_laplace_posterior(name):
    """Each registered family through the estimator it belongs to: its nuisance parameters (and only those)
    are learned with beta, the Laplace head is in the same family (the heteroscedastic head's in the Gaussian
    with known per-row noise), and the point and posterior predictives score the training targets."""
    lik = _instance(name)
    rng = np.random.default_rng(7)
    X = rng.normal(size=(80, 2))
    ctx = {key: rng.integers(1, 8, size=80).astype(float) for key in lik.context}  # trials, exposure ... per row
    y = np.asarray(lik.sample(torch.zeros(80, lik.num_outputs, dtype=torch.float64), torch.Generator().manual_seed(0),
                              **{key: torch.from_numpy(v) for key, v in ctx.items()}))
    kw = dict(epochs=2, batch_size=40, quiet=True, posterior="laplace",
              flow_kwargs={"num_layers": 2, "hidden_dims": (8,)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a two-epoch fit is not a converged one
        est = (DIGLMRegressor if lik.task == "regression" else DIGLMClassifier)(head=name, **kw).fit(X, y, **ctx)
    learned = {key.removeprefix("nuisance.") for key, p in est.model_.head.named_parameters()
               if p.requires_grad and key.startswith("nuisance.")}
    assert learned == set(lik.nuisance)
    assert est.posterior_.likelihood_.name in (name, "gaussian")
    ctx10 = {key: v[:10] for key, v in ctx.items()}
    for pred in (est.predict_dist(X[:10], **ctx10), est.predict_dist(X[:10], point=True, **ctx10)):
        assert np.all(np.isfinite(pred.log_prob(y[:10])))
        lo, hi = pred.interval(0.9)
        assert np.all(lo <= hi)


def test_an_estimator_in_a_registered_family_saves_and_loads(trained, tmp_path):
    """The posterior head's family is stored by registry name and config (rebuilt through the registry)."""
    from bayes_diglm.models import load_estimator

    reg, X, y = trained
    again = load_estimator(reg.save(tmp_path / "toy.pt"))
    assert again.posterior_.likelihood_.config() == reg.posterior_.likelihood_.config()
    for point in (False, True):
        a, b = reg.predict_dist(X[:5], point=point), again.predict_dist(X[:5], point=point)
        np.testing.assert_allclose(b.mean, a.mean, rtol=1e-12)
        np.testing.assert_allclose(b.log_prob(y[:5]), a.log_prob(y[:5]), rtol=1e-12)
