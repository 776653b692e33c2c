r"""Variance-component optimiser of the mixed heads: no stall at the bound, a verified optimum, singular fits flagged.

lme4's theta (the entries of each relative Cholesky factor ``L_k``, diagonals ``>= 0``) has a trap: the
likelihood depends on ``L_k`` only through ``Psi_k = sigma^2 L_k L_k^T``, so where a factor's column of ``L_k``
is zero the gradient in theta is exactly zero. A gradient method that steps onto the bound (L-BFGS-B's first unit
step from lme4's start does) sees a stationary point there and stops, whatever the likelihood inside.

Here the optimiser works in ``phi``: each diagonal entry squared (``phi_ii = theta_ii^2 >= 0``, a relative
variance where the factor is scalar), the other entries as they are. The one-sided derivative in ``phi_ii`` at 0
is the derivative of the likelihood in that variance, which is not zero, so L-BFGS-B leaves a bound it should
leave. Every fit that ends with a diagonal on the bound is then checked by probing: the objective at the factor's
covariance plus ``v a a^T`` (relative variances ``v = 1e-8 .. 1``; directions ``a = e_i`` and, for an unstructured
covariance, ``e_i +- e_j``, which the diagonal derivative alone cannot see) is compared with the objective at the
boundary, and the lowest probe restarts the optimiser from there (a cheap extra start); so does the factor with
a zero diagonal's column negated (the same covariance, the other side of the boundary). Unstructured factors get
two more chances, each kept only where it ends lower: a second start from the nearest rank-deficient covariance
where the fit is nearly singular, and a run with the positive diagonals on the log scale (where ``phi_ii`` is
small, finite differences in it straddle a kink), whose end the first search verifies again. ``converged`` is
true only when the last run stopped at a stationary point (projected gradient below ``grad_tol``) and no probe
improved on it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import optimize as sopt

from .blocked import psd_cholesky, relative_factors, theta_from_factors, theta_layout

__all__ = ["SingularFitWarning", "VarianceFit", "minimise_variance_components", "singular_factors",
           "warn_if_singular"]

SINGULAR_TOL = 1e-4  # lme4's isSingular(tol = 1e-4): a relative-factor diagonal below it is on the boundary
_PROBES = 10.0 ** np.arange(-8.0, 0.5, 1.0)  # relative variances v added along each probe direction
_MAX_RESTARTS = 5
_NEAR_SINGULAR = 1e-2  # a covariance whose smallest eigenvalue is below this share of its largest is nearly singular


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


def _covariance_probes(lams: list[np.ndarray], covariances: list[str]):
    """Per singular factor ``k``: relative factors of ``Psi_k + v a a^T`` for probe variances ``v`` and directions
    ``a = e_i`` (a zero diagonal ``i``) and, for an unstructured covariance, ``e_i +- e_j``: the directions in
    which the covariance can leave the boundary, whatever the current (non-unique) Cholesky entries; and the
    factor with column ``i`` negated and ``L_ii = sqrt(v)`` (the same ``Psi_k`` at ``v = 0``, left on the other
    side)."""
    for k, (L, cov) in enumerate(zip(lams, covariances, strict=True)):
        q = L.shape[0]
        psi = L @ L.T
        for i in np.flatnonzero(np.abs(np.diag(L)) < SINGULAR_TOL):
            directions = [np.eye(q)[i]]
            if cov == "full":
                directions += [np.eye(q)[i] + s * np.eye(q)[j] for j in range(q) if j != i for s in (1.0, -1.0)]
            for a in directions:
                for v in _PROBES:
                    trial = psi + v * np.outer(a, a)
                    yield k, psd_cholesky(trial) if cov == "full" else np.diag(np.sqrt(np.diag(trial)))
            if cov == "full" and np.any(L[i + 1:, i]):
                # the other side of the boundary: with L_ii = 0, negating column i leaves Psi as it is, but the
                # covariances that L_ii > 0 then creates change sign; a rank-one optimum (correlation +-1) on the
                # other side is out of reach of the probes above, which add a PSD term to Psi
                flipped = L.copy()
                flipped[i + 1:, i] *= -1.0
                for v in _PROBES:
                    flipped[i, i] = np.sqrt(v)
                    yield k, flipped.copy()


def _probe(f, x: np.ndarray, value: float, qs, covariances, nt: int) -> tuple[np.ndarray, float] | None:
    """The best probe (:func:`_covariance_probes`, other parameters kept) if it beats ``value``; else None."""
    best, best_value = None, value - 1e-10 * max(1.0, abs(value))
    lams = relative_factors(x[:nt], qs, covariances)
    for k, L_new in _covariance_probes(lams, covariances):
        trial_lams = list(lams)
        trial_lams[k] = L_new
        trial = np.concatenate([theta_from_factors(trial_lams, covariances), x[nt:]])
        f_trial = f(trial)
        if np.isfinite(f_trial) and f_trial < best_value:
            best, best_value = trial, f_trial
    return None if best is None else (best, best_value)


def _rank_reduced_starts(x: np.ndarray, qs, covariances, nt: int):
    """Per unstructured factor with a nearly singular ``Psi_k`` (smallest eigenvalue below ``_NEAR_SINGULAR``
    of its largest, not already on the boundary): ``x`` with that factor's smallest eigenvalue set to 0.

    Near a rank-deficient optimum the Cholesky entries are badly conditioned: with ``L_11`` small the objective
    changes along the rotation of the column below it only in proportion to ``L_11``, and the quasi-Newton search
    stops there (a binomial random-slope design stopped 2.5e-4 nats short). From the nearest rank-deficient
    ``Psi`` the remaining entries are well determined, and the boundary probes take it on from there."""
    lams = relative_factors(x[:nt], qs, covariances)
    for k, (L, cov) in enumerate(zip(lams, covariances, strict=True)):
        if cov != "full" or L.shape[0] < 2 or np.min(np.abs(np.diag(L))) < SINGULAR_TOL:
            continue
        evals, evecs = np.linalg.eigh(L @ L.T)
        if evals[0] >= _NEAR_SINGULAR * evals[-1]:
            continue
        trial_lams = list(lams)
        trial_lams[k] = psd_cholesky((evecs[:, 1:] * evals[1:]) @ evecs[:, 1:].T)
        yield np.concatenate([theta_from_factors(trial_lams, covariances), x[nt:]])


def _polish(objective, fit: VarianceFit, diag: np.ndarray, bounds, *, gtol: float, ftol: float, maxiter: int,
            grad_tol: float) -> VarianceFit:
    """L-BFGS-B from ``fit`` with each positive diagonal on the log scale (zero ones held at 0): better the lower.

    In ``phi`` a small diagonal ``L_ii`` enters the covariances as ``sqrt(phi_ii) L_ji``, so finite differences of
    width ~1e-5 in ``phi_ii`` straddle a kink when ``phi_ii`` is about as small; on the log scale the same entry is
    well scaled (a random-slope fit with ``L_11 = 0.0027`` stopped 5.8e-5 nats short before this step)."""
    active = ~(diag & (fit.x <= 0.0))
    logged = (diag & (fit.x > 0.0))[active]

    def to_x(y):
        x = np.zeros_like(fit.x)
        x[active] = np.where(logged, np.exp(np.minimum(y, 50.0)), y)
        return x

    y0 = np.where(logged, np.log(np.where(logged, fit.x[active], 1.0)), fit.x[active])
    box = [(-50.0, None) if lg else b for lg, b in zip(logged, np.array(bounds, dtype=object)[active], strict=True)]
    res = sopt.minimize(lambda y: objective(to_x(y)), y0, method="L-BFGS-B", jac="3-point", bounds=box,
                        options={"gtol": gtol, "ftol": ftol, "maxiter": maxiter})
    n_iter = fit.n_iter + int(res.nit)
    if not float(res.fun) < fit.value - 1e-12 * max(1.0, abs(fit.value)):
        return VarianceFit(fit.x, fit.value, n_iter, fit.converged, fit.restarts)
    stationary = bool(res.success or np.max(np.abs(res.jac), initial=0.0) < grad_tol)
    return VarianceFit(to_x(res.x), float(res.fun), n_iter, stationary, fit.restarts)


def minimise_variance_components(objective, x0: np.ndarray, qs: list[int], covariances: list[str], *,
                                 n_free: int = 0, gtol: float, maxiter: int, grad_tol: float,
                                 ftol: float = 1e-15, free_bounds=None) -> VarianceFit:
    """Minimise ``objective(x)`` over ``x = [theta, free]`` (theta >= 0 on the relative factors' diagonals) by
    L-BFGS-B in the squared-diagonal parametrisation, probing the boundary and restarting until no probe improves
    (at most a few restarts); then, where an unstructured factor ends nearly singular, once more from its nearest
    rank-deficient covariance, keeping the lower of the two; then, with unstructured factors, an L-BFGS-B run with
    the positive diagonals on the log scale (``_polish``), whose end, where lower, is verified by the first
    search again.

    Parameters
    ----------
    objective : callable
        The deviance as a function of ``x``: lme4's theta followed by ``n_free`` free parameters.
    x0 : ndarray
        Start (lme4's: identity relative factors).
    qs, covariances : list of int, list of str
        Each factor's number of random effects and covariance structure ("full" or "diag"), block order.
    n_free : int
        Number of parameters after theta (the GLMMs' fixed effects and the family's nuisance parameters).
    gtol, maxiter, ftol : float, int, float
        L-BFGS-B's options.
    grad_tol : float
        Largest projected finite-difference gradient (deviance per unit of ``phi``) accepted as stationary when
        L-BFGS-B's own test fails (its line search stops early on finite-difference gradients near an optimum).
    free_bounds : list of (float or None, float or None), optional
        Bounds of the free parameters (unbounded when None).
    """
    start, lower = theta_layout(qs, covariances)
    nt = start.size
    diag = np.r_[lower == 0.0, np.zeros(n_free, dtype=bool)]
    x0 = np.asarray(x0, dtype=np.float64)
    if x0.shape != diag.shape:
        raise ValueError(f"x0 has shape {x0.shape}, expected ({diag.size},): theta ({nt}) and {n_free} free")
    free_bounds = [(None, None)] * n_free if free_bounds is None else list(free_bounds)
    if len(free_bounds) != n_free:
        raise ValueError(f"free_bounds has {len(free_bounds)} entries, expected n_free = {n_free}")
    bounds = [(0.0, None) if d else (None, None) for d in diag[:nt]] + free_bounds

    def f(phi):
        return objective(_to_x(phi, diag))

    def descend(x_start: np.ndarray, n_iter: int) -> VarianceFit:
        phi, restarts = _to_phi(x_start, diag), 0
        while True:
            res = sopt.minimize(f, phi, method="L-BFGS-B", jac="3-point", bounds=bounds,
                                options={"gtol": gtol, "ftol": ftol, "maxiter": maxiter})
            phi, value, n_iter = res.x, float(res.fun), n_iter + int(res.nit)
            stationary = bool(res.success or np.max(np.abs(_projected_gradient(res.jac, phi, diag)), initial=0.0)
                              < grad_tol)
            x = _to_x(phi, diag)
            better = _probe(objective, x, value, qs, covariances, nt)
            if better is None:
                return VarianceFit(x, value, n_iter, stationary, restarts)
            if restarts == _MAX_RESTARTS:
                return VarianceFit(better[0], better[1], n_iter, False, restarts)
            phi, restarts = _to_phi(better[0], diag), restarts + 1

    fit = descend(x0, 0)
    for x_start in list(_rank_reduced_starts(fit.x, qs, covariances, nt)):
        alt = descend(x_start, fit.n_iter)
        if alt.value < fit.value - 1e-10 * max(1.0, abs(fit.value)):
            fit = VarianceFit(alt.x, alt.value, alt.n_iter, alt.converged, fit.restarts + alt.restarts + 1)
        else:
            fit.n_iter = alt.n_iter
    if any(cov == "full" and q > 1 for q, cov in zip(qs, covariances, strict=True)):
        polished = _polish(objective, fit, diag, bounds, gtol=gtol, ftol=ftol, maxiter=maxiter, grad_tol=grad_tol)
        if polished.value < fit.value:
            # verified where it stopped as any other fit: stationary in phi and no boundary probe improving (on
            # the log scale a diagonal drifting to 0 has a vanishing gradient, which proves nothing)
            again = descend(polished.x, polished.n_iter)
            fit = VarianceFit(again.x, again.value, again.n_iter, again.converged, fit.restarts + again.restarts)
        else:
            fit.n_iter = polished.n_iter
    return fit


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
