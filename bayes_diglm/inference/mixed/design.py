"""Random-effects specification (formula-free), the grouped design, and its additive cross-products."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from ..._validation import check_labels

__all__ = ["MixedSufficientStats", "RandomEffect"]

_COVARIANCES = ("full", "diag")


@dataclass(frozen=True)
class RandomEffect:
    """One grouping factor's random effects: ``b_g ~ N(0, Psi)`` on ``a_i = [1, z_i[slopes]]``.

    Parameters
    ----------
    group : str, int or None
        Which grouping column this factor uses: a key of the ``groups`` mapping / DataFrame column, or a column
        index of a 2-D ``groups`` array; ``None`` means the only column (one-factor models).
    slopes : sequence of int or str
        Feature columns of ``Z`` with a random slope (ints, or names when ``Z`` was a DataFrame).
    intercept : bool
        Random intercept (``False`` is lme4's ``(0 + x | g)``).
    covariance : {"full", "diag"}
        Unstructured ``Psi`` (lme4's and statsmodels' default) or independent effects.
    nested_in : str, int, sequence of them, or None
        Grouping column(s) this factor is nested in: the factor's levels become the pairs ``outer:inner``
        (lme4's ``(1 | batch/cask)`` is ``RandomEffect("batch")`` plus ``RandomEffect("cask", nested_in="batch")``).

    Crossed factors are just several ``RandomEffect`` entries on different columns.
    """

    group: str | int | None = None
    slopes: tuple = ()
    intercept: bool = True
    covariance: str = "full"
    nested_in: str | int | tuple | None = None

    def __post_init__(self):
        object.__setattr__(self, "slopes", tuple(self.slopes))
        if self.covariance not in _COVARIANCES:
            raise ValueError(f"covariance must be one of {_COVARIANCES}, got {self.covariance!r}")
        if not self.intercept and not self.slopes:
            raise ValueError("a RandomEffect needs a random intercept or at least one random slope")

    @property
    def name(self) -> str:
        """The factor's name in fitted attributes and ArviZ dims (``outer:inner`` when nested)."""
        base = "group" if self.group is None else str(self.group)
        outer = self.nested_in
        if outer is None:
            return base
        outer = outer if isinstance(outer, tuple) else (outer,)
        return ":".join([str(o) for o in outer] + [base])


def group_columns(groups, n: int) -> dict:
    """``groups`` (1-D array, 2-D array, mapping or DataFrame) as an ordered dict of 1-D label arrays."""
    if groups is None:
        raise ValueError("groups is required: one group id per row of Z (or a mapping of grouping columns)")
    if hasattr(groups, "columns") and hasattr(groups, "__getitem__"):  # pandas DataFrame
        cols = {key: np.asarray(groups[key]) for key in groups.columns}
    elif isinstance(groups, Mapping):
        cols = {key: np.asarray(value) for key, value in groups.items()}
    else:
        arr = np.asarray(groups)
        if arr.ndim == 1:
            cols = {None: arr}
        elif arr.ndim == 2:
            cols = {j: arr[:, j] for j in range(arr.shape[1])}
        else:
            raise ValueError(f"groups must be 1-D, 2-D, a mapping or a DataFrame, got shape {arr.shape}")
    if not cols:
        raise ValueError("groups has no grouping columns")
    for key, col in cols.items():
        if col.ndim != 1:
            raise ValueError(f"grouping column {key!r} must be one-dimensional, got shape {col.shape}")
        if col.shape[0] != n:
            raise ValueError(f"grouping column {key!r} has {col.shape[0]} entries but Z has {n} rows")
        check_labels(col, f"grouping column {key!r}")  # group ids follow the labels' rule
    return cols


def _column(cols: dict, key):
    if key is None:
        if len(cols) != 1:
            raise ValueError(f"RandomEffect(group=None) needs a single grouping column, got {list(cols)}")
        return next(iter(cols.values()))
    if key in cols:
        return cols[key]
    if None in cols and key == 0 and len(cols) == 1:
        return cols[None]
    raise ValueError(f"grouping column {key!r} not found in groups (columns: {list(cols)})")


def factor_labels(spec: RandomEffect, cols: dict) -> np.ndarray:
    """The factor's labels per row (strings ``outer:inner`` for nested factors, else the ids as given)."""
    labels = _column(cols, spec.group)
    if spec.nested_in is None:
        return labels.astype(str) if labels.dtype == object else labels
    outer = spec.nested_in if isinstance(spec.nested_in, tuple) else (spec.nested_in,)
    parts = [_column(cols, o).astype(str) for o in outer] + [labels.astype(str)]
    out = parts[0]
    for p in parts[1:]:
        out = np.char.add(np.char.add(out, ":"), p)
    return out


def resolve_slopes(spec: RandomEffect, n_features: int, feature_names) -> list[int]:
    cols = []
    for s in spec.slopes:
        if isinstance(s, str):
            if feature_names is None or s not in list(feature_names):
                raise ValueError(f"random slope {s!r} is not a feature name (features: "
                                 f"{None if feature_names is None else list(feature_names)})")
            cols.append(list(feature_names).index(s))
        elif isinstance(s, (int, np.integer)) and 0 <= int(s) < n_features:
            cols.append(int(s))
        else:
            raise ValueError(f"random slopes must be feature columns in 0..{n_features - 1} or feature names, "
                             f"got {s!r} in {spec.slopes!r}")
    if len(set(cols)) != len(cols):
        raise ValueError(f"random slopes of factor {spec.name!r} repeat a column: {spec.slopes!r}")
    return cols


@dataclass
class Factor:
    """A fitted grouping factor: its levels, random-effect columns and covariance structure."""

    name: str
    spec: RandomEffect
    levels: np.ndarray
    slope_columns: list[int]

    @property
    def q(self) -> int:
        return int(self.spec.intercept) + len(self.slope_columns)

    @property
    def size(self) -> int:
        return self.levels.size * self.q

    @property
    def effect_names(self) -> list[str]:
        return (["intercept"] if self.spec.intercept else []) + [f"z{j}" for j in self.slope_columns]

    def design(self, Z: np.ndarray) -> np.ndarray:
        """Per-row random-effect covariates ``a_i``, shape (n, q)."""
        parts = ([np.ones((Z.shape[0], 1))] if self.spec.intercept else []) + [Z[:, self.slope_columns]]
        return np.concatenate(parts, axis=1)

    def codes(self, labels: np.ndarray, *, allow_unseen: bool) -> np.ndarray:
        """Index of each label in ``levels``; -1 for unseen labels (only when allowed)."""
        try:
            pos = np.clip(np.searchsorted(self.levels, labels), 0, self.levels.size - 1)
            seen = self.levels[pos] == labels
        except TypeError as err:
            raise TypeError(f"ids of factor {self.name!r} of type {labels.dtype} cannot be compared with the "
                            f"fitted ids ({self.levels.dtype})") from err
        if not np.all(seen) and not allow_unseen:
            unknown = np.unique(labels[~seen])
            raise ValueError(f"factor {self.name!r} has ids not seen in fit: {unknown[:10].tolist()}"
                             f"{' ...' if unknown.size > 10 else ''}; pass allow_unseen=True to predict them "
                             "with random effects at their prior mean 0")
        return np.where(seen, pos, -1)


@dataclass
class MixedSufficientStats:
    r"""Additive cross-products of a linear mixed model: everything its (RE)ML fit needs, at any number of rows.

    With ``X`` the fixed-effect design, ``Zr`` the sparse random-effect design (factors in ``order``, the first
    one block-diagonal) and weights ``W``: ``C11`` the per-group blocks of the first factor's ``Zr^T W Zr``
    (G1, q1, q1), ``C21`` the sparse block of the other factors against the first, ``C22`` the dense block of the
    other factors, ``ZX = Zr^T W X``, ``Zy = Zr^T W y``, ``XX``, ``Xy``, ``yy``, the row count and
    ``sum log w``. Chunks add (``a + b``) when built with the same levels, so a model fits on streamed data.
    """

    C11: np.ndarray
    C21: sparse.csr_matrix
    C22: np.ndarray
    ZX: np.ndarray
    Zy: np.ndarray | None
    XX: np.ndarray
    Xy: np.ndarray | None
    yy: float
    n: float
    sum_log_w: float
    factors: list = field(default_factory=list, compare=False)
    order: list = field(default_factory=list, compare=False)
    fit_intercept: bool = True

    def _check_compatible(self, other: MixedSufficientStats) -> None:
        same = (len(self.factors) == len(other.factors) and self.order == other.order
                and self.XX.shape == other.XX.shape and self.fit_intercept == other.fit_intercept
                and all(a.name == b.name and a.slope_columns == b.slope_columns and a.spec == b.spec
                        and np.array_equal(a.levels, b.levels)
                        for a, b in zip(self.factors, other.factors, strict=True)))
        if not same:
            raise ValueError("sufficient statistics built with different factors, levels or features cannot be "
                             "added: build every chunk with the same levels= and random_effects")

    def __add__(self, other: MixedSufficientStats) -> MixedSufficientStats:
        if not isinstance(other, MixedSufficientStats):
            return NotImplemented
        self._check_compatible(other)
        return MixedSufficientStats(
            self.C11 + other.C11, (self.C21 + other.C21).tocsr(), self.C22 + other.C22, self.ZX + other.ZX,
            None if self.Zy is None else self.Zy + other.Zy, self.XX + other.XX,
            None if self.Xy is None else self.Xy + other.Xy, self.yy + other.yy, self.n + other.n,
            self.sum_log_w + other.sum_log_w, self.factors, self.order, self.fit_intercept,
        )


def _block_sums(codes, A, B, w, num_groups) -> np.ndarray:
    """``sum_{i in g} w_i A_i B_i^T`` per group, shape (G, qa, qb), by bincount (rows with code -1 dropped)."""
    keep = codes >= 0
    codes, A, B, w = codes[keep], A[keep], B[keep], w[keep]
    out = np.empty((num_groups, A.shape[1], B.shape[1]))
    for r in range(A.shape[1]):
        wa = w * A[:, r]
        for c in range(B.shape[1]):
            out[:, r, c] = np.bincount(codes, weights=wa * B[:, c], minlength=num_groups)
    return out


def _cross_block(codes_a, A, Ga, codes_b, B, Gb, w) -> sparse.csr_matrix:
    """Sparse ``Za^T W Zb`` for two different factors, shape (Ga qa, Gb qb)."""
    qa, qb = A.shape[1], B.shape[1]
    keep = (codes_a >= 0) & (codes_b >= 0)
    ca, cb, A, B, w = codes_a[keep], codes_b[keep], A[keep], B[keep], w[keep]
    rows = (ca[:, None, None] * qa + np.arange(qa)[None, :, None]) + np.zeros((1, 1, qb), dtype=np.int64)
    cols = (cb[:, None, None] * qb + np.arange(qb)[None, None, :]) + np.zeros((1, qa, 1), dtype=np.int64)
    vals = w[:, None, None] * A[:, :, None] * B[:, None, :]
    return sparse.coo_matrix((vals.ravel(), (rows.ravel(), cols.ravel())), shape=(Ga * qa, Gb * qb)).tocsr()


def _factor_products(codes, A, G, M, w) -> np.ndarray:
    """``Zk^T W M`` for a dense M (n, k), shape (G q, k)."""
    return _block_sums(codes, A, M, w, G).reshape(G * A.shape[1], M.shape[1])


def cross_products(factors: list[Factor], codes: list[np.ndarray], designs: list[np.ndarray], X: np.ndarray,
                   y: np.ndarray | None, w: np.ndarray) -> MixedSufficientStats:
    """:class:`MixedSufficientStats` of one chunk; ``factors`` in block order (the first is block-diagonal)."""
    sizes = [f.size for f in factors]
    C11 = _block_sums(codes[0], designs[0], designs[0], w, factors[0].levels.size)
    m = sum(sizes[1:])
    C22 = np.zeros((m, m))
    blocks21 = []
    off = 0
    for k in range(1, len(factors)):
        Gk, qk = factors[k].levels.size, factors[k].q
        diag = _block_sums(codes[k], designs[k], designs[k], w, Gk)
        idx = off + np.arange(Gk * qk).reshape(Gk, qk)
        C22[idx[:, :, None], idx[:, None, :]] = diag
        off2 = off + sizes[k]
        for j in range(k + 1, len(factors)):
            cross = _cross_block(codes[k], designs[k], Gk, codes[j], designs[j], factors[j].levels.size, w)
            C22[off:off + sizes[k], off2:off2 + sizes[j]] = cross.toarray()
            C22[off2:off2 + sizes[j], off:off + sizes[k]] = cross.T.toarray()
            off2 += sizes[j]
        blocks21.append(_cross_block(codes[k], designs[k], Gk, codes[0], designs[0], factors[0].levels.size, w))
        off += sizes[k]
    C21 = sparse.vstack(blocks21).tocsr() if blocks21 else sparse.csr_matrix((0, sizes[0]))
    wX = w[:, None] * X
    ZX = np.concatenate([_factor_products(c, A, f.levels.size, X, w)
                         for f, c, A in zip(factors, codes, designs, strict=True)])
    Zy = Xy = None
    yy = 0.0
    if y is not None:
        Zy = np.concatenate([_factor_products(c, A, f.levels.size, y[:, None], w)[:, 0]
                             for f, c, A in zip(factors, codes, designs, strict=True)])
        Xy = wX.T @ y
        yy = float(w @ (y * y))
    return MixedSufficientStats(C11, C21, C22, ZX, Zy, X.T @ wX, Xy, yy, float(X.shape[0]),
                                float(np.sum(np.log(w))))


def block_order(factors: Sequence[Factor]) -> list[int]:
    """Factor order for the blocked Cholesky: the factor with the most random effects first (block-diagonal)."""
    return sorted(range(len(factors)), key=lambda k: -factors[k].size)


def block_pattern(stats: MixedSufficientStats):
    """The :class:`~bayes_diglm.inference.mixed.blocked.BlockPattern` of ``stats`` (built once, then cached)."""
    from .blocked import BlockPattern

    cached = getattr(stats, "_pattern", None)
    if cached is None:
        facs = [stats.factors[k] for k in stats.order]
        cached = BlockPattern(stats.C11, stats.C21, stats.C22, [f.q for f in facs], [f.levels.size for f in facs])
        stats._pattern = cached
    return cached


class RowPattern:
    """Precomputed index maps from rows to the blocks of ``Zr^T W Zr`` (fixed codes, changing weights ``W``).

    The GLMM's penalised IRLS re-weights the same rows at every step; this builds the structure once, so that a
    step costs a few ``bincount`` passes instead of a sparse assembly.
    """

    def __init__(self, factors: list[Factor], codes: list[np.ndarray], designs: list[np.ndarray], X: np.ndarray):
        self.factors, self.codes, self.designs, self.X = factors, codes, designs, X
        G1 = factors[0].levels.size
        self.c21 = []  # per other factor: (row -> block id, indices, indptr, shape)
        for k in range(1, len(factors)):
            Gk = factors[k].levels.size
            pair = codes[k].astype(np.int64) * G1 + codes[0]
            uniq, block_of_row = np.unique(pair, return_inverse=True)
            rows_k, cols_1 = np.divmod(uniq, G1)
            indptr = np.searchsorted(rows_k, np.arange(Gk + 1))
            self.c21.append((block_of_row, cols_1, indptr, (Gk * factors[k].q, G1 * factors[0].q)))
        sizes = [f.size for f in factors[1:]]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.m = int(self.offsets[-1])

    def blocks(self, w: np.ndarray):
        """``(C11, [C21 BSR parts], C22, ZX, XX)`` for row weights ``w``."""
        f0, c0, A0 = self.factors[0], self.codes[0], self.designs[0]
        C11 = _block_sums(c0, A0, A0, w, f0.levels.size)
        C21 = []
        for k, (block_of_row, cols_1, indptr, shape) in enumerate(self.c21, start=1):
            C21.append((_block_sums(block_of_row, self.designs[k], A0, w, cols_1.size), cols_1, indptr, shape))
        C22 = np.zeros((self.m, self.m))
        for k in range(1, len(self.factors)):
            fk, ck, Ak = self.factors[k], self.codes[k], self.designs[k]
            idx = self.offsets[k - 1] + np.arange(fk.size).reshape(fk.levels.size, fk.q)
            C22[idx[:, :, None], idx[:, None, :]] = _block_sums(ck, Ak, Ak, w, fk.levels.size)
            for j in range(k + 1, len(self.factors)):
                fj = self.factors[j]
                cross = _cross_block(ck, Ak, fk.levels.size, self.codes[j], self.designs[j], fj.levels.size, w)
                sl_k = slice(self.offsets[k - 1], self.offsets[k])
                sl_j = slice(self.offsets[j - 1], self.offsets[j])
                C22[sl_k, sl_j] = cross.toarray()
                C22[sl_j, sl_k] = C22[sl_k, sl_j].T
        ZX = np.concatenate([_factor_products(c, A, f.levels.size, self.X, w)
                             for f, c, A in zip(self.factors, self.codes, self.designs, strict=True)])
        return C11, C21, C22, ZX, self.X.T @ (w[:, None] * self.X)
