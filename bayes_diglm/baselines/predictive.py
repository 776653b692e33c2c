"""The deep ensemble's predictive: an equal-weight Gaussian mixture per input, as a head-contract ``Predictive``."""

from __future__ import annotations

import numpy as np
import scipy.stats
import torch

from ..inference.base import Predictive, check_probability

__all__ = ["GaussianMixturePredictive"]


class GaussianMixturePredictive(Predictive):
    r"""Equal-weight mixtures of Gaussians, one per input (a deep ensemble's predictive).

    ``locs`` and ``scales`` have shape (M, n): member ``m``'s Gaussian at input ``i`` is
    :math:`N(\mu_{mi}, \sigma_{mi}^2)`. The distribution is torch's ``MixtureSameFamily`` (float64), so
    ``mean`` (:math:`\bar\mu = \frac1M\sum_m \mu_m`), ``variance``
    (:math:`\frac1M\sum_m(\sigma_m^2 + \mu_m^2) - \bar\mu^2`), ``log_prob`` and ``sample`` are the
    ``Predictive``'s own; this class adds what the package's ``Predictive`` has no closed form for, the
    mixture's exact quantiles (bisection on its CDF), so ``interval`` works as for every other row.
    """

    def __init__(self, locs, scales):
        locs, scales = np.asarray(locs, dtype=np.float64), np.asarray(scales, dtype=np.float64)
        if locs.ndim != 2 or locs.shape != scales.shape:
            raise ValueError(f"locs and scales must have the same shape (M, n), got {locs.shape} and {scales.shape}")
        if not (np.all(np.isfinite(locs)) and np.all(np.isfinite(scales)) and np.all(scales > 0)):
            raise ValueError("locs must be finite and scales finite and positive")
        self.locs, self.scales = locs, scales
        M, n = locs.shape
        mixture = torch.distributions.Categorical(probs=torch.full((n, M), 1.0 / M, dtype=torch.float64))
        members = torch.distributions.Normal(torch.from_numpy(locs.T.copy()), torch.from_numpy(scales.T.copy()))
        super().__init__(torch.distributions.MixtureSameFamily(mixture, members))

    def cdf(self, y) -> np.ndarray:
        """The mixture's CDF at ``y`` (one value per input)."""
        return scipy.stats.norm.cdf(np.asarray(y, dtype=np.float64)[None, :], self.locs, self.scales).mean(axis=0)

    def quantile(self, q: float, iterations: int = 80) -> np.ndarray:
        """The ``q`` quantile of every mixture (``q`` in (0, 1)), by bisection between the extreme members'
        quantiles."""
        try:
            q = check_probability(q)
        except ValueError as err:
            raise ValueError(f"q must be a probability in (0, 1), got {q!r}") from err
        if isinstance(iterations, bool) or not isinstance(iterations, int | np.integer) or iterations < 1:
            raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
        z = scipy.stats.norm.ppf(q)
        lo, hi = (self.locs + z * self.scales).min(axis=0), (self.locs + z * self.scales).max(axis=0)
        for _ in range(iterations):
            mid = 0.5 * (lo + hi)
            below = self.cdf(mid) < q
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        return 0.5 * (lo + hi)

    def interval(self, prob: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        """Equal-tailed interval ``(lo, hi)`` with probability ``prob``: the mixture's exact quantiles."""
        prob = check_probability(prob)
        return self.quantile(0.5 - prob / 2), self.quantile(0.5 + prob / 2)
