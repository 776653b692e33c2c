"""A regression predictive that uses p(x) by inflating the plain predictive's variance where the density is low."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .density_aware import _LocScale, _numpy

__all__ = ["VarianceInflation", "fit_variance_inflation", "variance_inflation_against_controls"]


def _softplus(u: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, u)


@dataclass(frozen=True)
class VarianceInflation:
    r"""The plain predictive with its scale widened as the input's log density :math:`\ell = \log p(x)` falls:

    .. math::

        p^*(y \mid x) = t_{\nu(x)}\big(\mu(x),\ s^2(x)\, g(\ell)\big), \qquad
        g(\ell) = 1 + c\,\tau\,\operatorname{softplus}\!\Big(\frac{t - \ell}{\tau}\Big),

    where :math:`t_\nu(\mu, s^2)` is the head's own posterior predictive (a Normal when :math:`\nu = \infty`),
    ``threshold`` :math:`t` is a low quantile of the training inputs' ``log p(x)``, ``slope``
    :math:`c \ge 0` is the extra variance, in units of the plain variance, per nat of log density below
    :math:`t`, and ``temperature`` :math:`\tau > 0` (nats) smooths the bend (:math:`\tau \to 0` is the hinge
    :math:`1 + c \max(0, t - \ell)`). The location and the degrees of freedom are the plain predictive's.

    Limits. At typical inputs, :math:`\ell - t \gg \tau`, :math:`g - 1 = c\tau e^{-(\ell - t)/\tau}(1 + o(1))`:
    the plain predictive up to an exponentially small widening (``slope = 0`` is the plain predictive
    everywhere). As :math:`\ell \to -\infty`, :math:`g \sim 1 + c(t - \ell) \to \infty`: the variance grows
    without bound (linearly in the nats of density lost), so the predictive tends to a flat, infinite-variance
    one, not to the prior predictive. The form is a heteroscedastic noise model whose extra variance is a
    function of :math:`\log p(x)` alone: the head learned its noise where the data are, and an input far
    from them is taken to carry error of unknown size that grows with its distance in density.

    Example:
        >>> VarianceInflation(threshold=-5.0, slope=2.0, temperature=0.01).factor(np.array([0.0, -6.0])).round(4)
        array([1., 3.])
    """

    threshold: float
    slope: float
    temperature: float = 1.0
    quantile: float | None = None

    def __post_init__(self):
        if not math.isfinite(self.threshold):
            raise ValueError(f"threshold must be finite, got {self.threshold!r}")
        if not (math.isfinite(self.slope) and self.slope >= 0):
            raise ValueError(f"slope must be a finite non-negative number, got {self.slope!r}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be a finite positive number, got {self.temperature!r}")

    def factor(self, log_px) -> np.ndarray:
        """The variance factor g(log p(x)) >= 1 per input (``-inf`` gives ``inf`` when ``slope > 0``)."""
        ell = np.asarray(log_px, dtype=np.float64)
        if np.isnan(ell).any():
            raise ValueError("log_px has NaN values")
        if self.slope == 0:
            return np.ones_like(ell)
        tau = self.temperature
        return 1.0 + self.slope * tau * _softplus((self.threshold - ell) / tau)

    def predictive(self, plain, log_px) -> _LocScale:
        """The widened predictive (``loc``, ``scale``, ``df``; ``log_prob``, ``cdf``, ``ppf``, ``variance``)."""
        plain = _LocScale.of(plain)
        g = self.factor(log_px)
        if g.shape != plain.loc.shape:
            raise ValueError(f"log_px {g.shape} and the predictive {plain.loc.shape} must have one value per input")
        return _LocScale(plain.df, plain.loc, plain.scale * np.sqrt(g))


_QUANTILES = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9)
_SLOPES = (0.0, *np.logspace(-4, 2, 37).tolist())


def fit_variance_inflation(log_px_train, log_px_val, plain_val, y_val, *, temperature: float = 1.0,
                           quantiles=_QUANTILES, slopes=_SLOPES) -> VarianceInflation:
    r"""Choose the threshold quantile and the slope of :class:`VarianceInflation` on a validation slice.

    The threshold is the ``quantile`` of the *training* inputs' ``log p(x)``; ``(quantile, slope)`` maximise
    the validation mean of :math:`\log p^*(y \mid x)` over the grid (``temperature`` fixed). ``slope = 0``
    (the plain predictive) is in the grid, so the validation NLL of the result is never above the plain
    head's; ties go to the plainer (smaller slope, then lower quantile).
    """
    train = np.asarray(log_px_train, dtype=np.float64)
    val = np.asarray(log_px_val, dtype=np.float64)
    if train.ndim != 1 or train.size == 0 or not np.isfinite(train).all():
        raise ValueError("log_px_train must be a non-empty 1-D array of finite values")
    plain = _LocScale.of(plain_val)
    y = _numpy(y_val)
    if not (val.shape == y.shape == plain.loc.shape):
        raise ValueError("log_px_val, plain_val and y_val must have one value per validation input")
    q_grid = np.asarray(quantiles, dtype=np.float64)
    s_grid = np.sort(np.asarray(slopes, dtype=np.float64))
    if q_grid.size == 0 or q_grid.min() < 0 or q_grid.max() > 1 or s_grid.min() < 0:
        raise ValueError("quantiles must lie in [0, 1] and slopes be non-negative")
    best = (float(plain.log_prob(y).mean()), 0.0, float(q_grid[0]))
    for q in q_grid:
        t = float(np.quantile(train, q))
        for slope in s_grid[s_grid > 0]:
            value = float(VarianceInflation(t, float(slope), temperature).predictive(plain, val).log_prob(y).mean())
            if value > best[0] + 1e-12:
                best = (value, float(slope), float(q))
    _, slope, q = best
    return VarianceInflation(float(np.quantile(train, q)), slope, temperature, q)


def _mean_nll(pred: _LocScale, y: np.ndarray) -> float:
    return float(-pred.log_prob(y).mean())


def variance_inflation_against_controls(log_px_train, val, test, *, temperature: float = 1.0,
                                        seed: int = 0) -> dict:
    r""":class:`VarianceInflation` fitted on validation, and its two controls, as mean NLL on both slices.

    ``val`` and ``test`` are ``(log_px, plain, y)`` triples. The controls answer "does p(x) itself pay?":
    ``constant``, the plain variance times one factor :math:`k \ge 1` for every input (fitted on validation
    over a grid, :math:`k = 1` included), and ``permuted``, the same two-parameter form fitted and evaluated
    with each slice's ``log p(x)`` randomly permuted among its inputs (the same distribution of widening,
    no link to the input). Returns ``{"p(x)" | "constant" | "permuted" | "plain": {"val": nll, "test": nll}}``
    (nats, in the units of ``y``) with the fitted parameters.
    """
    (lv, pv, yv), (lt, pt, yt) = val, test
    pv, pt, yv, yt = _LocScale.of(pv), _LocScale.of(pt), _numpy(yv), _numpy(yt)
    lv, lt = np.asarray(lv, dtype=np.float64), np.asarray(lt, dtype=np.float64)
    out = {"plain": {"val": _mean_nll(pv, yv), "test": _mean_nll(pt, yt)}}
    fitted = fit_variance_inflation(log_px_train, lv, pv, yv, temperature=temperature)
    out["p(x)"] = {"val": _mean_nll(fitted.predictive(pv, lv), yv), "test": _mean_nll(fitted.predictive(pt, lt), yt),
                   "threshold": fitted.threshold, "quantile": fitted.quantile, "slope": fitted.slope,
                   "temperature": temperature}
    widen = lambda p, k: _LocScale(p.df, p.loc, p.scale * math.sqrt(k))  # noqa: E731
    factors = np.exp(np.linspace(0.0, math.log(20.0), 121))
    k = float(factors[int(np.argmin([_mean_nll(widen(pv, f), yv) for f in factors]))])
    out["constant"] = {"val": _mean_nll(widen(pv, k), yv), "test": _mean_nll(widen(pt, k), yt), "factor": k}
    rng = np.random.default_rng(seed)
    lv_perm, lt_perm = rng.permutation(lv), rng.permutation(lt)
    perm = fit_variance_inflation(log_px_train, lv_perm, pv, yv, temperature=temperature)
    out["permuted"] = {"val": _mean_nll(perm.predictive(pv, lv_perm), yv),
                       "test": _mean_nll(perm.predictive(pt, lt_perm), yt),
                       "quantile": perm.quantile, "slope": perm.slope}
    return out
