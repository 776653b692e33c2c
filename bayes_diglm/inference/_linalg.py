"""Cholesky factorisation that survives ill-conditioned precisions: adaptive jitter with a warning."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg

__all__ = ["JitterWarning", "robust_cholesky"]


class JitterWarning(RuntimeWarning):
    """A matrix needed jitter on its diagonal before it could be factorised."""


def robust_cholesky(A: np.ndarray, what: str, *, max_tries: int = 10, overwrite_a: bool = False) -> np.ndarray:
    """Lower Cholesky factor of the symmetric matrix ``A`` (float64).

    When ``A`` is numerically indefinite (collinear features, scales far apart), ``jitter * I`` is added with
    ``jitter = 1e-12 * mean(|diag A|)``, growing tenfold per try, and a :class:`JitterWarning` says how much was
    needed. After ``max_tries`` (jitter up to ``1e-3 * mean(|diag A|)``) it raises a ``ValueError`` naming ``what``.
    Non-finite entries raise at once: a NaN is never passed on silently.
    """
    if not np.isfinite(A).all():
        raise ValueError(f"{what} has NaN or infinite entries (features too large or non-finite?)")
    try:
        return scipy.linalg.cholesky(A, lower=True, overwrite_a=overwrite_a, check_finite=False)
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
