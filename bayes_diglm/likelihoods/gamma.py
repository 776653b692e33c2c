r"""The Gamma family (log link) for positive continuous targets, with a shape parameter."""

from __future__ import annotations

import numpy as np
import torch
from torch.distributions import Gamma as _TorchGamma
from torch.distributions import constraints

from ._nuisance import NuisanceFamily
from .base import _MAX_LOG_RATE, Nuisance, register

__all__ = ["Gamma"]


@register
class Gamma(NuisanceFamily):
    r"""Positive :math:`y` with mean :math:`\mu = e^f` (log link) and shape :math:`k > 0`.

    .. math:: p(y \mid f) = \frac{(k / \mu)^k}{\Gamma(k)}\, y^{k - 1} e^{-k y / \mu},

    :math:`E[y] = \mu`, :math:`\mathrm{Var}[y] = \mu^2 / k` (statsmodels' GLM ``Gamma(link=Log())`` with scale
    :math:`1/k`). The log-mean is clipped to :math:`\pm\log 10^8`.

    Parameters
    ----------
    shape : float or torch.Tensor
        The shape :math:`k > 0` (the inverse of the GLM dispersion).
    fixed : tuple of str
        ``("shape",)`` to hold the shape at ``shape`` in a point head.

    Notes
    -----
    Gradient :math:`k (y / \mu - 1)`, curvature :math:`k y / \mu` (positive); its expectation, the Fisher
    information, is :math:`k`. The predictive under a Gaussian over ``f`` is the Gauss-Hermite mixture.
    """

    name = "gamma"
    link = "log"
    nuisance = {"shape": Nuisance(constraints.positive, 1.0, "the shape k")}

    def __init__(self, shape=1.0, fixed: tuple[str, ...] = ()):
        self._set_nuisance(fixed, shape=shape)

    def _check_target(self, y, **context):
        if not np.all(np.isfinite(y) & (y > 0)):
            raise ValueError("y must hold positive finite values for a Gamma likelihood")
        return y

    def _eta(self, f):
        return f[..., 0].clamp(-_MAX_LOG_RATE, _MAX_LOG_RATE)

    def _mean(self, f):
        return torch.exp(self._eta(f))

    def _dist(self, f):
        shape = self._param("shape", f)
        eta = self._eta(f)
        return _TorchGamma(shape.expand_as(eta), shape * torch.exp(-eta))

    def _log_prob(self, f, y):
        shape = self._param("shape", f)
        eta = self._eta(f)
        return (shape * (torch.log(shape) - eta) + (shape - 1.0) * torch.log(y) - shape * y * torch.exp(-eta)
                - torch.lgamma(shape))

    def _grad(self, f, y):
        return (self._param("shape", f) * (y * torch.exp(-self._eta(f)) - 1.0))[..., None]

    def _curvature(self, f, y):
        if y is None:
            raise ValueError("the curvature of a Gamma likelihood depends on y; pass y")
        return (self._param("shape", f) * y * torch.exp(-self._eta(f)))[..., None, None]

    def _fisher(self, f):  # E[y] = mu: the shape k, the same at every row
        return self._param("shape", f).expand_as(f[..., 0])[..., None, None]
