"""The variance-inflation predictive that widens with falling log p(x) (bayes_diglm.evaluation.variance_inflation)."""

import numpy as np
import pytest
import scipy.integrate
import scipy.stats
import torch

from bayes_diglm.evaluation import VarianceInflation, fit_variance_inflation, variance_inflation_against_controls


def _plain(n=4, df=30.0):
    return torch.distributions.StudentT(torch.full((n,), df, dtype=torch.float64),
                                        torch.linspace(-1, 1, n, dtype=torch.float64),
                                        torch.full((n,), 0.5, dtype=torch.float64))


def test_equals_the_plain_predictive_at_typical_inputs():
    plain = _plain()
    vi = VarianceInflation(threshold=-10.0, slope=3.0, temperature=0.5)
    y = np.array([0.3, -2.0, 5.0, 1.0])
    lp_plain = plain.log_prob(torch.as_tensor(y)).numpy()
    # 20 nats above the threshold (40 temperatures): g - 1 = c tau e^{-40} ~ 6e-18
    pred = vi.predictive(plain, np.array([10.0, 12.0, 20.0, 100.0]))
    assert np.allclose(pred.log_prob(y), lp_plain, rtol=0, atol=1e-14)
    assert np.allclose(pred.variance, plain.variance.numpy(), rtol=1e-14)
    assert np.array_equal(pred.loc, plain.loc.numpy()) and np.array_equal(pred.df, plain.df.numpy())
    # the gap to the plain predictive is the closed form c tau softplus((t - l) / tau), shrinking as e^{-(l - t)/tau}
    g = vi.factor(np.array([-8.0, -6.0]))
    assert np.allclose(g - 1, 3.0 * 0.5 * np.log1p(np.exp(np.array([-4.0, -8.0]))), rtol=1e-12)
    assert np.array_equal(VarianceInflation(-10.0, 0.0).factor(np.array([-1e6, 0.0])), np.ones(2))


def test_widens_without_bound_as_log_px_falls():
    vi = VarianceInflation(threshold=-10.0, slope=2.0, temperature=1.0)
    ells = np.array([-10.0, -20.0, -110.0, -1e4, -1e8])
    g = vi.factor(ells)
    assert np.all(np.diff(g) > 0)
    # linear growth: g ~ 1 + c (t - l) far below the threshold
    assert g[-1] == pytest.approx(1 + 2.0 * (1e8 - 10.0), rel=1e-12)
    assert vi.factor(np.array([-np.inf]))[0] == np.inf
    y = np.zeros(1)
    dens = [np.exp(vi.predictive(_plain(1), np.array([e])).log_prob(y))[0] for e in ells]
    assert all(a > b for a, b in zip(dens, dens[1:], strict=False)) and dens[-1] < 1e-4  # flattens toward 0
    var = vi.predictive(_plain(1), np.array([-1e8])).variance[0]
    assert var == pytest.approx(0.25 * 30 / 28 * g[-1], rel=1e-12)


def test_is_a_normalised_density_with_the_inflated_scale():
    vi = VarianceInflation(threshold=0.0, slope=1.5, temperature=0.2)
    pred = vi.predictive(_plain(1), np.array([-3.0]))
    total = scipy.integrate.quad(lambda v: np.exp(pred.log_prob(np.array([v])))[0], -np.inf, np.inf)[0]
    assert total == pytest.approx(1.0, abs=1e-8)
    g = 1 + 1.5 * 0.2 * np.log1p(np.exp(15.0))
    assert pred.log_prob(np.array([0.7]))[0] == pytest.approx(scipy.stats.t.logpdf(0.7, 30, -1, 0.5 * np.sqrt(g)))


