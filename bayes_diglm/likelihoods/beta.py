r"""The Beta family (logit link) for proportions in (0, 1), with a precision parameter."""

from __future__ import annotations

import numpy as np
import torch
from torch.distributions import Beta as _TorchBeta
from torch.distributions import constraints

from ._nuisance import NuisanceFamily
from .base import Nuisance, register

__all__ = ["Beta"]


@register
class Beta(NuisanceFamily):
    r"""Proportions :math:`y \in (0, 1)` with mean :math:`\mu = \sigma(f)` (logit link) and precision :math:`\phi`.

    .. math:: p(y \mid f) = \frac{\Gamma(\phi)}{\Gamma(\mu\phi)\Gamma((1 - \mu)\phi)}
              y^{\mu\phi - 1} (1 - y)^{(1 - \mu)\phi - 1},

    the mean-precision parametrisation of Ferrari and Cribari-Neto (2004, "Beta regression for modelling rates
    and proportions"; R's ``betareg``, statsmodels' ``BetaModel``): :math:`E[y] = \mu`,
    :math:`\mathrm{Var}[y] = \mu(1 - \mu) / (1 + \phi)`. :math:`\mu\phi` and :math:`(1 - \mu)\phi` are computed
    as :math:`\phi\sigma(f)` and :math:`\phi\sigma(-f)`, so neither rounds to zero for large :math:`|f|`.

    Parameters
    ----------
    precision : float or torch.Tensor
        The precision :math:`\phi > 0`.
    fixed : tuple of str
        ``("precision",)`` to hold :math:`\phi` in a point head.

    Notes
    -----
    With :math:`y^* = \mathrm{logit}(y)`, :math:`\mu^* = \psi(\mu\phi) - \psi((1 - \mu)\phi)` and
    :math:`\mu' = \mu(1 - \mu)`: gradient :math:`\phi\mu'(y^* - \mu^*)`, curvature
    :math:`\phi^2\mu'^2[\psi_1(\mu\phi) + \psi_1((1 - \mu)\phi)] - \phi\mu'(1 - 2\mu)(y^* - \mu^*)`, whose
    expectation (the Fisher information) is the first term. The predictive under a Gaussian over ``f`` is the
    Gauss-Hermite mixture.
    """

    name = "beta"
    link = "logit"
    nuisance = {"precision": Nuisance(constraints.positive, 10.0, "the precision phi")}

    def __init__(self, precision=10.0, fixed: tuple[str, ...] = ()):
        self._set_nuisance(fixed, precision=precision)

    def _check_target(self, y, **context):
        if not np.all((y > 0) & (y < 1)):
            raise ValueError("y must hold proportions strictly between 0 and 1 for a Beta likelihood")
        return y

    def _shapes(self, f):
        phi = self._param("precision", f)
        return phi, phi * torch.sigmoid(f[..., 0]), phi * torch.sigmoid(-f[..., 0])

    def _mean(self, f):
        return torch.sigmoid(f[..., 0])

    def _dist(self, f):
        _, a, b = self._shapes(f)
        return _TorchBeta(a, b)

    def _score_parts(self, f, y):
        """``(phi, mu, mu', y* - mu*)`` of the gradient and curvature."""
        phi, a, b = self._shapes(f)
        mu = torch.sigmoid(f[..., 0])
        dmu = mu * torch.sigmoid(-f[..., 0])
        return phi, mu, dmu, torch.log(y) - torch.log1p(-y) - torch.digamma(a) + torch.digamma(b)

    def _grad(self, f, y):
        phi, _, dmu, resid = self._score_parts(f, y)
        return (phi * dmu * resid)[..., None]

    def _curvature(self, f, y):
        if y is None:
            raise ValueError("the curvature of a Beta likelihood depends on y; pass y")
        phi, mu, dmu, resid = self._score_parts(f, y)
        return self._fisher(f) - (phi * dmu * (1.0 - 2.0 * mu) * resid)[..., None, None]

    def _fisher(self, f):
        phi, a, b = self._shapes(f)
        dmu = torch.sigmoid(f[..., 0]) * torch.sigmoid(-f[..., 0])
        return (phi**2 * dmu**2 * (torch.polygamma(1, a) + torch.polygamma(1, b)))[..., None, None]
