"""Sampling from the joint model: rejection sampling against numerical integration, and self-consistency."""

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from scipy.special import expit, softmax

from bayes_diglm.flows import realnvp
from bayes_diglm.flows.base import ActNorm, SequentialFlow
from bayes_diglm.models.diglm import DIGLM
from bayes_diglm.models.heads import CategoricalHead
from bayes_diglm.models.sampling import (
    labels_from,
    point_label_model,
    posterior_label_model,
    sample_class_conditional,
    sample_joint,
)


def _affine_flow(dim: int, scale: float, shift: float, base_scale: float = 1.0) -> SequentialFlow:
    """``z = x * scale + shift`` per coordinate: a flow whose inverse is known in closed form."""
    norm = ActNorm(dim)
    with torch.no_grad():
        norm.log_scale.fill_(np.log(scale))
        norm.bias.fill_(shift)
        norm.initialized.fill_(True)
    return SequentialFlow([norm], (dim,), base_scale=base_scale).double().eval()


def _logistic_1d(w: float, c: float):
    def probs(z, rng):
        p1 = expit(w * z[:, 0] + c)
        return np.stack([1 - p1, p1], axis=1)
    return probs


def _cdf_on_grid(density, lo, hi, num=20001):
    grid = np.linspace(lo, hi, num)
    pdf = density(grid)
    cdf = integrate.cumulative_trapezoid(pdf, grid, initial=0.0)
    return grid, cdf / cdf[-1], np.trapezoid(pdf, grid)


def test_rejection_sampler_matches_numerical_integration_1d():
    """Gaussian base (sd 1.5), logistic head: p(z | y=1) ∝ N(z; 0, 1.5^2) sigmoid(2z - 1) on a grid."""
    w, c, s = 2.0, -1.0, 1.5
    flow = _affine_flow(1, scale=0.5, shift=0.3, base_scale=s)
    out = sample_class_conditional(flow, _logistic_1d(w, c), 4000, 1, generator=0)
    grid, cdf, evidence = _cdf_on_grid(lambda z: stats.norm.pdf(z, scale=s) * expit(w * z + c), -12, 12)
    ks = stats.kstest(out.z[:, 0], lambda q: np.interp(q, grid, cdf))
    assert ks.pvalue > 1e-3
    # the acceptance rate estimates p(y = 1) = ∫ p(z) sigmoid(wz + c) dz (binomial z-test)
    se = np.sqrt(evidence * (1 - evidence) / out.n_proposals)
    assert abs(out.acceptance_rate - evidence) < 4 * se
    # x = f^{-1}(z) = (z - shift) / scale exactly
    np.testing.assert_allclose(out.x[:, 0], (out.z[:, 0] - 0.3) / 0.5, atol=1e-6)  # float32 parameters
    assert out.effective_sample_size == 4000 and out.x.shape == (4000, 1)


def test_rejection_sampler_moments_2d_softmax_against_quadrature():
    """2-D standard-normal base, 3-class softmax head: mean and covariance of z | y=k by grid integration."""
    W = np.array([[1.5, -0.5], [-1.0, 1.0], [0.0, -1.2]])
    b = np.array([0.2, -0.3, 0.1])
    flow = _affine_flow(2, scale=1.0, shift=0.0)
    label_model = lambda z, rng: softmax(z @ W.T + b, axis=1)  # noqa: E731
    g = np.linspace(-8, 8, 801)
    Z1, Z2 = np.meshgrid(g, g, indexing="ij")
    pts = np.stack([Z1.ravel(), Z2.ravel()], 1)
    base = stats.multivariate_normal(np.zeros(2), np.eye(2)).pdf(pts)
    for k in range(3):
        dens = base * softmax(pts @ W.T + b, axis=1)[:, k]
        dens /= dens.sum()
        mean = dens @ pts
        cov = (pts - mean).T @ ((pts - mean) * dens[:, None])
        n = 3000
        out = sample_class_conditional(flow, label_model, n, k, generator=k)
        se = np.sqrt(np.diag(cov) / n)
        assert np.all(np.abs(out.z.mean(0) - mean) < 4.5 * se), (k, out.z.mean(0), mean)
        np.testing.assert_allclose(np.cov(out.z.T), cov, atol=0.12)


class _GaussianPosterior:
    """A stand-in posterior head with the contract's ``sample``: beta ~ N(m, s^2) in 1-D, fixed intercept."""

    def __init__(self, m, s, c):
        self.m, self.s, self.c = m, s, c

    def sample(self, n, *, generator=None):
        rng = np.random.default_rng(generator) if not isinstance(generator, np.random.Generator) else generator
        return {"beta": self.m + self.s * rng.standard_normal((n, 1)), "intercept": np.full(n, self.c)}


