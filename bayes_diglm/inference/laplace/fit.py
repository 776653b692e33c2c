"""The Laplace fit of a GLM: MAP, curvature at the MAP in the chosen structure, and the evidence."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from bayes_diglm.likelihoods import Likelihood

from ..base import COVARIANCES
from .solvers import _NEWTON_MAX_WEIGHTS, _OPTIMIZERS, _lbfgs, _make_likelihood, _newton, _Objective
from .structures import _STRUCTURES

__all__ = ["LaplaceFit", "laplace_glm"]

_COVARIANCES = COVARIANCES


@dataclass
class LaplaceFit:
    """Result of :func:`laplace_glm`: the Gaussian ``N(mean, H^{-1})`` and the evidence approximation.

    Attributes
    ----------
    mean : ndarray of shape (k, D)
        MAP weights (``k`` = 1 for Bernoulli and Gaussian likelihoods, K for softmax).
    posterior : object
        The covariance structure ("full", "diag", "kron" or "lowrank") with ``mean``, ``sample``,
        ``logit_cov``, ``log_det_precision`` and ``marginal_variance``.
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
    likelihood: str | Likelihood,
    prior_precision: float | np.ndarray = 1.0,
    covariance: str = "full",
    optimizer: str = "auto",
    num_classes: int | None = None,
    noise_variance: float | None = None,
    sample_weight: np.ndarray | None = None,
    rank: int | None = None,
    tol: float = 1e-8,
    max_iter: int | None = None,
    init: np.ndarray | None = None,
    context: dict | None = None,
    hessian: str = "exact",
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
        0/1 labels ("bernoulli"), 0..K-1 labels ("categorical"), real targets ("gaussian") or counts
        ("poisson").
    likelihood : str or Likelihood
        A registered family (``likelihoods.names()``: "bernoulli", "categorical", "gaussian", "poisson", a user's
        own ...) or an instance. For a non-canonical link the curvature is the Hessian at ``y``, not the GGN.
    prior_precision : float or ndarray broadcastable to (k, D)
    covariance : {"full", "diag", "kron", "lowrank"}
    sample_weight : ndarray of shape (n,) or None
        Per-row weights of the log-likelihood (frequency weights: an integer weight equals repeating the row).
    rank : int or None
        Rank of ``covariance="lowrank"`` (default 20, at most the number of weights).
    optimizer : {"auto", "newton", "lbfgs"}
        Newton (IRLS with backtracking, uses the full Hessian) or scipy's L-BFGS-B; both stop at
        ``max|grad| <= tol``. Only ``covariance="full"`` and ``"lowrank"`` need the full Hessian at the MAP;
        for ``"kron"`` and ``"diag"`` L-BFGS avoids forming it every step (2-3.5x faster MAP at K(D+1) of
        650-786 on 10,000 rows). ``"auto"``: Newton for ``"full"`` and ``"lowrank"`` up to 2,000 weights,
        L-BFGS otherwise.
    context : dict or None
        The family's per-row keywords (e.g. ``{"trials": n_i}`` for the binomial), arrays of shape (n,).
    hessian : {"exact", "fisher"}
        The likelihood's curvature in ``H`` (and in Newton's steps): the exact Hessian at the observed ``y``, or
        its expectation over ``y``, the Fisher information (:meth:`~bayes_diglm.likelihoods.Likelihood.fisher`;
        Fisher scoring for the MAP, the generalized Gauss-Newton posterior). The two agree for canonical links.
        For a family whose log-density is not concave in the predictor (Student-t, Beta, zero-inflated Poisson)
        the exact Hessian can be indefinite where outliers pull against the fit; the Fisher information is
        positive semi-definite always. The MAP is the same; the evidence uses ``H`` as chosen.

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
    lik = _Objective(_make_likelihood(likelihood, num_classes, noise_variance), sample_weight, context, hessian)
    prior = _prior_array(prior_precision, (lik.num_outputs, X.shape[1]))
    if optimizer == "auto":
        newton = covariance in ("full", "lowrank") and prior.size <= _NEWTON_MAX_WEIGHTS
        optimizer = "newton" if newton else "lbfgs"
    if max_iter is None:
        max_iter = 100 if optimizer == "newton" else 15000
    W0 = np.zeros(prior.shape) if init is None else np.array(init, dtype=np.float64).reshape(prior.shape)
    solver = _newton if optimizer == "newton" else _lbfgs
    try:
        W, n_iter, converged = solver(X, y, lik, prior, W0, tol, max_iter)
    except ValueError as err:
        if hessian == "exact" and "not positive definite" in str(err):
            raise ValueError(f"{err}; for a family whose log-density is not concave in the predictor (Student-t, "
                             f"Beta, zero-inflated Poisson) use hessian='fisher'") from err
        raise
    if not converged:
        warnings.warn(f"Laplace MAP ({optimizer}) stopped after {n_iter} iterations before reaching "
                      f"max|grad| <= {tol}", RuntimeWarning, stacklevel=2)
    logits = X @ W.T
    extra = {"lowrank": {"rank": rank}, "kron": {"weights": sample_weight}}.get(covariance, {})
    posterior = _STRUCTURES[covariance](W, X, lik.curvature(logits, y), prior, **extra)
    log_lik = float(lik.log_prob(logits, y).sum())
    proper = prior > 0
    log_evidence = (log_lik + 0.5 * float(np.log(prior[proper]).sum()) - 0.5 * float((prior * W**2).sum())
                    + 0.5 * int((~proper).sum()) * math.log(2 * math.pi)
                    - 0.5 * posterior.log_det_precision())
    return LaplaceFit(W, posterior, prior, log_lik, float(log_evidence), n_iter, converged)
