r"""Gaussian families: known noise variance, and the paper's heteroscedastic head (mean and log-variance linear)."""

from __future__ import annotations

import math

import torch
from torch.distributions import Normal, constraints

from .base import Likelihood, Nuisance, _like, _to_tensor, register

__all__ = ["Gaussian", "HeteroscedasticGaussian"]


@register
class Gaussian(Likelihood):
    r""":math:`y \sim N(f, \sigma^2)` (identity link) with a known noise variance ``noise_variance``.

    ``noise_variance`` may be a float or a tensor broadcasting against ``f.shape[:-1]`` (a learned parameter, or one
    variance per posterior draw). The predictive under :math:`f \sim N(m, v)` is exactly :math:`N(m, v + \sigma^2)`.
    """

    name = "gaussian"
    gaussian_mean = True
    nuisance = {"noise_variance": Nuisance(constraints.positive, 1.0, "the noise variance sigma^2")}

    def __init__(self, noise_variance=1.0):
        if not isinstance(noise_variance, torch.Tensor):
            noise_variance = float(noise_variance)
            if not (math.isfinite(noise_variance) and noise_variance > 0):
                raise ValueError(f"noise_variance must be positive and finite, got {noise_variance!r}")
        self.noise_variance = noise_variance

    def _noise(self, f: torch.Tensor):
        nv = self.noise_variance
        return nv.to(f.dtype) if isinstance(nv, torch.Tensor) else torch.tensor(nv, dtype=f.dtype)

    def _dist(self, f):
        loc = f[..., 0]
        return Normal(loc, torch.sqrt(self._noise(f)).expand_as(loc))

    def _grad(self, f, y):
        return ((y - f[..., 0]) / self._noise(f))[..., None]

    def _curvature(self, f, y):
        return (torch.ones_like(f[..., 0]) / self._noise(f))[..., None, None]

    def _predictive(self, mean, cov, generator):
        return Normal(mean[..., 0], torch.sqrt(cov[..., 0, 0] + self._noise(mean)))


@register
class HeteroscedasticGaussian(Likelihood):
    r"""The paper's regression head: :math:`y \sim N(f_0, \exp(s(f_1)))`, mean and log-variance both linear.

    ``f[..., 0]`` is the mean and ``f[..., 1]`` the raw log-variance, bounded smoothly to
    ``[-max_log_var, max_log_var]`` by :math:`s(r) = M \tanh(r / M)` so that one bad batch cannot send it to
    infinity. Derivatives come from autograd; the predictive is the generic Monte Carlo mixture.
    """

    name = "heteroscedastic"
    num_outputs = 2
    gaussian_mean = True
    link = "identity (mean), bounded log (variance)"

    def __init__(self, max_log_var: float = 12.0):
        max_log_var = float(max_log_var)
        if not (math.isfinite(max_log_var) and max_log_var > 0):
            raise ValueError(f"max_log_var must be positive and finite, got {max_log_var!r}")
        self.max_log_var = max_log_var

    def noise_log_var(self, f):
        """The bounded noise log-variance :math:`s(f_1)`, shape ``f.shape[:-1]``."""
        f_t = self._check_predictor(_to_tensor(f))
        return _like(self._noise_log_var(f_t), f)

    def _noise_log_var(self, f):
        return self.max_log_var * torch.tanh(f[..., 1] / self.max_log_var)

    def _dist(self, f):
        return Normal(f[..., 0], torch.exp(0.5 * self._noise_log_var(f)))

    def config(self):
        return {"max_log_var": self.max_log_var}

    def _fisher(self, f):
        """Mean and log-variance are orthogonal: :math:`e^{-s}` and :math:`s'^2 / 2`."""
        th = torch.tanh(f[..., 1] / self.max_log_var)
        c_00 = torch.exp(-self.max_log_var * th)
        c_11 = 0.5 * (1.0 - th**2) ** 2
        zero = torch.zeros_like(c_00)
        return torch.stack([torch.stack([c_00, zero], -1), torch.stack([zero, c_11], -1)], -2)
