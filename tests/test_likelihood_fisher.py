"""``Likelihood.fisher``, the expected curvature in the predictor: equal to the expectation of ``curvature`` over
``y ~ p(y | f)``, computed here independently (an exact sum over the support for counts, a large Monte Carlo
sample for continuous families), and positive where the observed curvature is not."""

import numpy as np
import pytest
import torch

from bayes_diglm import likelihoods
from bayes_diglm.likelihoods import Binomial, Gamma, NegativeBinomial, StudentT

F = np.array([[-1.3], [0.0], [0.4], [2.1]])


@pytest.mark.parametrize("lik, context", [
    (likelihoods.Bernoulli(), {}),
    (likelihoods.Poisson(), {}),
    (NegativeBinomial(alpha=0.7), {}),
    (Binomial(), {"trials": np.array([7.0, 1.0, 12.0, 3.0])}),
    (Binomial(link="probit"), {"trials": np.array([7.0, 1.0, 12.0, 3.0])}),
    (Binomial(link="cloglog"), {"trials": np.array([7.0, 1.0, 12.0, 3.0])}),
    (likelihoods.ZeroInflatedPoisson(zero_prob=0.3), {}),
], ids=["bernoulli", "poisson", "negative_binomial", "binomial-logit", "binomial-probit", "binomial-cloglog",
        "zero_inflated_poisson"])
def test_fisher_is_the_expected_curvature_over_the_support(lik, context):
    top = 1.0 if lik.num_classes == 2 else 400.0
    expected = []
    for i in range(F.shape[0]):
        ys = np.arange(min(top, context["trials"][i]) + 1 if context else top + 1)
        ctx = {k: np.full(ys.size, v[i]) for k, v in context.items()}
        f = np.repeat(F[i:i + 1], ys.size, 0)
        probs = np.exp(lik.log_prob(f, ys, **ctx))
        assert probs.sum() == pytest.approx(1.0, abs=1e-10)
        expected.append(probs @ lik.curvature(f, ys, **ctx)[:, 0, 0])
    np.testing.assert_allclose(lik.fisher(F, **context)[:, 0, 0], expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("lik", [Gamma(shape=2.5), StudentT(df=3.5, scale=0.8), likelihoods.Beta(precision=6.0),
                                 likelihoods.Gaussian(noise_variance=0.3)], ids=["gamma", "student_t", "beta",
                                                                                "gaussian"])
def test_fisher_is_the_expected_curvature_by_monte_carlo(lik):
    gen = torch.Generator().manual_seed(0)
    f = np.repeat(F, 200_000, axis=0)
    y = lik.sample(torch.from_numpy(f), gen).numpy()
    curv = lik.curvature(f, y)[:, 0, 0].reshape(F.shape[0], -1)
    grad2 = lik.grad(f, y)[:, 0].reshape(F.shape[0], -1) ** 2  # E[g^2] is the Fisher information too
    fisher = lik.fisher(F)[:, 0, 0]
    np.testing.assert_allclose(curv.mean(1), fisher, rtol=0.02)
    np.testing.assert_allclose(grad2.mean(1), fisher, rtol=0.03)
    assert np.all(fisher > 0)


def test_student_t_fisher_is_positive_where_the_curvature_is_negative():
    lik = StudentT(df=3.0, scale=1.0)
    assert lik.curvature(np.zeros((1, 1)), np.array([10.0]))[0, 0, 0] < 0
    assert lik.fisher(np.zeros((1, 1)))[0, 0, 0] == pytest.approx(4.0 / 6.0)


def test_a_family_without_a_closed_form_gets_the_score_outer_product():
    """A user's family that overrides neither ``_fisher`` nor a y-free curvature gets the seeded Monte Carlo
    average of the score's outer product: it agrees with the exact sum over the support (negative binomial)."""

    class NoClosedForm(NegativeBinomial):
        _fisher = likelihoods.Likelihood._fisher

    exact = NegativeBinomial(alpha=0.7).fisher(F)[:, 0, 0]
    np.testing.assert_allclose(NoClosedForm(alpha=0.7).fisher(F)[:, 0, 0], exact, rtol=0.1)  # 4,096 draws
