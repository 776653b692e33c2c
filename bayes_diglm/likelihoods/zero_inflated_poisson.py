r"""The zero-inflated Poisson family (log link): structural zeros with a probability pi, Poisson counts otherwise."""

from __future__ import annotations

import torch
from pyro.distributions import ZeroInflatedPoisson as _PyroZeroInflatedPoisson
from torch.distributions import constraints

from ._checks import check_counts
from ._nuisance import NuisanceFamily
from .base import _MAX_LOG_RATE, Nuisance, register

__all__ = ["ZeroInflatedPoisson"]


@register
class ZeroInflatedPoisson(NuisanceFamily):
    r"""Counts that are 0 with probability :math:`\pi` and :math:`\mathrm{Poisson}(\lambda = e^f)` otherwise.

    .. math:: p(0 \mid f) = \pi + (1 - \pi) e^{-\lambda}, \qquad
              p(y \mid f) = (1 - \pi) \frac{\lambda^y e^{-\lambda}}{y!} \quad (y > 0),

    :math:`E[y] = (1 - \pi)\lambda`, :math:`\mathrm{Var}[y] = (1 - \pi)\lambda(1 + \pi\lambda)`; the
    inflation probability is one constant, statsmodels' ``ZeroInflatedPoisson`` with a constant-only inflation
    model (logit link), whose :math:`\pi = \sigma(\gamma_0)`. The rate is capped at 1e8 as the Poisson's is.

    Parameters
    ----------
    zero_prob : float or torch.Tensor
        :math:`\pi \in [0, 1)`.
    fixed : tuple of str
        ``("zero_prob",)`` to hold :math:`\pi` in a point head.

    Notes
    -----
    Gradient :math:`y - \lambda` for :math:`y > 0` and :math:`-\lambda w` at zero, with
    :math:`w = (1 - \pi) e^{-\lambda} / p(0 \mid f)` the chance that a zero is a Poisson one; curvature
    :math:`\lambda` for :math:`y > 0` and :math:`\lambda w - \lambda^2 w (1 - w)` at zero (negative where a zero
    is ambiguous). The predictive under a Gaussian over ``f`` is the Gauss-Hermite mixture.
    """

    name = "zero_inflated_poisson"
    discrete = True
    link = "log"
    laplace_glmm = False  # a mixture: its GLMM (zero-inflation with random effects) was not validated
    nuisance = {"zero_prob": Nuisance(constraints.half_open_interval(0.0, 1.0), 0.1, "the zero probability pi")}

    def __init__(self, zero_prob=0.1, fixed: tuple[str, ...] = ()):
        self._set_nuisance(fixed, zero_prob=zero_prob)

    def _check_target(self, y, **context):
        return check_counts(y, type(self).__name__)

    def _eta(self, f):
        return f[..., 0].clamp(max=_MAX_LOG_RATE)

    def _mean(self, f):
        return (1.0 - self._param("zero_prob", f)) * torch.exp(self._eta(f))

    def _dist(self, f):
        rate = torch.exp(self._eta(f))
        return _PyroZeroInflatedPoisson(rate, gate=self._param("zero_prob", f).expand_as(rate))

    def _log_parts(self, f):
        """``(eta, lambda, log(1 - pi), log p(0 | f))``."""
        pi = self._param("zero_prob", f)
        eta = self._eta(f)
        rate = torch.exp(eta)
        log_keep = torch.log1p(-pi)
        return eta, rate, log_keep, torch.logaddexp(torch.log(pi), log_keep - rate)

    def _log_prob(self, f, y):
        eta, rate, log_keep, log_p0 = self._log_parts(f)
        return torch.where(y > 0, log_keep + y * eta - rate - torch.lgamma(y + 1.0), log_p0)

    def _zero_weight(self, f):
        """``(lambda, w)``: the rate and the chance that a zero comes from the Poisson part."""
        _, rate, log_keep, log_p0 = self._log_parts(f)
        return rate, torch.exp(log_keep - rate - log_p0)

    def _grad(self, f, y):
        rate, w = self._zero_weight(f)
        return torch.where(y > 0, y - rate, -rate * w)[..., None]

    def _curvature(self, f, y):
        if y is None:
            raise ValueError("the curvature of a ZeroInflatedPoisson likelihood depends on y; pass y")
        rate, w = self._zero_weight(f)
        return torch.where(y > 0, rate, rate * w - rate**2 * w * (1.0 - w))[..., None, None]

    def _fisher(self, f):
        r""":math:`(1 - \pi)\lambda - (1 - \pi) e^{-\lambda} \lambda^2 (1 - w)`: the score's variance over the
        Poisson counts above zero and the zeros of both kinds."""
        rate, w = self._zero_weight(f)
        keep = 1.0 - self._param("zero_prob", f)
        return (keep * rate - keep * torch.exp(-rate) * rate**2 * (1.0 - w))[..., None, None]
