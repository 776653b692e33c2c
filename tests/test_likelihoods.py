"""Likelihood families: log-densities against scipy, closed-form derivatives against autograd, predictives
against Monte Carlo, and the Predictive object of the head contract."""

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch

from bayes_diglm.inference.base import Predictive
from bayes_diglm.likelihoods import (
    Bernoulli,
    Categorical,
    Gaussian,
    HeteroscedasticGaussian,
    Likelihood,
    Poisson,
    multiclass_probit,
)

FAMILIES = {
    "gaussian": lambda: Gaussian(noise_variance=0.7),
    "heteroscedastic": lambda: HeteroscedasticGaussian(max_log_var=5.0),
    "bernoulli": lambda: Bernoulli(),
    "categorical": lambda: Categorical(4),
    "poisson": lambda: Poisson(),
}


def _data(lik: Likelihood, n=50, seed=0):
    rng = np.random.default_rng(seed)
    f = rng.normal(scale=0.8, size=(n, lik.num_outputs))
    y = lik.sample(torch.from_numpy(f), torch.Generator().manual_seed(seed)).numpy()
    return f, y


def test_log_prob_matches_scipy():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(30, 1))
    y = rng.normal(size=30)
    np.testing.assert_allclose(Gaussian(0.7).log_prob(f, y), scipy.stats.norm.logpdf(y, f[:, 0], np.sqrt(0.7)))
    fh = rng.normal(size=(30, 2))
    s = 5.0 * np.tanh(fh[:, 1] / 5.0)
    np.testing.assert_allclose(HeteroscedasticGaussian(5.0).log_prob(fh, y),
                               scipy.stats.norm.logpdf(y, fh[:, 0], np.exp(0.5 * s)))
    yb = rng.integers(0, 2, 30)
    np.testing.assert_allclose(Bernoulli().log_prob(f, yb),
                               scipy.stats.bernoulli.logpmf(yb, scipy.special.expit(f[:, 0])))
    fc = rng.normal(size=(30, 4))
    yc = rng.integers(0, 4, 30)
    np.testing.assert_allclose(Categorical(4).log_prob(fc, yc),
                               scipy.special.log_softmax(fc, axis=1)[np.arange(30), yc])
    yp = rng.poisson(2.0, 30)
    np.testing.assert_allclose(Poisson().log_prob(f, yp), scipy.stats.poisson.logpmf(yp, np.exp(f[:, 0])))


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_grad_and_curvature_match_autograd(name):
    lik = FAMILIES[name]()
    f, y = _data(lik)
    ft, yt = torch.from_numpy(f), torch.from_numpy(np.asarray(y))
    # autograd through the family's own log-density, one row at a time
    for i in range(5):
        def logp(fi, i=i):
            return lik.log_prob(fi[None], yt[i : i + 1])[0]

        g_ref = torch.autograd.functional.jacobian(logp, ft[i])
        h_ref = torch.autograd.functional.hessian(logp, ft[i])
        np.testing.assert_allclose(lik.grad(f, y)[i], g_ref.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(lik.curvature(f, y)[i], -h_ref.numpy(), rtol=1e-10, atol=1e-12)
    assert lik.grad(f, y).shape == f.shape
    assert lik.curvature(f, y).shape == f.shape + (lik.num_outputs,)


@pytest.mark.parametrize("name", ["gaussian", "bernoulli", "categorical", "poisson"])
def test_canonical_curvature_does_not_need_y(name):
    lik = FAMILIES[name]()
    f, y = _data(lik)
    np.testing.assert_allclose(lik.curvature(f), lik.curvature(f, y))


def test_log_prob_of_the_torch_distribution_and_numpy_in_numpy_out():
    for name, make in FAMILIES.items():
        lik = make()
        f, y = _data(lik)
        out = lik.log_prob(f, y)
        assert isinstance(out, np.ndarray) and out.dtype == np.float64, name
        dist = lik.dist(torch.from_numpy(f))
        np.testing.assert_allclose(out, dist.log_prob(torch.as_tensor(y)).numpy(), rtol=1e-10, err_msg=name)
        assert isinstance(lik.log_prob(torch.from_numpy(f), torch.as_tensor(y)), torch.Tensor)


def test_bad_predictor_shape_is_refused():
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        Categorical(4).log_prob(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="num_classes"):
        Categorical(1)
    with pytest.raises(ValueError, match="noise_variance"):
        Gaussian(-1.0)


def _mc_predictive_moments(lik, mean, cov, num=200_000, seed=0):
    g = torch.Generator().manual_seed(seed)
    chol = torch.linalg.cholesky(cov)
    eps = torch.randn((num,) + mean.shape, dtype=mean.dtype, generator=g)
    f = mean + torch.einsum("nkl,snl->snk", chol, eps)
    d = lik.dist(f)
    return d.mean.mean(0), (d.variance + d.mean**2).mean(0) - d.mean.mean(0) ** 2, f


@pytest.mark.parametrize("name", ["gaussian", "poisson", "heteroscedastic"])
def test_predictive_moments_match_monte_carlo(name):
    lik = FAMILIES[name]()
    rng = np.random.default_rng(3)
    k = lik.num_outputs
    mean = torch.from_numpy(rng.normal(scale=0.5, size=(6, k)))
    A = rng.normal(scale=0.25, size=(6, k, k))  # moderate variances: MC variance of a lognormal is noisy
    cov = torch.from_numpy(A @ np.swapaxes(A, 1, 2) + 0.05 * np.eye(k))
    pred = lik.predictive(mean, cov, generator=torch.Generator().manual_seed(1))
    mc_mean, mc_var, _ = _mc_predictive_moments(lik, mean, cov)
    # the heteroscedastic predictive is itself Monte Carlo (512 draws): a looser tolerance
    tol = 0.1 if name == "heteroscedastic" else 5e-3
    np.testing.assert_allclose(pred.mean.numpy(), mc_mean.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(pred.variance.numpy(), mc_var.numpy(), rtol=3 * tol, atol=tol)


def test_poisson_predictive_is_the_lognormal_mixture():
    m, v = torch.tensor([[0.3], [1.2]], dtype=torch.float64), torch.tensor([[[0.2]], [[0.5]]], dtype=torch.float64)
    pred = Poisson().predictive(m, v)
    rate_mean = torch.exp(m[:, 0] + v[:, 0, 0] / 2)
    rate_var = (torch.exp(v[:, 0, 0]) - 1) * torch.exp(2 * m[:, 0] + v[:, 0, 0])
    np.testing.assert_allclose(pred.mean.numpy(), rate_mean.numpy(), rtol=1e-8)
    np.testing.assert_allclose(pred.variance.numpy(), (rate_mean + rate_var).numpy(), rtol=1e-6)
    probs = torch.exp(pred.log_prob(torch.arange(200.0)[:, None].expand(200, 2))).sum(0)
    np.testing.assert_allclose(probs.numpy(), 1.0, atol=1e-10)


def test_bernoulli_probit_close_to_monte_carlo():
    rng = np.random.default_rng(4)
    mean = torch.from_numpy(rng.normal(scale=2.0, size=(40, 1)))
    cov = torch.from_numpy(rng.uniform(0.1, 6.0, size=(40, 1, 1)))
    probit = Bernoulli().predictive(mean, cov).probs
    mc, _, _ = _mc_predictive_moments(Bernoulli(), mean, cov)
    assert float((probit - mc).abs().max()) < 0.02  # MacKay's error is below 0.02 for these variances


def test_multiclass_probit_for_two_classes_is_a_probit_on_the_logit_difference():
    rng = np.random.default_rng(5)
    mean = torch.from_numpy(rng.normal(size=(10, 2)))
    A = rng.normal(size=(10, 2, 2))
    cov = torch.from_numpy(A @ np.swapaxes(A, 1, 2))
    d_var = cov[:, 0, 0] + cov[:, 1, 1] - 2 * cov[:, 0, 1]
    for scale in (np.pi / 8, 3 / np.pi**2):
        p = multiclass_probit(mean, cov, scale=scale)
        p1 = torch.sigmoid((mean[:, 1] - mean[:, 0]) / torch.sqrt(1 + scale * d_var))
        np.testing.assert_allclose(p[:, 1].numpy(), p1.numpy(), rtol=1e-10)
    # MacKay's constant is the Bernoulli family's predictive
    p_mackay = multiclass_probit(mean, cov, scale=np.pi / 8)[:, 1]
    p_bern = Bernoulli().predictive((mean[:, 1] - mean[:, 0])[:, None], d_var[:, None, None]).probs
    np.testing.assert_allclose(p_mackay.numpy(), p_bern.numpy(), rtol=1e-10)


def test_multiclass_probit_is_invariant_to_a_shared_logit_shift():
    rng = np.random.default_rng(6)
    mean = torch.from_numpy(rng.normal(size=(5, 4)))
    A = rng.normal(size=(5, 4, 4))
    cov = torch.from_numpy(A @ np.swapaxes(A, 1, 2))
    ones = torch.ones(4, dtype=torch.float64)
    shifted = cov + 50.0 * ones[:, None] * ones[None, :]  # a huge variance along (1, ..., 1)
    np.testing.assert_allclose(multiclass_probit(mean + 3.0, shifted).numpy(), multiclass_probit(mean, cov).numpy(),
                               rtol=1e-9)


# ---- the Predictive object -------------------------------------------------------------------------------


def test_predictive_student_t_interval_and_moments():
    d = torch.distributions.StudentT(torch.full((3,), 7.0, dtype=torch.float64),
                                     torch.tensor([0.0, 1.0, -2.0], dtype=torch.float64),
                                     torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64))
    pred = Predictive(d)
    lo, hi = pred.interval(0.8)
    np.testing.assert_allclose(lo, scipy.stats.t.ppf(0.1, 7.0, [0.0, 1.0, -2.0], [1.0, 0.5, 2.0]))
    np.testing.assert_allclose(hi, scipy.stats.t.ppf(0.9, 7.0, [0.0, 1.0, -2.0], [1.0, 0.5, 2.0]))
    np.testing.assert_allclose(pred.variance, np.array([1.0, 0.25, 4.0]) * 7 / 5)
    s = pred.sample(20_000, generator=0)
    assert s.shape == (20_000, 3)
    np.testing.assert_allclose(s.mean(0), [0.0, 1.0, -2.0], atol=0.06)
    np.testing.assert_array_equal(s, pred.sample(20_000, generator=0))
    with pytest.raises(ValueError, match="prob"):
        pred.interval(1.5)


def test_predictive_categorical_with_labels():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype=torch.float64)
    pred = Predictive(torch.distributions.Categorical(probs=probs), classes=np.array(["a", "b", "c"]))
    np.testing.assert_allclose(pred.mean, probs.numpy())
    np.testing.assert_allclose(pred.log_prob(np.array(["a", "c"])), np.log([0.7, 0.8]))
    lo, hi = pred.interval(0.5)
    assert list(lo) == ["a", "c"] and list(hi) == ["b", "c"]
    assert set(np.unique(pred.sample(50, generator=1))) <= {"a", "b", "c"}
    with pytest.raises(ValueError, match="not seen"):
        pred.log_prob(np.array(["a", "z"]))


