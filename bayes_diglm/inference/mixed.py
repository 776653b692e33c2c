"""Mixed-effects GLM heads: random effects per group on top of the features (the paper's appendix B.1)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import linalg as sla
from scipy import optimize as sopt
from scipy.special import expit

from bayes_diglm._validation import as_label_tensor, check_fitted, check_positive, to_numpy_float64
from bayes_diglm.inference.laplace import (
    _Bernoulli,
    _check_generator,
    _probit_predictive,
    laplace_glm,
    mackay_prior_precision,
)
from bayes_diglm.inference.linalg import robust_cholesky

__all__ = ["MixedEffectsClassifier", "MixedEffectsRegression"]

_RE_COVARIANCES = ("diag", "full")


class _GroupedHead:
    """Shared plumbing: group labels, the random-effects design ``A`` and the ArviZ dims."""

    fit_intercept: bool
    random_slopes: Sequence[int]

    # ---- inputs ----------------------------------------------------------------------------------------

    def _features(self, Z, *, fitted: bool = True) -> np.ndarray:
        Z = to_numpy_float64(Z, "Z", ndim=2)
        if fitted and Z.shape[1] != self.n_features_in_:
            raise ValueError(f"Z has {Z.shape[1]} features but the head was fitted on {self.n_features_in_}")
        return Z

    def _slopes(self, n_features: int) -> list[int]:
        slopes = [int(j) for j in self.random_slopes]
        bad = [j for j in slopes if not 0 <= j < n_features]
        if bad or len(set(slopes)) != len(slopes):
            raise ValueError(f"random_slopes must be distinct feature columns in 0..{n_features - 1}, "
                             f"got {list(self.random_slopes)!r}")
        return slopes

    @staticmethod
    def _group_labels(groups, n: int) -> np.ndarray:
        if groups is None:
            raise ValueError("groups is required: one group id per row of Z")
        g = np.asarray(groups)
        if g.ndim != 1:
            raise ValueError(f"groups must be one-dimensional, got shape {g.shape}")
        if g.shape[0] != n:
            raise ValueError(f"groups has {g.shape[0]} entries but Z has {n} rows")
        if g.dtype.kind == "f" and not np.all(np.isfinite(g)):
            raise ValueError("groups contains NaN or infinite ids")
        if g.dtype == object:
            g = g.astype(str)
        return g

    def _group_index(self, groups, n: int, *, allow_unseen: bool) -> np.ndarray:
        """Index of each row's group in ``groups_``; -1 for unseen groups (only when allowed)."""
        g = self._group_labels(groups, n)
        try:
            pos = np.clip(np.searchsorted(self.groups_, g), 0, len(self.groups_) - 1)
            seen = self.groups_[pos] == g
        except TypeError as err:
            raise TypeError(f"groups ids of type {g.dtype} cannot be compared with the fitted ids "
                            f"({self.groups_.dtype})") from err
        if not np.all(seen) and not allow_unseen:
            unknown = np.unique(g[~seen])
            raise ValueError(f"groups contains ids not seen in fit: {unknown[:10].tolist()}"
                             f"{' ...' if unknown.size > 10 else ''}; pass allow_unseen=True to predict them "
                             "with random effects at their prior mean 0")
        return np.where(seen, pos, -1)

    def _re_design(self, Z: np.ndarray, slopes: list[int] | None = None) -> np.ndarray:
        """Random-effects design ``a_i = [1, z_i[random_slopes]]``, shape (n, q)."""
        slopes = self._slope_columns if slopes is None else slopes
        return np.concatenate([np.ones((Z.shape[0], 1)), Z[:, slopes]], axis=1)

    def _fixed_design(self, Z: np.ndarray) -> np.ndarray:
        return np.concatenate([Z, np.ones((Z.shape[0], 1))], axis=1) if self.fit_intercept else Z

    # ---- ArviZ protocol, shared part -------------------------------------------------------------------

    def _posterior_dims(self, feature_names: list[str] | None) -> tuple[dict, dict]:
        check_fitted(self, "groups_")
        d = self.n_features_in_
        names = [f"z{j}" for j in range(d)] if feature_names is None else list(feature_names)
        if len(names) != d:
            raise ValueError(f"feature_names has {len(names)} names for {d} features")
        coords = {"feature": names, "group": self.groups_.tolist()}
        dims = {"beta": ["feature"], "sigma": [], "intercept": []}
        if not self.fit_intercept:
            del dims["intercept"]
        if len(self._slope_columns) == 0:
            dims.update(u=["group"], tau=[])
        else:
            coords["effect"] = ["intercept"] + [names[j] for j in self._slope_columns]
            dims.update(u=["group", "effect"], tau=["effect"])
        return dims, coords

    def _draw_location(self, draws: dict, Z, groups) -> np.ndarray:
        """Linear predictor ``z beta + b + a u_g`` for each draw, shape (S, n)."""
        Z = self._features(Z)
        idx = self._group_index(groups, Z.shape[0], allow_unseen=False)
        loc = draws["beta"] @ Z.T
        if "intercept" in draws:
            loc = loc + draws["intercept"][:, None]
        u = draws["u"].reshape(draws["u"].shape[0], len(self.groups_), -1)  # (S, G, q)
        return loc + np.einsum("nq,snq->sn", self._re_design(Z), u[:, idx])

    def _unpack(self, fixed: np.ndarray, u: np.ndarray, extra: dict) -> dict[str, np.ndarray]:
        """Split (S, D[+1]) fixed-effect and (S, G, q) random-effect draws into the protocol's names."""
        d = self.n_features_in_
        draws = {"beta": np.ascontiguousarray(fixed[:, :d])}
        if self.fit_intercept:
            draws["intercept"] = np.ascontiguousarray(fixed[:, d])
        draws["u"] = u[..., 0] if u.shape[-1] == 1 else u
        draws.update(extra)
        return draws


