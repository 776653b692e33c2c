"""Batched Normal-Inverse-Gamma state: ``k`` independent conjugate linear regressions stacked, in float64."""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import torch
from scipy.linalg.blas import dtrsv

from .._validation import check_positive
from .linalg import robust_cholesky

__all__ = ["NormalInverseGamma"]


def _count(value, name: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _rank_one_update_upper(R: np.ndarray, p: np.ndarray) -> np.ndarray:
    r"""Upper factor of :math:`R^T R + x x^T` given :math:`p = R^{-T} x`, in O(P^2) (no Python loop).

    :math:`I + p p^T = M M^T` with ``M`` lower triangular, :math:`M_{jj} = \sqrt{t_j / t_{j-1}}` and
    :math:`M_{ij} = p_i q_j` below the diagonal, :math:`t_j = 1 + \sum_{i \le j} p_i^2`,
    :math:`q_j = p_j / \sqrt{t_j t_{j-1}}` (Gill, Golub, Murray and Saunders 1974; the same factor as
    :func:`bayes_diglm.inference.linalg.cholesky_rank_one_update`). The new factor is :math:`M^T R`:
    row ``j`` is :math:`\sqrt{t_j/t_{j-1}} R_{j:} + q_j \sum_{i>j} p_i R_{i:}`. The suffix sums are one
    cumulative sum down the rows (torch's, about 3x faster than numpy's at P = 65); every term is a sum of
    positive quantities, so the update is stable.
    """
    t = np.cumsum(p * p)
    t += 1.0
    t_prev = np.empty_like(t)
    t_prev[0] = 1.0
    t_prev[1:] = t[:-1]
    scaled = R * p[:, None]
    suffix = torch.cumsum(torch.from_numpy(scaled), 0).numpy()  # row j: sum_{i <= j} p_i R_i
    suffix -= suffix[-1]  # row j: -sum_{i > j} p_i R_i (exactly 0 below the diagonal's support)
    suffix *= -(p / np.sqrt(t * t_prev))[:, None]
    suffix += R * np.sqrt(t / t_prev)[:, None]
    return suffix


class NormalInverseGamma:
    r"""``k`` independent Bayesian linear regressions with conjugate Normal-Inverse-Gamma priors, stacked.

    For model ``m`` (an arm of a bandit, or the single head of :class:`ConjugateLinearRegression` when
    ``k = 1``), design rows ``x = [z, 1]`` (``fit_intercept``) or ``x = z`` and targets ``y``:

    .. math::
        \sigma_m^2 \sim \mathrm{InvGamma}(a_0, b_0),\quad
        \beta_m \mid \sigma_m^2 \sim N(0, \sigma_m^2 \Lambda_0^{-1}),\quad
        y \mid x, \beta_m, \sigma_m^2 \sim N(x^T\beta_m, \sigma_m^2),

    with :math:`\Lambda_0 = \mathrm{diag}(\lambda, \dots, \lambda, c)` (``prior_precision``,
    ``intercept_prior_precision``). The posterior of each model is :math:`\Lambda_n = \Lambda_0 + X^T X`,
    :math:`\mu_n = \Lambda_n^{-1} X^T y`, :math:`a_n = a_0 + n/2`,
    :math:`b_n = b_0 + \tfrac12[\lVert y - X\mu_n\rVert^2 + \mu_n^T\Lambda_0\mu_n]`: the model and the numbers of
    :class:`~bayes_diglm.inference.conjugate.ConjugateLinearRegression` (prior mean 0, unit weights).

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
      :math:`\beta = \mu + \sigma R^{-1}\epsilon`. :meth:`predictive` gives the Student-t predictive.

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

    def __init__(self, num_models: int, dim: int, *, prior_precision: float = 1.0,
                 intercept_prior_precision: float | None = None, a0: float = 1.0, b0: float = 1.0,
                 fit_intercept: bool = True) -> None:
        self.num_models, self.dim = _count(num_models, "num_models"), _count(dim, "dim")
        self.prior_precision = check_positive(prior_precision, "prior_precision")
        self.intercept_prior_precision = (self.prior_precision if intercept_prior_precision is None
                                    else check_positive(intercept_prior_precision, "intercept_prior_precision"))
        self.a0, self.b0 = check_positive(a0, "a0"), check_positive(b0, "b0")
        self.fit_intercept = bool(fit_intercept)
        self.reset()

    # ---- state ------------------------------------------------------------------------------------------

    @property
    def design_dim(self) -> int:
        """``P``: the feature dimension, plus one for the intercept."""
        return self.dim + int(self.fit_intercept)

    @property
    def prior_diagonal(self) -> np.ndarray:
        """The diagonal of :math:`\\Lambda_0`, shape ``(P,)``."""
        diag = np.full(self.design_dim, self.prior_precision)
        if self.fit_intercept:
            diag[-1] = self.intercept_prior_precision
        return diag

    @property
    def precision_cholesky(self) -> np.ndarray:
        """Lower Cholesky factors ``L (k, P, P)`` of :math:`\\Lambda_n` (a transposed view of :attr:`factor`)."""
        return self.factor.transpose(0, 2, 1)

    def reset(self) -> None:
        """Back to the prior for every model."""
        k, P = self.num_models, self.design_dim
        self.factor = np.zeros((k, P, P))
        self.factor[:, np.arange(P), np.arange(P)] = np.sqrt(self.prior_diagonal)
        self.mean = np.zeros((k, P))
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

    def update_row(self, model: int, x: np.ndarray, y: float) -> None:
        """:meth:`update` without checks, for a design row ``x`` (float64, shape ``(P,)``) already built."""
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
        self.factor[model] = _rank_one_update_upper(R, p)

    # ---- refits -----------------------------------------------------------------------------------------

    def _posterior(self, model: int, ZtZ: np.ndarray, Zty: np.ndarray, n: int, rss_at) -> None:
        diag = self.prior_diagonal
        precision = ZtZ.copy()
        precision[np.diag_indices_from(precision)] += diag
        L = robust_cholesky(precision, f"model {model}: the posterior precision Lambda_0 + X^T X")
        mean = scipy.linalg.cho_solve((L, True), Zty, check_finite=False)
        self.factor[model], self.mean[model] = L.T, mean
        self.a[model] = self.a0 + 0.5 * n
        self.b[model] = self.b0 + 0.5 * (rss_at(mean) + float(mean @ (diag * mean)))
        self.counts[model] = n

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
                self._posterior(int(m), Xm.T @ Xm, Xm.T @ ym, int(rows.sum()),
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
                self._posterior(m, G, c, int(n[m]),
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

    def predictive(self, Z) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r"""Student-t predictive of a new ``y`` for rows ``Z (n, dim)``, every model: ``(loc, scale, df)``.

        ``loc (k, n) = X mu``, ``scale (k, n) = sqrt((b/a)(1 + x^T Lambda_n^{-1} x))``, ``df (k,) = 2a``
        (``scipy.stats.t(df[:, None], loc, scale)``).
        """
        X = self.design(np.atleast_2d(Z))
        loc = self.mean @ X.T
        quad = np.empty_like(loc)
        for m in range(self.num_models):
            white = scipy.linalg.solve_triangular(self.factor[m], X.T, trans="T", lower=False, check_finite=False)
            quad[m] = np.sum(white * white, axis=0)
        scale = np.sqrt((self.b / self.a)[:, None] * (1.0 + quad))
        return loc, scale, 2.0 * self.a

    # ---- persistence ------------------------------------------------------------------------------------

    _STATE = ("factor", "mean", "a", "b", "counts")

    def state_dict(self) -> dict:
        """Copies of the state arrays as tensors (what :meth:`load_state_dict` takes back)."""
        return {name: torch.from_numpy(getattr(self, name).copy()) for name in self._STATE}

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`; shapes must match this state's."""
        values = {}
        for name in self._STATE:
            value = np.asarray(torch.as_tensor(state[name]).numpy(), dtype=getattr(self, name).dtype)
            if value.shape != getattr(self, name).shape:
                raise ValueError(f"{name} has shape {value.shape}, expected {getattr(self, name).shape}")
            values[name] = value.copy()
        for name, value in values.items():
            setattr(self, name, value)
