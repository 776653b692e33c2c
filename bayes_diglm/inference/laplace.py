"""Laplace approximation of the posterior over GLM weights (logistic, softmax, Gaussian) on fixed features."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import linalg as sla
from scipy import optimize as sopt
from scipy.special import expit, log_softmax, softmax

from bayes_diglm._validation import (
    as_label_tensor,
    check_fitted,
    check_positive,
    check_same_length,
    to_numpy_float64,
)

from .linalg import robust_cholesky

__all__ = [
    "LaplaceClassifier",
    "LaplaceFit",
    "laplace_glm",
    "mackay_prior_precision",
]

_COVARIANCES = ("full", "diag", "kron")
_OPTIMIZERS = ("newton", "lbfgs")
_PREDICTIVES = ("probit", "map", "mc")
_PRIOR_GROUPINGS = ("scalar", "class", "feature")
# evidence maximisation may drive a group's precision to 0 or infinity (e.g. a redundant softmax row)
_PRECISION_RANGE = (1e-8, 1e8)


# --------------------------------------------------------------------------------------------------------
# Likelihoods: everything is written in terms of the linear predictor ("logits") F of shape (..., n, k).
# The curvature d^2(-log p)/dF^2 of a canonical-link GLM does not depend on y, so the Hessian and the
# generalized Gauss-Newton matrix coincide: that is where the curvature comes from for every head here.
# --------------------------------------------------------------------------------------------------------


class _Bernoulli:
    """Binary logistic likelihood on one logit per observation (labels 0/1)."""

    num_outputs = 1

    def log_prob(self, logits: np.ndarray, y: np.ndarray) -> np.ndarray:
        f = logits[..., 0]
        return -np.logaddexp(0.0, np.where(y == 1, -f, f))

    def grad(self, logits: np.ndarray, y: np.ndarray) -> np.ndarray:
        return expit(logits) - y[:, None]

    def curvature(self, logits: np.ndarray) -> np.ndarray:
        p = expit(logits[:, 0])
        return (p * (1.0 - p))[:, None, None]

    def sample(self, logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return (rng.random(logits.shape[:-1]) < expit(logits[..., 0])).astype(np.int64)


class _Categorical:
    """Softmax likelihood on K logits per observation (the full K*D parametrisation)."""

    def __init__(self, num_classes: int):
        self.num_outputs = num_classes

    def log_prob(self, logits: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.take_along_axis(log_softmax(logits, axis=-1), np.broadcast_to(
            y[:, None], logits.shape[:-1] + (1,)), axis=-1)[..., 0]

    def grad(self, logits: np.ndarray, y: np.ndarray) -> np.ndarray:
        g = softmax(logits, axis=-1)
        g[np.arange(y.shape[0]), y] -= 1.0
        return g

    def curvature(self, logits: np.ndarray) -> np.ndarray:
        p = softmax(logits, axis=-1)
        return np.einsum("nk,kl->nkl", p, np.eye(p.shape[1])) - p[:, :, None] * p[:, None, :]

    def sample(self, logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        gumbel = -np.log(-np.log(rng.random(logits.shape)))
        return np.argmax(logits + gumbel, axis=-1).astype(np.int64)


class _Gaussian:
    """Gaussian likelihood with known noise variance (the case where Laplace is exact)."""

    num_outputs = 1

    def __init__(self, noise_variance: float):
        self.noise_variance = noise_variance

    def log_prob(self, logits: np.ndarray, y: np.ndarray) -> np.ndarray:
        resid = y - logits[..., 0]
        return -0.5 * (np.log(2 * np.pi * self.noise_variance) + resid**2 / self.noise_variance)

    def grad(self, logits: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (logits - y[:, None]) / self.noise_variance

    def curvature(self, logits: np.ndarray) -> np.ndarray:
        return np.full((logits.shape[0], 1, 1), 1.0 / self.noise_variance)

    def sample(self, logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return logits[..., 0] + math.sqrt(self.noise_variance) * rng.standard_normal(logits.shape[:-1])


def _make_likelihood(likelihood: str, num_classes: int | None, noise_variance: float | None):
    if likelihood == "bernoulli":
        return _Bernoulli()
    if likelihood == "categorical":
        if num_classes is None or num_classes < 2:
            raise ValueError(f"likelihood='categorical' needs num_classes >= 2, got {num_classes!r}")
        return _Categorical(int(num_classes))
    if likelihood == "gaussian":
        return _Gaussian(check_positive(noise_variance, "noise_variance"))
    raise ValueError(f"likelihood must be 'bernoulli', 'categorical' or 'gaussian', got {likelihood!r}")


def _full_hessian(X: np.ndarray, curv: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Exact Hessian of the negative log posterior: sum_n Lambda_n kron x_n x_n^T + diag(prior).

    Parameters are ordered class-major, ``theta[k * D + d] = W[k, d]``.
    """
    k_out, d = prior.shape
    H = np.empty((k_out, d, k_out, d))
    for k in range(k_out):
        for j in range(k, k_out):
            block = X.T @ (curv[:, k, j, None] * X)
            H[k, :, j, :] = block
            if j != k:
                H[j, :, k, :] = block.T
    H = H.reshape(k_out * d, k_out * d)
    H[np.diag_indices_from(H)] += prior.ravel()
    return H