def _group_sums(values: np.ndarray, codes: np.ndarray, num_groups: int) -> np.ndarray:
    out = np.zeros((num_groups,) + values.shape[1:])
    np.add.at(out, codes, values)
    return out


class MixedEffectsRegression(_GroupedHead):
    r"""Gaussian linear mixed model on features with random effects per group, fitted by maximum likelihood.

    .. math:: y_i = z_i^\top \beta + b + a_i^\top u_{g(i)} + \varepsilon_i, \qquad
              u_g \sim N(0, \Psi), \quad \varepsilon_i \sim N(0, \sigma^2),

    with ``a_i = [1, z_i[random_slopes]]`` (a random intercept, plus random slopes on the chosen feature
    columns).  The random effects are integrated out exactly: with ``Psi = sigma^2 L L^T`` and
    ``B_g = A_g L``, each group's marginal covariance is ``sigma^2 (I + B_g B_g^T)``, inverted and
    log-determined through the q x q Cholesky factor of ``M_g = I + B_g^T B_g`` (Woodbury; no n_g x n_g
    matrix is formed).  ``beta`` is the GLS estimate, ``sigma^2`` is profiled out, and ``L`` maximises the
    profiled marginal likelihood (ML, not REML: this matches statsmodels ``MixedLM.fit(reml=False)``).

    The posterior of each ``u_g`` given the data and ``beta = beta_hat`` (the BLUP) is
    ``N(L M_g^{-1} L^T A_g^T r_g, sigma^2 L M_g^{-1} L^T)``, ``r_g = y_g - Z_g beta_hat``.  ArviZ draws treat
    ``beta`` under a flat prior (``N(beta_hat, sigma^2 (Z^T V^{-1} Z)^{-1})``), then ``u | beta``; ``sigma``
    and ``tau`` (the random-effect standard deviations) are plug-in estimates, constant across draws
    (empirical Bayes).

    Parameters
    ----------
    fit_intercept : bool
        Fixed intercept ``b`` (a column of ones in the fixed-effects design).
    random_slopes : sequence of int
        Feature columns that get a random slope in addition to the random intercept.
    re_covariance : {"diag", "full"}
        ``Psi`` diagonal (independent effects) or unstructured (statsmodels' default).
    tol : float
        Gradient tolerance of the L-BFGS-B search over the covariance parameters.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> groups = np.repeat(np.arange(20), 15); Z = rng.normal(size=(300, 2))
    >>> y = Z @ [1.0, -2.0] + rng.normal(size=20)[groups] + 0.5 * rng.normal(size=300)
    >>> head = MixedEffectsRegression().fit(Z, y, groups)
    >>> np.round(head.coef_, 1)
    array([ 1., -2.])
    >>> head.predict(Z[:2], groups[:2]).shape
    (2,)
    """

    _arviz_attrs = {"inference": "linear mixed model, ML variance components (plug-in), exact conditionals"}

    def __init__(
        self,
        *,
        fit_intercept: bool = True,
        random_slopes: Sequence[int] = (),
        re_covariance: str = "diag",
        tol: float = 1e-9,
        max_iter: int = 1000,
    ):
        self.fit_intercept = fit_intercept
        self.random_slopes = random_slopes
        self.re_covariance = re_covariance
        self.tol = tol
        self.max_iter = max_iter

    # ---- the profiled marginal likelihood --------------------------------------------------------------

    def _relative_factor(self, theta: np.ndarray, q: int) -> np.ndarray:
        """``L`` with ``Psi / sigma^2 = L L^T``: log-diagonal, plus the lower triangle for "full"."""
        L = np.diag(np.exp(theta[:q]))
        if self.re_covariance == "full":
            L[np.tril_indices(q, -1)] = theta[q:]
        return L

    @staticmethod
    def _gls(stats: dict, L: np.ndarray) -> dict:
        """GLS pieces at relative factor ``L``: beta_hat, sigma2_hat, log-likelihood and per-group M_g."""
        q = L.shape[0]
        M = np.eye(q) + np.einsum("ji,gjk,kl->gil", L, stats["AtA"], L)
        M_chol = np.linalg.cholesky(M)
        LtAtZ = np.einsum("ji,gjd->gid", L, stats["AtZ"])
        LtAty = np.einsum("ji,gj->gi", L, stats["Aty"])
        # W = M^{-1/2} L^T A^T [Z, y] via batched triangular solves
        Wz = np.linalg.solve(M_chol, LtAtZ)
        Wy = np.linalg.solve(M_chol, LtAty[..., None])[..., 0]
        ZVZ = stats["ZtZ"] - np.einsum("gid,gie->de", Wz, Wz)
        ZVy = stats["Zty"] - np.einsum("gid,gi->d", Wz, Wy)
        yVy = stats["yty"] - np.einsum("gi,gi->", Wy, Wy)
        beta = sla.cho_solve((robust_cholesky(ZVZ, "the GLS precision Z^T V^-1 Z"), True), ZVy)
        n = stats["n"]
        sigma2 = max(float(yVy - ZVy @ beta), 1e-300) / n
        logdet_M = 2.0 * np.log(np.diagonal(M_chol, axis1=1, axis2=2)).sum()
        loglik = -0.5 * n * (math.log(2 * math.pi * sigma2) + 1.0) - 0.5 * logdet_M
        return {"beta": beta, "sigma2": sigma2, "loglik": float(loglik), "M_chol": M_chol, "ZVZ": ZVZ}

    def fit(self, Z, y, groups) -> MixedEffectsRegression:
        """Fit by maximum likelihood on features ``Z`` (n, D), targets ``y`` (n,) and group ids (n,)."""
        Zn = self._features(Z, fitted=False)
        y = to_numpy_float64(y, "y", ndim=1)
        if y.shape[0] != Zn.shape[0]:
            raise ValueError(f"y has {y.shape[0]} entries but Z has {Zn.shape[0]} rows")
        labels, codes = np.unique(self._group_labels(groups, Zn.shape[0]), return_inverse=True)
        if self.re_covariance not in _RE_COVARIANCES:
            raise ValueError(f"re_covariance must be one of {_RE_COVARIANCES}, got {self.re_covariance!r}")
        slopes = self._slopes(Zn.shape[1])
        if labels.size < 2:
            raise ValueError(f"groups has a single group ({labels[0]!r}): its variance is not identifiable")
        X = self._fixed_design(Zn)
        A = self._re_design(Zn, slopes)
        G, q = labels.size, A.shape[1]
        stats = {
            "AtA": _group_sums(A[:, :, None] * A[:, None, :], codes, G),
            "AtZ": _group_sums(A[:, :, None] * X[:, None, :], codes, G),
            "Aty": _group_sums(A * y[:, None], codes, G),
            "ZtZ": X.T @ X, "Zty": X.T @ y, "yty": float(y @ y), "n": float(y.shape[0]),
        }
        num_theta = q if self.re_covariance == "diag" else q + q * (q - 1) // 2

        def objective(theta):
            return -self._gls(stats, self._relative_factor(theta, q))["loglik"]

        best = None
        for start in (0.0, -2.0):  # Psi = sigma^2 I and a small-variance start; keep the better optimum
            theta0 = np.zeros(num_theta)
            theta0[:q] = start
            res = sopt.minimize(objective, theta0, method="L-BFGS-B",
                                options={"gtol": self.tol, "ftol": 1e-15, "maxiter": self.max_iter})
            if best is None or res.fun < best.fun:
                best = res
        L = self._relative_factor(best.x, q)
        gls = self._gls(stats, L)
        sigma2 = gls["sigma2"]
        gain, half = _random_effect_gain(L, gls["M_chol"])
        u_mean = np.einsum("gij,gj->gi", gain, stats["Aty"] - stats["AtZ"] @ gls["beta"])
        # everything computed: assign the fitted state
        self.n_features_in_ = Zn.shape[1]
        self._slope_columns = slopes
        self.groups_ = labels
        self.beta_ = gls["beta"]
        self.coef_ = gls["beta"][: Zn.shape[1]]
        self.intercept_ = float(gls["beta"][-1]) if self.fit_intercept else 0.0
        self.sigma2_ = sigma2
        self.re_cov_ = sigma2 * L @ L.T
        self.u_mean_ = u_mean
        self.u_cov_ = sigma2 * gain
        self.log_likelihood_ = gls["loglik"]
        self.n_iter_ = int(best.nit)
        self.converged_ = bool(best.success)
        # precision of beta under a flat prior: Z^T V^{-1} Z = (Z^T Vbar^{-1} Z) / sigma^2
        self.beta_precision_chol_ = robust_cholesky(gls["ZVZ"] / sigma2, "the precision of beta")
        self._gain, self._half, self._stats = gain, half, stats
        return self

    def predict(self, Z, groups, *, allow_unseen: bool = False) -> np.ndarray:
        """Mean prediction ``z beta + b + a u_g`` with the BLUP ``u_g`` of each row's group.

        Groups not seen in ``fit`` raise a ValueError naming them, unless ``allow_unseen=True``: then their
        random effects are set to the prior mean 0 (the population-level prediction).
        """
        check_fitted(self, "groups_")
        Z = self._features(Z)
        idx = self._group_index(groups, Z.shape[0], allow_unseen=allow_unseen)
        u = np.where(idx[:, None] >= 0, self.u_mean_[np.maximum(idx, 0)], 0.0)
        return self._fixed_design(Z) @ self.beta_ + np.einsum("nq,nq->n", self._re_design(Z), u)

    def score(self, Z, y, groups) -> float:
        """Coefficient of determination R^2 of :meth:`predict` (seen groups only)."""
        y = to_numpy_float64(y, "y", ndim=1)
        resid = y - self.predict(Z, groups)
        return float(1.0 - resid @ resid / ((y - y.mean()) @ (y - y.mean())))

    # ---- ArviZ protocol --------------------------------------------------------------------------------

    def _posterior_draws(self, num_draws: int, generator: np.random.Generator) -> dict[str, np.ndarray]:
        """beta ~ N(beta_hat, (Z^T V^{-1} Z)^{-1}), then u | beta exactly; sigma and tau are plug-ins."""
        check_fitted(self, "groups_")
        S = int(num_draws)
        eps = generator.standard_normal((self.beta_.shape[0], S))
        fixed = self.beta_[None] + sla.solve_triangular(self.beta_precision_chol_, eps, lower=True, trans="T").T
        G, q = self.u_mean_.shape
        resid = self._stats["Aty"][None] - np.einsum("gqd,sd->sgq", self._stats["AtZ"], fixed)
        u = np.einsum("gij,sgj->sgi", self._gain, resid)
        # u | beta has covariance sigma^2 half^T half
        u += math.sqrt(self.sigma2_) * np.einsum("gki,sgk->sgi", self._half, generator.standard_normal((S, G, q)))
        tau = np.sqrt(np.diag(self.re_cov_))
        extra = {"sigma": np.full(S, math.sqrt(self.sigma2_)),
                 "tau": np.broadcast_to(tau if q > 1 else tau[0], (S,) + ((q,) if q > 1 else ())).copy()}
        return self._unpack(fixed, u, extra)

    def _pointwise_log_likelihood(self, draws: dict, Z, y, groups=None) -> np.ndarray:
        check_fitted(self, "groups_")
        y = to_numpy_float64(y, "y", ndim=1)
        loc = self._draw_location(draws, Z, groups)
        sigma = draws["sigma"][:, None]
        return -0.5 * np.log(2 * np.pi * sigma**2) - 0.5 * ((y[None] - loc) / sigma) ** 2

    def _posterior_predictive_draws(self, draws: dict, Z, generator, groups=None) -> np.ndarray:
        check_fitted(self, "groups_")
        loc = self._draw_location(draws, Z, groups)
        return loc + draws["sigma"][:, None] * generator.standard_normal(loc.shape)


