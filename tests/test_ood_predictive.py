"""Selective prediction curves and the density-aware predictive (bayes_diglm.evaluation)."""

import numpy as np
import pytest
import scipy.integrate
import scipy.stats
import torch

from bayes_diglm.evaluation import (
    DensityAwarePredictive,
    DensityWeighting,
    conjugate_prior_predictive,
    fit_density_weighting,
    selective_curve,
)
from bayes_diglm.inference.conjugate import ConjugateLinearRegression

# ---- selective prediction --------------------------------------------------------------------------------


def test_selective_curve_by_hand_and_its_area():
    r = selective_curve([1, 0, 1, 0], [0.0, 3.0, 1.0, 2.0], coverages=[0.25, 0.5, 0.75, 1.0])
    # kept in score order: 1, 1, 0, 0
    assert r["value"].tolist() == [1.0, 1.0, 2 / 3, 0.5]
    assert r["area"] == pytest.approx((1 + 1 + 2 / 3 + 0.5) / 4) and r["full"] == 0.5


def test_an_oracle_score_beats_an_uninformative_one():
    rng = np.random.default_rng(0)
    correct = (rng.random(5000) < 0.8).astype(float)
    oracle = selective_curve(correct, -correct + 0.01 * rng.random(5000))
    noise = selective_curve(correct, rng.random(5000))
    assert oracle["value"][oracle["coverage"] <= correct.mean()].min() == 1.0
    assert oracle["area"] > noise["area"] + 0.1
    assert abs(noise["area"] - 0.8) < 0.02  # no information: about the overall accuracy


def test_selective_curve_refuses_bad_inputs():
    with pytest.raises(ValueError, match="shape"):
        selective_curve([1, 0], [0.0])
    with pytest.raises(ValueError, match="coverages"):
        selective_curve([1, 0], [0.0, 1.0], coverages=[0.0, 1.0])
    with pytest.raises(ValueError, match="finite"):
        selective_curve([1, np.nan], [0.0, 1.0])


# ---- the density-aware predictive ------------------------------------------------------------------------


def _components(n=4):
    plain = torch.distributions.StudentT(torch.full((n,), 30.0, dtype=torch.float64),
                                         torch.linspace(-1, 1, n, dtype=torch.float64),
                                         torch.full((n,), 0.5, dtype=torch.float64))
    prior = torch.distributions.StudentT(torch.full((n,), 3.0, dtype=torch.float64),
                                         torch.zeros(n, dtype=torch.float64),
                                         torch.full((n,), 4.0, dtype=torch.float64))
    return plain, prior


def test_density_aware_equals_the_plain_predictive_at_typical_inputs():
    plain, prior = _components()
    weighting = DensityWeighting(threshold=-10.0, power=0.7)
    typical = np.array([-10.0, -5.0, 0.0, 3.0])  # at or above the threshold
    pred = weighting.predictive(plain, prior, typical)
    y = np.array([0.3, -2.0, 5.0, 1.0])
    assert np.array_equal(pred.weight, np.ones(4))
    assert np.allclose(pred.log_prob(y), plain.log_prob(torch.as_tensor(y)).numpy(), rtol=0, atol=1e-12)
    assert np.allclose(pred.mean, plain.mean.numpy()) and np.allclose(pred.variance, plain.variance.numpy())
    lo, hi = pred.interval(0.9)
    half = scipy.stats.t.ppf(0.95, 30.0) * 0.5
    assert np.allclose(lo, plain.loc.numpy() - half, atol=1e-8) and np.allclose(hi, plain.loc.numpy() + half, atol=1e-8)


def test_density_aware_tends_to_the_prior_predictive_as_log_px_falls():
    plain, prior = _components()
    weighting = DensityWeighting(threshold=-10.0, power=0.7)
    y = np.array([0.3, -2.0, 5.0, 1.0])
    lp_prior = prior.log_prob(torch.as_tensor(y)).numpy()
    gaps = [np.abs(weighting.predictive(plain, prior, np.full(4, ell)).log_prob(y) - lp_prior).max()
            for ell in (-11.0, -15.0, -25.0, -1e4)]
    assert gaps[0] > 1e-2 and all(a > b for a, b in zip(gaps[:2], gaps[1:3], strict=True)) and gaps[-1] < 1e-12
    far = weighting.predictive(plain, prior, np.full(4, -np.inf))
    assert np.allclose(far.log_prob(y), lp_prior) and np.allclose(far.variance, prior.variance.numpy())


def test_density_aware_mixture_is_a_normalised_density_with_exact_quantiles():
    plain, prior = _components(1)
    pred = DensityAwarePredictive(plain, prior, np.array([0.3]))
    total = scipy.integrate.quad(lambda v: np.exp(pred.log_prob(np.array([v])))[0], -np.inf, np.inf)[0]
    assert total == pytest.approx(1.0, abs=1e-7)
    lo, hi = pred.interval(0.8)
    assert pred.cdf(lo)[0] == pytest.approx(0.1, abs=1e-9) and pred.cdf(hi)[0] == pytest.approx(0.9, abs=1e-9)
    draws_var = 0.3 * (0.25 * 30 / 28 + 1.0) + 0.7 * (16 * 3.0) - (0.3 * -1.0) ** 2
    assert pred.variance[0] == pytest.approx(draws_var)
    minutes = pred.affine(10.0, 2.0)
    assert minutes.log_prob(np.array([10.0 + 2 * 0.4]))[0] == pytest.approx(pred.log_prob(np.array([0.4]))[0]
                                                                            - np.log(2.0))