# --------------------------------------------------------------------------------------------------------
# Which approximation: a Gaussian N(mean, H^{-1}) whose precision H is stored full, diagonal or Kronecker.
# Each structure offers draws, the covariance of the logits for new inputs, log det H and diag(H^{-1}).
# --------------------------------------------------------------------------------------------------------


class _FullPosterior:
    """Full precision H = L L^T (Cholesky); H^{-1} is only ever applied through triangular solves."""

    def __init__(self, mean: np.ndarray, X: np.ndarray, curv: np.ndarray, prior: np.ndarray):
        self.mean = mean
        self.chol = robust_cholesky(_full_hessian(X, curv, prior), "the Laplace posterior precision (Hessian)")

    def sample(self, num: int, rng: np.random.Generator) -> np.ndarray:
        eps = rng.standard_normal((self.chol.shape[0], num))
        dev = sla.solve_triangular(self.chol, eps, lower=True, trans="T")
        return self.mean[None] + dev.T.reshape((num,) + self.mean.shape)

    def logit_cov(self, X: np.ndarray, batch: int = 256) -> np.ndarray:
        k_out, d = self.mean.shape
        out = np.empty((X.shape[0], k_out, k_out))
        for start in range(0, X.shape[0], batch):
            xb = X[start:start + batch]
            jac_t = np.zeros((k_out, d, xb.shape[0], k_out))
            for k in range(k_out):
                jac_t[k, :, :, k] = xb.T
            v = sla.solve_triangular(self.chol, jac_t.reshape(k_out * d, -1), lower=True)
            v = v.reshape(k_out * d, xb.shape[0], k_out)
            out[start:start + batch] = np.einsum("pnk,pnl->nkl", v, v)
        return out

    def log_det_precision(self) -> float:
        return float(2.0 * np.log(np.diag(self.chol)).sum())

    def marginal_variance(self) -> np.ndarray:
        chol_inv = sla.solve_triangular(self.chol, np.eye(self.chol.shape[0]), lower=True)
        return (chol_inv**2).sum(axis=0).reshape(self.mean.shape)


class _DiagPosterior:
    """Diagonal of the precision (not of the covariance): variance_j = 1 / H_jj, which understates spread."""

    def __init__(self, mean: np.ndarray, X: np.ndarray, curv: np.ndarray, prior: np.ndarray):
        self.mean = mean
        diag_curv = np.diagonal(curv, axis1=1, axis2=2)  # (n, K)
        self.precision = diag_curv.T @ (X**2) + prior

    def sample(self, num: int, rng: np.random.Generator) -> np.ndarray:
        eps = rng.standard_normal((num,) + self.mean.shape)
        return self.mean[None] + eps / np.sqrt(self.precision)[None]

    def logit_cov(self, X: np.ndarray) -> np.ndarray:
        var = (X**2) @ (1.0 / self.precision).T
        return np.einsum("nk,kl->nkl", var, np.eye(self.mean.shape[0]))

    def log_det_precision(self) -> float:
        return float(np.log(self.precision).sum())

    def marginal_variance(self) -> np.ndarray:
        return 1.0 / self.precision


