r"""The negative binomial family (NB2, log link) for over-dispersed counts: variance mu + alpha mu^2."""

from __future__ import annotations

import torch
from torch.distributions import NegativeBinomial as _TorchNegativeBinomial
from torch.distributions import constraints

from ._checks import check_counts
from ._nuisance import NuisanceFamily
from .base import _MAX_LOG_RATE, Nuisance, register

__all__ = ["NegativeBinomial"]


@register
class NegativeBinomial(NuisanceFamily):
    r"""NB2 counts with mean :math:`\mu = e^f` (log link) and dispersion :math:`\alpha > 0`.

    .. math:: p(y \mid f) = \frac{\Gamma(y + 1/\alpha)}{\Gamma(1/\alpha)\, y!}
              \Big(\frac{1}{1 + \alpha\mu}\Big)^{1/\alpha} \Big(\frac{\alpha\mu}{1 + \alpha\mu}\Big)^y,

    :math:`E[y] = \mu`, :math:`\mathrm{Var}[y] = \mu + \alpha\mu^2` (statsmodels' ``NegativeBinomial(alpha)``
    GLM family and its discrete ``NegativeBinomial`` model, lme4's ``glmer.nb`` with :math:`\theta = 1/\alpha`);
    the Poisson is the limit :math:`\alpha \to 0`. The rate is capped at 1e8 as the Poisson's is.

    Parameters
    ----------
    alpha : float or torch.Tensor
        The dispersion :math:`\alpha > 0`.
    fixed : tuple of str
        ``("alpha",)`` to hold the dispersion at ``alpha`` in a point head.

    Notes
    -----
    Gradient :math:`(y - \mu) / (1 + \alpha\mu)`, curvature :math:`\mu(1 + \alpha y) / (1 + \alpha\mu)^2`
    (positive: the log-density is concave in ``f``). The predictive under a Gaussian over ``f`` is the
    Gauss-Hermite mixture.
    """

    name = "negative_binomial"
    discrete = True
    link = "log"
    nuisance = {"alpha": Nuisance(constraints.positive, 0.5, "the dispersion alpha")}

    def __init__(self, alpha=0.5, fixed: tuple[str, ...] = ()):
        self._set_nuisance(fixed, alpha=alpha)

    def _check_target(self, y, **context):
        return check_counts(y, type(self).__name__)

    def _eta(self, f):
        return f[..., 0].clamp(max=_MAX_LOG_RATE)

    def _mean(self, f):
        return torch.exp(self._eta(f))

    def _dist(self, f):
        alpha = self._param("alpha", f)
        eta = self._eta(f)
        return _TorchNegativeBinomial(total_count=(1.0 / alpha).expand_as(eta), logits=torch.log(alpha) + eta)

    def _log_prob(self, f, y):
        alpha = self._param("alpha", f)
        r = 1.0 / alpha
        logit = torch.log(alpha) + self._eta(f)
        return (torch.lgamma(y + r) - torch.lgamma(r) - torch.lgamma(y + 1.0) + y * logit
                - (y + r) * torch.logaddexp(torch.zeros_like(logit), logit))

    def _grad(self, f, y):
        alpha, mu = self._param("alpha", f), self._mean(f)
        return ((y - mu) / (1.0 + alpha * mu))[..., None]

    def _curvature(self, f, y):
        if y is None:
            raise ValueError("the curvature of a NegativeBinomial likelihood depends on y; pass y")
        alpha, mu = self._param("alpha", f), self._mean(f)
        return (mu * (1.0 + alpha * y) / (1.0 + alpha * mu) ** 2)[..., None, None]

    def _fisher(self, f):  # E[y] = mu: mu / (1 + alpha mu), glmer.nb's IRLS weight
        alpha, mu = self._param("alpha", f), self._mean(f)
        return (mu / (1.0 + alpha * mu))[..., None, None]
