"""MAP solvers of a GLM under a Gaussian prior: the weighted objective, Newton (IRLS) and L-BFGS."""

from __future__ import annotations

import numpy as np
from scipy import linalg as sla
from scipy import optimize as sopt

from bayes_diglm import likelihoods
from bayes_diglm._validation import check_positive
from bayes_diglm.likelihoods import Likelihood

from ..linalg import robust_cholesky
from .kernels import _full_hessian

__all__ = ["_Objective", "_lbfgs", "_make_likelihood", "_neg_log_posterior", "_newton"]

_OPTIMIZERS = ("auto", "newton", "lbfgs")
_HESSIANS = ("exact", "fisher")
# optimizer="auto": Newton (a full Hessian per step, quadratic convergence) where the posterior needs the full
# Hessian anyway ("full", "lowrank") and it has at most this many entries per side; L-BFGS (gradients only)
# otherwise: 2-3.5x faster MAPs for "kron" at K(D+1) of 650-786 on 10,000 rows (docs/scale.md)
_NEWTON_MAX_WEIGHTS = 2000


def _make_likelihood(likelihood, num_classes: int | None = None, noise_variance: float | None = None,
                     **options) -> Likelihood:
    """A registered family by name (``num_classes``, ``noise_variance`` and ``options`` go to the families whose
    constructor takes them) or a :class:`Likelihood` instance as it is."""
    if noise_variance is not None:
        check_positive(noise_variance, "noise_variance")
    return likelihoods.build(likelihood, num_classes=num_classes, noise_variance=noise_variance, **options)


class _Objective:
    """The likelihood terms of the MAP and the curvature in NumPy: rows weighted by ``sample_weight``.

    ``grad`` is the gradient of the *negative* log-likelihood in the logits; ``curvature`` is the (weighted)
    per-row Hessian of the negative log-likelihood, from :mod:`bayes_diglm.likelihoods`, or with
    ``hessian="fisher"`` its expectation over ``y`` (:meth:`~bayes_diglm.likelihoods.Likelihood.fisher`).
    ``context`` holds the family's per-row keywords (``trials=`` ...), passed to every call.
    """

    def __init__(self, likelihood: Likelihood, sample_weight: np.ndarray | None, context: dict | None = None,
                 hessian: str = "exact"):
        if hessian not in _HESSIANS:
            raise ValueError(f"hessian must be one of {_HESSIANS}, got {hessian!r}")
        self.likelihood = likelihood
        self.num_outputs = likelihood.num_outputs
        self.w = sample_weight
        self.context = context or {}
        self.hessian = hessian

    def log_prob(self, logits: np.ndarray, y: np.ndarray) -> np.ndarray:
        lp = self.likelihood.log_prob(logits, y, **self.context)
        return lp if self.w is None else lp * self.w

    def grad(self, logits: np.ndarray, y: np.ndarray) -> np.ndarray:
        g = -self.likelihood.grad(logits, y, **self.context)
        return g if self.w is None else g * self.w[:, None]

    def curvature(self, logits: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        if self.hessian == "fisher":
            c = self.likelihood.fisher(logits, **self.context)
        else:
            c = self.likelihood.curvature(logits, y, **self.context)
        return c if self.w is None else c * self.w[:, None, None]


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
        H = _full_hessian(X, lik.curvature(logits, y), prior)
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
