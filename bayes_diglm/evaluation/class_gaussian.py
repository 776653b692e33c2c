"""A Gaussian class-conditional density on features (Gaussian discriminant analysis), fitted in float64."""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import scipy.special

from ..inference.linalg import robust_cholesky

__all__ = ["ClassConditionalGaussian"]


class ClassConditionalGaussian:
    r"""Gaussian discriminant density on features: :math:`q(z) = \sum_c \pi_c\, N(z; \mu_c, \Sigma_c)`.

    Fitted by maximum likelihood per class (``pi_c = n_c / n``, class means and covariances), in float64, with
    ``reg`` times the mean feature variance added to every covariance's diagonal (the covariances of
    high-dimensional features from a few hundred images per class are singular otherwise). ``covariance``:
    ``"full"`` (one per class, as in DDU), ``"tied"`` (the pooled within-class covariance, as in LDA) or
    ``"diag"``. Log densities go through Cholesky factors (:func:`~bayes_diglm.inference.linalg.robust_cholesky`,
    which adds a further jitter, with a warning, only when the regularised covariance is still numerically
    singular) and triangular solves.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> Z = np.r_[rng.normal(-2, 1, (200, 2)), rng.normal(2, 1, (200, 2))]
        >>> gda = ClassConditionalGaussian(covariance="tied").fit(Z, np.repeat([0, 1], 200))
        >>> bool(gda.score_samples(np.zeros((1, 2)))[0] < gda.score_samples(np.full((1, 2), 2.0))[0])
        True
    """

    _KINDS = ("full", "tied", "diag")

    def __init__(self, *, covariance: str = "full", reg: float = 1e-4):
        self.covariance = covariance
        self.reg = reg

    def fit(self, Z, y) -> ClassConditionalGaussian:
        """Fit class weights, means and covariances on features ``Z`` (n, D) with labels ``y``; return ``self``."""
        if self.covariance not in self._KINDS:
            raise ValueError(f"covariance must be one of {self._KINDS}, got {self.covariance!r}")
        if not (np.isfinite(self.reg) and self.reg >= 0):
            raise ValueError(f"reg must be a finite non-negative number, got {self.reg!r}")
        Z = _features(Z, "Z")
        y = np.asarray(y)
        if y.shape != (Z.shape[0],):
            raise ValueError(f"y must have shape ({Z.shape[0]},), got {y.shape}")
        classes, codes = np.unique(y, return_inverse=True)
        counts = np.bincount(codes).astype(np.float64)
        if counts.min() < 2:
            small = classes[counts < 2].tolist()
            raise ValueError(f"every class needs at least two rows; classes {small} have fewer")
        means = np.stack([Z[codes == k].mean(axis=0) for k in range(classes.size)])
        centred = Z - means[codes]
        jitter = self.reg * float(centred.var(axis=0).mean())
        eye = np.eye(Z.shape[1])
        if self.covariance == "tied":
            cov = centred.T @ centred / Z.shape[0] + jitter * eye
            chol = np.broadcast_to(robust_cholesky(cov, "the tied feature covariance"), (classes.size, *cov.shape))
        elif self.covariance == "full":
            chol = np.stack([robust_cholesky(centred[codes == k].T @ centred[codes == k] / counts[k] + jitter * eye,
                                             f"the feature covariance of class {classes[k]!r}")
                             for k in range(classes.size)])
        else:
            var = np.stack([(centred[codes == k] ** 2).mean(axis=0) for k in range(classes.size)]) + jitter
            chol = np.sqrt(var)
        self.classes_, self.log_prior_ = classes, np.log(counts / counts.sum())
        self.means_, self.cholesky_, self.n_features_in_ = means, np.asarray(chol), Z.shape[1]
        return self

    def class_log_density(self, Z) -> np.ndarray:
        r""":math:`\log \pi_c + \log N(z; \mu_c, \Sigma_c)` for every row and class, shape (n, K)."""
        if not hasattr(self, "means_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("ClassConditionalGaussian is not fitted yet; call fit first")
        Z = _features(Z, "Z")
        if Z.shape[1] != self.n_features_in_:
            raise ValueError(f"Z has {Z.shape[1]} features, the Gaussians were fitted on {self.n_features_in_}")
        D = Z.shape[1]
        out = np.empty((Z.shape[0], self.means_.shape[0]))
        for k, (mean, L) in enumerate(zip(self.means_, self.cholesky_, strict=True)):
            diff = Z - mean
            if self.covariance == "diag":
                maha, log_det = ((diff / L) ** 2).sum(axis=1), 2.0 * np.log(L).sum()
            else:
                solved = scipy.linalg.solve_triangular(L, diff.T, lower=True, check_finite=False)
                maha, log_det = (solved**2).sum(axis=0), 2.0 * np.log(np.diag(L)).sum()
            out[:, k] = self.log_prior_[k] - 0.5 * (maha + log_det + D * math.log(2 * math.pi))
        return out

    def score_samples(self, Z) -> np.ndarray:
        r"""Log density of the mixture, :math:`\log q(z) = \log\sum_c \pi_c N(z; \mu_c, \Sigma_c)`, shape (n,)."""
        return scipy.special.logsumexp(self.class_log_density(Z), axis=1)



def _features(Z, name: str) -> np.ndarray:
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2 or Z.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (n, D), got shape {Z.shape}")
    if not np.isfinite(Z).all():
        raise ValueError(f"{name} has non-finite values")
    return Z