def test_bayesian_label_model_integrates_beta_exactly():
    """With beta ~ N(m, s^2), p(z | y=1) ∝ N(z) E_beta[sigmoid(beta z + c)]; Gauss-Hermite over beta."""
    m, s, c = 1.0, 1.5, 0.5
    post = _GaussianPosterior(m, s, c)
    flow = _affine_flow(1, scale=1.0, shift=0.0)
    out = sample_class_conditional(flow, posterior_label_model(post), 4000, 1, generator=3)
    t, wts = np.polynomial.hermite_e.hermegauss(80)

    def predictive(z):
        beta = m + s * t[None, :]
        return (expit(beta * z[:, None] + c) * wts).sum(1) / wts.sum()

    grid, cdf, evidence = _cdf_on_grid(lambda z: stats.norm.pdf(z) * predictive(z), -9, 9)
    assert stats.kstest(out.z[:, 0], lambda q: np.interp(q, grid, cdf)).pvalue > 1e-3
    # a plug-in head at the posterior mean would give a visibly different conditional
    _, cdf_map, _ = _cdf_on_grid(lambda z: stats.norm.pdf(z) * expit(m * z + c), -9, 9)
    assert stats.kstest(out.z[:, 0], lambda q: np.interp(q, grid, cdf_map)).pvalue < 1e-3
    assert abs(out.acceptance_rate - evidence) < 4 * np.sqrt(evidence * (1 - evidence) / out.n_proposals)


def _random_diglm(seed=0):
    torch.manual_seed(seed)
    flow = realnvp(2, num_layers=3, hidden_dims=(16,))
    head = CategoricalHead(2, 3)
    with torch.no_grad():
        head.linear.weight.copy_(torch.tensor([[2.0, 0.0], [-1.0, 1.5], [-1.0, -1.5]]))
        head.linear.bias.copy_(torch.tensor([0.0, 0.3, -0.2]))
        for p in flow.parameters():  # a visibly non-linear flow
            p.add_(0.3 * torch.randn_like(p))
    return DIGLM(flow, head, px_weight=1.0).double().eval()


def _classify(model, x):
    with torch.no_grad():
        return model.head.mean(model.features(torch.as_tensor(x))).numpy()


def test_joint_samples_are_calibrated_for_the_model_that_made_them():
    """On (x, y) drawn from its own joint, the model's accuracy equals its mean confidence (z-test)."""
    model = _random_diglm()
    n = 6000
    s = sample_joint(model.flow, labels_from(point_label_model(model.head)), n, generator=1)
    proba = _classify(model, s.x)  # through f(f^{-1}(z)), not the z we kept
    correct = (proba.argmax(1) == s.y).astype(float)
    conf = proba.max(1)
    se = np.sqrt(np.var(correct - conf) / n)
    assert abs(correct.mean() - conf.mean()) < 4 * se
    assert 0.3 < conf.mean() < 0.99  # a non-trivial model
    np.testing.assert_allclose(model.features(torch.as_tensor(s.x)).detach().numpy(), s.z, atol=1e-6)


def test_class_conditional_samples_match_requested_class_at_the_predicted_rate():
    """Samples of p(x | y=k), classified by the model, are labelled k at the rate its confidence predicts:
    E_{p(x|y=k)}[1(argmax = k)] = E_p(z)[p(k|z) 1(argmax = k)] / E_p(z)[p(k|z)], from independent base draws."""
    model = _random_diglm(1)
    label_model = point_label_model(model.head)
    rng = np.random.default_rng(5)
    z_ref = rng.standard_normal((400_000, 2))
    p_ref = label_model(z_ref, rng)
    for k in range(3):
        out = sample_class_conditional(model.flow, label_model, 3000, k, generator=10 + k)
        proba = _classify(model, out.x)
        hit = (proba.argmax(1) == k).astype(float)
        expected = np.sum(p_ref[:, k] * (p_ref.argmax(1) == k)) / p_ref[:, k].sum()
        assert abs(hit.mean() - expected) < 4 * np.sqrt(expected * (1 - expected) / len(hit)) + 0.005
        # and the mean probability of the requested class is E_{p(z|k)} p(k|z) = E[p_k^2] / E[p_k]
        expected_p = np.sum(p_ref[:, k] ** 2) / p_ref[:, k].sum()
        assert abs(proba[:, k].mean() - expected_p) < 4 * proba[:, k].std() / np.sqrt(len(hit)) + 0.005


def test_sampler_validates_inputs_and_stops_on_a_rare_class():
    flow = _affine_flow(1, 1.0, 0.0)
    lm = _logistic_1d(1.0, -12.0)  # p(y = 1) ~ 1e-5
    with pytest.raises(RuntimeError, match="acceptance rate"):
        sample_class_conditional(flow, lm, 10, 1, generator=0, max_proposals=2000)
    for bad in (0, -1, 2.5, True):  # the counts rule: a value out of range or of the wrong type (bool, float)
        with pytest.raises((ValueError, TypeError), match="n must"):
            sample_class_conditional(flow, lm, bad, 0)
    with pytest.raises(ValueError, match="label"):
        sample_class_conditional(flow, lm, 5, -1)
    with pytest.raises(ValueError, match="out of range"):
        sample_class_conditional(flow, lm, 5, 2)
    with pytest.raises(ValueError, match="temperature"):
        sample_joint(flow, lambda x, z, rng: z[:, 0], 3, temperature=0.0)
    with pytest.raises(TypeError, match="generator"):
        sample_joint(flow, lambda x, z, rng: z[:, 0], 3, generator="seed")
    with pytest.raises(TypeError, match="sample"):
        posterior_label_model(object())


def test_same_seed_same_samples():
    model = _random_diglm()
    lm = point_label_model(model.head)
    a = sample_class_conditional(model.flow, lm, 50, 2, generator=7)
    b = sample_class_conditional(model.flow, lm, 50, 2, generator=7)
    np.testing.assert_array_equal(a.x, b.x)
    assert a.n_proposals == b.n_proposals