def test_predictive_count_interval_covers():
    pred = Predictive(Poisson().predictive(torch.tensor([[1.0]], dtype=torch.float64),
                                           torch.tensor([[[0.3]]], dtype=torch.float64)))
    lo, hi = pred.interval(0.9)
    draws = pred.sample(50_000, generator=2)[:, 0]
    inside = np.mean((draws >= lo[0]) & (draws <= hi[0]))
    assert inside >= 0.9 and np.mean(draws < lo[0]) <= 0.05 and np.mean(draws > hi[0]) <= 0.05


def test_bernoulli_log_prob_is_exact_at_extreme_logits_and_soft_targets():
    """The Bernoulli log-density (written out, fast on a loaded machine) against NumPy's logaddexp form,
    y log sigma(f) + (1 - y) log sigma(-f), for logits up to +-700 (and every 20 < |f| < 40, where softplus's
    threshold and BCE's cancellation lose the tiny values), hard and fractional targets, and broadcast draws;
    torch's binary_cross_entropy_with_logits agrees to its rounding."""
    import torch.nn.functional as F

    from bayes_diglm.likelihoods import Bernoulli

    f = torch.cat([torch.linspace(-700, 700, 41), torch.linspace(-40, 40, 81),
                   torch.randn(59, generator=torch.Generator().manual_seed(0))]).double()[:, None]
    n = f.shape[0]
    for y in (torch.ones(n), torch.zeros(n), torch.rand(n, generator=torch.Generator().manual_seed(1))):
        y = y.double()
        fn, yn = f[:, 0].numpy(), y.numpy()
        exact = -(yn * np.logaddexp(0.0, -fn) + (1.0 - yn) * np.logaddexp(0.0, fn))
        ours = Bernoulli().log_prob(f, y).numpy()
        np.testing.assert_allclose(ours, exact, rtol=1e-12, atol=1e-300 if y.max() == y.min() else 1e-12)
        torch_bce = -F.binary_cross_entropy_with_logits(f[:, 0], y, reduction="none").numpy()
        np.testing.assert_allclose(ours, torch_bce, rtol=1e-12, atol=1e-12)
    draws = f[None].expand(3, n, 1)
    assert Bernoulli().log_prob(draws, torch.ones(n, dtype=torch.float64)).shape == (3, n)


def test_bernoulli_distributions_log_prob_equals_torchs():
    """The Bernoulli likelihood's distribution and probit predictive are torch Bernoullis whose log_prob (written
    out) equals torch's own, from logits and from probabilities (to torch's rounding)."""
    from bayes_diglm.likelihoods import Bernoulli

    g = torch.Generator().manual_seed(2)
    f = (30 * torch.randn(200, 1, generator=g)).double()
    y = (torch.rand(200, generator=g) > 0.5).double()
    dist = Bernoulli().dist(f)
    assert isinstance(dist, torch.distributions.Bernoulli)
    torch.testing.assert_close(dist.log_prob(y), torch.distributions.Bernoulli(logits=f[:, 0]).log_prob(y),
                               rtol=1e-12, atol=1e-12)
    pred = Bernoulli().predictive(f[:, :1] / 10, torch.ones(200, 1, 1, dtype=torch.float64))
    torch.testing.assert_close(pred.log_prob(y), torch.distributions.Bernoulli(probs=pred.probs).log_prob(y),
                               rtol=1e-12, atol=1e-12)
