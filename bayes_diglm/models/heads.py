"""GLM heads on flow features: ``eta = beta^T z + beta_0`` and a likelihood family with its link.

Each head is a small ``nn.Module`` that maps features ``z`` (batch, D) to a ``torch.distributions``
object over ``y``; ``log_prob(z, y)`` is ``log p(y | z)`` per row. These are the point-estimate heads trained
jointly with the flow; the Bayesian heads in :mod:`bayes_diglm.inference` put posteriors on the same ``beta``.
The families themselves (distribution, log-density) are those of :mod:`bayes_diglm.likelihoods`: a head only
holds the linear maps and hands its linear predictor to its likelihood.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution

from bayes_diglm import likelihoods

__all__ = [
    "GLMHead",
    "GaussianHead",
    "HeteroscedasticGaussianHead",
    "BernoulliHead",
    "CategoricalHead",
    "PoissonHead",
    "make_head",
    "HEADS",
]


class GLMHead(nn.Module):
    """Base class: a linear predictor on ``z`` and a likelihood family.

    Subclasses set ``family``, ``task`` ("regression" or "classification") and ``likelihood`` (a
    :class:`bayes_diglm.likelihoods.Likelihood`); :meth:`predictor` gives the linear predictor it takes.
    """

    family = "abstract"
    task = "regression"

    def __init__(self, dim: int, num_outputs: int = 1):
        super().__init__()
        if int(dim) < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self.dim = int(dim)
        self.linear = nn.Linear(self.dim, int(num_outputs))
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    likelihood: likelihoods.Likelihood

    def predictor(self, z: torch.Tensor) -> torch.Tensor:
        """The linear predictor ``f`` (batch, likelihood.num_outputs) that the likelihood takes."""
        return self.linear(z)

    def dist(self, z: torch.Tensor) -> Distribution:
        """``p(y | z)`` as a ``torch.distributions`` object."""
        return self.likelihood.dist(self.predictor(z))

    def log_prob(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``log p(y | z)`` for each row."""
        return self.likelihood.log_prob(self.predictor(z), y)

    def mean(self, z: torch.Tensor) -> torch.Tensor:
        """The predictive mean ``E[y | z]`` (class probabilities for classification heads)."""
        return self.dist(z).mean

    def config(self) -> dict:
        return {"family": self.family, "dim": self.dim}


class GaussianHead(GLMHead):
    """``y ~ N(beta^T z + beta_0, sigma^2)`` with one learned noise scale (identity link)."""

    family = "gaussian"

    def __init__(self, dim: int):
        super().__init__(dim, 1)
        self.log_sigma = nn.Parameter(torch.zeros(()))

    @property
    def likelihood(self) -> likelihoods.Gaussian:
        return likelihoods.Gaussian(noise_variance=torch.exp(2.0 * self.log_sigma))


class HeteroscedasticGaussianHead(GLMHead):
    """The paper's regression head: mean and log-variance both linear in ``z``.

    ``y ~ N(beta^T z + beta_0, exp(gamma^T z + gamma_0))``. The log-variance is bounded smoothly to
    ``[-max_log_var, max_log_var]`` so that one bad batch cannot send it to infinity.
    """

    family = "heteroscedastic"

    def __init__(self, dim: int, max_log_var: float = 12.0):
        super().__init__(dim, 1)
        self.log_var = nn.Linear(self.dim, 1)
        nn.init.zeros_(self.log_var.weight)
        nn.init.zeros_(self.log_var.bias)
        self.max_log_var = float(max_log_var)
        self.likelihood = likelihoods.HeteroscedasticGaussian(self.max_log_var)

    def predictor(self, z: torch.Tensor) -> torch.Tensor:
        """``(mean, raw log-variance)`` per row, shape (batch, 2)."""
        return torch.cat([self.linear(z), self.log_var(z)], dim=-1)

    def noise_log_var(self, z: torch.Tensor) -> torch.Tensor:
        """The bounded noise log-variance per row."""
        return self.likelihood.noise_log_var(self.predictor(z))


class BernoulliHead(GLMHead):
    """``y ~ Bernoulli(sigmoid(beta^T z + beta_0))`` (logit link), ``y`` in {0, 1}."""

    family = "bernoulli"
    task = "classification"
    num_classes = 2

    def __init__(self, dim: int):
        super().__init__(dim, 1)
        self.likelihood = likelihoods.Bernoulli()

    def mean(self, z):
        p1 = torch.sigmoid(self.linear(z).squeeze(-1))
        return torch.stack([1 - p1, p1], dim=-1)


class CategoricalHead(GLMHead):
    """``y ~ Categorical(softmax(B^T z + b_0))`` with ``K`` classes (softmax link)."""

    family = "categorical"
    task = "classification"

    def __init__(self, dim: int, num_classes: int):
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes!r}")
        super().__init__(dim, num_classes)
        self.num_classes = int(num_classes)
        self.likelihood = likelihoods.Categorical(self.num_classes)

    def mean(self, z):
        return torch.softmax(self.linear(z), dim=-1)

    def config(self):
        return {**super().config(), "num_classes": self.num_classes}


class PoissonHead(GLMHead):
    """``y ~ Poisson(exp(beta^T z + beta_0))`` (log link) for counts."""

    family = "poisson"

    def __init__(self, dim: int):
        super().__init__(dim, 1)
        self.likelihood = likelihoods.Poisson()


HEADS = {
    "gaussian": GaussianHead,
    "heteroscedastic": HeteroscedasticGaussianHead,
    "bernoulli": BernoulliHead,
    "categorical": CategoricalHead,
    "poisson": PoissonHead,
}


def make_head(family: str, dim: int, **kwargs) -> GLMHead:
    """Build a head by family name: one of ``HEADS``' keys."""
    if family not in HEADS:
        raise ValueError(f"unknown head family {family!r}; choose one of {sorted(HEADS)}")
    return HEADS[family](dim, **kwargs)
