"""Shared machinery of the mixed-effects heads: grouped designs, the fitted PLS system, draws and predictions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import linalg as sla
from sklearn.utils.validation import check_is_fitted, validate_data

from bayes_diglm._validation import COUNT, TOLERANCE, numeric_array
from bayes_diglm.inference.base import PosteriorHead

from .blocked import BlockedCholesky
from .design import Factor, RandomEffect, block_order, cross_products, factor_labels, group_columns, resolve_slopes

_CHUNK_ENTRIES = 1 << 22  # dense (q x rows) blocks of the predictive solves are chunked to this size


@dataclass
class PLSSystem:
    r"""The penalised least-squares system at the fit: ``M = L_full L_full^T`` over ``(u, beta)``.

    ``chol`` factors ``Lambda^T Zr^T W Zr Lambda + I``; ``RZX = L^{-1} Lambda^T Zr^T W X``; ``RX`` the lower
    Cholesky factor of ``X^T W X - RZX^T RZX``; ``u`` and ``beta`` the mode (spherical random effects ``u``,
    ``b = Lambda u``); ``scale`` the residual variance (1 for the GLMMs, whose curvature is in ``W``).
    """

    chol: BlockedCholesky
    RZX: np.ndarray
    RX: np.ndarray
    u: np.ndarray
    beta: np.ndarray
    scale: float

    def draw(self, num: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Joint draws of ``(u, beta) ~ N(mode, scale M^{-1})``: shapes (S, q), (S, p)."""
        q, p = self.u.shape[0], self.beta.shape[0]
        eps = rng.standard_normal((q + p, num))
        x_beta = sla.solve_triangular(self.RX, eps[q:], lower=True, trans="T", check_finite=False)
        x_u = self.chol.solve_Lt(eps[:q] - self.RZX @ x_beta)
        sd = np.sqrt(self.scale)
        return (self.u[:, None] + sd * x_u).T, (self.beta[:, None] + sd * x_beta).T

    def predictor_variance(self, v_u: np.ndarray, v_x: np.ndarray) -> np.ndarray:
        """``scale * v^T M^{-1} v`` for the columns ``v = [Lambda^T a; x]`` (v_u (q, k), v_x (p, k))."""
        c_u = self.chol.solve_L(v_u)
        c_b = sla.solve_triangular(self.RX, v_x - self.RZX.T @ c_u, lower=True, check_finite=False)
        return self.scale * (np.einsum("ik,ik->k", c_u, c_u) + np.einsum("ik,ik->k", c_b, c_b))

    def fixed_covariance(self) -> np.ndarray:
        """``scale (RX RX^T)^{-1}``, the covariance of beta (flat prior; GLS covariance for the LMM)."""
        P = sla.solve_triangular(self.RX, np.eye(self.RX.shape[0]), lower=True, check_finite=False)
        return self.scale * P.T @ P


def drop_zero_weights(w: np.ndarray, Z: np.ndarray, y, labels: list[np.ndarray], context: dict | None = None):
    """``(Z, y, w, labels, context)`` without the rows of weight 0: they carry no information (no trials, or
    infinite noise), and ``log w`` would be -inf. Factor levels are built before, so a level seen only in such rows
    stays a level whose random effect keeps its prior. ``context`` holds the family's per-row keywords (the
    binomial's ``trials``), subset with the rows."""
    context = {} if context is None else context
    keep = w > 0
    if keep.all():
        return Z, y, w, labels, context
    return (Z[keep], None if y is None else y[keep], w[keep], [lab[keep] for lab in labels],
            {key: value[keep] for key, value in context.items()})


def default_effects(cols: dict) -> list[RandomEffect]:
    """A random intercept for every grouping column (crossed)."""
    return [RandomEffect(group=key) for key in cols]


