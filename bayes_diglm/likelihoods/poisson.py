r"""The Poisson family (log link) for counts."""

from __future__ import annotations

import numpy as np
import torch
from torch.distributions import Poisson as _TorchPoisson

from .base import _MAX_LOG_RATE, Likelihood, register

__all__ = ["Poisson"]


@register
class Poisson(Likelihood):
    r""":math:`y \sim \mathrm{Poisson}(e^f)` (log link) for counts; the rate is capped at 1e8.

    Gradient :math:`y - e^f`, curvature :math:`e^f`; the predictive is the Gauss-Hermite mixture (a
    Poisson-lognormal), whose mean :math:`e^{m + v/2}` and variance it reproduces to quadrature accuracy.
    """

    name = "poisson"
    discrete = True
    link = "log"

    def _check_target(self, y, **context):
        if not np.all((y >= 0) & (y == np.round(y))):
            raise ValueError("y must hold non-negative integer counts for a Poisson likelihood")
        return y

    def _mean(self, f):
        return self._rate(f)

    def _rate(self, f):
        return torch.exp(f[..., 0].clamp(max=_MAX_LOG_RATE))

    def _dist(self, f):
        return _TorchPoisson(self._rate(f))

    def _log_prob(self, f, y):
        eta = f[..., 0].clamp(max=_MAX_LOG_RATE)
        return y * eta - torch.exp(eta) - torch.lgamma(y + 1.0)

    def _grad(self, f, y):
        return (y - self._rate(f))[..., None]

    def _curvature(self, f, y):
        return self._rate(f)[..., None, None]
