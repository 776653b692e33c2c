r"""Blocked sparse Cholesky of ``Lambda^T Zr^T W Zr Lambda + I`` (lme4's penalised least squares system).

The random effects of the first (largest) factor form a block-diagonal block ``A11`` (one q1 x q1 block per
group, factorised as a batch); the other factors' effects (``m`` of them, crossed or nested) are eliminated
through the dense Schur complement ``S = A22 - A21 A11^{-1} A12`` (``S >= I`` since ``A >= I``, so neither
factorisation ever needs jitter). Cost: O(n q^2) for the cross-products, O(nnz(A21) q1) for the Schur
complement and O(m^3) for its Cholesky factor; memory O(G1 q1^2 + m^2 + nnz(A21)). One factor: m = 0.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg as sla
from scipy import sparse

from bayes_diglm.inference.linalg import JitterWarning, robust_cholesky

__all__ = ["BlockedCholesky", "BlockPattern", "apply_lambda", "fixed_effect_factor", "psd_cholesky", "relative_factors",
           "theta_from_factors", "theta_layout"]

# F = A21 L11^{-T} is kept dense (BLAS) below this many entries, sparse above
_DENSE_F_ENTRIES = 1 << 22


def _block_diag_sparse(blocks: np.ndarray) -> sparse.csr_matrix:
    """Sparse block diagonal of (G, q, q) blocks."""
    G, q, _ = blocks.shape
    rows = np.arange(G)[:, None, None] * q + np.arange(q)[None, :, None] + np.zeros((1, 1, q), dtype=np.int64)
    cols = np.arange(G)[:, None, None] * q + np.arange(q)[None, None, :] + np.zeros((1, q, 1), dtype=np.int64)
    return sparse.csr_matrix((blocks.ravel(), (rows.ravel(), cols.ravel())), shape=(G * q, G * q))


def relative_factors(theta: np.ndarray, qs: list[int], covariances: list[str]) -> list[np.ndarray]:
    """Lower-triangular ``L_k`` (``Psi_k = sigma^2 L_k L_k^T``) from lme4's theta: the lower triangle of each
    factor, column by column ("full"), or its diagonal ("diag")."""
    out, pos = [], 0
    for q, cov in zip(qs, covariances, strict=True):
        L = np.zeros((q, q))
        if cov == "full":
            rows, cols = np.tril_indices(q)
            order = np.lexsort((rows, cols))  # column-major, as lme4
            L[rows[order], cols[order]] = theta[pos:pos + rows.size]
            pos += rows.size
        else:
            L[np.diag_indices(q)] = theta[pos:pos + q]
            pos += q
        out.append(L)
    return out


def theta_from_factors(lams: list[np.ndarray], covariances: list[str]) -> np.ndarray:
    """lme4's theta from lower-triangular ``L_k``: the inverse of :func:`relative_factors`."""
    parts = []
    for L, cov in zip(lams, covariances, strict=True):
        if cov == "full":
            rows, cols = np.tril_indices(L.shape[0])
            order = np.lexsort((rows, cols))
            parts.append(L[rows[order], cols[order]])
        else:
            parts.append(np.diag(L).copy())
    return np.concatenate(parts)


def psd_cholesky(psi: np.ndarray) -> np.ndarray:
    """A lower-triangular ``L`` with non-negative diagonal and ``L L^T = psi`` for a symmetric PSD ``psi``,
    singular ones included (a symmetric square root, then QR to triangular form; no jitter)."""
    evals, evecs = np.linalg.eigh(psi)
    root = evecs * np.sqrt(np.clip(evals, 0.0, None))
    L = np.linalg.qr(root.T, mode="r").T
    return L * np.where(np.diag(L) < 0, -1.0, 1.0)[None, :]


