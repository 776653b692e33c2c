"""Batched Normal-Inverse-Gamma state: ``k`` independent conjugate linear regressions stacked, in float64."""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import scipy.special
import torch
from scipy.linalg.blas import dtrsv

from .._validation import check_positive
from .linalg import rank_one_update_upper, robust_cholesky

__all__ = ["NormalInverseGamma"]


def _count(value, name: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _cholesky(A: np.ndarray, what: str) -> np.ndarray:
    try:
        return scipy.linalg.cholesky(A, lower=True, check_finite=False)
    except np.linalg.LinAlgError as err:
        raise ValueError(f"{what} is not positive definite") from err


def _feature_prior(prior_precision, prior_mean, d: int) -> tuple[np.ndarray, np.ndarray]:
    """``(Lambda_0 (d, d), mu_0 (d,))`` of the feature weights from a scalar, ``(d,)`` or ``(d, d)`` precision
    and a scalar or ``(d,)`` mean, with errors that name the bad value."""
    if np.ndim(prior_precision) == 0:
        prec = np.full(d, check_positive(prior_precision, "prior_precision"))
    else:
        prec = np.asarray(prior_precision, dtype=np.float64)
    if prec.shape not in ((d,), (d, d)):
        raise ValueError(f"prior_precision has shape {prec.shape}; expected a scalar, ({d},) or ({d}, {d})")
    if prec.ndim == 1:
        if not np.all(np.isfinite(prec)) or np.any(prec <= 0):
            raise ValueError(f"prior_precision must be positive and finite (positive definite): {prec}")
        prec = np.diag(prec)
    elif not np.all(np.isfinite(prec)) or not np.allclose(prec, prec.T):
        raise ValueError("prior_precision must be a finite symmetric matrix")
    _cholesky(prec, "prior_precision")
    mean = np.asarray(prior_mean, dtype=np.float64)
    if mean.ndim == 0:
        mean = np.full(d, float(mean))
    if mean.shape != (d,) or not np.all(np.isfinite(mean)):
        raise ValueError(f"prior_mean must be a finite scalar or of shape ({d},), got shape {mean.shape}")
    return prec, mean


class NormalInverseGamma:
    r"""``k`` independent Bayesian linear regressions with conjugate Normal-Inverse-Gamma priors, stacked.

    For model ``m`` (an arm of a bandit, or the single head of :class:`ConjugateLinearRegression`, which keeps
    its posterior in a ``k = 1`` state), design rows ``x = [z, 1]`` (``fit_intercept``) or ``x = z``, targets
    ``y`` and known relative noise precisions ``w`` (default 1):

    .. math::
        \sigma_m^2 \sim \mathrm{InvGamma}(a_0, b_0),\quad
        \beta_m \mid \sigma_m^2 \sim N(\mu_0, \sigma_m^2 \Lambda_0^{-1}),\quad
        y \mid x, \beta_m, \sigma_m^2 \sim N(x^T\beta_m, \sigma_m^2 / w),

    with :math:`\Lambda_0 = \mathrm{blockdiag}(\Lambda_z, c)` (``prior_precision``: a scalar, a diagonal or
    an SPD matrix over the features; ``intercept_prior_precision`` ``c``) and :math:`\mu_0 = [m, 0]`
    (``prior_mean``); :meth:`with_prior` takes the whole design-space prior. The posterior of each model
    (:meth:`refit`) is :math:`\Lambda_n = \Lambda_0 + X^T W X`, :math:`\mu_n = \Lambda_n^{-1}(\Lambda_0\mu_0 +
    X^T W y)`, :math:`a_n = a_0 + n/2`, :math:`b_n = b_0 + \tfrac12[\sum_i w_i(y_i - x_i^T\mu_n)^2 +
    (\mu_n-\mu_0)^T\Lambda_0(\mu_n-\mu_0)]`.

    State (float64, leading axis ``k``): ``factor (k, P, P)``, the *upper* triangular ``R`` with
    :math:`\Lambda_n = R^T R` (so ``R^T`` is the lower Cholesky factor, :attr:`precision_cholesky`);
    ``mean (k, P)``; ``a, b (k,)``; ``counts (k,)``.

    * :meth:`update` adds one row to one model in O(P^2): with :math:`p = R^{-T}x`, :math:`g = R^{-1}p =
      \Lambda_n^{-1}x`, :math:`e = y - x^T\mu_n`, :math:`s = 1 + p^Tp`:
      :math:`\mu \leftarrow \mu + g\,e/s`, :math:`b \leftarrow b + \tfrac12 e^2/s`, :math:`a \leftarrow a +
      \tfrac12`, and ``R`` by a rank-one update (two BLAS triangular solves and a vectorised factor update,
      no Python loop over P; the inputs are checked by :meth:`update`, not by :meth:`update_row`, which the
      bandit agents call in their hot loop with rows they built themselves).
    * :meth:`fit` recomputes every model from data (rows tagged with their model), :meth:`fit_stats` from
      sufficient statistics; both O(k P^3).
    * :meth:`sample` draws one :math:`(\beta_m)` per model: :math:`\sigma^2 = b/g,\ g \sim \Gamma(a)`,
      :math:`\beta = \mu + \sigma R^{-1}\epsilon`; :meth:`draws` many of one model. :meth:`predictive` gives
      the Student-t predictive, :meth:`log_evidence` the exact marginal likelihood.

    Examples
    --------
    >>> nig = NormalInverseGamma(2, 1, prior_precision=1.0, a0=2.0, b0=2.0)
    >>> nig.update(0, np.array([1.0]), 3.0)
    >>> nig.mean.shape, nig.a.tolist()
    ((2, 2), [2.5, 2.0])
    >>> loc, scale, df = nig.predictive(np.array([[1.0]]))
    >>> loc.shape, df.tolist()
    ((2, 1), [5.0, 4.0])
    """

    def __init__(self, num_models: int, dim: int, *, prior_precision=1.0, prior_mean=0.0,
                 intercept_prior_precision: float | None = None, a0: float = 1.0, b0: float = 1.0,
                 fit_intercept: bool = True) -> None:
        self.num_models, self.dim = _count(num_models, "num_models"), _count(dim, "dim")
        self.a0, self.b0 = check_positive(a0, "a0"), check_positive(b0, "b0")
        self.fit_intercept = bool(fit_intercept)
        precision, mean = _feature_prior(prior_precision, prior_mean, self.dim)
        self.prior_precision = prior_precision if np.ndim(prior_precision) else float(prior_precision)
        if self.fit_intercept:
            if intercept_prior_precision is None and np.ndim(prior_precision):
                raise ValueError("intercept_prior_precision is required when prior_precision is an array")
            c = check_positive(prior_precision if intercept_prior_precision is None else intercept_prior_precision,
                               "intercept_prior_precision")
            precision, mean = scipy.linalg.block_diag(precision, [[c]]), np.append(mean, 0.0)
        self.intercept_prior_precision = float(precision[-1, -1]) if self.fit_intercept else None
        self._set_prior(mean, precision)
        self.reset()

    @classmethod
    def with_prior(cls, num_models: int, mean, precision, *, a0: float, b0: float,
                   fit_intercept: bool) -> NormalInverseGamma:
        """A state with the design-space prior ``mean (P,)`` and SPD ``precision (P, P)`` given whole (the
        intercept's entries last when ``fit_intercept``): what empirical Bayes builds for each trial prior."""
        mean, precision = np.asarray(mean, dtype=np.float64), np.asarray(precision, dtype=np.float64)
        if mean.ndim != 1 or mean.size == 0 or not np.all(np.isfinite(mean)):
            raise ValueError(f"mean must be a finite vector (P,), got shape {mean.shape}")
        P = mean.shape[0]
        out = cls.__new__(cls)
        out.num_models, out.dim = _count(num_models, "num_models"), _count(P - int(bool(fit_intercept)), "dim")
        out.a0, out.b0 = check_positive(a0, "a0"), check_positive(b0, "b0")
        out.fit_intercept = bool(fit_intercept)
        if precision.shape != (P, P):
            raise ValueError(f"precision has shape {precision.shape}, expected ({P}, {P})")
        # the Cholesky factor reads one triangle only: a NaN or an asymmetric matrix would pass it unseen
        if not np.all(np.isfinite(precision)) or not np.allclose(precision, precision.T):
            raise ValueError("precision must be a finite symmetric matrix")
        out.prior_precision = precision[: out.dim, : out.dim].copy()
        out.intercept_prior_precision = float(precision[-1, -1]) if out.fit_intercept else None
        out._set_prior(mean, precision)
        out.reset()
        return out

    def _set_prior(self, mean: np.ndarray, precision: np.ndarray) -> None:
        self.prior_mean, self.prior_precision_matrix = mean, precision
        self._prior_factor = _cholesky(precision, "prior_precision")  # lower
        self._prior_is_diagonal = bool(np.count_nonzero(precision - np.diag(np.diag(precision))) == 0)

    # ---- state ------------------------------------------------------------------------------------------

    @property
    def design_dim(self) -> int:
        """``P``: the feature dimension, plus one for the intercept."""
        return self.dim + int(self.fit_intercept)

    @property
    def prior_diagonal(self) -> np.ndarray:
        """The diagonal of :math:`\\Lambda_0`, shape ``(P,)``."""
        return np.diag(self.prior_precision_matrix).copy()

    def same_prior(self, other: NormalInverseGamma) -> bool:
        """Whether ``other`` has this prior (to rounding): states that may be merged."""
        return (self.design_dim == other.design_dim and self.fit_intercept == other.fit_intercept
                and all(np.allclose(x, y, rtol=1e-12, atol=0) for x, y in (
                    (self.prior_mean, other.prior_mean), (self.prior_precision_matrix, other.prior_precision_matrix),
                    (self.a0, other.a0), (self.b0, other.b0))))

    @property
    def precision_cholesky(self) -> np.ndarray:
        """Lower Cholesky factors ``L (k, P, P)`` of :math:`\\Lambda_n` (a transposed view of :attr:`factor`)."""
        return self.factor.transpose(0, 2, 1)

    def reset(self) -> None:
        """Back to the prior for every model."""
        k, P = self.num_models, self.design_dim
        self.factor = np.broadcast_to(self._prior_factor.T, (k, P, P)).copy()
        self.mean = np.broadcast_to(self.prior_mean, (k, P)).copy()
        self.a = np.full(k, self.a0)
        self.b = np.full(k, self.b0)
        self.counts = np.zeros(k, dtype=np.int64)

    def design(self, Z: np.ndarray) -> np.ndarray:
        """Rows ``[z, 1]`` (or ``z``) in float64; ``Z`` is (n, dim) or (dim,)."""
        Z = np.asarray(Z, dtype=np.float64)
        if Z.shape[-1:] != (self.dim,):
            raise ValueError(f"features have shape {Z.shape}, expected (..., {self.dim})")
        if not self.fit_intercept:
            return Z
        out = np.ones(Z.shape[:-1] + (self.dim + 1,))
        out[..., :-1] = Z
        return out

    def _check_model(self, model) -> int:
        if not isinstance(model, (int, np.integer)) or isinstance(model, bool) or not 0 <= model < self.num_models:
            raise ValueError(f"model must be an integer in 0..{self.num_models - 1}, got {model!r}")
        return int(model)

    # ---- one row ----------------------------------------------------------------------------------------

    def update(self, model: int, z, y: float) -> None:
        """Add one observation ``(z, y)`` to ``model``'s posterior (rank one, O(P^2)); inputs are checked."""
        model = self._check_model(model)
        x = self.design(z)
        if x.shape != (self.design_dim,):
            raise ValueError(f"update takes one row: z has shape {np.shape(z)}")
        y = float(y)
        if not (np.all(np.isfinite(x)) and math.isfinite(y)):
            raise ValueError("z and y must be finite")
        self.update_row(model, x, y)

    def update_row(self, model: int, x: np.ndarray, y: float, weight: float = 1.0) -> None:
        """:meth:`update` without checks, for a design row ``x`` (float64, shape ``(P,)``) already built.

        ``weight`` is the row's known relative noise precision (``y ~ N(x^T beta, sigma^2 / weight)``): the
        same as adding the row ``(sqrt(w) x, sqrt(w) y)``.
        """
        if weight != 1.0:
            root = math.sqrt(weight)
            x, y = x * root, y * root
        R = self.factor[model]
        Lt = R.T  # Fortran-ordered lower factor: BLAS solves it without a copy
        p = dtrsv(Lt, x, lower=1)  # R^T p = x
        gain = dtrsv(Lt, p, lower=1, trans=1)  # R g = p, g = Lambda^{-1} x
        scale = 1.0 + float(p @ p)
        mean = self.mean[model]
        err = y - float(x @ mean)
        mean += gain * (err / scale)
        self.b[model] += 0.5 * err * err / scale
        self.a[model] += 0.5
        self.counts[model] += 1
        self.factor[model] = rank_one_update_upper(R, p)

    # ---- refits -----------------------------------------------------------------------------------------

    def refit(self, model: int, ZtZ: np.ndarray, Zty: np.ndarray, n, rss_at) -> None:
        r"""Set ``model``'s posterior from its design statistics ``X^T W X (P, P)``, ``X^T W y (P,)`` and row
        count ``n``; ``rss_at(mu)`` gives :math:`\sum_i w_i (y_i - x_i^T\mu)^2` at the new mean (from the data
        where the caller has them: no cancellation). In place; raises ``ValueError`` (state unchanged) when
        :math:`\Lambda_0 + X^T W X` is not positive definite.

        :math:`\Lambda_n = \Lambda_0 + X^TWX`, :math:`\mu_n = \Lambda_n^{-1}(\Lambda_0\mu_0 + X^TWy)`,
        :math:`a_n = a_0 + n/2`, :math:`b_n = b_0 + \tfrac12[RSS(\mu_n) + (\mu_n-\mu_0)^T\Lambda_0(\mu_n-\mu_0)]`.
        """
        prior = self.prior_precision_matrix
        if self._prior_is_diagonal:
            precision = ZtZ.copy()
            precision[np.diag_indices_from(precision)] += np.diag(prior)
        else:
            precision = ZtZ + prior
        L = robust_cholesky(precision, f"model {model}: the posterior precision Lambda_0 + X^T X")
        mean = scipy.linalg.cho_solve((L, True), prior @ self.prior_mean + Zty, check_finite=False)
        shift = mean - self.prior_mean
        self.factor[model], self.mean[model] = L.T, mean
        self.a[model] = self.a0 + 0.5 * n
        self.b[model] = self.b0 + 0.5 * (rss_at(mean) + float(shift @ prior @ shift))
        self.counts[model] = int(n)

    def fit(self, Z, y, models=None) -> NormalInverseGamma:
        """Recompute every model from all its data: rows of ``Z (n, dim)`` and ``y (n,)`` with ``models == m``.

        ``models`` (n,) gives each row's model (``None``: all rows belong to model 0, for ``k = 1``); a model
        without rows is reset to the prior. ``b_n`` uses the residual sum from the data (no cancellation).
        """
        X = self.design(np.atleast_2d(np.asarray(Z, dtype=np.float64)))
        y = np.asarray(y, dtype=np.float64)
        models = np.zeros(X.shape[0], dtype=np.int64) if models is None else np.asarray(models)
        if y.shape != (X.shape[0],) or models.shape != (X.shape[0],):
            raise ValueError(f"y {y.shape} and models {models.shape} must have one entry per row of Z ({X.shape[0]})")
        if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
            raise ValueError("Z and y must be finite")
        if models.size and (not np.issubdtype(models.dtype, np.integer) or models.min() < 0
                            or models.max() >= self.num_models):
            raise ValueError(f"models must hold integers in 0..{self.num_models - 1}")
        previous = self.state_dict()
        try:
            self.reset()
            for m in np.unique(models):
                rows = models == m
                Xm, ym = X[rows], y[rows]
                self.refit(int(m), Xm.T @ Xm, Xm.T @ ym, int(rows.sum()),
                                lambda mu, Xm=Xm, ym=ym: float(np.sum((ym - Xm @ mu) ** 2)))
        except ValueError:
            self.load_state_dict(previous)
            raise
        return self

    def fit_stats(self, ZtZ, Zty, yty, n) -> NormalInverseGamma:
        """Recompute every model from design statistics ``X^T X (k, P, P)``, ``X^T y (k, P)``, ``y^T y (k,)``,
        counts ``n (k,)`` (the intercept column included when ``fit_intercept``).

        ``b_n`` then uses ``y^T y - 2 mu^T X^T y + mu^T X^T X mu`` (it loses about ``log10(y^T y / RSS)``
        digits; :meth:`fit` and :meth:`update` do not).
        """
        k, P = self.num_models, self.design_dim
        ZtZ, Zty = np.asarray(ZtZ, dtype=np.float64), np.asarray(Zty, dtype=np.float64)
        yty, n = np.asarray(yty, dtype=np.float64), np.asarray(n)
        if ZtZ.shape != (k, P, P) or Zty.shape != (k, P) or yty.shape != (k,) or n.shape != (k,):
            raise ValueError(f"statistics must have shapes ({k}, {P}, {P}), ({k}, {P}), ({k},), ({k},); got "
                             f"{ZtZ.shape}, {Zty.shape}, {yty.shape}, {n.shape}")
        previous = self.state_dict()
        try:
            for m in range(k):
                G, c, s = ZtZ[m], Zty[m], float(yty[m])
                self.refit(m, G, c, int(n[m]),
                                lambda mu, G=G, c=c, s=s: max(s - 2.0 * float(mu @ c) + float(mu @ G @ mu), 0.0))
        except ValueError:
            self.load_state_dict(previous)
            raise
        return self

    # ---- draws and predictions --------------------------------------------------------------------------

    def sample(self, rng: np.random.Generator, *, scale: float = 1.0) -> np.ndarray:
        """One draw :math:`\\beta_m` per model, shape ``(k, P)`` (``sigma_m^2`` drawn first, then ``beta_m``).

        ``scale`` multiplies the draw's deviation from the mean (1: an exact posterior draw; the FlowLinear
        agent widens it where the flow's density is low).
        """
        sigma = scale * np.sqrt(self.b / rng.standard_gamma(self.a))
        eps = rng.standard_normal((self.num_models, self.design_dim))
        draws = np.empty_like(eps)
        for m in range(self.num_models):
            draws[m] = dtrsv(self.factor[m].T, eps[m], lower=1, trans=1)  # R^{-1} eps
        draws *= sigma[:, None]
        draws += self.mean
        return draws

    def draws(self, model: int, num: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        r"""``num`` joint draws of one model: ``(beta (num, P), sigma (num,))``, with
        :math:`\sigma^2 = b / g,\ g \sim \Gamma(a, 1)` and :math:`\beta = \mu + \sigma R^{-1}\epsilon`."""
        sigma = np.sqrt(self.b[model] / rng.gamma(self.a[model], 1.0, size=num))
        eps = rng.standard_normal((self.design_dim, num))
        white = scipy.linalg.solve_triangular(self.factor[model], eps, lower=False, check_finite=False)
        return self.mean[model] + (sigma * white).T, sigma

    def predictive(self, Z, noise=1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r"""Student-t predictive of a new ``y`` for rows ``Z (n, dim)``, every model: ``(loc, scale, df)``.

        ``loc (k, n) = X mu``, ``scale (k, n) = sqrt((b/a)(noise + x^T Lambda_n^{-1} x))``, ``df (k,) = 2a``
        (``scipy.stats.t(df[:, None], loc, scale)``); ``noise`` (scalar or (n,)) is ``1 / w`` for new rows
        with known relative noise precisions ``w`` (``y ~ N(x^T beta, sigma^2 / w)``).
        """
        X = self.design(np.atleast_2d(Z))
        loc = self.mean @ X.T
        quad = np.empty_like(loc)
        for m in range(self.num_models):
            white = scipy.linalg.solve_triangular(self.factor[m], X.T, trans="T", lower=False, check_finite=False)
            quad[m] = np.sum(white * white, axis=0)
        scale = np.sqrt((self.b / self.a)[:, None] * (noise + quad))
        return loc, scale, 2.0 * self.a

    def log_evidence(self, sum_log_w=0.0) -> np.ndarray:
        r"""Exact log marginal likelihood of each model's data, shape ``(k,)`` (``sum_log_w``: the sum of
        :math:`\log w_i` of its rows' noise precisions, scalar or ``(k,)``).

        .. math:: -\tfrac n2\log 2\pi + \tfrac12\sum\log w_i + \tfrac12\log\frac{|\Lambda_0|}{|\Lambda_n|}
                  + a_0\log b_0 - a_n\log b_n + \log\Gamma(a_n) - \log\Gamma(a_0).
        """
        logdet_0 = 2.0 * np.log(np.diag(self._prior_factor)).sum()
        logdet_n = 2.0 * np.log(np.diagonal(self.factor, axis1=1, axis2=2)).sum(axis=1)
        return (-0.5 * self.counts * math.log(2 * math.pi) + 0.5 * np.asarray(sum_log_w, dtype=np.float64)
                + 0.5 * (logdet_0 - logdet_n) + self.a0 * math.log(self.b0) - self.a * np.log(self.b)
                + scipy.special.gammaln(self.a) - math.lgamma(self.a0))

    # ---- persistence ------------------------------------------------------------------------------------

    _STATE = ("factor", "mean", "a", "b", "counts")

    def state_dict(self) -> dict:
        """Copies of the state arrays as tensors (what :meth:`load_state_dict` takes back)."""
        return {name: torch.from_numpy(getattr(self, name).copy()) for name in self._STATE}

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`; shapes must match this state's, and the values must be a posterior: finite,
        ``a`` and ``b`` positive, counts non-negative, ``factor`` upper triangular with a positive diagonal (a
        Cholesky factor)."""
        values = {}
        for name in self._STATE:
            value = np.asarray(torch.as_tensor(state[name]).numpy(), dtype=getattr(self, name).dtype)
            if value.shape != getattr(self, name).shape:
                raise ValueError(f"{name} has shape {value.shape}, expected {getattr(self, name).shape}")
            if not np.all(np.isfinite(value)):
                raise ValueError(f"{name} holds NaN or infinite values")
            values[name] = value.copy()
        if not (np.all(values["a"] > 0) and np.all(values["b"] > 0) and np.all(values["counts"] >= 0)):
            raise ValueError("a and b must be positive and counts non-negative")
        factor = values["factor"]
        if np.any(np.tril(factor, -1)) or not np.all(np.diagonal(factor, axis1=1, axis2=2) > 0):
            raise ValueError("factor must be upper triangular with a positive diagonal (a Cholesky factor)")
        for name, value in values.items():
            setattr(self, name, value)
