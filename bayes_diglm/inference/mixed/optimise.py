r"""Variance-component optimiser of the mixed heads: no stall at the bound, a verified optimum, singular fits flagged.

lme4's theta (the entries of each relative Cholesky factor ``L_k``, diagonals ``>= 0``) has a trap: the
likelihood depends on ``L_k`` only through ``Psi_k = sigma^2 L_k L_k^T``, so where a factor's column of ``L_k``
is zero the gradient in theta is exactly zero. A gradient method that steps onto the bound (L-BFGS-B's first unit
step from lme4's start does) sees a stationary point there and stops, whatever the likelihood inside.

Here the optimiser works in ``phi``: each diagonal entry squared (``phi_ii = theta_ii^2 >= 0``, a relative
variance where the factor is scalar), the other entries as they are. The one-sided derivative in ``phi_ii`` at 0
is the derivative of the likelihood in that variance, which is not zero, so L-BFGS-B leaves a bound it should
leave. Every fit that ends with a diagonal on the bound is then checked by probing: the objective at that diagonal
raised to relative variances ``1e-8 .. 1`` is compared with the objective at the bound, and a lower probe
restarts the optimiser from there (a cheap extra start). ``converged`` is true only when the last run stopped at
a stationary point (projected gradient below ``grad_tol``) and no probe improved on it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import optimize as sopt

__all__ = ["SingularFitWarning", "VarianceFit", "minimise_variance_components", "singular_factors",
           "warn_if_singular"]

SINGULAR_TOL = 1e-4  # lme4's isSingular(tol = 1e-4): a relative-factor diagonal below it is on the boundary
_PROBES = 10.0 ** np.arange(-8.0, 0.5, 1.0)  # relative variances tried for a diagonal sitting on the bound
_MAX_RESTARTS = 5


class SingularFitWarning(UserWarning):
    """lme4's "boundary (singular) fit": an estimated covariance of random effects is singular (a variance of
    zero or a correlation of +-1)."""


@dataclass
class VarianceFit:
    """The optimiser's result: ``x`` in the caller's parametrisation (theta first, then free parameters)."""

    x: np.ndarray
    value: float
    n_iter: int
    converged: bool
    restarts: int


def _to_phi(x: np.ndarray, diag: np.ndarray) -> np.ndarray:
    phi = np.array(x, dtype=np.float64)
    phi[diag] = phi[diag] ** 2
    return phi


def _to_x(phi: np.ndarray, diag: np.ndarray) -> np.ndarray:
    x = np.array(phi, dtype=np.float64)
    x[diag] = np.sqrt(np.maximum(x[diag], 0.0))
    return x


def _projected_gradient(grad: np.ndarray, phi: np.ndarray, diag: np.ndarray) -> np.ndarray:
    """The gradient with components that push against an active bound removed (the KKT residual)."""
    return np.where(diag & (phi <= 0.0) & (grad > 0), 0.0, grad)


def _probe(f, phi: np.ndarray, value: float, diag: np.ndarray) -> tuple[np.ndarray, float] | None:
    """The best point with one bound diagonal raised to a probe variance, if it beats ``value``; else None."""
    best, best_value = None, value - 1e-10 * max(1.0, abs(value))
    for i in np.flatnonzero(diag & (phi <= SINGULAR_TOL**2)):
        for v in _PROBES:
            trial = phi.copy()
            trial[i] = v
            f_trial = f(trial)
            if np.isfinite(f_trial) and f_trial < best_value:
                best, best_value = trial, f_trial
    return None if best is None else (best, best_value)


def minimise_variance_components(objective, x0: np.ndarray, diag: np.ndarray, *, gtol: float, maxiter: int,
                                 grad_tol: float, ftol: float = 1e-15) -> VarianceFit:
    """Minimise ``objective(x)`` subject to ``x[diag] >= 0`` by L-BFGS-B in the squared-diagonal parametrisation,
    probing and restarting from the boundary until no probe improves (at most a few restarts).

    Parameters
    ----------
    objective : callable
        The deviance as a function of ``x`` (lme4's theta, optionally followed by unbounded parameters).
    x0 : ndarray
        Start (lme4's: identity relative factors).
    diag : ndarray of bool
        Which entries of ``x`` are diagonals of relative factors (bounded below by 0).
    gtol, maxiter, ftol : float, int, float
        L-BFGS-B's options.
    grad_tol : float
        Largest projected finite-difference gradient (deviance per unit of ``phi``) accepted as stationary when
        L-BFGS-B's own test fails (its line search stops early on finite-difference gradients near an optimum).
    """
    diag = np.asarray(diag, dtype=bool)
    x0 = np.asarray(x0, dtype=np.float64)
    if x0.shape != diag.shape:
        raise ValueError(f"x0 has shape {x0.shape} but diag has shape {diag.shape}")

    def f(phi):
        return objective(_to_x(phi, diag))

    bounds = [(0.0, None) if d else (None, None) for d in diag]
    phi, n_iter, restarts = _to_phi(x0, diag), 0, 0
    while True:
        res = sopt.minimize(f, phi, method="L-BFGS-B", jac="3-point", bounds=bounds,
                            options={"gtol": gtol, "ftol": ftol, "maxiter": maxiter})
        phi, value, n_iter = res.x, float(res.fun), n_iter + int(res.nit)
        stationary = bool(res.success or np.max(np.abs(_projected_gradient(res.jac, phi, diag)), initial=0.0)
                          < grad_tol)
        better = _probe(f, phi, value, diag)
        if better is None:
            return VarianceFit(_to_x(phi, diag), value, n_iter, stationary, restarts)
        if restarts == _MAX_RESTARTS:
            phi, value = better
            return VarianceFit(_to_x(phi, diag), value, n_iter, False, restarts)
        phi, restarts = better[0], restarts + 1


def singular_factors(lams: list[np.ndarray], names: list[str]) -> list[str]:
    """Names of the factors whose relative Cholesky factor has a diagonal below lme4's ``1e-4`` (singular)."""
    return [name for L, name in zip(lams, names, strict=True) if np.min(np.abs(np.diag(L))) < SINGULAR_TOL]


def warn_if_singular(head, lams: list[np.ndarray], names: list[str]) -> None:
    """Set ``head.singular_`` and warn lme4's "boundary (singular) fit" naming the singular factors."""
    singular = singular_factors(lams, names)
    head.singular_ = bool(singular)
    if singular:
        warnings.warn(f"boundary (singular) fit: the random-effect covariance of {', '.join(map(repr, singular))} "
                      "is singular (a variance of 0 or a correlation of +-1); see singular_ and re_cov_",
                      SingularFitWarning, stacklevel=4)
