r"""The Bernoulli family (logit link) for binary targets."""

from __future__ import annotations

import numpy as np
import torch
from torch.distributions import Bernoulli as _TorchBernoulli

from .base import Likelihood, probit_scale, register

__all__ = ["Bernoulli"]


def _bernoulli_log_prob(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r""":math:`y f - \log(1 + e^f) = -[(1 - y) f - \log\sigma(f)]`, binary_cross_entropy_with_logits's arithmetic with
    :math:`-\log\sigma(f) = \max(-f, 0) + \log(1 + e^{-|f|})` written out: torch's ``log_sigmoid`` kernel opens
    a thread-parallel region at any size (grain 1), which on a loaded machine waits milliseconds for the second
    thread (p99 32 ms for 100 float64 logits at load 8 with 2 threads), and ``softplus`` drops
    :math:`\log(1 + e^{-|f|})` beyond its threshold of 20 (an absolute error up to 2e-9)."""
    return -((1.0 - y) * logits + torch.relu(-logits) + torch.log1p(torch.exp(-logits.abs())))


class _SoftplusBernoulli(_TorchBernoulli):
    """torch's Bernoulli with ``log_prob`` by :func:`_bernoulli_log_prob` (torch's values, without its
    ``log_sigmoid`` kernel)."""

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        logits, value = torch.distributions.utils.broadcast_all(self.logits, value)
        return _bernoulli_log_prob(logits, value)


@register
class Bernoulli(Likelihood):
    r""":math:`y \sim \mathrm{Bernoulli}(\sigma(f))` (logit link), ``y`` in {0, 1}.

    Gradient :math:`y - \sigma(f)`, curvature :math:`\sigma(f)(1 - \sigma(f))`; the predictive under
    :math:`f \sim N(m, v)` is MacKay's probit, :math:`p(y = 1) \approx \sigma(m / \sqrt{1 + \pi v / 8})`
    (MacKay 1992, "The evidence framework applied to classification networks").
    """

    name = "bernoulli"
    task = "classification"
    discrete = True
    link = "logit"

    @property
    def num_classes(self) -> int:
        return 2

    def _check_target(self, y, **context):
        if not np.all((y == 0) | (y == 1)):
            raise ValueError("y must hold 0 or 1 for a Bernoulli likelihood")
        return y

    def _probs(self, f):
        p1 = torch.sigmoid(f[..., 0])
        return torch.stack([1.0 - p1, p1], dim=-1)

    def _dist(self, f):
        return _SoftplusBernoulli(logits=f[..., 0])

    def _log_prob(self, f, y):
        return _bernoulli_log_prob(f[..., 0], y)

    def _grad(self, f, y):
        return (y - torch.sigmoid(f[..., 0]))[..., None]

    def _curvature(self, f, y):
        p = torch.sigmoid(f[..., 0])
        return (p * (1.0 - p))[..., None, None]

    def _predictive(self, mean, cov, generator):
        return _SoftplusBernoulli(probs=torch.sigmoid(mean[..., 0] * probit_scale(cov[..., 0, 0])))