def test_density_weighting_refuses_bad_parameters():
    with pytest.raises(ValueError, match="power"):
        DensityWeighting(threshold=0.0, power=-1.0)
    with pytest.raises(ValueError, match="threshold"):
        DensityWeighting(threshold=np.nan, power=1.0)
    plain, prior = _components()
    with pytest.raises(ValueError, match="weight"):
        DensityAwarePredictive(plain, prior, np.full(4, 1.5))
    with pytest.raises(ValueError, match="one value per input"):
        DensityAwarePredictive(plain, prior, np.ones(3))


class _Pred:
    """A Normal (df None) or Student-t predictive given by arrays, as the experiments' predictives are."""

    def __init__(self, loc, scale, df=None):
        self.loc, self.scale = np.asarray(loc, float), np.asarray(scale, float)
        if df is not None:
            self.df = np.broadcast_to(float(df), self.loc.shape)

    def __getitem__(self, rows):
        return _Pred(self.loc[rows], self.scale[rows], getattr(self, "df", [None])[0])


def test_fit_density_weighting_never_loses_validation_likelihood_and_widens_where_it_helps():
    rng = np.random.default_rng(0)
    n, m = 2000, 200
    log_px_train = rng.normal(size=5000)
    # validation: most inputs typical and well predicted; the least likely ones have ten times the noise
    log_px_val = np.r_[rng.normal(size=n), rng.normal(-6, 0.5, m)]
    y = np.r_[rng.normal(0, 1, n), rng.normal(0, 10, m)]
    plain, prior = _Pred(np.zeros(n + m), np.ones(n + m)), _Pred(np.zeros(n + m), np.full(n + m, 5.0), df=2.0)
    w = fit_density_weighting(log_px_train, log_px_val, plain, prior, y)
    fitted = w.predictive(plain, prior, log_px_val)
    nll_plain = -scipy.stats.norm.logpdf(y).mean()
    assert w.power > 0 and -fitted.log_prob(y).mean() < nll_plain - 0.5
    assert -fitted.log_prob(y)[:n].mean() < 1.01 * -scipy.stats.norm.logpdf(y[:n]).mean()
    # typical inputs only: (almost) nothing to gain, so the fit stays (almost) the plain predictive
    t = slice(0, n)
    w0 = fit_density_weighting(log_px_train, log_px_val[t], plain[t], prior[t], y[t])
    nll0 = -w0.predictive(plain[t], prior[t], log_px_val[t]).log_prob(y[t]).mean()
    nll_plain0 = -scipy.stats.norm.logpdf(y[t]).mean()
    assert nll_plain0 - 1e-3 < nll0 <= nll_plain0 and w0.weight(log_px_val[t]).min() > 0.99


def test_conjugate_prior_predictive_matches_prior_simulation():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(200, 2))
    y = Z @ np.array([1.0, -1.0]) + rng.normal(size=200)
    # the intercept's prior precision (named intercept_prior_precision on the head contract)
    name = next(k for k in ConjugateLinearRegression().get_params() if k.startswith("intercept_") and "prec" in k)
    head = ConjugateLinearRegression(prior_precision=2.0, a0=3.0, b0=2.0, **{name: 0.5}).fit(Z, y)
    z_new = np.array([[0.5, -1.0]])
    pred = conjugate_prior_predictive(head, z_new, sample_weight=np.array([2.0]))
    # simulate the prior: sigma^2 ~ IG(3, 2), beta | sigma^2 ~ N(0, sigma^2 Lambda0^-1), y ~ N(x beta, sigma^2 / 2)
    S = 200_000
    sigma2 = 2.0 / rng.gamma(3.0, size=S)
    beta = rng.normal(size=(S, 2)) * np.sqrt(sigma2[:, None] / 2.0)
    bias = rng.normal(size=S) * np.sqrt(sigma2 / 0.5)
    draws = beta @ z_new[0] + bias + rng.normal(size=S) * np.sqrt(sigma2 / 2.0)
    dist = scipy.stats.t(pred.df[0], pred.loc[0], pred.scale[0])
    assert scipy.stats.kstest(draws, dist.cdf).pvalue > 0.01
    assert pred.df[0] == 6.0 and pred.loc[0] == 0.0
    with pytest.raises(TypeError, match="ConjugateLinearRegression"):
        conjugate_prior_predictive(object(), z_new)
    with pytest.raises(ValueError, match="features"):
        conjugate_prior_predictive(head, np.zeros((1, 3)))


def test_quantiles_survive_a_prior_predictive_with_enormous_tails():
    plain = _Pred(np.zeros(3), np.ones(3), df=30.0)
    prior = _Pred(np.zeros(3), np.full(3, 1000.0), df=0.002)  # the default NIG prior: quantiles ~1e600
    pred = DensityAwarePredictive(plain, prior, np.array([1.0, 0.5, 0.0]))
    lo, hi = pred.interval(0.5)
    assert np.isfinite(lo[:2]).all() and lo[0] == pytest.approx(-scipy.stats.t.ppf(0.75, 30.0))
    assert pred.cdf(hi)[1] == pytest.approx(0.75, abs=1e-9) and np.isfinite(hi[2])


def test_the_heads_predictive_objects_are_accepted():
    from bayes_diglm.inference.base import Predictive

    plain, prior = _components()
    wrapped = DensityAwarePredictive(Predictive(plain), Predictive(prior), np.full(4, 0.5))
    direct = DensityAwarePredictive(plain, prior, np.full(4, 0.5))
    y = np.array([0.1, 0.2, -3.0, 4.0])
    assert np.allclose(wrapped.log_prob(y), direct.log_prob(y))
