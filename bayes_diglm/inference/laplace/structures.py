"""Which approximation: a Gaussian ``N(mean, H^{-1})`` whose precision is stored full, diagonal, Kronecker or
low-rank (the ``covariance=`` option)."""

from __future__ import annotations

import numpy as np
from scipy import linalg as sla

from ..linalg import robust_cholesky
from .kernels import _full_hessian, _gram

__all__ = ["_STRUCTURES"]


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

    def logit_cov(self, X: np.ndarray, batch: int = 1024) -> np.ndarray:
        """``J_n H^{-1} J_n^T`` for each row, ``J_n = I_K kron x_n^T``: the columns of ``V_n = L^{-1} J_n^T``.

        With many rows, ``L^{-1}`` (one triangular solve against the identity, P^3/3 multiply-adds for
        P = K D weights) pays for itself: its class-k column block is zero above row k D, so the
        columns of every ``V_n`` come from K GEMMs on the trailing rows and each pair (k, l) only meets on
        rows from max(k, l) D on; a few rows are solved directly instead.
        """
        k_out, d = self.mean.shape
        if X.shape[0] * k_out < k_out * d // 3:
            return self._logit_cov_by_solves(X)
        chol_inv = sla.solve_triangular(self.chol, np.eye(self.chol.shape[0]), lower=True)
        out = np.empty((X.shape[0], k_out, k_out))
        for start in range(0, X.shape[0], batch):
            xb = X[start:start + batch]
            # v[k][:, i] holds rows k*d.. of column k of V_i (the rows above are zero)
            v = [chol_inv[k * d:, k * d:(k + 1) * d] @ xb.T for k in range(k_out)]
            for k in range(k_out):
                for j in range(k, k_out):
                    cell = np.einsum("pi,pi->i", v[k][(j - k) * d:], v[j])
                    out[start:start + batch, k, j] = cell
                    out[start:start + batch, j, k] = cell
        return out

    def _logit_cov_by_solves(self, X: np.ndarray, batch: int = 256) -> np.ndarray:
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
    factor ``B = (1/n) sum_n Lambda_n`` (K x K) and the feature factor ``A = X^T X`` (D x D; with row weights
    ``B = sum_n w_n Lambda_n / sum_n w_n`` and ``A = X^T W X``): exact when
    ``Lambda_n`` does not vary over n (Gaussian likelihood).  With eigendecompositions ``A = U_A S_A U_A^T``
    and ``B = U_B S_B U_B^T`` the precision is ``(U_B kron U_A) diag(lam) (U_B kron U_A)^T`` where
    ``lam = s_B s_A^T + diag-of-prior in that eigenbasis``; the prior term is exact for a scalar prior
    precision and keeps only its diagonal in the eigenbasis otherwise (per-class/feature precisions,
    intercept with its own precision).
    """

    def __init__(self, mean: np.ndarray, X: np.ndarray, curv: np.ndarray, prior: np.ndarray,
                 weights: np.ndarray | None = None):
        self.mean = mean
        w = np.ones(X.shape[0]) if weights is None else weights
        # curv holds the row-weighted curvatures: B is their weighted mean and A = X^T W X, so that an integer
        # weight stays the same as repeating the row
        s_a, self.u_a = np.linalg.eigh(_gram(X, None if weights is None else w))
        s_b, self.u_b = np.linalg.eigh(curv.sum(axis=0) / w.sum())
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


class _LowRankPosterior:
    r"""Low-rank plus prior precision: ``H ~= D^{1/2} (I + U_r S_r U_r^T) D^{1/2}``, ``D = diag(prior)``.

    ``U_r S_r U_r^T`` keeps the ``rank`` largest eigenpairs of the prior-whitened likelihood curvature
    ``D^{-1/2} G D^{-1/2}`` (``G = sum_n Lambda_n kron x_n x_n^T``), the best rank-r approximation in the
    prior's metric, as laplace-torch's ``LowRankLaplace``. By Woodbury the covariance is
    ``D^{-1/2} (I - U_r diag(s / (1 + s)) U_r^T) D^{-1/2}``; it needs a proper prior on every weight.
    """

    def __init__(self, mean: np.ndarray, X: np.ndarray, curv: np.ndarray, prior: np.ndarray, rank: int | None = None):
        if np.any(prior <= 0):
            raise ValueError("covariance='lowrank' needs a positive prior precision on every weight (a flat "
                             "intercept prior, intercept_prior_precision=0, is not allowed)")
        self.mean = mean
        self.root_prior = np.sqrt(prior.ravel())
        G = _full_hessian(X, curv, np.zeros_like(prior))
        whitened = G / np.outer(self.root_prior, self.root_prior)
        s, u = np.linalg.eigh(whitened)
        r = min(int(rank) if rank is not None else 20, s.size)
        self.s, self.u = np.clip(s[::-1][:r], 0.0, None), u[:, ::-1][:, :r]

    def sample(self, num: int, rng: np.random.Generator) -> np.ndarray:
        eps = rng.standard_normal((num, self.root_prior.size))
        # (I + U S U^T)^{-1/2} = I + U (diag((1 + s)^{-1/2}) - I) U^T
        shrink = (1.0 / np.sqrt(1.0 + self.s)) - 1.0
        white = eps + ((eps @ self.u) * shrink) @ self.u.T
        return self.mean[None] + (white / self.root_prior).reshape((num,) + self.mean.shape)

    def logit_cov(self, X: np.ndarray) -> np.ndarray:
        k_out, d = self.mean.shape
        inv_prior = (1.0 / self.root_prior**2).reshape(k_out, d)
        base = (X**2) @ inv_prior.T  # J D^{-1} J^T is diagonal over classes
        cov = np.einsum("nk,kl->nkl", base, np.eye(k_out))
        scaled_u = (self.u / self.root_prior[:, None]).reshape(k_out, d, -1)  # D^{-1/2} U by class
        proj = np.einsum("nd,kdr->nkr", X, scaled_u)
        return cov - np.einsum("nkr,r,nlr->nkl", proj, self.s / (1.0 + self.s), proj)

    def log_det_precision(self) -> float:
        return float(2.0 * np.log(self.root_prior).sum() + np.log1p(self.s).sum())

    def marginal_variance(self) -> np.ndarray:
        reduce = 1.0 - (self.u**2) @ (self.s / (1.0 + self.s))
        return (reduce / self.root_prior**2).reshape(self.mean.shape)


_STRUCTURES = {"full": _FullPosterior, "diag": _DiagPosterior, "kron": _KronPosterior, "lowrank": _LowRankPosterior}
