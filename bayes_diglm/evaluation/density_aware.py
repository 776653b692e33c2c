"""A regression predictive that uses p(x): it widens toward the prior predictive where the flow's density is low."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.stats

from .metrics import mean_nll

__all__ = [
    "DensityAwarePredictive",
    "DensityWeighting",
    "conjugate_prior_predictive",
    "density_aware_against_control",
    "fit_constant_weight",
    "fit_density_aware",
    "fit_density_weighting",
]


# ------------------------------------------------------------------------------------------------------
# components: Normal / Student-t predictives as numpy arrays, whatever object they come in
# ------------------------------------------------------------------------------------------------------


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


@dataclass(frozen=True)
class _LocScale:
    """A Normal (``df = inf``) or Student-t predictive per input, from any object with ``loc``, ``scale``[, ``df``]."""

    df: np.ndarray
    loc: np.ndarray
    scale: np.ndarray

    @classmethod
    def of(cls, pred) -> _LocScale:
        if isinstance(pred, cls):
            return pred
        pred = getattr(pred, "distribution", pred)  # the heads' Predictive wraps a torch distribution
        if not (hasattr(pred, "loc") and hasattr(pred, "scale")):
            raise TypeError(f"a predictive needs loc and scale (a Normal or Student-t), got {type(pred).__name__}")
        loc, scale = _numpy(pred.loc), _numpy(pred.scale)
        df = _numpy(pred.df) if hasattr(pred, "df") else np.inf
        loc, scale, df = np.broadcast_arrays(loc, scale, df)
        if loc.ndim != 1:
            raise ValueError(f"predictive parameters must be 1-D (one per input), got shape {loc.shape}")
        return cls(np.asarray(df, dtype=np.float64), loc, scale)

    def _dist(self):
        return scipy.stats.t(np.where(np.isinf(self.df), 1e300, self.df), self.loc, self.scale)

    def log_prob(self, y) -> np.ndarray:
        normal = scipy.stats.norm.logpdf(y, self.loc, self.scale)
        return np.where(np.isinf(self.df), normal, self._dist().logpdf(y))

    def cdf(self, y) -> np.ndarray:
        return np.where(np.isinf(self.df), scipy.stats.norm.cdf(y, self.loc, self.scale), self._dist().cdf(y))

    def ppf(self, q: float) -> np.ndarray:
        return np.where(np.isinf(self.df), scipy.stats.norm.ppf(q, self.loc, self.scale), self._dist().ppf(q))

    @property
    def variance(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.where(np.isinf(self.df), 1.0, np.where(self.df > 2, self.df / (self.df - 2), np.inf))
        return self.scale**2 * factor

    def subset(self, rows) -> _LocScale:
        return _LocScale(self.df[rows], self.loc[rows], self.scale[rows])

    def affine(self, shift: float, factor: float) -> _LocScale:
        return _LocScale(self.df, shift + factor * self.loc, abs(factor) * self.scale)


# ------------------------------------------------------------------------------------------------------
# the weight and the mixture
# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DensityWeighting:
    r"""The weight of the data's predictive at an input of log density :math:`\ell = \log p(x)`:

    .. math:: w(x) = \min\big(1, (p(x) / p_t)^{\kappa}\big) = \exp\big(-\kappa \max(0, t - \ell)\big),

    ``threshold`` :math:`t = \log p_t` (a low quantile of the training inputs' ``log p(x)``) and ``power``
    :math:`\kappa \ge 0`. Inputs at least as likely as the threshold keep the plain predictive exactly
    (:math:`w = 1`); below it the weight falls as a power of the density ratio, which is the form of the
    posterior probability that ``x`` belongs to the training population when its alternative is a broad
    background density (Bayes' rule: :math:`P(\text{in} \mid x) \propto p(x)` once :math:`p(x)` is small),
    tempered by :math:`\kappa` because a flow's log densities in many dimensions are overdispersed.
    ``power = 0`` is the plain predictive everywhere.

    Example:
        >>> DensityWeighting(threshold=-5.0, power=0.5).weight(np.array([0.0, -5.0, -7.0])).round(4)
        array([1.    , 1.    , 0.3679])
    """

    threshold: float
    power: float
    quantile: float | None = None

    def __post_init__(self):
        if not math.isfinite(self.threshold):
            raise ValueError(f"threshold must be finite, got {self.threshold!r}")
        if not (math.isfinite(self.power) and self.power >= 0):
            raise ValueError(f"power must be a finite non-negative number, got {self.power!r}")

    def weight(self, log_px) -> np.ndarray:
        """``w(x)`` in ``[0, 1]`` for each ``log p(x)`` (``-inf`` gives 0 when ``power > 0``)."""
        ell = np.asarray(log_px, dtype=np.float64)
        if np.isnan(ell).any():
            raise ValueError("log_px has NaN values")
        if self.power == 0:
            return np.ones_like(ell)
        return np.exp(-self.power * np.maximum(0.0, self.threshold - ell))

    def predictive(self, plain, prior, log_px) -> DensityAwarePredictive:
        """The density-aware predictive at inputs with these ``log p(x)`` values."""
        return DensityAwarePredictive(plain, prior, self.weight(log_px))


class DensityAwarePredictive:
    r"""The mixture :math:`p^*(y \mid x) = w(x)\, p(y \mid x, \mathcal D) + (1 - w(x))\, p_0(y \mid x)`.

    :math:`p(y \mid x, \mathcal D)` (``plain``) is a regression head's posterior predictive and
    :math:`p_0(y \mid x)` (``prior``) its prior predictive (:func:`conjugate_prior_predictive`), both Normal or
    Student-t per input (any object with ``loc``, ``scale`` and, for Student-t, ``df``: a torch distribution,
    a head's ``Predictive`` wrapping one, or the baselines' predictives); ``weight`` is :math:`w(x)`
    (:class:`DensityWeighting`). Where :math:`w = 1` this *is* the plain predictive; as
    :math:`\log p(x) \to -\infty`, :math:`w \to 0` and it becomes the prior predictive: an input unlike
    anything in the training data gets the predictive of a model that has seen no data.

    Mean :math:`w\mu + (1-w)\mu_0`, variance :math:`w(\sigma^2 + \mu^2) + (1-w)(\sigma_0^2 + \mu_0^2) - \bar\mu^2`
    (``inf`` where a component with weight has none), intervals are the mixture's exact quantiles (bisection).
    """

    def __init__(self, plain, prior, weight):
        self.plain, self.prior = _LocScale.of(plain), _LocScale.of(prior)
        w = np.asarray(weight, dtype=np.float64)
        w = np.broadcast_to(w, self.plain.loc.shape) if w.ndim == 0 else w
        if w.shape != self.plain.loc.shape or self.prior.loc.shape != w.shape:
            raise ValueError(f"plain {self.plain.loc.shape}, prior {self.prior.loc.shape} and weight {w.shape} "
                             "must have one value per input")
        if np.isnan(w).any() or w.min() < 0 or w.max() > 1:
            raise ValueError("weight must lie in [0, 1]")
        self.weight = w

    @property
    def mean(self) -> np.ndarray:
        return self.weight * self.plain.loc + (1 - self.weight) * self.prior.loc

    @property
    def variance(self) -> np.ndarray:
        w = self.weight
        with np.errstate(invalid="ignore"):
            second = (np.where(w > 0, w * (self.plain.variance + self.plain.loc**2), 0.0)
                      + np.where(w < 1, (1 - w) * (self.prior.variance + self.prior.loc**2), 0.0))
        return second - self.mean**2

    def log_prob(self, y) -> np.ndarray:
        y = _numpy(y)
        with np.errstate(divide="ignore"):
            return np.logaddexp(np.log(self.weight) + self.plain.log_prob(y),
                                np.log1p(-self.weight) + self.prior.log_prob(y))

    def cdf(self, y) -> np.ndarray:
        y = _numpy(y)
        return self.weight * self.plain.cdf(y) + (1 - self.weight) * self.prior.cdf(y)

    def quantile(self, q: float, iterations: int = 200) -> np.ndarray:
        """The ``q`` quantile per input, by bisection between the components' own ``q`` quantiles.

        The bisection runs on ``asinh(y)``, so a prior predictive with very heavy tails (quantiles of 1e100
        and beyond) still brackets the answer to full precision; ``w = 1`` and ``w = 0`` take the
        component's own quantile.
        """
        if not 0 < q < 1:
            raise ValueError(f"q must lie in (0, 1), got {q!r}")
        a, b = self.plain.ppf(q), self.prior.ppf(q)
        big = np.finfo(np.float64).max / 4
        lo = np.arcsinh(np.clip(np.minimum(a, b), -big, big))
        hi = np.arcsinh(np.clip(np.maximum(a, b), -big, big))
        for _ in range(iterations):
            mid = 0.5 * (lo + hi)
            below = self.cdf(np.sinh(mid)) < q
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        out = np.sinh(0.5 * (lo + hi))
        return np.where(self.weight == 1, a, np.where(self.weight == 0, b, out))

    def interval(self, prob: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        """Equal-tailed interval with probability ``prob``."""
        if not 0 < prob < 1:
            raise ValueError(f"prob must lie in (0, 1), got {prob!r}")
        return self.quantile(0.5 - prob / 2), self.quantile(0.5 + prob / 2)

    def affine(self, shift: float, factor: float) -> DensityAwarePredictive:
        """The predictive of ``shift + factor * y`` (e.g. standardised units back to minutes)."""
        return DensityAwarePredictive(self.plain.affine(shift, factor), self.prior.affine(shift, factor),
                                      self.weight)


# ------------------------------------------------------------------------------------------------------
# the prior predictive of the conjugate head, and fitting the weight on a validation slice
# ------------------------------------------------------------------------------------------------------


def conjugate_prior_predictive(head, Z, sample_weight=None) -> _LocScale:
    r"""Prior predictive of a fitted ``ConjugateLinearRegression`` (its posterior predictive with no data):

    .. math:: y^* \sim t_{2a_0}\Big(x^{*T}\mu_0,\ \frac{b_0}{a_0}\big(w^{*-1} + x^{*T}\Lambda_0^{-1}x^*\big)\Big),

    with ``x* = [z*, 1]`` when the head fits an intercept, the head's prior (``prior_mean_``,
    ``prior_precision_``, ``a0_``, ``b0_``) and known relative noise precisions ``w*`` (``sample_weight``,
    default 1). :math:`\Lambda_0^{-1}` enters through its Cholesky factor and a triangular solve.
    """
    for attr in ("prior_mean_", "prior_precision_", "a0_", "b0_"):
        if not hasattr(head, attr):
            raise TypeError(f"head must be a fitted ConjugateLinearRegression (missing {attr})")
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2:
        raise ValueError(f"Z must be 2-D (n, D), got shape {Z.shape}")
    X = np.hstack([Z, np.ones((Z.shape[0], 1))]) if getattr(head, "fit_intercept", False) else Z
    if X.shape[1] != head.prior_mean_.shape[0]:
        raise ValueError(f"Z has {Z.shape[1]} features; the head's prior is over {head.prior_mean_.shape[0]} "
                         "coefficients")
    noise = np.ones(X.shape[0])
    if sample_weight is not None:
        w = np.asarray(sample_weight, dtype=np.float64)
        if w.shape != noise.shape or not np.all(w > 0):
            raise ValueError(f"sample_weight must hold {X.shape[0]} positive relative precisions")
        noise = 1.0 / w
    L0 = np.linalg.cholesky(head.prior_precision_)
    V = scipy.linalg.solve_triangular(L0, X.T, lower=True, check_finite=False)
    scale = np.sqrt(head.b0_ / head.a0_ * (noise + (V * V).sum(axis=0)))
    df = np.full(X.shape[0], 2.0 * head.a0_)
    return _LocScale(df, X @ head.prior_mean_, scale)


_QUANTILES = (0.0, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5)
_POWERS = (0.0, *np.logspace(-5, 1, 31).tolist())


def fit_density_weighting(log_px_train, log_px_val, plain_val, prior_val, y_val, *,
                          quantiles=_QUANTILES, powers=_POWERS) -> DensityWeighting:
    r"""Choose the threshold quantile and the power of :class:`DensityWeighting` on a validation slice.

    The threshold is the ``quantile`` of the *training* inputs' ``log p(x)`` (0 = the least likely training
    input); ``(quantile, power)`` maximise the validation mean of :math:`\log p^*(y \mid x)` over the grid.
    ``power = 0`` (the plain predictive) is in the grid, so the validation NLL of the result is never above the
    plain head's; ties go to the plainer (smaller power).
    """
    train = np.asarray(log_px_train, dtype=np.float64)
    val = np.asarray(log_px_val, dtype=np.float64)
    if train.ndim != 1 or train.size == 0 or not np.isfinite(train).all():
        raise ValueError("log_px_train must be a non-empty 1-D array of finite values")
    plain, prior = _LocScale.of(plain_val), _LocScale.of(prior_val)
    y = _numpy(y_val)
    if not (val.shape == y.shape == plain.loc.shape == prior.loc.shape):
        raise ValueError("log_px_val, plain_val, prior_val and y_val must have one value per validation input")
    q_grid = np.asarray(quantiles, dtype=np.float64)
    p_grid = np.sort(np.asarray(powers, dtype=np.float64))
    if q_grid.min() < 0 or q_grid.max() > 1 or p_grid.min() < 0:
        raise ValueError("quantiles must lie in [0, 1] and powers be non-negative")
    lp_plain, lp_prior = plain.log_prob(y), prior.log_prob(y)
    best = (float(lp_plain.mean()), 0.0, float(q_grid[0]))
    for q in q_grid:
        t = float(np.quantile(train, q))
        for power in p_grid[p_grid > 0]:
            w = DensityWeighting(t, float(power)).weight(val)
            with np.errstate(divide="ignore"):
                value = float(np.logaddexp(np.log(w) + lp_plain, np.log1p(-w) + lp_prior).mean())
            if value > best[0] + 1e-12:
                best = (value, float(power), float(q))
    _, power, q = best
    return DensityWeighting(float(np.quantile(train, q)), power, q)


#: the constant weights tried by :func:`fit_constant_weight`: from 1 - 1e-5 down to 1 - 10^-0.3 (about 0.5)
CONSTANT_WEIGHTS = tuple((1.0 - np.logspace(-5, -0.3, 48)).tolist())


def fit_constant_weight(plain_val, prior_val, y_val, *, weights=CONSTANT_WEIGHTS) -> float:
    r"""The one weight :math:`w` (the same for every input) of :math:`w\, p(y \mid x, \mathcal D) + (1 - w)\, p_0(y
    \mid x)` with the lowest validation NLL over the grid ``weights``: the control of the density-aware
    predictive, the same two components without ``p(x)`` (what ``p(x)`` adds is the difference). Ties go to the
    first (largest) weight.

    Examples
    --------
    >>> import torch
    >>> plain = torch.distributions.Normal(torch.zeros(3, dtype=torch.float64), 1.0)
    >>> prior = torch.distributions.Normal(torch.zeros(3, dtype=torch.float64), 10.0)
    >>> fit_constant_weight(plain, prior, np.zeros(3)) == CONSTANT_WEIGHTS[0]  # no outliers: nearly all plain
    True
    """
    grid = np.asarray(weights, dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0 or np.any((grid < 0) | (grid > 1)):
        raise ValueError("weights must be a non-empty 1-D grid of values in [0, 1]")
    nll = [mean_nll(DensityAwarePredictive(plain_val, prior_val, w).log_prob(y_val)) for w in grid]
    return float(grid[int(np.argmin(nll))])


def density_aware_against_control(log_px_train, val, test, **grids) -> dict:
    r"""The density-aware predictive and its constant-weight control, both fitted on a validation slice.

    ``val`` is ``(log_px, plain, prior, y)`` and ``test`` ``(log_px, plain, prior)``: each slice's ``log p(x)``,
    the head's posterior predictive, its prior predictive (:func:`conjugate_prior_predictive`) and, on
    validation, the targets. :func:`fit_density_weighting` chooses the threshold and power
    (``grids``: its ``quantiles`` / ``powers``) and :func:`fit_constant_weight` the control's one weight.

    Returns a dict: ``weighting`` (:class:`DensityWeighting`), ``aware`` and ``control`` (the test predictives,
    :class:`DensityAwarePredictive`), ``constant_weight``, and ``val_nll`` with the validation mean NLL of the
    ``plain``, ``density_aware`` and ``constant_weight`` predictives (nats, in the units of ``y``).
    """
    (log_px_val, plain_val, prior_val, y_val), (log_px_test, plain_test, prior_test) = val, test
    weighting = fit_density_weighting(log_px_train, log_px_val, plain_val, prior_val, y_val, **grids)
    constant = fit_constant_weight(plain_val, prior_val, y_val)
    nll = {"plain": mean_nll(_LocScale.of(plain_val).log_prob(_numpy(y_val))),
           "density_aware": mean_nll(weighting.predictive(plain_val, prior_val, log_px_val).log_prob(y_val)),
           "constant_weight": mean_nll(DensityAwarePredictive(plain_val, prior_val, constant).log_prob(y_val))}
    return {"weighting": weighting, "aware": weighting.predictive(plain_test, prior_test, log_px_test),
            "control": DensityAwarePredictive(plain_test, prior_test, constant), "constant_weight": constant,
            "val_nll": nll}


def fit_density_aware(estimator, log_px_train, val: tuple, test: tuple, *, nll_offset: float = 0.0,
                      **grids) -> dict:
    r"""The density-aware predictive of a fitted DIGLM regressor's conjugate head, and its control.

    For each slice one pass through the flow (:meth:`~bayes_diglm.models.DIGLMRegressor.head_inputs`) gives the
    features and noise weights from which both components come: the head's posterior predictive and its prior
    predictive (:func:`conjugate_prior_predictive`); then :func:`density_aware_against_control` fits the
    threshold, the power and the control's one weight on validation.

    Parameters
    ----------
    estimator : DIGLMRegressor
        Fitted, with a ``ConjugateLinearRegression`` posterior head.
    log_px_train : array-like
        ``log p(x)`` of (a sample of) the training inputs; the threshold is one of its quantiles.
    val : tuple
        ``(X_val, y_val, log_px_val)``.
    test : tuple
        ``(X_test, log_px_test)``.
    nll_offset : float, default 0
        Added to every NLL of the summary (``log(y_std)`` reports standardised targets in their own units).
    **grids
        ``quantiles`` / ``powers`` of :func:`fit_density_weighting`.

    Returns
    -------
    dict
        :func:`density_aware_against_control`'s (``weighting``, ``aware``, ``control``, ``constant_weight``,
        ``val_nll``), plus ``plain_val`` and ``plain_test`` (the head's posterior predictives on the two slices)
        and ``summary``: the threshold, its quantile and the power; the validation NLL of the plain head (its
        own ``log_prob``), of the density-aware predictive and of the control, and the ratio of the first two;
        the share of test inputs below the threshold and their mean weight; the control's weight.

    Examples
    --------
    >>> import numpy as np
    >>> from bayes_diglm.models import DIGLMRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 2)); y = X[:, 0] + 0.3 * rng.normal(size=200)
    >>> reg = DIGLMRegressor(posterior="conjugate", epochs=1, flow_kwargs={"num_layers": 2}, quiet=True)
    >>> reg = reg.fit(X[:120], y[:120])
    >>> px = reg.score_samples(X)
    >>> fit = fit_density_aware(reg, px[:120], (X[120:160], y[120:160], px[120:160]), (X[160:], px[160:]))
    >>> fit["aware"].weight.shape, bool(np.all(fit["aware"].weight <= 1))
    ((40,), True)
    """
    if not (isinstance(val, tuple) and len(val) == 3):
        raise ValueError(f"val must be a tuple (X_val, y_val, log_px_val), got {type(val).__name__}")
    if not (isinstance(test, tuple) and len(test) == 2):
        raise ValueError(f"test must be a tuple (X_test, log_px_test), got {type(test).__name__}")
    for attr in ("head_inputs", "posterior_"):
        if not hasattr(estimator, attr):
            raise TypeError(f"estimator must be a fitted DIGLMRegressor (missing {attr}), got "
                            f"{type(estimator).__name__}")

    def predictives(X):  # one flow pass for both components
        Z, context = estimator.head_inputs(X)
        head = estimator.posterior_
        return head.predict_dist(Z, **context), conjugate_prior_predictive(head, Z, context.get("sample_weight"))

    if not (isinstance(nll_offset, int | float) and math.isfinite(nll_offset)):
        raise ValueError(f"nll_offset must be a finite number, got {nll_offset!r}")
    (X_val, y_val, log_px_val), (X_test, log_px_test) = val, test
    plain_val, prior_val = predictives(X_val)
    plain_test, prior_test = predictives(X_test)
    fit = density_aware_against_control(log_px_train, (log_px_val, plain_val, prior_val, y_val),
                                        (log_px_test, plain_test, prior_test), **grids)
    nll = {k: float(np.asarray(v, dtype=np.float64) + nll_offset) for k, v in fit["val_nll"].items()}
    nll["plain"] = float(np.asarray(mean_nll(plain_val.log_prob(y_val)), dtype=np.float64) + nll_offset)
    w = fit["weighting"]
    summary = {"threshold_log_px": w.threshold, "threshold_quantile": w.quantile, "power": w.power,
               "val_nll_plain": nll["plain"], "val_nll_density_aware": nll["density_aware"],
               "val_nll_ratio": nll["density_aware"] / nll["plain"],
               "test_rows_below_threshold": float(np.mean(np.asarray(log_px_test) < w.threshold)),
               "test_mean_weight": float(fit["aware"].weight.mean()), "constant_weight": fit["constant_weight"],
               "val_nll_constant_weight": nll["constant_weight"]}
    return {**fit, "plain_val": plain_val, "plain_test": plain_test, "summary": summary}