class _KronPosterior:
    """Kronecker-factored (K-FAC) precision for large K*D.

    The likelihood curvature ``sum_n Lambda_n kron x_n x_n^T`` is replaced by ``B kron A`` with the class
    factor ``B = (1/n) sum_n Lambda_n`` (K x K) and the feature factor ``A = X^T X`` (D x D): exact when
    ``Lambda_n`` does not vary over n (Gaussian likelihood).  With eigendecompositions ``A = U_A S_A U_A^T``
    and ``B = U_B S_B U_B^T`` the precision is ``(U_B kron U_A) diag(lam) (U_B kron U_A)^T`` where
    ``lam = s_B s_A^T + diag-of-prior in that eigenbasis``; the prior term is exact for a scalar prior
    precision and keeps only its diagonal in the eigenbasis otherwise (per-class/feature precisions,
    intercept with its own precision).
    """

    def __init__(self, mean: np.ndarray, X: np.ndarray, curv: np.ndarray, prior: np.ndarray):
        self.mean = mean
        s_a, self.u_a = np.linalg.eigh(X.T @ X)
        s_b, self.u_b = np.linalg.eigh(curv.mean(axis=0))
        s_a, s_b = np.clip(s_a, 0.0, None), np.clip(s_b, 0.0, None)
        prior_eig = (self.u_b**2).T @ prior @ (self.u_a**2)
        self.lam = np.outer(s_b, s_a) + prior_eig

    def sample(self, num: int, rng: np.random.Generator) -> np.ndarray:
        eps = rng.standard_normal((num,) + self.mean.shape) / np.sqrt(self.lam)[None]
        return self.mean[None] + self.u_b @ eps @ self.u_a.T  # two batched products, not one 3-way einsum

    def logit_cov(self, X: np.ndarray) -> np.ndarray:
        c = ((X @ self.u_a) ** 2) @ (1.0 / self.lam).T  # (n, K) in the class eigenbasis
        return np.einsum("ki,ni,li->nkl", self.u_b, c, self.u_b)

    def log_det_precision(self) -> float:
        return float(np.log(self.lam).sum())

    def marginal_variance(self) -> np.ndarray:
        return (self.u_b**2) @ (1.0 / self.lam) @ (self.u_a**2).T


_STRUCTURES = {"full": _FullPosterior, "diag": _DiagPosterior, "kron": _KronPosterior}


# --------------------------------------------------------------------------------------------------------
# MAP estimation
# --------------------------------------------------------------------------------------------------------


def _neg_log_posterior(W, X, y, lik, prior):
    logits = X @ W.T
    value = -lik.log_prob(logits, y).sum() + 0.5 * float((prior * W**2).sum())
    grad = lik.grad(logits, y).T @ X + prior * W
    return value, grad, logits


def _newton(X, y, lik, prior, W, tol, max_iter):
    """Newton's method (IRLS) with an Armijo backtracking line search; stops when max|grad| <= tol."""
    value, grad, logits = _neg_log_posterior(W, X, y, lik, prior)
    for it in range(max_iter):
        if np.abs(grad).max() <= tol:
            return W, it, True
        H = _full_hessian(X, lik.curvature(logits), prior)
        step = -sla.cho_solve((robust_cholesky(H, "the Newton Hessian"), True), grad.ravel()).reshape(W.shape)
        slope = float((grad * step).sum())
        # near the optimum the predicted decrease -slope/2 drops below the rounding error of the objective,
        # where Armijo's test is meaningless: take the full Newton step (quadratic convergence) there
        measurable = -slope > 1e3 * np.finfo(float).eps * (1.0 + abs(value))
        t = 1.0
        for _ in range(50):
            new_value, new_grad, new_logits = _neg_log_posterior(W + t * step, X, y, lik, prior)
            if not measurable or new_value <= value + 1e-4 * t * slope:
                break
            t *= 0.5
        else:
            return W, it, False
        W, value, grad, logits = W + t * step, new_value, new_grad, new_logits
    return W, max_iter, bool(np.abs(grad).max() <= tol)


def _lbfgs(X, y, lik, prior, W, tol, max_iter):
    def fun(theta):
        value, grad, _ = _neg_log_posterior(theta.reshape(W.shape), X, y, lik, prior)
        return value, grad.ravel()

    res = sopt.minimize(fun, W.ravel(), jac=True, method="L-BFGS-B",
                        options={"maxiter": max_iter, "gtol": tol, "ftol": 0.0, "maxcor": 20})
    W = res.x.reshape(W.shape)
    value, grad, _ = _neg_log_posterior(W, X, y, lik, prior)
    g_max = float(np.abs(grad).max())
    # L-BFGS-B's line search compares objective values, so it cannot resolve gradients much below
    # sqrt(eps) * |f|; when it stops there (no measurable decrease, not the iteration limit) the MAP is
    # as accurate as float64 allows
    rounding_limited = res.status != 1 and g_max <= np.sqrt(np.finfo(float).eps) * (1.0 + abs(value))
    return W, int(res.nit), bool(g_max <= tol or rounding_limited)


# --------------------------------------------------------------------------------------------------------
# The Laplace fit: MAP + curvature + structure + evidence
# --------------------------------------------------------------------------------------------------------