class MixedHeadBase(PosteriorHead):
    """Grouped design, fitted random effects, draws and predictor moments shared by the three mixed heads.

    Subclasses set ``self.system_`` (a :class:`PLSSystem`), ``self.factors_`` and ``self.order_`` in ``fit``.
    """

    #: the settings every mixed head shares (each class has the ones its ``__init__`` lists)
    _parameter_constraints = {"random_effects": "no_validation", "reml": ["boolean"], "fit_intercept": ["boolean"],
                              "variance_components": [Mapping, None], "tol": TOLERANCE, "max_iter": COUNT}

    random_effects: object
    fit_intercept: bool

    # ---- validation ------------------------------------------------------------------------------------

    def _validate_Z(self, Z) -> np.ndarray:
        check_is_fitted(self)
        return numeric_array(Z, "Z", lambda a: validate_data(self, a, dtype=np.float64, reset=False,
                                                              ensure_min_features=0))

    def _weights(self, sample_weight, n: int, *, allow_zero: bool = False) -> np.ndarray:
        """Positive weights (non-negative, not all zero, with ``allow_zero``; ones when None), checked by the
        contract's validator."""
        w = self._validate_weights(sample_weight, n, positive=not allow_zero)
        return np.ones(n) if w is None else w

    def _X(self, Z: np.ndarray) -> np.ndarray:
        return np.hstack([Z, np.ones((Z.shape[0], 1))]) if self.fit_intercept else Z

    def _build_factors(self, Z: np.ndarray, groups, levels=None) -> tuple[list[Factor], list[np.ndarray]]:
        """The factors of ``random_effects`` (levels from the data, or from ``levels``) and each row's labels."""
        cols = group_columns(groups, Z.shape[0])
        specs = self.random_effects
        if specs is None:
            specs = default_effects(cols)
        elif isinstance(specs, RandomEffect):
            specs = [specs]
        specs = list(specs)
        if not specs or not all(isinstance(s, RandomEffect) for s in specs):
            raise TypeError("random_effects must be a RandomEffect, a list of them or None, "
                            f"got {self.random_effects!r}")
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"random_effects name a factor twice: {names}")
        factors, labels = [], []
        for spec in specs:
            lab = factor_labels(spec, cols)
            if levels is not None and spec.name in levels:
                lev = np.unique(np.asarray(levels[spec.name]))
            else:
                lev = np.unique(lab)
            slopes = resolve_slopes(spec, Z.shape[1], getattr(self, "feature_names_in_", None))
            factors.append(Factor(spec.name, spec, lev, slopes))
            labels.append(lab)
        return factors, labels

    def _stats(self, Z, y, w, factors, labels, *, allow_unseen=False):
        Z, y, w, labels, _ = drop_zero_weights(w, Z, y, labels)
        order = block_order(factors)
        codes = [factors[k].codes(labels[k], allow_unseen=allow_unseen) for k in order]
        designs = [factors[k].design(Z) for k in order]
        stats = cross_products([factors[k] for k in order], codes, designs, self._X(Z), y, w)
        stats.factors, stats.order, stats.fit_intercept = factors, order, bool(self.fit_intercept)
        return stats

    def _row_codes(self, Z: np.ndarray, groups, allow_unseen: bool) -> list[np.ndarray]:
        """Each fitted factor's level index per row (spec order); -1 for unseen levels."""
        cols = group_columns(groups, Z.shape[0])
        return [f.codes(factor_labels(f.spec, cols), allow_unseen=allow_unseen) for f in self.factors_]

    # ---- fitted random effects -------------------------------------------------------------------------

    def _set_random_effects(self, lams: list[np.ndarray]) -> None:
        """BLUPs / conditional modes and their conditional covariances, per factor (spec order)."""
        sys = self.system_
        b = sys.chol.scale(sys.u[:, None], transpose=False)[:, 0]
        blocks = sys.chol.inverse_diagonal_blocks()
        means, covs, off = {}, {}, 0
        for pos, k in enumerate(self.order_):
            f, L = self.factors_[k], lams[pos]
            G, q = f.levels.size, f.q
            means[f.name] = b[off:off + G * q].reshape(G, q)
            covs[f.name] = sys.scale * np.einsum("ij,gjk,lk->gil", L, blocks[pos], L)
            off += G * q
        self.random_effects_ = means
        self.random_effects_cov_ = covs
        self.re_cov_ = {self.factors_[k].name: sys.scale * lams[pos] @ lams[pos].T
                        for pos, k in enumerate(self.order_)}
        self._lams = lams

    def _fixed_attributes(self, n_features: int) -> None:
        beta = self.system_.beta
        self.coef_ = beta[:n_features].copy()
        self.intercept_ = float(beta[n_features]) if self.fit_intercept else 0.0
        cov = self.system_.fixed_covariance()
        self.fixed_cov_ = cov
        self.bse_ = np.sqrt(np.diag(cov))
        self.posterior_ = {"mean": np.concatenate([self.system_.u, beta]), "chol": self.system_.chol,
                           "beta_cov": cov, "scale": self.system_.scale}

    # ---- the linear predictor --------------------------------------------------------------------------

    def _offsets(self) -> list[int]:
        """Offset of each factor (spec order) in the stacked random-effect vector (block order)."""
        offs, off = [0] * len(self.factors_), 0
        for k in self.order_:
            offs[k] = off
            off += self.factors_[k].size
        return offs

    def _predictor_moments_grouped(self, Z: np.ndarray, groups, allow_unseen: bool,
                                   variance: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Mean and variance of the linear predictor ``x beta + sum_k a_k b_k[g]`` under the posterior, (n,)."""
        X = self._X(Z)
        n = Z.shape[0]
        mean = X @ self.system_.beta
        prior_var = np.zeros(n)
        if groups is None:
            codes = [np.full(n, -1) for _ in self.factors_]
        else:
            codes = self._row_codes(Z, groups, allow_unseen)
        offs = self._offsets()
        q_total = sum(f.size for f in self.factors_)
        designs = [f.design(Z) for f in self.factors_]
        for k, f in enumerate(self.factors_):
            seen = codes[k] >= 0
            mean[seen] += np.einsum("nq,nq->n", designs[k][seen], self.random_effects_[f.name][codes[k][seen]])
            A = designs[k][~seen]
            prior_var[~seen] += np.einsum("nq,qr,nr->n", A, self.re_cov_[f.name], A)
        if not variance:
            return mean, None
        var = np.empty(n)
        chunk = max(1, _CHUNK_ENTRIES // max(q_total, 1))
        for start in range(0, n, chunk):
            rows = slice(start, min(n, start + chunk))
            k_rows = rows.stop - rows.start
            v = np.zeros((q_total, k_rows))
            for k, f in enumerate(self.factors_):
                c = codes[k][rows]
                seen = np.flatnonzero(c >= 0)
                idx = offs[k] + c[seen, None] * f.q + np.arange(f.q)[None, :]
                v[idx, seen[:, None]] = designs[k][rows][seen]
            v = self.system_.chol.scale(v)  # Lambda^T v
            var[rows] = self.system_.predictor_variance(v, X[rows].T)
        return mean, var + prior_var

    # ---- draws -----------------------------------------------------------------------------------------

    def _draw_effects(self, num: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Joint Gaussian draws of beta, intercept and each factor's random effects ``u_<factor>``."""
        u, beta = self.system_.draw(num, rng)
        b = self.system_.chol.scale(u.T, transpose=False).T  # (S, q)
        d = self.n_features_in_
        draws = {"beta": np.ascontiguousarray(beta[:, :d])}
        if self.fit_intercept:
            draws["intercept"] = np.ascontiguousarray(beta[:, d])
        offs = self._offsets()
        for k, f in enumerate(self.factors_):
            block = b[:, offs[k]:offs[k] + f.size].reshape(num, f.levels.size, f.q)
            draws[f"u_{f.name}"] = block[..., 0] if f.q == 1 else block
            sd = np.sqrt(np.diag(self.re_cov_[f.name]))
            shape = (num,) if f.q == 1 else (num, f.q)
            draws[f"sd_{f.name}"] = np.broadcast_to(sd[0] if f.q == 1 else sd, shape).copy()
        return draws

    def _draw_predictor(self, draws: dict, Z: np.ndarray, groups, allow_unseen: bool = False) -> np.ndarray:
        """Linear predictor of each draw, shape (S, n); unseen levels contribute 0 (their prior mean)."""
        beta = np.asarray(draws["beta"], dtype=np.float64)
        f = beta @ Z.T
        if "intercept" in draws:
            f = f + np.asarray(draws["intercept"])[:, None]
        if groups is None:  # population level: every level unseen, random effects at their prior mean
            return f
        codes = self._row_codes(Z, groups, allow_unseen)
        for k, fac in enumerate(self.factors_):
            u = np.asarray(draws[f"u_{fac.name}"])
            u = u[..., None] if u.ndim == 2 else u  # (S, G, q)
            seen = np.flatnonzero(codes[k] >= 0)
            A = fac.design(Z[seen])
            f[:, seen] += np.einsum("nq,snq->sn", A, u[:, codes[k][seen]])
        return f

    def posterior_dims(self, feature_names=None) -> tuple[dict, dict]:
        """ArviZ dims and coords: ``feature``; each factor's levels (its name) and effects (``<name>_effect``)."""
        names = self._feature_names(feature_names)
        coords = {"feature": names}
        dims = {"beta": ["feature"]}
        if self.fit_intercept:
            dims["intercept"] = []
        for f in self.factors_:
            coords[f.name] = [v.item() if isinstance(v, np.generic) else v for v in f.levels]
            if f.q == 1:
                dims[f"u_{f.name}"], dims[f"sd_{f.name}"] = [f.name], []
            else:
                coords[f"{f.name}_effect"] = [e if e == "intercept" else names[int(e[1:])] for e in f.effect_names]
                dims[f"u_{f.name}"] = [f.name, f"{f.name}_effect"]
                dims[f"sd_{f.name}"] = [f"{f.name}_effect"]
        return dims, coords