def theta_layout(qs: list[int], covariances: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """lme4's start (identity) and lower bounds (0 on diagonals, -inf elsewhere) for theta."""
    start, lower = [], []
    for q, cov in zip(qs, covariances, strict=True):
        if cov == "full":
            rows, cols = np.tril_indices(q)
            order = np.lexsort((rows, cols))
            diag = rows[order] == cols[order]
        else:
            diag = np.ones(q, dtype=bool)
        start.append(diag.astype(float))
        lower.append(np.where(diag, 0.0, -np.inf))
    return np.concatenate(start), np.concatenate(lower)


def fixed_effect_factor(M: np.ndarray, what: str) -> np.ndarray:
    """Lower Cholesky factor of the fixed-effect block ``M``, jittered (with a :class:`JitterWarning`) when the
    design is collinear: a pivot below 1e-12 of its diagonal entry counts as singular even if LAPACK succeeds."""
    L = robust_cholesky(M, what)
    relative = np.diag(L) ** 2 / np.maximum(np.diag(M), 1e-300)
    if M.shape[0] and np.min(relative) < 1e-12:
        jitter = 1e-10 * float(np.mean(np.abs(np.diag(M))))
        warnings.warn(f"{what} is numerically singular (collinear fixed-effect features); added jitter {jitter:.3g} "
                      "to its diagonal. Drop or combine collinear columns.", JitterWarning, stacklevel=4)
        L = sla.cholesky(M + jitter * np.eye(M.shape[0]), lower=True, check_finite=False)
    return L


def apply_lambda(lams: list[np.ndarray], num_groups: list[int], u: np.ndarray) -> np.ndarray:
    """``b = Lambda u`` for the stacked spherical effects ``u`` (block order), shape (q,)."""
    out, off = [], 0
    for L, G in zip(lams, num_groups, strict=True):
        q = L.shape[0]
        out.append((u[off:off + G * q].reshape(G, q) @ L.T).ravel())
        off += G * q
    return np.concatenate(out)


class BlockPattern:
    """The fixed block structure of ``C = Zr^T W Zr`` for one fit: ``C21`` split per factor into BSR blocks.

    Built once per fit, so each evaluation of the likelihood only recomputes the blocks' values.
    """

    def __init__(self, C11: np.ndarray, C21, C22: np.ndarray, qs: list[int], num_groups: list[int]):
        self.C11, self.C22, self.qs, self.num_groups = C11, C22, qs, num_groups
        q1 = qs[0]
        if isinstance(C21, list):  # already split: [(data (nb, qk, q1), indices, indptr, shape)] per other factor
            self.C21 = C21
        else:
            self.C21, off = [], 0
            for q, G in zip(qs[1:], num_groups[1:], strict=True):
                block = C21[off:off + G * q].tobsr(blocksize=(q, q1))
                block.sort_indices()
                self.C21.append((np.array(block.data), block.indices.copy(), block.indptr.copy(),
                                 (G * q, C21.shape[1])))
                off += G * q
        sizes = [q * G for q, G in zip(qs[1:], num_groups[1:], strict=True)]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)


def _dense_scale(M: np.ndarray, lams, num_groups, offsets, axis: int) -> np.ndarray:
    """``Lambda_R^T M`` (axis 0) or ``M Lambda_R`` (axis 1) for the block-diagonal ``Lambda_R`` of the other factors."""
    out = np.empty_like(M)
    for k, (L, G) in enumerate(zip(lams, num_groups, strict=True)):
        q = L.shape[0]
        sl = slice(offsets[k], offsets[k + 1])
        if axis == 0:
            out[sl] = np.einsum("ji,gjc->gic", L, M[sl].reshape(G, q, -1)).reshape(G * q, -1)
        else:
            out[:, sl] = np.einsum("rgj,ji->rgi", M[:, sl].reshape(M.shape[0], G, q), L).reshape(M.shape[0], G * q)
    return out


