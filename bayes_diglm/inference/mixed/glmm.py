"""Binary (logit) and count (Poisson, log link) GLMM heads by the Laplace approximation (lme4's glmer, nAGQ=1)."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy import linalg as sla
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from bayes_diglm.inference.linalg import JitterWarning
from bayes_diglm.likelihoods import Bernoulli, Poisson

from ..._validation import check_params
from ..base import Predictive, as_generator
from ._head import MixedHeadBase, PLSSystem, drop_zero_weights
from .blocked import BlockedCholesky, BlockPattern, apply_lambda, fixed_effect_factor, relative_factors, theta_layout
from .design import RowPattern, _block_sums, block_order
from .optimise import minimise_variance_components, warn_if_singular

__all__ = ["MixedEffectsClassifier", "MixedEffectsPoisson"]


class _Rows:
    """The rows of a GLMM fit in block order: fixed design, each factor's codes and covariates, targets, weights."""

    def __init__(self, X, codes, designs, factors, y, w):
        self.X, self.codes, self.designs, self.factors, self.y, self.w = X, codes, designs, factors, y, w
        self.sizes = [f.size for f in factors]
        self.pattern = RowPattern(factors, codes, designs, X)

    def system(self, D: np.ndarray, lams):
        """Blocked Cholesky, ``RZX`` and ``RX`` of the PLS system with curvature weights ``D``."""
        C11, C21, C22, ZX, XX = self.pattern.blocks(D)
        facs = self.factors
        chol = BlockedCholesky(BlockPattern(C11, C21, C22, [f.q for f in facs], [f.levels.size for f in facs]), lams)
        RZX = chol.solve_L(chol.scale(ZX))
        RX = fixed_effect_factor(XX - RZX.T @ RZX, "the fixed-effect curvature X^T W X")
        return chol, RZX, RX

    def predictor(self, b: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """``eta = X beta + Zr b`` for stacked random effects ``b`` (block order)."""
        eta = self.X @ beta
        off = 0
        for f, c, A in zip(self.factors, self.codes, self.designs, strict=True):
            eta += np.einsum("nq,nq->n", A, b[off:off + f.size].reshape(f.levels.size, f.q)[c])
            off += f.size
        return eta

    def zt(self, r: np.ndarray) -> np.ndarray:
        """``Zr^T r``, shape (q,)."""
        return np.concatenate([_block_sums(c, A, r[:, None], np.ones_like(r), f.levels.size).ravel()
                               for f, c, A in zip(self.factors, self.codes, self.designs, strict=True)])


class _LaplaceGLMM(MixedHeadBase):
    """Shared Laplace fit: penalised IRLS for the modes, L-BFGS-B over theta (then theta and beta)."""

    likelihood_: object

    def _make_likelihood(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _log_lik(self, eta, y, w) -> float:
        return float(w @ self.likelihood_.log_prob(eta[:, None], y))

    def _mode(self, rows: _Rows, lams, u, beta, *, joint: bool):
        """Penalised IRLS for ``u`` (and ``beta`` when ``joint``): Newton with step halving on
        ``sum w log p(y | eta) - |u|^2 / 2``. Returns the mode, the system at it and the Laplace deviance."""
        lik, y, w = self.likelihood_, rows.y, rows.w
        Gs = [f.levels.size for f in rows.factors]
        def objective(u, beta):
            eta = rows.predictor(apply_lambda(lams, Gs, u), beta)
            return self._log_lik(eta, y, w) - 0.5 * u @ u, eta

        value, eta = objective(u, beta)
        for _ in range(self.max_iter):
            D = w * lik.curvature(eta[:, None])[:, 0, 0]
            g = w * lik.grad(eta[:, None], y)[:, 0]
            chol, RZX, RX = rows.system(D, lams)
            grad_u = chol.scale(rows.zt(g)[:, None])[:, 0] - u
            c_u = chol.solve_L(grad_u[:, None])[:, 0]
            if joint:
                c_b = sla.solve_triangular(RX, rows.X.T @ g - RZX.T @ c_u, lower=True, check_finite=False)
                d_beta = sla.solve_triangular(RX, c_b, lower=True, trans="T", check_finite=False)
                d_u = chol.solve_Lt((c_u - RZX @ d_beta)[:, None])[:, 0]
                decrement = c_u @ c_u + c_b @ c_b
            else:
                d_beta = np.zeros_like(beta)
                d_u = chol.solve_Lt(c_u[:, None])[:, 0]
                decrement = c_u @ c_u
            if decrement < 1e-20 * max(1.0, abs(value)) or decrement < 1e-14:
                break
            step = 1.0
            for _ in range(30):
                new_value, new_eta = objective(u + step * d_u, beta + step * d_beta)
                if new_value >= value - 1e-12 * abs(value):
                    break
                step *= 0.5
            u, beta, value, eta = u + step * d_u, beta + step * d_beta, new_value, new_eta
        else:
            warnings.warn(f"penalised IRLS did not converge in {self.max_iter} iterations", RuntimeWarning,
                          stacklevel=4)
        # the system at the mode (curvature re-evaluated there)
        D = w * lik.curvature(eta[:, None])[:, 0, 0]
        chol, RZX, RX = rows.system(D, lams)
        deviance = -2.0 * value + chol.logdet
        return u, beta, deviance, PLSSystem(chol, RZX, RX, u, beta, 1.0)

    def _fit_rows(self, Z, y, w, groups) -> None:
        factors, labels = self._build_factors(Z, groups)
        for f in factors:
            if f.levels.size < 2:
                raise ValueError(f"factor {f.name!r} has a single level ({f.levels[0]!r}): its variance is not "
                                 "identifiable")
        Z, y, w, labels = drop_zero_weights(w, Z, y, labels)
        order = block_order(factors)
        facs = [factors[k] for k in order]
        rows = _Rows(self._X(Z), [factors[k].codes(labels[k], allow_unseen=False) for k in order],
                     [factors[k].design(Z) for k in order], facs, y, w)
        qs, covs = [f.q for f in facs], [f.spec.covariance for f in facs]
        q_total, p = sum(f.size for f in facs), rows.X.shape[1]
        start, _ = theta_layout(qs, covs)
        nt = start.size
        state = {"u": np.zeros(q_total), "beta": np.zeros(p)}
        with warnings.catch_warnings():  # trial points of the optimiser are not the fitted model
            warnings.simplefilter("ignore", JitterWarning)
            # population-level start for beta (theta = 0), then nAGQ = 0: theta with (u, beta) at their joint mode
            zero = relative_factors(np.zeros(nt), qs, covs)
            state["u"], state["beta"], _, _ = self._mode(rows, zero, state["u"], state["beta"], joint=True)

            def stage0(theta):
                u, beta, dev, _ = self._mode(rows, relative_factors(theta, qs, covs), state["u"], state["beta"],
                                             joint=True)
                state["u"], state["beta"] = u, beta
                return dev

            res0 = minimise_variance_components(stage0, start, qs, covs, gtol=1e-6, maxiter=200, grad_tol=1e-3,
                                                ftol=1e-12)
            state["u"], state["beta"], _, _ = self._mode(rows, relative_factors(res0.x, qs, covs), state["u"],
                                                         state["beta"], joint=True)

            def stage1(params):  # nAGQ = 1: theta and beta, u at its conditional mode (warm-started)
                theta, beta = params[:nt], params[nt:]
                u, _, dev, _ = self._mode(rows, relative_factors(theta, qs, covs), state["u"], beta, joint=False)
                state["u"] = u
                return dev

            res = minimise_variance_components(stage1, np.concatenate([res0.x, state["beta"]]), qs, covs,
                                               n_free=p, gtol=self.tol, maxiter=self.max_iter, grad_tol=1e-3)
        theta, beta = res.x[:nt], res.x[nt:]
        lams = relative_factors(theta, qs, covs)
        u, beta, dev, system = self._mode(rows, lams, state["u"], beta, joint=False)
        self.factors_, self.order_ = factors, order
        self.system_ = system
        self.theta_ = theta
        self.log_likelihood_ = -0.5 * dev
        self.n_iter_ = res.n_iter
        self.converged_ = res.converged
        self._fixed_attributes(Z.shape[1])
        self._set_random_effects(lams)
        warn_if_singular(self, lams, [f.name for f in facs])

    # ---- contract --------------------------------------------------------------------------------------

    def log_evidence(self) -> float:
        """Laplace approximation of ``log p(y | theta_hat, beta_hat)`` (random effects integrated out), maximised."""
        check_is_fitted(self)
        return float(self.log_likelihood_)

    def _sample_params(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Draws from the joint Laplace posterior of (beta, random effects); plug-in ``sd_<factor>``."""
        return self._draw_effects(n, rng)

    def _predictive_dist(self, Z, groups, allow_unseen):
        Z = self._validate_Z(Z)
        mean, var = self._predictor_moments_grouped(Z, groups, allow_unseen)
        return self.likelihood_.predictive(torch.from_numpy(mean[:, None]), torch.from_numpy(var[:, None, None]))

    def _y_index(self, y) -> np.ndarray:
        return np.asarray(column_or_1d(y), dtype=np.float64)

    def pointwise_log_likelihood(self, draws: dict, Z, y, *, groups=None, sample_weight=None) -> np.ndarray:
        """``w_i log p(y_i | f_s(z_i, g_i))``, shape (S, n); a row of weight 0 contributes 0."""
        Z = self._validate_Z(Z)
        y = self._y_index(y)
        if y.shape[0] != Z.shape[0]:
            raise ValueError(f"mismatched lengths: Z has {Z.shape[0]} rows, y has {y.shape[0]}")
        w = self._weights(sample_weight, Z.shape[0], allow_zero=True)
        f = self._draw_predictor(draws, Z, groups)
        return w[None] * self.likelihood_.log_prob(f[..., None], y[None])

    def sample_predictive(self, draws: dict, Z, *, groups=None, generator=None, sample_weight=None) -> np.ndarray:
        """One replicate per draw and row, shape (S, n)."""
        Z = self._validate_Z(Z)
        f = self._draw_predictor(draws, Z, groups)
        g = torch.Generator().manual_seed(int(as_generator(generator).integers(0, 2**62)))
        out = self.likelihood_.sample(torch.from_numpy(f[..., None]), g).numpy()
        return self._decode(out)

    def _decode(self, y):
        return y


class MixedEffectsClassifier(ClassifierMixin, _LaplaceGLMM):
    r"""Binary logistic GLMM with crossed or nested random effects, by the Laplace approximation (glmer nAGQ=1).

    .. math:: p(y_i = 1) = \sigma(x_i^\top \beta + \textstyle\sum_k a_{ik}^\top b_{k, g_k(i)}), \quad
              b = \Lambda_\theta u, \quad u \sim N(0, I).

    For each (theta, beta) the random effects are integrated out by the Laplace approximation at their
    conditional mode (penalised IRLS with the blocked Cholesky of the Gaussian head); theta and beta maximise it
    (L-BFGS-B, started from the nAGQ=0 fit where beta sits at the joint mode). The random-effect scales are
    estimated (the previous default fixed them). ``sample_weight`` are frequency weights (a binomial row with
    ``k`` successes of ``m`` becomes a 1-row of weight ``k`` and a 0-row of weight ``m - k``; rows of weight 0, as
    when ``k = 0`` or ``k = m``, are dropped).

    Fitted: ``classes_``, ``coef_``, ``intercept_``, ``bse_`` (from the joint curvature at the mode),
    ``re_cov_``, ``random_effects_`` (conditional modes), ``random_effects_cov_`` (conditional covariances, lme4's
    ``condVar``), ``log_likelihood_`` (Laplace), ``theta_``, ``converged_`` and ``singular_`` (as
    :class:`MixedEffectsRegression`). :meth:`sample` draws (beta, b) from the joint
    Laplace posterior (flat prior on beta); the variance components are plug-ins.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> groups = np.repeat(np.arange(10), 40); Z = rng.normal(size=(400, 2))
    >>> logits = Z @ [1.5, -1.0] + rng.normal(size=10)[groups]
    >>> y = (rng.random(400) < 1 / (1 + np.exp(-logits))).astype(int)
    >>> clf = MixedEffectsClassifier().fit(Z, y, groups=groups)
    >>> clf.predict_proba(Z[:3], groups=groups[:3]).shape
    (3, 2)
    """

    def __init__(self, *, random_effects=None, fit_intercept: bool = True, tol: float = 1e-5,
                 max_iter: int = 500):
        self.random_effects = random_effects
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter

    def fit(self, Z, y, *, groups, sample_weight=None) -> MixedEffectsClassifier:
        """Laplace fit on features ``Z``, binary labels ``y`` (any two hashable labels) and ``groups``."""
        with self._keep_state_on_error():
            check_params(self)
            Z, y = validate_data(self, Z, y, dtype=None, reset=True, ensure_min_features=0)
            Z = np.asarray(Z, dtype=np.float64)
            check_classification_targets(y)
            classes, index = np.unique(y, return_inverse=True)
            if classes.size != 2:
                raise ValueError(f"MixedEffectsClassifier needs exactly 2 classes, got {classes.size}: "
                                 f"{classes[:5].tolist()}")
            self.classes_ = classes
            self.likelihood_ = Bernoulli()
            self._fit_rows(Z, index.astype(np.float64), self._weights(sample_weight, Z.shape[0], allow_zero=True),
                           groups)
        return self

    def _y_index(self, y):
        y = column_or_1d(y)
        index = np.clip(np.searchsorted(self.classes_, y), 0, 1)
        if not np.all(self.classes_[index] == y):
            raise ValueError(f"y contains labels not seen in fit: {np.unique(y[self.classes_[index] != y])[:5]}")
        return index.astype(np.float64)

    def _decode(self, y):
        return self.classes_[y.astype(np.int64)]

    def predict_dist(self, Z, *, groups=None, allow_unseen: bool = False):
        """Bernoulli predictive over ``classes_`` (MacKay's probit on the Gaussian of the logit under the joint
        Laplace posterior; unseen levels add their prior variance)."""
        return Predictive(self._predictive_dist(Z, groups, allow_unseen), classes=self.classes_)

    def predict_proba(self, Z, *, groups=None, allow_unseen: bool = False) -> np.ndarray:
        """``p(y | z, g, data)``, shape (n, 2), columns in ``classes_`` order."""
        return self.predict_dist(Z, groups=groups, allow_unseen=allow_unseen).probs

    def predict(self, Z, *, groups=None, allow_unseen: bool = False) -> np.ndarray:
        """Most probable label under the predictive."""
        proba = self.predict_proba(Z, groups=groups, allow_unseen=allow_unseen)
        return self.classes_[np.argmax(proba, axis=1)]


class MixedEffectsPoisson(RegressorMixin, _LaplaceGLMM):
    r"""Poisson (log link) GLMM with crossed or nested random effects, by the Laplace approximation (glmer nAGQ=1).

    Same model and fit as :class:`MixedEffectsClassifier` with ``y_i ~ Poisson(exp(eta_i))``; ``predict`` gives
    the predictive mean ``E[y] = E[exp(eta)]`` (the Poisson-lognormal mean under the joint Laplace posterior).
    """

    def __init__(self, *, random_effects=None, fit_intercept: bool = True, tol: float = 1e-5,
                 max_iter: int = 500):
        self.random_effects = random_effects
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter

    def fit(self, Z, y, *, groups, sample_weight=None) -> MixedEffectsPoisson:
        """Laplace fit on features ``Z``, counts ``y`` (non-negative integers) and ``groups``."""
        with self._keep_state_on_error():
            check_params(self)
            Z, y = validate_data(self, Z, y, dtype=np.float64, y_numeric=True, reset=True, ensure_min_features=0)
            if np.any(y < 0) or np.any(y != np.round(y)):
                raise ValueError("y must hold non-negative integer counts")
            self.likelihood_ = Poisson()
            self._fit_rows(Z, y, self._weights(sample_weight, Z.shape[0], allow_zero=True), groups)
        return self

    def predict_dist(self, Z, *, groups=None, allow_unseen: bool = False):
        """Poisson-lognormal predictive (Gauss-Hermite mixture over the Gaussian of the log rate)."""
        return Predictive(self._predictive_dist(Z, groups, allow_unseen))

    def predict(self, Z, *, groups=None, allow_unseen: bool = False) -> np.ndarray:
        """Predictive mean ``exp(m + v / 2)`` of the count at each row."""
        Z = self._validate_Z(Z)
        mean, var = self._predictor_moments_grouped(Z, groups, allow_unseen)
        return np.exp(mean + 0.5 * var)