@dataclass
class LaplaceFit:
    """Result of :func:`laplace_glm`: the Gaussian ``N(mean, H^{-1})`` and the evidence approximation.

    Attributes
    ----------
    mean : ndarray of shape (k, D)
        MAP weights (``k`` = 1 for Bernoulli and Gaussian likelihoods, K for softmax).
    posterior : object
        The covariance structure ("full", "diag" or "kron") with ``sample``, ``logit_cov``,
        ``log_det_precision`` and ``marginal_variance``.
    prior_precision : ndarray of shape (k, D)
        Prior precision of each weight (0 means a flat, improper prior on that weight).
    log_likelihood, log_evidence : float
        ``log p(y | X, W*)`` and the Laplace approximation of ``log p(y | X)``.
    n_iter : int
    converged : bool
    """

    mean: np.ndarray
    posterior: object
    prior_precision: np.ndarray
    log_likelihood: float
    log_evidence: float
    n_iter: int
    converged: bool


def _prior_array(prior_precision, shape) -> np.ndarray:
    prior = np.broadcast_to(np.asarray(prior_precision, dtype=np.float64), shape).copy()
    if not np.all(np.isfinite(prior)) or np.any(prior < 0):
        raise ValueError(f"prior_precision must be finite and non-negative, got {prior_precision!r}")
    return prior


def laplace_glm(
    X: np.ndarray,
    y: np.ndarray,
    *,
    likelihood: str,
    prior_precision: float | np.ndarray = 1.0,
    covariance: str = "full",
    optimizer: str = "newton",
    num_classes: int | None = None,
    noise_variance: float | None = None,
    tol: float = 1e-8,
    max_iter: int | None = None,
    init: np.ndarray | None = None,
) -> LaplaceFit:
    r"""Laplace approximation ``N(W*, H^{-1})`` of a GLM posterior under a ``N(0, diag(prior)^{-1})`` prior.

    ``W*`` maximises ``log p(y | X, W) - 1/2 sum_j prior_j W_j^2`` and ``H`` is the Hessian of the negative
    log posterior at ``W*`` (equal to the generalized Gauss-Newton matrix for these canonical links),

    .. math:: H = \sum_n \Lambda_n \otimes x_n x_n^\top + \mathrm{diag}(\text{prior}),

    stored full (Cholesky), diagonal, or Kronecker-factored.  The evidence approximation is

    .. math:: \log p(y | X) \approx \log p(y | X, W^*) + \log p(W^*) + \tfrac{P}{2} \log 2\pi
              - \tfrac12 \log\det H,

    where weights with zero prior precision (flat prior) contribute a density of 1 to ``log p(W*)``.
    For the Gaussian likelihood with known ``noise_variance`` this is the exact conjugate posterior and
    the exact evidence.

    Parameters
    ----------
    X : ndarray of shape (n, D)
        Design matrix (append a column of ones yourself for a bias).
    y : ndarray of shape (n,)
        0/1 labels ("bernoulli"), 0..K-1 labels ("categorical") or real targets ("gaussian").
    likelihood : {"bernoulli", "categorical", "gaussian"}
    prior_precision : float or ndarray broadcastable to (k, D)
    covariance : {"full", "diag", "kron"}
    optimizer : {"newton", "lbfgs"}
        Newton (IRLS with backtracking, uses the full Hessian) or scipy's L-BFGS-B; both stop at
        ``max|grad| <= tol``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 2)); y = (X[:, 0] + rng.logistic(size=200) > 0).astype(int)
    >>> fit = laplace_glm(X, y, likelihood="bernoulli", prior_precision=1.0)
    >>> fit.mean.shape, fit.converged
    ((1, 2), True)
    """
    if covariance not in _COVARIANCES:
        raise ValueError(f"covariance must be one of {_COVARIANCES}, got {covariance!r}")
    if optimizer not in _OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {_OPTIMIZERS}, got {optimizer!r}")
    lik = _make_likelihood(likelihood, num_classes, noise_variance)
    prior = _prior_array(prior_precision, (lik.num_outputs, X.shape[1]))
    if max_iter is None:
        max_iter = 100 if optimizer == "newton" else 15000
    W0 = np.zeros(prior.shape) if init is None else np.array(init, dtype=np.float64).reshape(prior.shape)
    solver = _newton if optimizer == "newton" else _lbfgs
    W, n_iter, converged = solver(X, y, lik, prior, W0, tol, max_iter)
    if not converged:
        warnings.warn(f"Laplace MAP ({optimizer}) stopped after {n_iter} iterations before reaching "
                      f"max|grad| <= {tol}", RuntimeWarning, stacklevel=2)
    logits = X @ W.T
    posterior = _STRUCTURES[covariance](W, X, lik.curvature(logits), prior)
    log_lik = float(lik.log_prob(logits, y).sum())
    proper = prior > 0
    log_evidence = (log_lik + 0.5 * float(np.log(prior[proper]).sum()) - 0.5 * float((prior * W**2).sum())
                    + 0.5 * int((~proper).sum()) * math.log(2 * math.pi)
                    - 0.5 * posterior.log_det_precision())
    return LaplaceFit(W, posterior, prior, log_lik, float(log_evidence), n_iter, converged)