class BlockedCholesky:
    r"""``L L^T = Lambda^T C Lambda + I`` for ``C = Zr^T W Zr`` held as a :class:`BlockPattern`.

    ``lams`` are the relative factors ``L_k`` in block order. ``solve_L`` / ``solve_Lt`` apply ``L^{-1}`` and
    ``L^{-T}``; ``scale(v)`` applies ``Lambda^T`` (and ``Lambda`` with ``transpose=False``) to a (q, k) array.
    """

    def __init__(self, pattern: BlockPattern, lams: list[np.ndarray]):
        self.lams, self.num_groups, self.pattern = lams, pattern.num_groups, pattern
        C11 = pattern.C11
        G1, q1 = C11.shape[0], C11.shape[1]
        self.G1, self.q1, self.m = G1, q1, pattern.C22.shape[0]
        L1 = lams[0]
        A11 = np.einsum("ji,gjk,kl->gil", L1, C11, L1) + np.eye(q1)
        self.chol1 = np.linalg.cholesky(A11)
        # triangular inverses of the q1 x q1 blocks (batched triangular solves against I)
        self.inv1 = np.linalg.solve(self.chol1, np.broadcast_to(np.eye(q1), A11.shape))
        logdet = 2.0 * np.log(np.diagonal(self.chol1, axis1=1, axis2=2)).sum()
        if self.m:
            inv1T = np.swapaxes(self.inv1, 1, 2)
            dense = self.m * G1 * q1 <= _DENSE_F_ENTRIES
            parts = []
            for L, (data, indices, indptr, shape) in zip(lams[1:], pattern.C21, strict=True):
                # block (g_k, g_1) of F = L_k^T C21 L_1 chol1_{g1}^{-T}
                fdata = np.einsum("ji,bjk,kl,blm->bim", L, data, L1, inv1T[indices])
                part = sparse.bsr_matrix((fdata, indices, indptr), shape=shape)
                parts.append(part.toarray() if dense else part.tocsr())
            if dense:
                self.F = np.concatenate(parts) if len(parts) > 1 else parts[0]
                FFt = self.F @ self.F.T
            else:
                self.F = sparse.vstack(parts, format="csr") if len(parts) > 1 else parts[0]
                FFt = (self.F @ self.F.T).toarray()
            R = self.lams[1:]
            A22 = _dense_scale(_dense_scale(pattern.C22, R, self.num_groups[1:], pattern.offsets, 0),
                               R, self.num_groups[1:], pattern.offsets, 1) + np.eye(self.m)
            S = A22 - FFt
            self.chol2 = sla.cholesky(S, lower=True, check_finite=False)
            logdet += 2.0 * np.log(np.diag(self.chol2)).sum()
        self.logdet = float(logdet)

    # ---- Lambda and L --------------------------------------------------------------------------------

    def scale(self, v: np.ndarray, *, transpose: bool = True) -> np.ndarray:
        """``Lambda^T v`` (or ``Lambda v``) for v of shape (q, k)."""
        n1 = self.G1 * self.q1
        L1 = self.lams[0]
        v1 = v[:n1].reshape(self.G1, self.q1, -1)
        out1 = np.einsum("ji,gjk->gik" if transpose else "ij,gjk->gik", L1, v1).reshape(n1, -1)
        if not self.m:
            return out1
        R = self.lams[1:] if transpose else [L.T for L in self.lams[1:]]
        return np.concatenate([out1, _dense_scale(v[n1:], R, self.num_groups[1:], self.pattern.offsets, 0)])

    def solve_L(self, b: np.ndarray) -> np.ndarray:
        n1 = self.G1 * self.q1
        c1 = np.einsum("gij,gjk->gik", self.inv1, b[:n1].reshape(self.G1, self.q1, -1)).reshape(n1, -1)
        if not self.m:
            return c1
        c2 = sla.solve_triangular(self.chol2, b[n1:] - self.F @ c1, lower=True, check_finite=False)
        return np.concatenate([c1, c2])

    def solve_Lt(self, v: np.ndarray) -> np.ndarray:
        n1 = self.G1 * self.q1
        v1 = v[:n1]
        x2 = None
        if self.m:
            x2 = sla.solve_triangular(self.chol2, v[n1:], lower=True, trans="T", check_finite=False)
            v1 = v1 - self.F.T @ x2
        x1 = np.einsum("gji,gjk->gik", self.inv1, v1.reshape(self.G1, self.q1, -1)).reshape(n1, -1)
        return x1 if x2 is None else np.concatenate([x1, x2])

    def inverse_diagonal_blocks(self) -> list[np.ndarray]:
        """Diagonal blocks of ``(L L^T)^{-1}``, per factor in block order: arrays (G_k, q_k, q_k)."""
        G1, q1 = self.G1, self.q1
        first = np.einsum("gki,gkj->gij", self.inv1, self.inv1)
        if not self.m:
            return [first]
        # rows m of L^{-1} below the first block: -L22^{-1} F L11^{-1}
        if isinstance(self.F, np.ndarray):
            FL = np.einsum("rgj,gji->rgi", self.F.reshape(self.m, G1, q1), self.inv1).reshape(self.m, G1 * q1)
        else:
            FL = (self.F @ _block_diag_sparse(self.inv1)).toarray()
        K = sla.solve_triangular(self.chol2, FL, lower=True, check_finite=False).reshape(self.m, G1, q1)
        first = first + np.einsum("rgi,rgj->gij", K, K)
        P = sla.solve_triangular(self.chol2, np.eye(self.m), lower=True, check_finite=False)
        out, off = [first], 0
        for L, G in zip(self.lams[1:], self.num_groups[1:], strict=True):
            q = L.shape[0]
            Pk = P[:, off:off + G * q].reshape(self.m, G, q)
            out.append(np.einsum("rgi,rgj->gij", Pk, Pk))
            off += G * q
        return out