def test_refuses_bad_parameters_and_inputs():
    for kwargs, name in ((dict(threshold=0.0, slope=-1.0), "slope"), (dict(threshold=np.inf, slope=1.0), "threshold"),
                         (dict(threshold=0.0, slope=1.0, temperature=0.0), "temperature")):
        with pytest.raises(ValueError, match=name):
            VarianceInflation(**kwargs)
    vi = VarianceInflation(0.0, 1.0)
    with pytest.raises(ValueError, match="NaN"):
        vi.factor(np.array([np.nan]))
    with pytest.raises(ValueError, match="one value per input"):
        vi.predictive(_plain(4), np.zeros(3))
    with pytest.raises(ValueError, match="log_px_train"):
        fit_variance_inflation(np.array([]), np.zeros(4), _plain(4), np.zeros(4))
    with pytest.raises(ValueError, match="one value per validation input"):
        fit_variance_inflation(np.zeros(5), np.zeros(3), _plain(4), np.zeros(4))


class _Pred:
    def __init__(self, loc, scale):
        self.loc, self.scale = np.asarray(loc, float), np.asarray(scale, float)


def test_fit_recovers_widening_where_the_density_is_low_and_stays_plain_otherwise():
    rng = np.random.default_rng(0)
    n, m = 4000, 400
    log_px_train = rng.normal(size=5000)
    # validation: typical inputs with unit noise; inputs 3-9 nats below the bulk with noise sd^2 = 1 + 2 (t - l)
    low = rng.uniform(-9, -3, m)
    t_true = float(np.quantile(log_px_train, 0.01))
    sd = np.sqrt(1 + 2.0 * np.maximum(0.0, t_true - low))
    log_px_val = np.r_[rng.normal(size=n), low]
    y = np.r_[rng.normal(0, 1, n), rng.normal(0, sd)]
    plain = _Pred(np.zeros(n + m), np.ones(n + m))
    vi = fit_variance_inflation(log_px_train, log_px_val, plain, y, temperature=0.1)
    assert vi.quantile in (0.001, 0.01, 0.05) and 1.0 < vi.slope < 4.0
    nll = -vi.predictive(plain, log_px_val).log_prob(y)
    nll_plain = -scipy.stats.norm.logpdf(y)
    assert nll.mean() < nll_plain.mean() - 0.1
    assert nll[:n].mean() < 1.01 * nll_plain[:n].mean()  # in-distribution NLL within 1% of the plain head's
    # nothing to gain on typical inputs alone: never worse on validation, and (almost) the plain predictive
    t = slice(0, n)
    vi0 = fit_variance_inflation(log_px_train, log_px_val[t], _Pred(np.zeros(n), np.ones(n)), y[t])
    nll0 = -vi0.predictive(_Pred(np.zeros(n), np.ones(n)), log_px_val[t]).log_prob(y[t]).mean()
    assert nll0 <= nll_plain[:n].mean() + 1e-12 and nll0 > nll_plain[:n].mean() - 2e-3


def _slice(rng, n, t_true):
    """Inputs whose noise variance is 1 + 2 max(0, t - log p(x)): log p(x) is what tells the wide ones apart."""
    log_px = np.r_[rng.normal(size=n), rng.uniform(-9, -3, n // 10)]
    sd = np.sqrt(1 + 2.0 * np.maximum(0.0, t_true - log_px))
    y = rng.normal(0, sd)
    return log_px, _Pred(np.zeros(y.size), np.ones(y.size)), y


def test_against_controls_p_of_x_pays_only_where_it_carries_the_noise():
    rng = np.random.default_rng(1)
    train = rng.normal(size=5000)
    t_true = float(np.quantile(train, 0.01))
    val, test = _slice(rng, 4000, t_true), _slice(rng, 4000, t_true)
    found = variance_inflation_against_controls(train, val, test, temperature=0.1)
    nll = {k: v["test"] for k, v in found.items()}
    assert nll["p(x)"] < nll["permuted"] - 0.05 and nll["p(x)"] < nll["constant"] - 0.05
    assert nll["constant"] < nll["plain"] and found["constant"]["factor"] > 1
    # the same data with log p(x) unrelated to the noise: p(x) buys nothing over the constant control
    shuffled = tuple((rng.permutation(s[0]), s[1], s[2]) for s in (val, test))
    found = variance_inflation_against_controls(train, *shuffled, temperature=0.1)
    assert found["p(x)"]["test"] > found["constant"]["test"] - 0.01