def mackay_prior_precision(
    fit_fn,
    prior: np.ndarray,
    groups: np.ndarray,
    *,
    tol: float = 1e-6,
    max_iter: int = 200,
) -> LaplaceFit:
    r"""Maximise the Laplace evidence over prior precisions shared within groups (MacKay's fixed point).

    Each step refits the MAP at the current precisions (warm start), then sets, for each group g,

    .. math:: \alpha_g \leftarrow \frac{\sum_{j \in g} (1 - \alpha_j \Sigma_{jj})}{\sum_{j \in g} W_j^{*2}},

    the stationary condition of the evidence when the curvature of the likelihood is held fixed (exact for
    a Gaussian likelihood).  ``groups`` has the shape of ``prior`` with an integer group id per weight, or
    -1 for weights whose precision stays as given (e.g. a flat intercept).  Precisions are kept in
    [1e-8, 1e8], since the evidence can prefer switching a group off entirely.  Stops when every precision
    changes by less than ``tol`` relative; returns the fit at the final precisions.

    ``fit_fn(prior, init)`` must return a :class:`LaplaceFit`.
    """
    prior = prior.copy()
    fit = fit_fn(prior, None)
    ids = np.unique(groups[groups >= 0])
    for _ in range(max_iter):
        gamma = 1.0 - prior * fit.posterior.marginal_variance()
        new = prior.copy()
        for g in ids:
            mask = groups == g
            sq = float((fit.mean[mask] ** 2).sum())
            new[mask] = np.clip(max(float(gamma[mask].sum()), 0.0) / max(sq, 1e-300), *_PRECISION_RANGE)
        change = np.max(np.abs(new - prior) / np.maximum(prior, 1e-300))
        prior = new
        fit = fit_fn(prior, fit.mean)
        if change < tol:
            return fit
    warnings.warn(f"evidence fixed point did not converge in {max_iter} iterations", RuntimeWarning,
                  stacklevel=2)
    return fit


# --------------------------------------------------------------------------------------------------------
# Predictive approximations on the logits' Gaussian N(mu, S)
# --------------------------------------------------------------------------------------------------------


def _probit_scale(var: np.ndarray) -> np.ndarray:
    """MacKay's kappa(v) = (1 + pi v / 8)^(-1/2): E[sigmoid(f)] ~= sigmoid(kappa(v) mu) for f ~ N(mu, v)."""
    return 1.0 / np.sqrt(1.0 + np.pi * var / 8.0)


def _probit_predictive(mu: np.ndarray, cov: np.ndarray) -> np.ndarray:
    r"""Probit-style approximation of ``E[softmax(f)]`` for ``f ~ N(mu, cov)``, shape (n, K).

    K = 1 (binary): MacKay's ``p(y=1) = sigmoid(kappa(v) mu)``.  K > 2: the pairwise mean-field
    approximation of Lu, Ie and Sha (2020, "Mean-field approximations to the softmax-Gaussian integral"),

    .. math:: p_k \propto \Big(1 + \sum_{j \ne k} \exp\big(-\kappa(v_{kj}) (\mu_k - \mu_j)\big)\Big)^{-1},
              \qquad v_{kj} = S_{kk} + S_{jj} - 2 S_{kj},

    renormalised over k.  It uses the variance of logit differences, so a shift shared by all logits
    (the redundant direction of the K*D softmax) does not flatten the prediction, and for K = 2 it is
    exactly MacKay's formula applied to the logit difference.
    """
    if mu.shape[1] == 1:
        p1 = expit(mu[:, 0] * _probit_scale(cov[:, 0, 0]))
        return np.stack([1.0 - p1, p1], axis=1)
    var = np.diagonal(cov, axis1=1, axis2=2)
    diff_var = var[:, :, None] + var[:, None, :] - 2.0 * cov
    diff_mean = mu[:, :, None] - mu[:, None, :]
    # exp(-kappa * (mu_k - mu_j)) summed over j (the j = k term is exp(0) = 1, the "1 +" above)
    odds = np.exp(np.clip(-diff_mean * _probit_scale(diff_var), None, 700.0)).sum(axis=2)
    probs = 1.0 / odds
    return probs / probs.sum(axis=1, keepdims=True)


