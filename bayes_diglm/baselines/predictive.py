"""Predictive distributions of the baselines, one interface with every row of an experiment's table."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.special
import scipy.stats

__all__ = ["GaussianPredictive", "StudentTPredictive", "GaussianMixturePredictive"]


@dataclass(frozen=True)
class GaussianPredictive:
    """Independent ``N(loc_i, scale_i^2)`` predictives, one per test point."""

    loc: np.ndarray
    scale: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        return self.loc

    def log_prob(self, y) -> np.ndarray:
        return scipy.stats.norm.logpdf(np.asarray(y, dtype=np.float64), self.loc, self.scale)

    def interval(self, prob: float) -> tuple[np.ndarray, np.ndarray]:
        half = scipy.stats.norm.ppf(0.5 + prob / 2) * self.scale
        return self.loc - half, self.loc + half

    def affine(self, shift: float, factor: float) -> GaussianPredictive:
        """The predictive of ``shift + factor * y`` (e.g. standardised units to minutes)."""
        return GaussianPredictive(shift + factor * self.loc, abs(factor) * self.scale)


@dataclass(frozen=True)
class StudentTPredictive:
    """Independent Student-t predictives ``t_df(loc_i, scale_i)`` (the conjugate head's predictive)."""

    df: float
    loc: np.ndarray
    scale: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        return self.loc

    def log_prob(self, y) -> np.ndarray:
        return scipy.stats.t.logpdf(np.asarray(y, dtype=np.float64), self.df, self.loc, self.scale)

    def interval(self, prob: float) -> tuple[np.ndarray, np.ndarray]:
        half = scipy.stats.t.ppf(0.5 + prob / 2, self.df) * self.scale
        return self.loc - half, self.loc + half

    def affine(self, shift: float, factor: float) -> StudentTPredictive:
        """The predictive of ``shift + factor * y``."""
        return StudentTPredictive(self.df, shift + factor * self.loc, abs(factor) * self.scale)


@dataclass(frozen=True)
class GaussianMixturePredictive:
    r"""Equal-weight mixtures of Gaussians, one per test point (a deep ensemble's predictive).

    ``locs`` and ``scales`` have shape (M, n). Mean :math:`\bar\mu = \frac1M\sum_m \mu_m`, variance
    :math:`\frac1M\sum_m(\sigma_m^2 + \mu_m^2) - \bar\mu^2`; the density is the mixture's own, and
    intervals are the mixture's exact quantiles (bisection on its CDF).
    """

    locs: np.ndarray
    scales: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        return self.locs.mean(axis=0)

    @property
    def variance(self) -> np.ndarray:
        return (self.scales**2 + self.locs**2).mean(axis=0) - self.mean**2

    def log_prob(self, y) -> np.ndarray:
        comp = scipy.stats.norm.logpdf(np.asarray(y, dtype=np.float64)[None, :], self.locs, self.scales)
        return scipy.special.logsumexp(comp, axis=0) - math.log(self.locs.shape[0])

    def cdf(self, y) -> np.ndarray:
        return scipy.stats.norm.cdf(np.asarray(y, dtype=np.float64)[None, :], self.locs, self.scales).mean(axis=0)

    def quantile(self, q: float, iterations: int = 80) -> np.ndarray:
        """The ``q`` quantile of every mixture, by bisection between the extreme components' quantiles."""
        z = scipy.stats.norm.ppf(q)
        lo, hi = (self.locs + z * self.scales).min(axis=0), (self.locs + z * self.scales).max(axis=0)
        for _ in range(iterations):
            mid = 0.5 * (lo + hi)
            below = self.cdf(mid) < q
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        return 0.5 * (lo + hi)

    def interval(self, prob: float) -> tuple[np.ndarray, np.ndarray]:
        return self.quantile(0.5 - prob / 2), self.quantile(0.5 + prob / 2)

    def affine(self, shift: float, factor: float) -> GaussianMixturePredictive:
        """The predictive of ``shift + factor * y``."""
        return GaussianMixturePredictive(shift + factor * self.locs, abs(factor) * self.scales)