def _random_effect_gain(L: np.ndarray, M_chol: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``gain_g = L M_g^{-1} L^T`` and ``half_g = C_g^{-1} L^T`` (``M_g = C_g C_g^T``, gain = half^T half).

    Given beta, ``u_g | y ~ N(gain_g A_g^T (y_g - Z_g beta), sigma^2 gain_g)``.
    """
    G, q, _ = M_chol.shape
    half = np.linalg.solve(M_chol, np.broadcast_to(L.T, (G, q, q)))
    return np.einsum("gki,gkj->gij", half, half), half


class MixedEffectsClassifier(_GroupedHead):
    r"""Binary logistic GLM with random effects per group, by a joint Laplace approximation over (beta, u).

    .. math:: p(y_i = 1) = \sigma(z_i^\top \beta + b + a_i^\top u_{g(i)}), \quad
              \beta \sim N(0, 1/\text{prior\_precision}), \quad u_{g} \sim N(0, \mathrm{diag}(\tau^2)).

    The weights ``(beta, b, u_1..u_G)`` are one GLM on the design ``[Z, 1, a_i e_{g(i)}^T]`` and get a full
    Laplace posterior (:func:`~bayes_diglm.inference.laplace.laplace_glm`).  ``tau=None`` estimates one
    scale per random-effect dimension by maximising the Laplace evidence (MacKay's fixed point), with the
    prior on beta held fixed; a number keeps ``tau`` fixed.  Suits modest numbers of groups (the design
    and the posterior are dense in ``G * q``).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> groups = np.repeat(np.arange(10), 40); Z = rng.normal(size=(400, 2))
    >>> logits = Z @ [1.5, -1.0] + rng.normal(size=10)[groups]
    >>> y = (rng.random(400) < 1 / (1 + np.exp(-logits))).astype(int)
    >>> clf = MixedEffectsClassifier(tau=1.0).fit(Z, y, groups)
    >>> clf.predict_proba(Z[:3], groups[:3]).shape
    (3, 2)
    """

    _arviz_attrs = {"inference": "joint Laplace approximation over fixed and random effects"}

    def __init__(
        self,
        *,
        prior_precision: float = 1.0,
        fit_intercept: bool = True,
        random_slopes: Sequence[int] = (),
        tau: float | None = 1.0,
        tol: float = 1e-8,
        max_iter: int = 100,
    ):
        self.prior_precision = prior_precision
        self.fit_intercept = fit_intercept
        self.random_slopes = random_slopes
        self.tau = tau
        self.tol = tol
        self.max_iter = max_iter

    def _joint_design(self, Z: np.ndarray, idx: np.ndarray, num_groups: int, slopes=None) -> np.ndarray:
        """``[Z, 1, a_i e_g^T]``; rows of unseen groups (idx = -1) get zeros in the random-effect block."""
        A = self._re_design(Z, slopes)
        block = np.zeros((Z.shape[0], num_groups, A.shape[1]))
        rows = np.flatnonzero(idx >= 0)
        block[rows, idx[rows]] = A[rows]
        return np.concatenate([self._fixed_design(Z), block.reshape(Z.shape[0], -1)], axis=1)

    def fit(self, Z, y, groups) -> MixedEffectsClassifier:
        """Joint Laplace fit on features ``Z`` (n, D), 0/1 labels ``y`` and group ids (n,)."""
        Zn = self._features(Z, fitted=False)
        y = as_label_tensor(y, "y", num_classes=2, n=Zn.shape[0]).numpy()
        if np.unique(y).size < 2:
            raise ValueError(f"y contains a single class ({int(y[0])}); a classifier needs both 0 and 1")
        labels, codes = np.unique(self._group_labels(groups, Zn.shape[0]), return_inverse=True)
        slopes = self._slopes(Zn.shape[1])
        alpha = check_positive(self.prior_precision, "prior_precision")
        tau = None if self.tau is None else check_positive(self.tau, "tau")
        X = self._joint_design(Zn, codes, labels.size, slopes)
        q = 1 + len(slopes)
        num_fixed = X.shape[1] - labels.size * q
        prior = np.full((1, X.shape[1]), alpha)
        prior[0, num_fixed:] = 1.0 if tau is None else 1.0 / tau**2
        # which random-effect dimension each weight belongs to (-1: fixed effects keep their prior)
        groups_of = np.full((1, X.shape[1]), -1)
        groups_of[0, num_fixed:] = np.tile(np.arange(q), labels.size)

        def fit_fn(p, init):
            return laplace_glm(X, y, likelihood="bernoulli", prior_precision=p, tol=self.tol,
                               max_iter=self.max_iter, init=init)

        fit = fit_fn(prior, None) if tau is not None else mackay_prior_precision(fit_fn, prior, groups_of)
        # joint covariance blocks of each u_g, by triangular solves with the Cholesky factor of H
        chol = fit.posterior.chol
        sel = np.zeros((X.shape[1], labels.size * q))
        sel[num_fixed:] = np.eye(labels.size * q)
        v = sla.solve_triangular(chol, sel, lower=True).reshape(X.shape[1], labels.size, q)
        # assign the fitted state
        self.n_features_in_ = Zn.shape[1]
        self._slope_columns = slopes
        self.groups_ = labels
        self.fit_ = fit
        self.beta_ = fit.mean[0, :num_fixed]
        self.coef_ = self.beta_[: Zn.shape[1]]
        self.intercept_ = float(self.beta_[-1]) if self.fit_intercept else 0.0
        self.u_mean_ = fit.mean[0, num_fixed:].reshape(labels.size, q)
        self.u_cov_ = np.einsum("pgi,pgj->gij", v, v)
        self.tau_ = 1.0 / np.sqrt(fit.prior_precision[0, num_fixed:num_fixed + q])
        self.log_evidence_ = fit.log_evidence
        return self

    def _logit_moments(self, Z, groups, allow_unseen: bool) -> tuple[np.ndarray, np.ndarray]:
        check_fitted(self, "groups_")
        Z = self._features(Z)
        idx = self._group_index(groups, Z.shape[0], allow_unseen=allow_unseen)
        X = self._joint_design(Z, idx, len(self.groups_))
        mean = X @ self.fit_.mean[0]
        var = self.fit_.posterior.logit_cov(X)[:, 0, 0]
        # an unseen group's effect is a fresh draw from its prior N(0, diag(tau^2))
        var = var + np.where(idx < 0, (self._re_design(Z) ** 2) @ self.tau_**2, 0.0)
        return mean, var

    def predict_proba(self, Z, groups, *, method: str = "probit", allow_unseen: bool = False,
                      n_samples: int = 1000, generator=None) -> np.ndarray:
        """``p(y | z, g, data)``, shape (n, 2): MacKay's probit ("probit"), the MAP ("map") or Monte Carlo
        over the Gaussian of each logit ("mc").  Unseen groups (with ``allow_unseen=True``) integrate their
        random effect over its prior."""
        mean, var = self._logit_moments(Z, groups, allow_unseen)
        if method == "probit":
            return _probit_predictive(mean[:, None], var[:, None, None])
        if method == "map":
            p1 = expit(mean)
        elif method == "mc":
            rng = _check_generator(generator)
            p1 = expit(mean + np.sqrt(var) * rng.standard_normal((int(n_samples), mean.shape[0]))).mean(axis=0)
        else:
            raise ValueError(f"method must be 'probit', 'map' or 'mc', got {method!r}")
        return np.stack([1.0 - p1, p1], axis=1)

    def predict(self, Z, groups, *, allow_unseen: bool = False) -> np.ndarray:
        """Most probable label under the probit predictive."""
        return np.argmax(self.predict_proba(Z, groups, allow_unseen=allow_unseen), axis=1)

    def score(self, Z, y, groups) -> float:
        """Accuracy of :meth:`predict`."""
        y = as_label_tensor(y, "y", num_classes=2).numpy()
        return float(np.mean(self.predict(Z, groups) == y))

    # ---- ArviZ protocol --------------------------------------------------------------------------------

    def _posterior_draws(self, num_draws: int, generator: np.random.Generator) -> dict[str, np.ndarray]:
        check_fitted(self, "groups_")
        S = int(num_draws)
        w = self.fit_.posterior.sample(S, generator)[:, 0]
        nf = self.beta_.shape[0]
        q = self.u_mean_.shape[1]
        tau = np.broadcast_to(self.tau_ if q > 1 else self.tau_[0], (S,) + ((q,) if q > 1 else ())).copy()
        return self._unpack(w[:, :nf], w[:, nf:].reshape(S, len(self.groups_), q), {"tau": tau})

    def _posterior_dims(self, feature_names: list[str] | None) -> tuple[dict, dict]:
        dims, coords = super()._posterior_dims(feature_names)
        del dims["sigma"]
        return dims, coords

    def _pointwise_log_likelihood(self, draws: dict, Z, y, groups=None) -> np.ndarray:
        check_fitted(self, "groups_")
        y = as_label_tensor(y, "y", num_classes=2).numpy()
        return _Bernoulli().log_prob(self._draw_location(draws, Z, groups)[..., None], y)

    def _posterior_predictive_draws(self, draws: dict, Z, generator, groups=None) -> np.ndarray:
        check_fitted(self, "groups_")
        return _Bernoulli().sample(self._draw_location(draws, Z, groups)[..., None], generator)