def _check_generator(generator) -> np.random.Generator:
    if generator is None or isinstance(generator, (int, np.integer)):
        return np.random.default_rng(generator)
    if isinstance(generator, np.random.Generator):
        return generator
    raise TypeError(f"generator must be a numpy Generator, int or None, got {type(generator).__name__}")


class _PosteriorClassifier:
    """Prediction, scoring and the ArviZ protocol shared by classifiers with a Gaussian posterior.

    Subclasses set ``weights_`` (k, D[+1]), ``posterior_`` (with ``logit_cov``), ``n_classes_``,
    ``n_features_in_`` and ``fit_intercept``, and implement ``_sample_weights(num, rng)`` -> (num, k, D[+1]).
    """

    fit_intercept: bool
    num_classes: int | None

    def _design(self, Z, name: str = "Z", *, fitted: bool = True) -> np.ndarray:
        Z = to_numpy_float64(Z, name, ndim=2)
        if fitted and Z.shape[1] != self.n_features_in_:
            raise ValueError(f"{name} has {Z.shape[1]} features but the head was fitted on "
                             f"{self.n_features_in_}")
        if self.fit_intercept:
            Z = np.concatenate([Z, np.ones((Z.shape[0], 1))], axis=1)
        return Z

    def _labels(self, y, n: int) -> tuple[np.ndarray, int]:
        yt = as_label_tensor(y, "y", num_classes=self.num_classes, n=n).numpy()
        K = self.num_classes if self.num_classes is not None else int(yt.max()) + 1
        present = np.unique(yt)
        if present.size < 2:
            raise ValueError(f"y contains a single class ({int(present[0])}); a classifier needs two or more")
        return yt, int(K)

    # ---- prediction ------------------------------------------------------------------------------------

    def predict_proba(self, Z, method: str = "probit", n_samples: int = 1000, generator=None) -> np.ndarray:
        """Predictive class probabilities ``p(y | z, data)``, shape (n, K).

        ``method="probit"``: binary, MacKay's ``sigmoid(mu / sqrt(1 + pi v / 8))``; softmax, the pairwise
        mean-field version on logit differences (see :func:`_probit_predictive`).  ``"map"``: plug in the
        MAP.  ``"mc"``: average the likelihood over ``n_samples`` posterior draws of the weights.
        """
        check_fitted(self, "weights_")
        if method not in _PREDICTIVES:
            raise ValueError(f"method must be one of {_PREDICTIVES}, got {method!r}")
        X = self._design(Z)
        if method == "mc":
            draws = self._sample_weights(int(n_samples), _check_generator(generator))
            logits = np.einsum("nd,skd->snk", X, draws)
            probs = self._probs(logits).mean(axis=0)
        else:
            mu = X @ self.weights_.T
            if method == "probit":
                return _probit_predictive(mu, self.posterior_.logit_cov(X))
            probs = self._probs(mu)
        return probs

    def _probs(self, logits: np.ndarray) -> np.ndarray:
        if self.n_classes_ == 2:
            p1 = expit(logits[..., 0])
            return np.stack([1.0 - p1, p1], axis=-1)
        return softmax(logits, axis=-1)

    def predict(self, Z, method: str = "probit") -> np.ndarray:
        """Most probable class under the predictive (``method``: "probit", "map" or "mc", as in predict_proba)."""
        return np.argmax(self.predict_proba(Z, method=method), axis=1)

    def score(self, Z, y) -> float:
        """Accuracy of :meth:`predict` on (Z, y)."""
        check_fitted(self, "weights_")
        y = as_label_tensor(y, "y", num_classes=self.n_classes_).numpy()
        check_same_length(Z=np.asarray(Z), y=y)
        return float(np.mean(self.predict(Z) == y))

    def log_predictive(
        self, Z, y, method: str = "probit", n_samples: int = 1000, generator=None
    ) -> np.ndarray:
        """Log predictive density ``log p(y_i | z_i, data)`` of each observation, shape (n,)."""
        check_fitted(self, "weights_")
        y = as_label_tensor(y, "y", num_classes=self.n_classes_).numpy()
        probs = self.predict_proba(Z, method=method, n_samples=n_samples, generator=generator)
        check_same_length(Z=probs, y=y)
        return np.log(np.clip(probs[np.arange(y.shape[0]), y], 1e-300, None))

    # ---- ArviZ protocol --------------------------------------------------------------------------------

    def _posterior_draws(self, num_draws: int, generator: np.random.Generator) -> dict[str, np.ndarray]:
        """Draws of "beta" ((S, D) binary, (S, K, D) softmax) and "intercept" ((S,) or (S, K)) if fitted."""
        check_fitted(self, "weights_")
        weights = self._sample_weights(int(num_draws), generator)
        if self.n_classes_ == 2:
            weights = weights[:, 0]
        d = self.n_features_in_
        draws = {"beta": np.ascontiguousarray(weights[..., :d])}
        if self.fit_intercept:
            draws["intercept"] = np.ascontiguousarray(weights[..., d])
        return draws

    def _posterior_dims(self, feature_names: list[str] | None) -> tuple[dict, dict]:
        check_fitted(self, "weights_")
        d = self.n_features_in_
        names = [f"z{j}" for j in range(d)] if feature_names is None else list(feature_names)
        if len(names) != d:
            raise ValueError(f"feature_names has {len(names)} names for {self.n_features_in_} features")
        coords: dict[str, list] = {"feature": names}
        if self.n_classes_ == 2:
            dims = {"beta": ["feature"], "intercept": []}
        else:
            coords["class"] = list(range(self.n_classes_))
            dims = {"beta": ["class", "feature"], "intercept": ["class"]}
        if not self.fit_intercept:
            del dims["intercept"]
        return dims, coords

    def _draw_logits(self, draws: dict, Z) -> np.ndarray:
        Zn = self._design(Z)[:, : self.n_features_in_]
        beta = draws["beta"] if self.n_classes_ > 2 else draws["beta"][:, None, :]
        logits = np.einsum("nd,skd->snk", Zn, beta)
        if "intercept" in draws:
            bias = draws["intercept"] if self.n_classes_ > 2 else draws["intercept"][:, None]
            logits = logits + bias[:, None, :]
        return logits

    def _likelihood(self):
        return _Bernoulli() if self.n_classes_ == 2 else _Categorical(self.n_classes_)

    def _pointwise_log_likelihood(self, draws: dict, Z, y, groups=None) -> np.ndarray:
        check_fitted(self, "weights_")
        y = as_label_tensor(y, "y", num_classes=self.n_classes_).numpy()
        return self._likelihood().log_prob(self._draw_logits(draws, Z), y)

    def _posterior_predictive_draws(self, draws: dict, Z, generator, groups=None) -> np.ndarray:
        check_fitted(self, "weights_")
        return self._likelihood().sample(self._draw_logits(draws, Z), generator)


