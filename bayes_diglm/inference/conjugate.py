"""Exact Normal-Inverse-Gamma posterior over the linear head of a DIGLM (Gaussian likelihood)."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyro.distributions as dist
import scipy.linalg
import scipy.optimize
import scipy.special
import scipy.stats
import torch
from sklearn.base import RegressorMixin, clone
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from bayes_diglm._validation import (
    NON_NEGATIVE,
    POSITIVE,
    as_float_tensor,
    check_positive,
    check_same_length,
    check_targets,
)
from bayes_diglm.likelihoods import Gaussian

from .base import (
    ContextTags,
    PosteriorHead,
    Predictive,
    _refuse_overflow,
    _refuse_strings,
    check_prior_grouping,
    check_probability,
)
from .nig import NormalInverseGamma
from .pyro_model import features, glm_model

__all__ = ["ConjugateLinearRegression", "NIGPosterior", "SufficientStats", "fit_in_chunks", "fit_on_features"]

# Elements per chunk of rows (16M: 64 MiB of float32): Z^T Z is summed in float64 over chunks, so float32
# input accumulates rounding over one chunk only (about 3x less error than one GEMM over 1e6 x 64 rows),
# while few, large GEMMs keep the thread-pool overhead small on a loaded machine.
_CHUNK_ELEMENTS = 1 << 24


# ----------------------------------------------------------------------------------------------------------
# sufficient statistics
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SufficientStats:
    r"""Additive sufficient statistics of weighted linear regression, in float64.

    For rows ``z_i`` (with a trailing 1 when ``has_intercept``), targets ``y_i`` and known relative noise
    precisions ``w_i`` (``y_i ~ N(z_i^T beta, sigma^2 / w_i)``):

    .. math::
        ZtZ = \sum_i w_i z_i z_i^T,\quad Zty = \sum_i w_i z_i y_i,\quad yty = \sum_i w_i y_i^2,\quad
        n = \#\{i\},\quad sum\_w = \sum_i w_i,\quad sum\_log\_w = \sum_i \log w_i.

    Every field is a sum over observations, so statistics of chunks (or of processes) add: ``s1 + s2``
    equals the statistics of the concatenated data. :meth:`as_tensor` packs them into one flat float64
    tensor that ``torch.distributed.all_reduce`` can sum; :meth:`from_tensor` unpacks it.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Z, y = rng.normal(size=(10, 3)), rng.normal(size=10)
    >>> s = SufficientStats.from_data(Z[:4], y[:4]) + SufficientStats.from_data(Z[4:], y[4:])
    >>> bool(np.allclose(s.ZtZ, Z.T @ Z)), s.n
    (True, 10.0)
    """

    ZtZ: np.ndarray
    Zty: np.ndarray
    yty: float
    n: float
    sum_w: float
    sum_log_w: float
    has_intercept: bool = False

    @property
    def dim(self) -> int:
        """Dimension of the design (features, plus one for the intercept column when present)."""
        return int(self.Zty.shape[0])

    @classmethod
    def zeros(cls, dim: int, *, has_intercept: bool = False) -> SufficientStats:
        """Statistics of no data (the identity of ``+``)."""
        return cls(np.zeros((dim, dim)), np.zeros(dim), 0.0, 0.0, 0.0, 0.0, has_intercept)

    @classmethod
    def from_data(cls, Z, y, sample_weight=None, *, fit_intercept: bool = False) -> SufficientStats:
        """Statistics of ``(Z, y)`` with optional per-row precisions; ``fit_intercept`` appends a 1 column.

        ``Z`` may be float32: ``Z^T Z`` is then computed in float32 chunks of rows and summed in float64.
        """
        Zt, yt, wt = _check_training_data(Z, y, sample_weight)
        return _stats_from_tensors(Zt, yt, wt, fit_intercept)

    def __add__(self, other: SufficientStats) -> SufficientStats:
        if not isinstance(other, SufficientStats):
            return NotImplemented
        if other.dim != self.dim or other.has_intercept != self.has_intercept:
            raise ValueError(
                f"cannot merge statistics of dimension {self.dim} (has_intercept={self.has_intercept}) with "
                f"dimension {other.dim} (has_intercept={other.has_intercept})"
            )
        return SufficientStats(
            self.ZtZ + other.ZtZ,
            self.Zty + other.Zty,
            self.yty + other.yty,
            self.n + other.n,
            self.sum_w + other.sum_w,
            self.sum_log_w + other.sum_log_w,
            self.has_intercept,
        )

    def merge(self, *others: SufficientStats) -> SufficientStats:
        """Sum of ``self`` and ``others`` (statistics of all their data together)."""
        out = self
        for other in others:
            out = out + other
        return out

    def as_tensor(self) -> torch.Tensor:
        """Flat float64 tensor ``[ZtZ.ravel(), Zty, yty, n, sum_w, sum_log_w]`` for ``all_reduce(SUM)``."""
        scalars = np.array([self.yty, self.n, self.sum_w, self.sum_log_w])
        return torch.from_numpy(np.concatenate([self.ZtZ.ravel(), self.Zty, scalars]))

    @classmethod
    def from_tensor(cls, flat: torch.Tensor, *, has_intercept: bool = False) -> SufficientStats:
        """Inverse of :meth:`as_tensor` (the dimension is read from the length ``D*D + D + 4``)."""
        arr = torch.as_tensor(flat).detach().cpu().to(torch.float64).numpy()
        if arr.ndim != 1:
            raise ValueError(f"flat must be one-dimensional, got shape {arr.shape}")
        dim = int(round((-1 + math.sqrt(1 + 4 * (arr.size - 4))) / 2))
        if dim * dim + dim + 4 != arr.size or dim < 1:
            raise ValueError(f"flat has length {arr.size}, which is not D*D + D + 4 for any D >= 1")
        ZtZ = arr[: dim * dim].reshape(dim, dim).copy()
        Zty = arr[dim * dim : dim * dim + dim].copy()
        yty, n, sum_w, sum_log_w = (float(v) for v in arr[dim * dim + dim :])
        return cls(ZtZ, Zty, yty, n, sum_w, sum_log_w, has_intercept)


def _float_tensor(x, name: str, ndim: int, *, check_finite: bool = True) -> torch.Tensor:
    """``as_float_tensor`` with a fast path for float tensors/arrays of the right rank.

    The fast path checks finiteness with one sum (NaN/Inf propagate), or not at all with
    ``check_finite=False`` when the caller checks a product of ``x`` instead (see :func:`_check_finite_stats`);
    anything else goes through ``as_float_tensor``, which raises the precise error.
    """
    if isinstance(x, np.ndarray) and x.dtype in (np.float32, np.float64):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dim() == ndim and x.numel() > 0:
        x = x.detach().cpu()
        if not check_finite or bool(torch.isfinite(x.sum())):
            return x
    return as_float_tensor(x, name, ndim=ndim).detach().cpu()


def _check_finite_stats(stats: SufficientStats, Z: torch.Tensor) -> None:
    """NaN/Inf anywhere in ``Z`` make ``diag(Z^T W Z)`` non-finite: check it instead of every entry of ``Z``."""
    if np.all(np.isfinite(stats.ZtZ)) and np.all(np.isfinite(stats.Zty)):
        return
    as_float_tensor(Z, "Z")  # raises "Z contains k NaN or infinite value(s)"
    raise ValueError(f"Z has values so large that Z^T Z overflows in {Z.dtype}; rescale the features")


def _check_training_data(Z, y, sample_weight):
    Zt = _float_tensor(Z, "Z", 2, check_finite=False)  # checked through Z^T Z by _stats_from_tensors
    if Zt.dtype not in (torch.float32, torch.float64):
        Zt = Zt.to(torch.float32)
    yt = _float_tensor(y, "y", 1).to(torch.float64)
    wt = None
    if sample_weight is not None:
        wt = _float_tensor(sample_weight, "sample_weight", 1).to(torch.float64)
        if bool((wt <= 0).any()):
            raise ValueError(f"sample_weight must be positive (noise precisions), got min {float(wt.min())}")
    check_same_length(Z=Zt, y=yt, sample_weight=wt)
    return Zt, yt, wt


def _row_chunks(n: int, d: int):
    step = max(4096, _CHUNK_ELEMENTS // max(d, 1))
    for start in range(0, n, step):
        yield slice(start, min(start + step, n))


# Rows per sub-chunk inside a chunk (about 1 MiB of float32 at D = 64): the matrix-vector products and column
# sums of a sub-chunk run right after its Z^T Z update, while the rows are still in cache, instead of as passes
# of their own over the whole chunk from memory (benchmarks/bench_conjugate.py).
_CACHE_ELEMENTS = 1 << 18


def _chunk_products(Zc: torch.Tensor, yc: torch.Tensor, root_w: torch.Tensor | None, intercept: bool):
    """``(Z^T W Z, Z^T W y, Z^T sqrt(w))`` of one chunk in its dtype, summed over cache-sized sub-chunks.

    The sums stay in the chunk's dtype (float32 input: one chunk's rounding, as one GEMM over it would) and
    the caller adds them up in float64.
    """
    n, d = Zc.shape
    step = max(256, _CACHE_ELEMENTS // max(d, 1))
    ZtZ, Zty = Zc.new_zeros(d, d), Zc.new_zeros(d)
    z_one = Zc.new_zeros(d) if intercept else None
    yc = yc.to(Zc.dtype)
    if root_w is not None:
        root_w = root_w.to(Zc.dtype)
    for start in range(0, n, step):
        Zs, ys = Zc[start:start + step], yc[start:start + step]
        if root_w is not None:
            ws = root_w[start:start + step]
            Zs, ys = Zs * ws[:, None], ys * ws
        ZtZ.addmm_(Zs.T, Zs)
        Zty.addmv_(Zs.T, ys)
        if intercept:
            if root_w is None:
                z_one += Zs.sum(0)
            else:
                z_one.addmv_(Zs.T, ws)
    return ZtZ, Zty, z_one


def _stats_from_tensors(Z: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None, intercept: bool):
    n, d = Z.shape
    dim = d + int(intercept)
    ZtZ, Zty = np.zeros((dim, dim)), np.zeros(dim)
    root_w = None if w is None else w.sqrt()
    for rows in _row_chunks(n, d):
        G, g, z_one = _chunk_products(Z[rows], y[rows], None if w is None else root_w[rows], intercept)
        ZtZ[:d, :d] += G.to(torch.float64).numpy()
        Zty[:d] += g.to(torch.float64).numpy()
        if intercept:
            ZtZ[:d, d] += z_one.to(torch.float64).numpy()
    sum_w = float(n) if w is None else float(w.sum())
    yw = y if w is None else y * root_w
    if intercept:
        ZtZ[d, :d] = ZtZ[:d, d]
        ZtZ[d, d] = sum_w
        Zty[d] = float(yw.sum()) if w is None else float(yw @ root_w)
    sum_log_w = 0.0 if w is None else float(w.log().sum())
    stats = SufficientStats(ZtZ, Zty, float(yw @ yw), float(n), sum_w, sum_log_w, intercept)
    _check_finite_stats(stats, Z)
    return stats


def _weighted_rss(Z: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None, mean: np.ndarray, intercept: bool):
    """sum_i w_i (y_i - z_i^T mean)^2 computed from the data: no cancellation (a GEMV-cost pass).

    Per chunk, ``y - offset`` in float64 minus ``Z @ coef`` (a GEMV in ``Z``'s dtype) in place, then one float64
    dot product: one temporary of ``n`` float64 values instead of one per operation.
    """
    d = Z.shape[1]
    coef = torch.from_numpy(mean[:d]).to(Z.dtype)
    offset = float(mean[d]) if intercept else 0.0
    total = 0.0
    for rows in _row_chunks(Z.shape[0], d):
        resid = y[rows].to(torch.float64, copy=True)
        if offset:
            resid.sub_(offset)
        resid.sub_(Z[rows] @ coef)
        total += float(resid.dot(resid if w is None else w[rows].to(torch.float64) * resid))
    return total


# ----------------------------------------------------------------------------------------------------------
# dense float64 helpers
# ----------------------------------------------------------------------------------------------------------


def _quad(v: np.ndarray, A: np.ndarray) -> float:
    return float(v @ A @ v)


def _rss_moved(stats: SufficientStats, ref: np.ndarray, rss_ref: float, mean: np.ndarray) -> float:
    r"""``sum w (y - z^T mean)^2`` from an accurate value at ``ref``: no ``y^T y`` enters.

    .. math:: RSS(m) = RSS(r) + \delta^T G \delta - 2 \delta^T (Z^T W y - G r),\quad \delta = m - r.
    """
    delta = mean - ref
    grad = stats.Zty - stats.ZtZ @ ref
    return max(rss_ref + _quad(delta, stats.ZtZ) - 2.0 * float(delta @ grad), 0.0)


def _to_numpy_rows(Z, name: str, n_features: int) -> np.ndarray:
    arr = as_float_tensor(Z, name, ndim=2).detach().cpu().to(torch.float64).numpy()
    if arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features, but the head was fitted with {n_features}")
    return arr


# ----------------------------------------------------------------------------------------------------------
# the head
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NIGPosterior:
    r"""The Normal-Inverse-Gamma posterior :math:`\beta \mid \sigma^2 \sim N(\mu_n, \sigma^2 \Lambda_n^{-1})`,
    :math:`\sigma^2 \sim \mathrm{InvGamma}(a, b)`, over the design's coefficients (features, then the intercept).

    ``precision_cholesky`` is the lower Cholesky factor of :math:`\Lambda_n` (the covariance factor is its
    inverse transpose, applied by triangular solves).
    """

    mean: np.ndarray
    precision_cholesky: np.ndarray
    a: float
    b: float


class ConjugateLinearRegression(RegressorMixin, PosteriorHead):
    r"""Bayesian linear regression with the conjugate Normal-Inverse-Gamma prior; exact posterior.

    Model, for features ``z_i`` (the flow's output) and known relative precisions ``w_i`` (``sample_weight``,
    default 1):

    .. math::
        \sigma^2 \sim \mathrm{InvGamma}(a_0, b_0),\quad
        \beta \mid \sigma^2 \sim N(\mu_0, \sigma^2 \Lambda_0^{-1}),\quad
        y_i \mid \beta, \sigma^2 \sim N(z_i^T \beta, \sigma^2 / w_i).

    Posterior (``G = Z^T W Z``): :math:`\Lambda_n = \Lambda_0 + G`,
    :math:`\mu_n = \Lambda_n^{-1}(\Lambda_0 \mu_0 + Z^T W y)`, :math:`a_n = a_0 + n/2`,
    :math:`b_n = b_0 + \tfrac12[\sum_i w_i (y_i - z_i^T\mu_n)^2 + (\mu_n-\mu_0)^T\Lambda_0(\mu_n-\mu_0)]`.
    The predictive of a new ``y`` is Student-t with ``2 a_n`` degrees of freedom, location ``z^T mu_n`` and
    squared scale ``(b_n / a_n)(1 + z^T Lambda_n^{-1} z)``.

    ``b_n`` is kept in the residual form above, never as ``b0 + (y^T W y + mu0^T L0 mu0 - mu_n^T L_n mu_n)/2``
    (which cancels catastrophically when the fit is good): :meth:`fit` and :meth:`partial_fit` compute the
    residual sum from the data in a second pass (a matrix-vector product per chunk); :meth:`update` and
    :meth:`merge` move an accurate residual sum to the new mean with
    ``RSS(m) = RSS(r) + d^T G d - 2 d^T (Z^T W y - G r)``, ``d = m - r``, which involves no ``y^T W y``.
    Only :meth:`fit_stats` from bare statistics has no accurate value to start from and uses
    ``y^T W y - 2 mu^T Z^T W y + mu^T G mu`` (it loses about ``log10(y^T W y / RSS)`` digits).

    ``sample_weight`` (in :meth:`fit`, :meth:`partial_fit`, :meth:`predict`, :meth:`predict_dist`) holds known
    relative noise precisions ``w_i``; a zero weight is infinite noise, i.e. a row that carries no information
    (it is dropped, so integer weights are equivalent to repeating rows, as scikit-learn expects).

    Parameters
    ----------
    prior_precision : float, array of shape (D,) or (D, D)
        :math:`\Lambda_0` for the feature weights (scalar times identity, diagonal, or full SPD matrix).
    prior_mean : float or array of shape (D,)
        :math:`\mu_0` for the feature weights.
    a0, b0 : float
        Shape and scale of the inverse-gamma prior on the noise variance.
    fit_intercept : bool
        Append a column of ones (the intercept is the last coordinate of ``posterior_.mean``) with prior mean 0
        and precision ``intercept_prior_precision``.
    intercept_prior_precision : float
        Prior precision of the intercept, relative to ``sigma^2`` (default ``1e-6``: nearly flat).
    prior : None
        Refused unless None, naming what was given: the prior is the Normal-Inverse-Gamma above (a prior of your
        own goes to :class:`~bayes_diglm.inference.NUTSRegressor`, whose ``prior=`` takes a callable of the noise
        variance, the conjugate one included).

    Attributes
    ----------
    posterior_ : NIGPosterior
        Posterior mean ``mean`` (P,) over the design's coefficients (features, then the intercept when fitted),
        lower Cholesky factor ``precision_cholesky`` of :math:`\Lambda_n`, and ``a``, ``b`` of the noise variance.
    coef_, intercept_ :
        Posterior means of the feature weights and of the intercept (0.0 without one).
    state_ : NormalInverseGamma
        The ``k = 1`` batched state of :mod:`bayes_diglm.inference.nig` that holds the posterior (the algebra
        of :meth:`fit`, :meth:`update`, the draws, the predictive and the evidence is that class's, shared
        with the bandit agents); ``posterior_`` is a view of it.
    stats_ : SufficientStats
        Statistics of all data seen.
    prior_mean_, prior_precision_, a0_, b0_ :
        The prior in use (constructor values after ``fit``; optimized ones after
        :meth:`optimize_prior_precision`).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(200, 2))
    >>> y = Z @ np.array([1.0, -2.0]) + 0.5 + 0.1 * rng.normal(size=200)
    >>> head = ConjugateLinearRegression(prior_precision=1e-2).fit(Z, y)
    >>> np.round(head.posterior_.mean, 1)
    array([ 1. , -2. ,  0.5])
    >>> lo, hi = head.predict_dist(Z[:1]).interval(0.9)
    >>> bool(lo[0] < head.predict(Z[:1])[0] < hi[0])
    True
    """

    _arviz_attrs = {"inference": "exact conjugate Normal-Inverse-Gamma posterior",
                    "draws": "i.i.d. from the exact posterior"}
    _parameter_constraints = {"prior_precision": "no_validation", "prior_mean": "no_validation",
                              "a0": POSITIVE, "b0": POSITIVE, "fit_intercept": ["boolean"],
                              "intercept_prior_precision": NON_NEGATIVE}

    def __init__(
        self,
        *,
        prior_precision=1.0,
        prior_mean=0.0,
        a0: float = 1e-3,
        b0: float = 1e-3,
        fit_intercept: bool = True,
        intercept_prior_precision: float = 1e-6,
        prior=None,
    ) -> None:
        self.prior = prior
        self.prior_precision = prior_precision
        self.prior_mean = prior_mean
        self.a0 = a0
        self.b0 = b0
        self.fit_intercept = fit_intercept
        self.intercept_prior_precision = intercept_prior_precision

    # ---- prior ------------------------------------------------------------------------------------------

    def _prior_from_params(self, n_features: int) -> NormalInverseGamma:
        """The prior as a fresh ``k = 1`` :class:`NormalInverseGamma` state (which validates it)."""
        if self.prior is not None:
            given = isinstance(self.prior, torch.distributions.Distribution)
            what = type(self.prior).__name__ if given else "a callable"
            raise TypeError(f"ConjugateLinearRegression's prior is Normal-Inverse-Gamma, beta's scaled by the noise "
                            f"variance (prior_precision, prior_mean, a0, b0); prior={what} is not one: use "
                            f"NUTSRegressor(prior=...) (or SVIRegressor) for a prior of your own")
        return NormalInverseGamma(
            1, n_features, prior_precision=self.prior_precision, prior_mean=self.prior_mean,
            intercept_prior_precision=self.intercept_prior_precision if self.fit_intercept else None,
            a0=self.a0, b0=self.b0, fit_intercept=bool(self.fit_intercept),
        )

    @staticmethod
    def _posterior(stats: SufficientStats, nig: NormalInverseGamma, rss_at: Callable[[np.ndarray], float]) -> dict:
        """Fitted state from statistics, on ``nig`` (a prior state, set in place); ``rss_at(mean)`` supplies
        the residual sum at the new mean."""
        rss = []
        nig.refit(0, stats.ZtZ, stats.Zty, stats.n, lambda m: rss.append(rss_at(m)) or rss[-1])
        return {"stats_": stats, "state_": nig, "rss_": rss[-1]}

    def _set_state(self, state: dict, n_features: int) -> None:
        for key, value in state.items():
            setattr(self, key, value)
        nig = self.state_
        self.posterior_ = NIGPosterior(nig.mean[0], nig.precision_cholesky[0], float(nig.a[0]), float(nig.b[0]))
        self.prior_mean_, self.prior_precision_ = nig.prior_mean, nig.prior_precision_matrix
        self.a0_, self.b0_ = nig.a0, nig.b0
        self.n_features_in_ = n_features
        mean = self.posterior_.mean
        self.coef_ = mean[:n_features].copy()
        self.intercept_ = float(mean[-1]) if self.stats_.has_intercept else 0.0

    def _prior_state(self) -> NormalInverseGamma:
        """A fresh prior state with the prior in use (the optimized one after empirical Bayes)."""
        nig = self.state_
        return NormalInverseGamma.with_prior(1, nig.prior_mean, nig.prior_precision_matrix, a0=nig.a0, b0=nig.b0,
                                             fit_intercept=nig.fit_intercept)

    def _check_stats_dim(self, stats: SufficientStats, n_features: int) -> None:
        wanted = bool(self.fit_intercept)
        if stats.has_intercept != wanted:
            raise ValueError(
                f"stats.has_intercept={stats.has_intercept} but fit_intercept={wanted}: build the "
                f"statistics with SufficientStats.from_data(..., fit_intercept={wanted})"
            )
        if n_features < 1:
            raise ValueError(f"stats have dimension {stats.dim}: no features")

    # ---- fitting ----------------------------------------------------------------------------------------

    def _training_tensors(self, Z, y, sample_weight, *, reset: bool):
        """Validated ``(Z, y, w)`` tensors; rows with zero weight (infinite noise) are dropped.

        Tensors go straight to the chunked float32/float64 statistics; everything else (float, integer and
        object-numeric arrays, data frames) through scikit-learn's ``validate_data``, which keeps float32/float64
        arrays uncopied. Finiteness of ``Z`` is checked through ``Z^T Z`` (one pass fewer). ``reset`` sets
        ``n_features_in_`` (``fit``); otherwise it is checked against the fit (``partial_fit``).
        """
        y = y if isinstance(y, torch.Tensor) else check_targets(y, "y")
        if isinstance(Z, torch.Tensor):
            if not reset and Z.dim() == 2 and Z.shape[1] != self.n_features_in_:
                raise ValueError(f"X has {Z.shape[1]} features, but {type(self).__name__} is expecting "
                                 f"{self.n_features_in_} features as input")
            if not isinstance(y, torch.Tensor):
                y = column_or_1d(y, warn=True) if np.ndim(y) == 2 else np.asarray(y)
        else:
            _refuse_strings(Z, "Z")
            # float arrays keep their dtype and are not copied; finiteness is checked through Z^T Z
            Z, y = validate_data(self, Z, y, dtype=[np.float64, np.float32], ensure_all_finite=False,
                                 y_numeric=True, reset=reset)
        if isinstance(y, np.ndarray) and y.dtype.kind in "biuO":
            y = y.astype(np.float64)
        w = self._validate_weights(sample_weight, len(y), positive=False)
        if w is not None and bool((w == 0).any()):
            keep = np.flatnonzero(w > 0)
            Z, y, w = Z[keep], y[keep], w[keep]
        Zt, yt, wt = _check_training_data(Z, y, w)
        _refuse_overflow(yt.numpy(), "y")
        if reset:
            self.n_features_in_ = Zt.shape[1]
        return Zt, yt, wt

    def _context_tags(self) -> ContextTags:
        return ContextTags(sample_weight="noise")  # known relative noise precisions, in fit and prediction

    def _validate_train(self, Z, y, sample_weight=None, **_) -> tuple:
        return self._training_tensors(Z, y, sample_weight, reset=True)

    def _fit(self, Zt, yt, wt) -> None:
        """Exact posterior given features ``Z`` (n, D), targets ``y`` (n,) and optional noise precisions."""
        prior = self._prior_from_params(Zt.shape[1])
        intercept = bool(self.fit_intercept)
        stats = _stats_from_tensors(Zt, yt, wt, intercept)
        state = self._posterior(stats, prior, lambda m: _weighted_rss(Zt, yt, wt, m, intercept))
        self._set_state(state, Zt.shape[1])

    def partial_fit(self, Z, y, *, sample_weight=None) -> ConjugateLinearRegression:
        """Add a chunk of data; the result equals :meth:`fit` on all chunks together (up to rounding)."""
        if getattr(self, "posterior_", None) is None:
            return self.fit(Z, y, sample_weight=sample_weight)
        with self._keep_state_on_error():
            Zt, yt, wt = self._training_tensors(Z, y, sample_weight, reset=False)
            intercept = bool(self.fit_intercept)
            chunk = _stats_from_tensors(Zt, yt, wt, intercept)
            old_stats, old_mean, old_rss = self.stats_, self.posterior_.mean, self.rss_

            def rss_at(m):
                return _rss_moved(old_stats, old_mean, old_rss, m) + _weighted_rss(Zt, yt, wt, m, intercept)

            self._set_state(self._posterior(old_stats + chunk, self._prior_state(), rss_at), self.n_features_in_)
        return self

    def update(self, z, y, sample_weight: float = 1.0) -> ConjugateLinearRegression:
        r"""Add one observation in O(P^2): rank-one Cholesky update of :math:`\Lambda_n`.

        With :math:`k = \Lambda_n^{-1} z`, :math:`q = z^T k` and :math:`e = y - z^T\mu_n`:
        :math:`\mu \leftarrow \mu_n + k\, w e / (1 + w q)`, :math:`L \leftarrow` factor of
        :math:`L L^T + w z z^T`, :math:`a \leftarrow a_n + 1/2`, and the residual sum moves to the new mean.
        """
        zt = as_float_tensor(z, "z", ndim=(1, 2)).detach().cpu().to(torch.float64)
        if zt.dim() == 2 and zt.shape[0] != 1:
            raise ValueError(f"update takes one observation: z has shape {tuple(zt.shape)}; use partial_fit")
        zt = zt.reshape(-1)
        if isinstance(y, torch.Tensor):
            y = y.detach().cpu().reshape(-1)
        try:
            y_arr = np.asarray(y, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as err:
            raise ValueError(f"y must be one number, got {y!r}") from err
        if y_arr.size != 1:
            raise ValueError(f"update takes one observation: y has {y_arr.size} values")
        w = check_positive(sample_weight, "sample_weight")
        if getattr(self, "posterior_", None) is None:
            return self.fit(zt[None, :], y_arr, sample_weight=np.array([w]))
        if zt.numel() != self.n_features_in_:
            raise ValueError(f"z has {zt.numel()} features; the head was fitted with {self.n_features_in_}")
        if not np.isfinite(y_arr[0]):
            raise ValueError("y contains NaN or infinite value(s)")
        x = zt.numpy()
        _refuse_overflow(np.append(x, y_arr[0]), "the observation (z, y)")
        if self.fit_intercept:
            x = np.append(x, 1.0)
        nig, yv, mean = copy.deepcopy(self.state_), float(y_arr[0]), self.posterior_.mean
        nig.update_row(0, x, yv, weight=w)
        new_mean = nig.mean[0]
        old = self.stats_
        row = SufficientStats(w * np.outer(x, x), w * yv * x, w * yv * yv, 1.0, w, math.log(w), old.has_intercept)
        rss = _rss_moved(old, mean, self.rss_, new_mean) + w * (yv - float(x @ new_mean)) ** 2
        self._set_state({"stats_": old + row, "state_": nig, "rss_": rss}, self.n_features_in_)
        return self

    def fit_stats(self, stats: SufficientStats) -> ConjugateLinearRegression:
        """Exact posterior from sufficient statistics alone (e.g. all-reduced across processes).

        ``b_n`` then uses ``y^T W y - 2 mu^T Z^T W y + mu^T G mu`` (see the class notes on cancellation).
        """
        if not isinstance(stats, SufficientStats):
            raise TypeError(f"stats must be a SufficientStats, got {type(stats).__name__}")
        n_features = stats.dim - int(stats.has_intercept)
        self._check_stats_dim(stats, n_features)
        prior = self._prior_from_params(n_features)
        zero = np.zeros(stats.dim)
        state = self._posterior(stats, prior, lambda m: _rss_moved(stats, zero, stats.yty, m))
        self._set_state(state, n_features)
        return self

    def merge(self, other: ConjugateLinearRegression) -> ConjugateLinearRegression:
        """Absorb the data of another head fitted with the same prior (posterior of the union of data)."""
        check_is_fitted(self)
        if not isinstance(other, ConjugateLinearRegression):
            raise TypeError(f"other must be a ConjugateLinearRegression, got {type(other).__name__}")
        check_is_fitted(other)
        if not self.state_.same_prior(other.state_):
            raise ValueError("cannot merge heads with different priors (or different feature dimensions)")
        a, b = (self.stats_, self.posterior_.mean, self.rss_), (other.stats_, other.posterior_.mean, other.rss_)

        def rss_at(m):
            return _rss_moved(*a, m) + _rss_moved(*b, m)

        self._set_state(self._posterior(a[0] + b[0], self._prior_state(), rss_at), self.n_features_in_)
        return self

    # ---- evidence and hyperparameters -----------------------------------------------------------------

    def log_evidence(self) -> float:
        r"""Exact log marginal likelihood :math:`\log p(y \mid Z)` (multivariate Student-t of all targets).

        .. math:: -\tfrac n2\log 2\pi + \tfrac12\sum\log w_i + \tfrac12\log\frac{|\Lambda_0|}{|\Lambda_n|}
                  + a_0\log b_0 - a_n\log b_n + \log\Gamma(a_n) - \log\Gamma(a_0).
        """
        check_is_fitted(self)
        return float(self.state_.log_evidence(self.stats_.sum_log_w)[0])

    def optimize_prior_precision(self, per: str = "scalar", *, tol: float | None = None,
                                 max_iter: int | None = None) -> ConjugateLinearRegression:
        """Maximise :meth:`log_evidence` over the prior precision(s) and ``(a0, b0)`` (type-II ML).

        The feature prior precision becomes ``exp(t) I`` (``per="scalar"``) or ``diag(exp(t_j))``
        (``per="feature"``); the intercept's precision and the prior mean stay fixed. L-BFGS-B on log-parameters,
        each bounded to ``[1e-8, 1e8]`` (``tol``: its gradient tolerance, ``max_iter``: its iterations; None:
        scipy's defaults); the posterior is recomputed from the statistics (with the accurate residual sum moved
        to each trial mean). Stores ``hyperparameter_result_`` (scipy's ``OptimizeResult``).
        """
        check_is_fitted(self)
        per_feature = check_prior_grouping(per, ("scalar", "feature")) == "feature"
        options = {key: value for key, value in (("gtol", tol), ("maxiter", max_iter)) if value is not None}
        d = self.n_features_in_
        stats, ref, rss_ref, base = self.stats_, self.posterior_.mean, self.rss_, self.state_
        n_prec = d if per_feature else 1

        def state_of(theta):
            prec = base.prior_precision_matrix.copy()
            prec[:d, :d] = np.diag(np.broadcast_to(np.exp(theta[:n_prec]), (d,)))
            nig = NormalInverseGamma.with_prior(1, base.prior_mean, prec, a0=float(np.exp(theta[-2])),
                                                b0=float(np.exp(theta[-1])), fit_intercept=base.fit_intercept)
            return self._posterior(stats, nig, lambda m: _rss_moved(stats, ref, rss_ref, m))

        def objective(theta):
            return -float(state_of(theta)["state_"].log_evidence(stats.sum_log_w)[0])

        start_prec = np.diag(base.prior_precision_matrix)[:d]
        start_prec = np.log(start_prec) if per_feature else np.array([np.log(start_prec).mean()])
        theta0 = np.concatenate([start_prec, [math.log(base.a0), math.log(base.b0)]])
        bound = math.log(1e8)
        theta0 = np.clip(theta0, -bound, bound)
        result = scipy.optimize.minimize(objective, theta0, method="L-BFGS-B", bounds=[(-bound, bound)] * theta0.size,
                                         options=options)
        best = result.x if result.fun <= objective(theta0) else theta0
        self._set_state(state_of(best), d)
        self.hyperparameter_result_ = result
        return self

    # ---- posterior -------------------------------------------------------------------------------------

    def _sample_params(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        r"""Joint draws: :math:`\sigma^2 = b_n / g,\ g \sim \Gamma(a_n, 1)`;
        :math:`\beta = \mu_n + \sigma L_n^{-T}\epsilon`. Names ``"beta"`` (n, D), ``"intercept"`` (n,), ``"sigma"``
        and ``"noise_variance"`` (``sigma ** 2``, the site of :meth:`pyro_model`).
        """
        beta, sigma = self.state_.draws(0, n, rng)
        d = self.n_features_in_
        draws = {"beta": beta[:, :d], "sigma": sigma, "noise_variance": sigma**2}
        if self.fit_intercept:
            draws["intercept"] = beta[:, d]
        return draws

    def beta_interval(self, prob: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        """Equal-tailed marginal credible intervals of each coefficient (Student-t marginals)."""
        check_is_fitted(self)
        prob = check_probability(prob)
        post = self.posterior_
        L_inv = scipy.linalg.solve_triangular(
            post.precision_cholesky, np.eye(post.mean.size), lower=True, check_finite=False
        )
        scale = np.sqrt(post.b / post.a * (L_inv * L_inv).sum(axis=0))
        half = scipy.stats.t.ppf(0.5 + prob / 2, df=2 * post.a) * scale
        return post.mean - half, post.mean + half

    def _validate_Z(self, Z) -> np.ndarray:
        """Validated float64 features; float tensors of the right shape skip scikit-learn's conversion."""
        check_is_fitted(self)
        if isinstance(Z, torch.Tensor):
            return _to_numpy_rows(Z, "Z", self.n_features_in_)
        return super()._validate_Z(Z)

    def _noise_weights(self, sample_weight, n: int):
        if sample_weight is None:
            return None
        w = self._validate_weights(sample_weight, n, positive=True)
        return w

    def _predictive_params(self, Zf: np.ndarray, sample_weight=None) -> tuple[float, np.ndarray, np.ndarray]:
        """(df, loc, scale) of the Student-t predictive of new targets at rows of ``Z``.

        With known relative noise precisions ``w*`` (``y* ~ N(x*^T beta, sigma^2 / w*)``) the squared scale is
        ``(b_n / a_n)(1 / w* + x*^T Lambda_n^{-1} x*)``; no ``sample_weight`` means ``w* = 1``.
        """
        w = self._noise_weights(sample_weight, Zf.shape[0])
        loc, scale, df = self.state_.predictive(Zf, 1.0 if w is None else 1.0 / w)
        return float(df[0]), loc[0], scale[0]

    def predict(self, Z, return_std: bool = False, **context):
        """Predictive mean (and standard deviation, ``inf`` when ``2 a_n <= 2``) as float64 arrays.

        ``sample_weight``: known relative noise precisions of the new rows (as in ``fit``); default 1.
        """
        Z, context = self._validate_rows(Z, context)
        df, loc, scale = self._predictive_params(Z, **context)
        if not return_std:
            return loc
        std = scale * math.sqrt(df / (df - 2.0)) if df > 2 else np.full_like(scale, np.inf)
        return loc, std

    def _predict_dist(self, Z: np.ndarray, sample_weight=None) -> Predictive:
        """The exact predictive: Student-t with ``2 a_n`` degrees of freedom (beta and sigma^2 integrated out)."""
        df, loc, scale = self._predictive_params(Z, sample_weight)
        loc_t = torch.from_numpy(loc)
        return Predictive(torch.distributions.StudentT(torch.full_like(loc_t, df), loc_t, torch.from_numpy(scale)))

    def log_predictive(self, Z, y, **context) -> np.ndarray:
        """Pointwise log predictive density ``log p(y_i | z_i, data)`` (float64, shape (n,))."""
        Z, context = self._validate_rows(Z, context)
        df, loc, scale = self._predictive_params(Z, **context)
        y_arr = as_float_tensor(np.asarray(y, dtype=np.float64) if not isinstance(y, torch.Tensor) else y,
                                "y", ndim=1).detach().cpu().to(torch.float64).numpy()
        check_same_length(Z=loc, y=y_arr)
        return scipy.stats.t.logpdf(y_arr, df=df, loc=loc, scale=scale)

    # ---- the Pyro model --------------------------------------------------------------------------------

    def pyro_model(self, Z, y=None, sample_weight=None):
        r"""The head's Normal-Inverse-Gamma model as a Pyro model, at the prior in use.

        Sites (as the NUTS heads name them): ``noise_variance`` :math:`\sim \mathrm{InvGamma}(a_0, b_0)`,
        ``beta`` :math:`\sim N(\mu_0, \sigma^2 \Lambda_z^{-1})` (D,), ``intercept`` :math:`\sim N(0, \sigma^2 / c)`
        (when fitted) and ``y`` :math:`\sim N(z^T \beta + \beta_0, \sigma^2 / w)` observed in
        ``pyro.plate("data", n)``, ``sample_weight`` holding the rows' known relative noise precisions ``w`` (as in
        :meth:`fit`). :meth:`sample`'s draws hold ``noise_variance`` (``sigma ** 2``), so they condition it as they are.
        """
        check_is_fitted(self)
        nig, d = self.state_, self.n_features_in_
        mean, precision = torch.from_numpy(nig.prior_mean), torch.from_numpy(nig.prior_precision_matrix)
        if self.stats_.has_intercept and bool((precision[:d, d] != 0).any()):
            raise ValueError("the prior couples the intercept with the feature weights: the Pyro model has them as "
                             "separate sites and needs a block-diagonal prior precision")
        Zt = features(Z, d)
        w = self._noise_weights(sample_weight, Zt.shape[0])

        def beta_prior(values):
            return dist.MultivariateNormal(mean[:d], precision_matrix=precision[:d, :d]
                                           / values["noise_variance"][..., None, None])

        def intercept_prior(values):
            return dist.Normal(mean[d], torch.sqrt(values["noise_variance"] / precision[d, d]))

        def family(values):
            noise = values["noise_variance"]
            return Gaussian(noise_variance=noise if w is None else noise / torch.from_numpy(w))

        a0, b0 = (torch.tensor(float(v), dtype=torch.float64) for v in (nig.a0, nig.b0))
        return glm_model(Zt, y, likelihood=Gaussian(), beta_prior=beta_prior,
                         intercept_prior=intercept_prior if self.stats_.has_intercept else None,
                         nuisance={"noise_variance": dist.InverseGamma(a0, b0)}, family=family)

    # ---- ArviZ / diagnostics protocol ------------------------------------------------------------------

    def _draw_likelihood(self, draws: dict, n: int, sample_weight) -> Gaussian:
        """Gaussian noise per draw and observation: variance sigma_s^2 / w_i."""
        var = np.asarray(draws["sigma"], dtype=np.float64)[:, None] ** 2
        w = self._noise_weights(sample_weight, n)
        if w is not None:
            var = var / w[None, :]
        return Gaussian(noise_variance=torch.from_numpy(np.ascontiguousarray(var)))


def fit_on_features(
    head: ConjugateLinearRegression,
    feature_fn: Callable[[torch.Tensor], torch.Tensor],
    X,
    y,
    *,
    batch_size: int = 4096,
    sample_weight=None,
    reset: bool = True,
) -> ConjugateLinearRegression:
    """Fit ``head`` on ``feature_fn(X)`` computed batch by batch under ``torch.no_grad()``.

    ``feature_fn`` maps a tensor batch to (B, D) features (e.g. ``diglm.features``). With ``reset`` the head
    starts from its prior; otherwise the batches are added to its current posterior. The head is changed
    only when every batch succeeded.

    Examples
    --------
    >>> import torch
    >>> X = torch.randn(100, 3, dtype=torch.float64)
    >>> y = X.sum(1)
    >>> head = fit_on_features(ConjugateLinearRegression(), lambda x: 2 * x, X, y, batch_size=32)
    >>> [round(float(b), 2) for b in head.coef_]
    [0.5, 0.5, 0.5]
    """
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    X_t = X if isinstance(X, torch.Tensor) else torch.as_tensor(np.asarray(X))
    y_t = y if isinstance(y, torch.Tensor) else torch.as_tensor(np.asarray(y))
    w_t = None if sample_weight is None else torch.as_tensor(np.asarray(sample_weight, dtype=np.float64))
    check_same_length(X=X_t, y=y_t, sample_weight=w_t)
    if X_t.shape[0] == 0:
        raise ValueError("X is empty: no rows to fit the head on")

    def batches():
        for start in range(0, X_t.shape[0], batch_size):
            rows = slice(start, start + batch_size)
            with torch.no_grad():
                Z = feature_fn(X_t[rows])
            yield Z, y_t[rows], None if w_t is None else w_t[rows]

    return fit_in_chunks(head, batches(), reset=reset)


def fit_in_chunks(head, chunks, *, reset: bool = True):
    """The one streamed fit of a head with ``partial_fit``: every ``(Z, y)`` or ``(Z, y, sample_weight)`` chunk is
    added in turn to a copy of ``head`` (a fresh clone with ``reset``, else a copy of its current posterior), whose
    state replaces ``head``'s only when every chunk succeeded; memory is one chunk plus the head's statistics.
    Returns ``head``; a stream without rows is a ``ValueError``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(90, 2)); y = Z @ np.array([1.0, -1.0]) + 0.1 * rng.normal(size=90)
    >>> head = fit_in_chunks(ConjugateLinearRegression(), ((Z[i:i + 30], y[i:i + 30]) for i in range(0, 90, 30)))
    >>> bool(np.allclose(head.coef_, ConjugateLinearRegression().fit(Z, y).coef_))
    True
    """
    work = clone(head) if reset else copy.deepcopy(head)
    rows = 0
    for Z, y, *weights in chunks:
        weight = {"sample_weight": weights[0]} if weights and weights[0] is not None else {}
        work.partial_fit(Z, y, **weight)
        rows += len(y)
    if rows == 0:
        raise ValueError("chunks is empty: no rows to fit the head on")
    head.__dict__.clear()
    head.__dict__.update(work.__dict__)
    return head
