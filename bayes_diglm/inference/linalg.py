"""Cholesky factors for posterior algebra: robust factorisation (adaptive jitter) and O(P^2) rank-one updates."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg

__all__ = ["JitterWarning", "cholesky_rank_one_update", "robust_cholesky"]


class JitterWarning(RuntimeWarning):
    """A matrix needed jitter on its diagonal before it could be factorised."""


def robust_cholesky(A: np.ndarray, what: str, *, max_tries: int = 10) -> np.ndarray:
    """Lower Cholesky factor of the symmetric matrix ``A`` (float64).

    When ``A`` is numerically indefinite (collinear features, scales far apart), ``jitter * I`` is added with
    ``jitter = 1e-12 * mean(|diag A|)``, growing tenfold per try, and a :class:`JitterWarning` says how much was
    needed. After ``max_tries`` (jitter up to ``1e-3 * mean(|diag A|)``) it raises a ``ValueError`` naming ``what``.
    Non-finite entries raise at once: a NaN is never passed on silently.
    """
    if not np.isfinite(A).all():
        raise ValueError(f"{what} has NaN or infinite entries (features too large or non-finite?)")
    try:
        # never overwrite_a: a failed attempt would leave A half-factorised for the jittered retries
        return scipy.linalg.cholesky(A, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        pass
    scale = float(np.mean(np.abs(np.diag(A)))) or 1.0
    jitter = 1e-12 * scale
    for _ in range(max_tries):
        try:
            L = scipy.linalg.cholesky(A + jitter * np.eye(A.shape[0]), lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            jitter *= 10.0
            continue
        warnings.warn(
            f"{what} was numerically not positive definite; added jitter {jitter:.3g} to its diagonal "
            f"({jitter / scale:.1e} of its mean diagonal). Consider standardising the features or a larger prior "
            "precision.",
            JitterWarning,
            stacklevel=3,
        )
        return L
    raise ValueError(
        f"{what} is not positive definite even with jitter {jitter / 10:.3g} on its diagonal; the features are "
        "too ill-conditioned (standardise them, drop collinear columns, or raise the prior precision)"
    )


def cholesky_rank_one_update(L: np.ndarray, x: np.ndarray, p: np.ndarray | None = None) -> np.ndarray:
    r"""Lower Cholesky factor of :math:`L L^T + x x^T` in O(P^2), vectorised, in float64.

    With :math:`p = L^{-1} x` and :math:`t_j = 1 + \sum_{i \le j} p_i^2` (:math:`t_0 = 1`), the factor of
    :math:`I + p p^T` is :math:`M = \mathrm{diag}(\sqrt{t_j / t_{j-1}}) + \mathrm{strict\_lower}(p \beta^T)`,
    :math:`\beta_j = p_j / \sqrt{t_j t_{j-1}}` (Gill, Golub, Murray and Saunders 1974), and the new factor
    is :math:`L M`: column ``j`` is :math:`\sqrt{t_j/t_{j-1}} L_{:j} + \beta_j \sum_{i>j} p_i L_{:i}`.
    Every quantity is a sum of positive terms, so the update is stable. Pass ``p`` when already known.
    """
    if p is None:
        p = scipy.linalg.solve_triangular(L, x, lower=True, check_finite=False)
    t = 1.0 + np.cumsum(p * p)
    t_prev = np.concatenate([[1.0], t[:-1]])
    beta = p / np.sqrt(t * t_prev)
    scaled = L * p  # column i is p_i L[:, i]
    suffix = np.cumsum(scaled[:, ::-1], axis=1)[:, ::-1]  # column j is sum_{i >= j} p_i L[:, i]
    after = np.zeros_like(L)
    after[:, :-1] = suffix[:, 1:]
    return L * np.sqrt(t / t_prev) + after * beta