class LaplaceClassifier(_PosteriorClassifier):
    r"""Bayesian logistic (K=2) or softmax (K>2) regression on features by the Laplace approximation.

    Model: ``p(y | z, W) = Cat(softmax(W [z; 1]))`` with prior ``W ~ N(0, 1/prior_precision)``.  Binary
    problems use one weight vector (``p(y=1) = sigmoid(w^T z + b)``); K > 2 classes use the full,
    over-parametrised K*D softmax (the Gaussian prior makes it identifiable), as scikit-learn does.

    The bias gets prior precision ``intercept_prior_precision`` (default: the same as the weights).
    ``intercept_prior_precision=0`` is a flat prior on the bias, which is scikit-learn's convention
    (``LogisticRegression(C=1/prior_precision)`` does not penalise the intercept); it is refused for
    K > 2, where the softmax bias is not identifiable without a prior.

    Parameters
    ----------
    prior_precision : float
    intercept_prior_precision : float or None
    fit_intercept : bool
    covariance : {"full", "diag", "kron"}
        Structure of the posterior precision: full (Cholesky of the K*D x K*D Hessian), diagonal of the
        Hessian, or Kronecker-factored (K-FAC, see :class:`_KronPosterior`).
    optimizer : {"newton", "lbfgs"}
        MAP solver; Newton uses the full Hessian at every step, L-BFGS only gradients (large K*D).
    tol : float
        Stop when the largest absolute gradient entry of the negative log posterior is <= tol.
    max_iter : int or None
        Defaults to 100 for Newton, 15000 for L-BFGS.
    num_classes : int or None
        K; inferred as ``max(y) + 1`` when None.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(300, 2)); y = (Z @ [2.0, -1.0] + rng.logistic(size=300) > 0).astype(int)
    >>> clf = LaplaceClassifier(prior_precision=1.0).fit(Z, y)
    >>> clf.predict_proba(Z[:2]).shape
    (2, 2)
    >>> bool(clf.score(Z, y) > 0.7)
    True
    """

    _arviz_attrs = {"inference": "Laplace approximation (Gaussian at the MAP, Hessian curvature)"}

    def __init__(
        self,
        *,
        prior_precision: float = 1.0,
        intercept_prior_precision: float | None = None,
        fit_intercept: bool = True,
        covariance: str = "full",
        optimizer: str = "newton",
        tol: float = 1e-8,
        max_iter: int | None = None,
        num_classes: int | None = None,
    ):
        self.prior_precision = prior_precision
        self.intercept_prior_precision = intercept_prior_precision
        self.fit_intercept = fit_intercept
        self.covariance = covariance
        self.optimizer = optimizer
        self.tol = tol
        self.max_iter = max_iter
        self.num_classes = num_classes

    # ---- fitting ---------------------------------------------------------------------------------------

    def _initial_prior(self, K: int, D_aug: int) -> np.ndarray:
        prior = np.full((1 if K == 2 else K, D_aug), check_positive(self.prior_precision, "prior_precision"))
        if self.fit_intercept:
            b = self.intercept_prior_precision
            b = self.prior_precision if b is None else b
            b = check_positive(b, "intercept_prior_precision", allow_zero=True)
            if b == 0 and K > 2:
                raise ValueError("intercept_prior_precision=0 (flat bias prior) is only allowed for K=2: the "
                                 "softmax bias is not identifiable without a prior")
            prior[:, -1] = b
        return prior

    def _run(self, X, y, K, prior, init=None) -> LaplaceFit:
        return laplace_glm(
            X, y, likelihood="bernoulli" if K == 2 else "categorical", prior_precision=prior,
            covariance=self.covariance, optimizer=self.optimizer, num_classes=K, tol=self.tol,
            max_iter=self.max_iter, init=init,
        )

    def fit(self, Z, y) -> LaplaceClassifier:
        """Find the MAP and the Laplace posterior for features ``Z`` (n, D) and labels ``y`` in 0..K-1."""
        X = self._design(Z, fitted=False)
        y, K = self._labels(y, X.shape[0])
        if self.covariance not in _COVARIANCES:
            raise ValueError(f"covariance must be one of {_COVARIANCES}, got {self.covariance!r}")
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {_OPTIMIZERS}, got {self.optimizer!r}")
        fit = self._run(X, y, K, self._initial_prior(K, X.shape[1]))
        self._set_fitted(fit, X, y, K)
        return self

    def _set_fitted(self, fit: LaplaceFit, X, y, K) -> None:
        self.n_features_in_ = X.shape[1] - int(self.fit_intercept)
        self.classes_ = np.arange(K)
        self.n_classes_ = K
        self.fit_ = fit
        self.weights_ = fit.mean
        self.coef_ = fit.mean[:, : self.n_features_in_]
        self.intercept_ = fit.mean[:, -1] if self.fit_intercept else np.zeros(fit.mean.shape[0])
        self.prior_precision_ = fit.prior_precision
        self.log_evidence_ = fit.log_evidence
        self.n_iter_ = fit.n_iter
        self.posterior_ = fit.posterior
        self._train = (X, y)

    def optimize_prior_precision(
        self, method: str = "evidence", per: str = "scalar", *, tol: float = 1e-6, max_iter: int = 200
    ) -> LaplaceClassifier:
        """Set the prior precision by maximising the Laplace evidence on the training data, then refit.

        ``per="scalar"`` shares one precision across all weights, ``"class"`` one per class row, and
        ``"feature"`` one per feature column (the bias is its own feature).  A flat bias prior
        (``intercept_prior_precision=0``) stays flat; otherwise the bias joins the scalar/class groups.
        Uses :func:`mackay_prior_precision` (refits the MAP at each step).
        """
        check_fitted(self, "fit_")
        if method != "evidence":
            raise ValueError(f"method must be 'evidence', got {method!r}")
        if per not in _PRIOR_GROUPINGS:
            raise ValueError(f"per must be one of {_PRIOR_GROUPINGS}, got {per!r}")
        X, y = self._train
        prior = self.fit_.prior_precision
        rows, cols = np.indices(prior.shape)
        groups = {"scalar": np.zeros(prior.shape, dtype=int), "class": rows, "feature": cols}[per]
        groups = np.where(prior > 0, groups, -1)
        K = self.n_classes_
        fit = mackay_prior_precision(lambda p, init: self._run(X, y, K, p, init), prior, groups,
                                     tol=tol, max_iter=max_iter)
        self._set_fitted(fit, X, y, K)
        return self

    def _sample_weights(self, num: int, rng: np.random.Generator) -> np.ndarray:
        return self.posterior_.sample(num, rng)
