r"""The cumulative-logit (proportional odds) family for K ordered classes, with ordered cut-points."""

from __future__ import annotations

import numpy as np
import torch
from pyro.distributions import constraints as pyro_constraints
from torch.distributions import Categorical as _TorchCategorical

from ._nuisance import NuisanceFamily
from .base import Nuisance, _to_tensor, register

__all__ = ["CumulativeLogit"]


def _even_cutpoints(lik: CumulativeLogit) -> torch.Tensor:
    """Cut-points that give equal class probabilities at ``f = 0``: :math:`\\mathrm{logit}(k / K)`."""
    k = torch.arange(1, lik.num_classes, dtype=torch.float64)
    return torch.logit(k / lik.num_classes)


def _log_sigmoid(x):
    return -torch.logaddexp(torch.zeros_like(x), -x)


@register
class CumulativeLogit(NuisanceFamily):
    r"""Ordered classes :math:`y \in \{0, \dots, K - 1\}` with :math:`P(y \le k \mid f) = \sigma(\theta_k - f)`.

    .. math:: P(y = k \mid f) = \sigma(\theta_k - f) - \sigma(\theta_{k-1} - f),
              \qquad \theta_{-1} = -\infty < \theta_0 < \dots < \theta_{K-2} < \theta_{K-1} = +\infty,

    the proportional-odds model (McCullagh 1980; statsmodels' ``OrderedModel(distr="logit")``, R's
    ``MASS::polr``, bambi's ``cumulative``). ``f`` is one output and has no intercept of its own: the
    :math:`K - 1` cut-points play that part. Each class probability is computed as
    :math:`\sigma(b)\,\sigma(-a)\,(1 - e^{a - b})` with :math:`a = \theta_{k-1} - f`, :math:`b = \theta_k - f`,
    in logs, so no difference of nearly equal probabilities is taken.

    Parameters
    ----------
    num_classes : int
        :math:`K \ge 2`.
    cutpoints : sequence of float or torch.Tensor, optional
        The :math:`K - 1` strictly increasing cut-points (a nuisance parameter with pyro's ``ordered_vector``
        constraint); by default :math:`\mathrm{logit}(k / K)`, equal class probabilities at :math:`f = 0`.
    fixed : tuple of str
        ``("cutpoints",)`` to hold them in a point head.

    Notes
    -----
    Gradient :math:`\sigma(a) + \sigma(b) - 1` and curvature :math:`\sigma'(a) + \sigma'(b)` (positive) at the
    observed class's two cut-points. :meth:`mean` is the expected class index. The predictive under
    :math:`f \sim N(m, v)` averages the class probabilities over Gauss-Hermite nodes (a categorical with
    ``probs``).

    Examples
    --------
    >>> import numpy as np
    >>> lik = CumulativeLogit(3, cutpoints=[-1.0, 1.0])
    >>> lik.probs(np.array([[0.0]])).round(4)
    array([[0.2689, 0.4621, 0.2689]])
    """

    name = "ordinal"
    task = "classification"
    discrete = True
    link = "cumulative logit"
    laplace_glmm = False  # cut-points as free GLMM parameters were not validated
    nuisance = {"cutpoints": Nuisance(pyro_constraints.ordered_vector, _even_cutpoints, "the ordered cut-points")}

    def __init__(self, num_classes: int, cutpoints=None, fixed: tuple[str, ...] = ()):
        if not isinstance(num_classes, (int, np.integer)) or isinstance(num_classes, bool) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        self._num_classes = int(num_classes)
        if cutpoints is None:
            cutpoints = _even_cutpoints(self)
        width = _to_tensor(cutpoints).shape if isinstance(cutpoints, torch.Tensor) else np.shape(cutpoints)
        if len(width) < 1 or width[-1] != self._num_classes - 1:
            raise ValueError(f"cutpoints must have {self._num_classes - 1} entries (num_classes - 1) in its last "
                             f"axis, got shape {tuple(width)}")
        self._set_nuisance(fixed, cutpoints=cutpoints)

    @property
    def num_classes(self) -> int:
        return self._num_classes

    def config(self):
        return {"num_classes": self._num_classes, **super().config()}

    def _check_target(self, y, **context):
        if not np.all((y == np.round(y)) & (y >= 0) & (y < self._num_classes)):
            raise ValueError(f"y must hold ordered class indices 0..{self._num_classes - 1} for a "
                             "CumulativeLogit likelihood")
        return y

    def _target(self, y, f):
        return _to_tensor(y).long()

    def _bounds(self, f):
        """``(a, b)``, each (..., K): :math:`\\theta_{k-1} - f` and :math:`\\theta_k - f` for every class k (with
        infinite ends: for the closed-form derivatives, not for autograd)."""
        theta = self._param("cutpoints", f).expand(f.shape[:-1] + (self._num_classes - 1,))
        inf = torch.full(f.shape[:-1] + (1,), float("inf"), dtype=f.dtype, device=f.device)
        padded = torch.cat([-inf, theta, inf], dim=-1)
        return padded[..., :-1] - f, padded[..., 1:] - f

    def _log_probs(self, f):
        # the end classes apart, so that no infinite cut-point enters autograd (its second derivatives are nan)
        theta = self._param("cutpoints", f).expand(f.shape[:-1] + (self._num_classes - 1,))
        t = theta - f
        gap = torch.log(-torch.expm1(t[..., :-1] - t[..., 1:]))  # log(1 - exp(theta_{k-1} - theta_k))
        middle = _log_sigmoid(t[..., 1:]) + _log_sigmoid(-t[..., :-1]) + gap
        return torch.cat([_log_sigmoid(t[..., :1]), middle, _log_sigmoid(-t[..., -1:])], dim=-1)

    def _probs(self, f):
        return torch.exp(self._log_probs(f))

    def _mean(self, f):
        return (self._probs(f) * torch.arange(self._num_classes, dtype=f.dtype, device=f.device)).sum(-1)

    def _dist(self, f):
        return _TorchCategorical(logits=self._log_probs(f))

    def _log_prob(self, f, y):
        log_p = self._log_probs(f)
        return torch.gather(log_p, -1, y.expand(f.shape[:-1])[..., None])[..., 0]

    def _observed_bounds(self, f, y):
        a, b = self._bounds(f)
        index = y.expand(f.shape[:-1])[..., None]
        return torch.gather(a, -1, index)[..., 0], torch.gather(b, -1, index)[..., 0]

    def _grad(self, f, y):
        a, b = self._observed_bounds(f, y)
        return (torch.sigmoid(a) + torch.sigmoid(b) - 1.0)[..., None]

    def _curvature(self, f, y):
        if y is None:
            raise ValueError("the curvature of a CumulativeLogit likelihood depends on y; pass y")
        sa, sb = (torch.sigmoid(t) for t in self._observed_bounds(f, y))
        return (sa * (1.0 - sa) + sb * (1.0 - sb))[..., None, None]

    def _fisher(self, f):
        a, b = self._bounds(f)
        score = torch.sigmoid(a) + torch.sigmoid(b) - 1.0  # the gradient at each class
        return (self._probs(f) * score**2).sum(-1)[..., None, None]

    def _sample(self, f, generator):
        u = torch.rand(f.shape[:-1] + (1,), dtype=f.dtype, generator=generator)
        cdf = torch.cumsum(self._probs(f), dim=-1)[..., :-1]
        return (u > cdf).sum(-1)  # inverse CDF

    def _predictive(self, mean, cov, generator):
        mixture = self._quadrature_predictive(mean, cov[..., 0, 0])
        weights = mixture.mixture_distribution.probs[..., None]
        return _TorchCategorical(probs=(weights * mixture.component_distribution.probs).sum(-2))
