r"""The binomial family: successes out of per-row ``trials``, with a logit, probit or complementary log-log link."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.distributions import Binomial as _TorchBinomial

from .base import Likelihood, register

__all__ = ["Binomial"]


def _log_probs_logit(f):
    return -torch.logaddexp(torch.zeros_like(f), -f), -torch.logaddexp(torch.zeros_like(f), f)


def _log_probs_probit(f):
    return torch.special.log_ndtr(f), torch.special.log_ndtr(-f)


def _log_probs_cloglog(f):
    rate = torch.exp(f)
    return torch.log(-torch.expm1(-rate)), -rate


#: link name -> (log p, log(1 - p)) of the success probability p = g^{-1}(f), each computed without cancellation
_LINKS = {"logit": _log_probs_logit, "probit": _log_probs_probit, "cloglog": _log_probs_cloglog}


def _ratios_logit(f, log_p, log_q):
    p, q = torch.exp(log_p), torch.exp(log_q)
    return q, p, -p * q, p * q


def _ratios_probit(f, log_p, log_q):
    log_density = -0.5 * f**2 - 0.5 * math.log(2.0 * math.pi)
    a, b = torch.exp(log_density - log_p), torch.exp(log_density - log_q)  # Mills ratios
    return a, b, -f * a - a**2, -f * b + b**2


def _ratios_cloglog(f, log_p, log_q):
    rate = torch.exp(f)
    a = torch.exp(f - rate - log_p)
    return a, rate, a * (1.0 - rate) - a**2, rate


#: link name -> (a, b, a', b') with a = p'/p and b = p'/(1 - p), the pieces of the gradient and curvature
_RATIOS = {"logit": _ratios_logit, "probit": _ratios_probit, "cloglog": _ratios_cloglog}


@register
class Binomial(Likelihood):
    r"""Successes :math:`y \in \{0, \dots, n\}` out of :math:`n` = ``trials`` (a per-row keyword).

    .. math:: p(y \mid f, n) = \binom{n}{y} p^y (1 - p)^{n - y}, \qquad p = g^{-1}(f),

    with the logit link :math:`p = \sigma(f)` (default), the probit :math:`p = \Phi(f)` or the complementary
    log-log :math:`p = 1 - \exp(-e^f)`. :math:`E[y] = np`, :math:`\mathrm{Var}[y] = np(1 - p)`. This is lme4's
    ``cbind(successes, failures)`` and statsmodels' binomial GLM with trials; the Bernoulli is the case
    :math:`n = 1`.

    Parameters
    ----------
    link : {"logit", "probit", "cloglog"}
        The link function :math:`g`.

    Notes
    -----
    Every method takes ``trials=`` (non-negative integers broadcasting against ``f.shape[:-1]``). With
    :math:`a = p'/p` and :math:`b = p'/(1 - p)` the gradient is :math:`y a - (n - y) b` and the curvature
    :math:`-y a' + (n - y) b'`: for the logit :math:`y - np` and :math:`np(1 - p)` (free of ``y``); for the probit
    :math:`a, b` are Mills ratios with :math:`a' = -fa - a^2`, :math:`b' = -fb + b^2`; for the cloglog
    :math:`b = e^f`, :math:`a' = a(1 - e^f) - a^2`. The predictive under a Gaussian over ``f`` is the
    Gauss-Hermite mixture of binomials.

    Examples
    --------
    >>> import numpy as np
    >>> lik = Binomial()
    >>> lik.mean(np.array([[0.0], [0.0]]), trials=np.array([10, 4]))
    array([5., 2.])
    """

    name = "binomial"
    discrete = True
    context = ("trials",)

    def __init__(self, link: str = "logit"):
        if link not in _LINKS:
            raise ValueError(f"link must be one of {sorted(_LINKS)}, got {link!r}")
        self.link = link

    def config(self):
        return {"link": self.link}

    def _check_target(self, y, trials):
        if not np.all((trials >= 0) & (trials == np.round(trials))):
            raise ValueError("trials must hold non-negative integers for a Binomial likelihood")
        if not np.all((y >= 0) & (y == np.round(y)) & (y <= trials)):
            raise ValueError("y must hold integer successes between 0 and trials for a Binomial likelihood")
        return y

    def _log_p(self, f):
        return _LINKS[self.link](f[..., 0])

    def _dist(self, f, trials):
        if self.link == "logit":
            return _TorchBinomial(total_count=trials.expand(f.shape[:-1]), logits=f[..., 0])
        log_p, _ = self._log_p(f)
        return _TorchBinomial(total_count=trials.expand(f.shape[:-1]), probs=torch.exp(log_p))

    def _log_prob(self, f, y, trials):
        log_p, log_q = self._log_p(f)
        log_choose = torch.lgamma(trials + 1.0) - torch.lgamma(y + 1.0) - torch.lgamma(trials - y + 1.0)
        # xlogy-style products: a zero count times a log-probability of -inf contributes 0, not nan
        return log_choose + torch.where(y > 0, y * log_p, 0.0) + torch.where(trials > y, (trials - y) * log_q, 0.0)

    def _mean(self, f, trials):
        return trials * torch.exp(self._log_p(f)[0])

    def _ratios(self, f):
        return _RATIOS[self.link](f[..., 0], *self._log_p(f))

    def _grad(self, f, y, trials):
        a, b, _, _ = self._ratios(f)
        return (y * a - (trials - y) * b)[..., None]

    def _curvature(self, f, y, trials):
        if self.link == "logit":  # n p (1 - p), free of y
            pq = self._ratios(f)[3]
            return (trials * pq)[..., None, None]
        if y is None:
            raise ValueError(f"the curvature of a Binomial likelihood with the {self.link} link depends on y; pass y")
        _, _, da, db = self._ratios(f)
        return (-y * da + (trials - y) * db)[..., None, None]

    def _fisher(self, f, trials):  # n p'^2 / (p (1 - p)) = n a b
        a, b, _, _ = self._ratios(f)
        return (trials * a * b)[..., None, None]
