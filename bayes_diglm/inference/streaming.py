"""Streaming over chunks of rows: conjugate-head fits, log p(x) and predictive scores in memory O(chunk)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

from .conjugate import ConjugateLinearRegression, SufficientStats, fit_in_chunks

__all__ = ["as_chunk_tensors", "stream_features", "stream_sufficient_stats", "stream_fit_conjugate",
           "stream_predict", "stream_evaluate"]

FeatureFn = Callable[[torch.Tensor], torch.Tensor]


def as_chunk_tensors(chunks: Iterable, dtype: torch.dtype | None = torch.float32) -> Iterator[tuple]:
    """Turn an iterable of ``(X, y)`` chunks (numpy arrays, tensors, or a DataLoader's ``[X, y]`` lists)
    into ``(X, y)`` tensor pairs: ``X`` cast to ``dtype`` (``None`` keeps it), ``y`` as float64.

    Examples
    --------
    >>> import numpy as np
    >>> X, y = next(as_chunk_tensors([(np.zeros((2, 3)), np.ones(2))]))
    >>> X.dtype, y.dtype
    (torch.float32, torch.float64)
    """
    for i, chunk in enumerate(chunks):
        if not isinstance(chunk, (tuple, list)) or len(chunk) != 2:
            raise TypeError(f"chunk {i} must be an (X, y) pair, got {type(chunk).__name__}")
        X, y = (c if isinstance(c, torch.Tensor) else torch.as_tensor(np.asarray(c)) for c in chunk)
        if X.dim() < 2 or y.dim() != 1 or X.shape[0] != y.shape[0]:
            raise ValueError(f"chunk {i}: X must be (n, ...) and y (n,) with the same n, got shapes "
                             f"{tuple(X.shape)} and {tuple(y.shape)}")
        yield (X if dtype is None else X.to(dtype)), y.to(torch.float64)


def stream_features(feature_fn: FeatureFn, chunks: Iterable, *,
                    dtype: torch.dtype | None = torch.float32) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(features, y)`` per chunk, ``features = feature_fn(X)`` computed under ``torch.no_grad()``."""
    for X, y in as_chunk_tensors(chunks, dtype):
        with torch.no_grad():
            Z = feature_fn(X)
        yield Z.detach().cpu(), y


def stream_sufficient_stats(feature_fn: FeatureFn, chunks: Iterable, *, fit_intercept: bool = True,
                            dtype: torch.dtype | None = torch.float32) -> SufficientStats:
    r"""Sufficient statistics :math:`(Z^T Z, Z^T y, y^T y, n)` of ``feature_fn`` over every chunk, summed.

    Memory is that of one chunk plus a ``(D+1, D+1)`` float64 matrix, whatever the number of rows; the
    result equals ``SufficientStats.from_data`` on all rows together up to float64 rounding.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Z, y = rng.normal(size=(10, 2)), rng.normal(size=10)
    >>> s = stream_sufficient_stats(lambda x: x, [(Z[:6], y[:6]), (Z[6:], y[6:])], dtype=None)
    >>> bool(np.allclose(s.ZtZ[:2, :2], Z.T @ Z)), s.n
    (True, 10.0)
    """
    total = None
    for Z, y in stream_features(feature_fn, chunks, dtype=dtype):
        part = SufficientStats.from_data(Z, y, fit_intercept=fit_intercept)
        total = part if total is None else total + part
    if total is None:
        raise ValueError("chunks is empty: no rows to compute statistics from")
    return total


def stream_fit_conjugate(head: ConjugateLinearRegression, feature_fn: FeatureFn, chunks: Iterable, *,
                         reset: bool = True, dtype: torch.dtype | None = torch.float32) -> ConjugateLinearRegression:
    r"""Exact Normal-Inverse-Gamma posterior of ``head`` on ``feature_fn(X)`` over a stream of chunks.

    Each chunk is added with :meth:`ConjugateLinearRegression.partial_fit` (additive statistics
    :math:`G \mathrel{+}= Z_c^T Z_c`, :math:`Z^T y \mathrel{+}= Z_c^T y_c`, and the residual sum moved to the
    new mean without cancellation), so the result equals ``head.fit`` on all rows at once up to rounding,
    and peak memory is that of one chunk. ``head`` changes only when every chunk succeeded; with ``reset``
    it starts from its prior, otherwise the chunks are added to its current posterior.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(300, 2))
    >>> y = Z @ np.array([1.0, -1.0]) + 0.1 * rng.normal(size=300)
    >>> chunks = [(Z[i:i + 100], y[i:i + 100]) for i in range(0, 300, 100)]
    >>> head = stream_fit_conjugate(ConjugateLinearRegression(), lambda x: x, chunks, dtype=None)
    >>> bool(np.allclose(head.posterior_.mean, ConjugateLinearRegression().fit(Z, y).posterior_.mean))
    True
    """
    if not isinstance(head, ConjugateLinearRegression):
        raise TypeError(f"head must be a ConjugateLinearRegression, got {type(head).__name__}")
    return fit_in_chunks(head, stream_features(feature_fn, chunks, dtype=dtype), reset=reset)


def stream_predict(head: ConjugateLinearRegression, feature_fn: FeatureFn, chunks: Iterable, *,
                   dtype: torch.dtype | None = torch.float32) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Lazily yield the posterior predictive ``(mean, std)`` of each chunk (``y`` in chunks is ignored)."""
    for Z, _ in stream_features(feature_fn, chunks, dtype=dtype):
        yield head.predict(Z, return_std=True)


def stream_evaluate(head: ConjugateLinearRegression, feature_fn: FeatureFn, chunks: Iterable, *,
                    log_px_fn: FeatureFn | None = None, prob: float = 0.9,
                    dtype: torch.dtype | None = torch.float32) -> dict[str, float]:
    r"""Predictive scores and mean ``log p(x)`` over a stream, accumulating sums only (memory O(chunk)).

    Returns ``n``, ``rmse`` :math:`\sqrt{\frac1n\sum (y_i - \hat y_i)^2}` of the predictive mean,
    ``mean_nll`` :math:`-\frac1n\sum \log p(y_i | x_i, \mathcal{D})` under the Student-t predictive,
    ``coverage`` of the equal-tailed ``prob`` interval, and with ``log_px_fn`` (e.g. ``diglm.log_px``)
    ``mean_log_px`` :math:`\frac1n \sum \log p(x_i)` in nats. Each equals the in-memory figure on the
    concatenated rows up to float64 rounding.
    """
    if not 0.0 < prob < 1.0:
        raise ValueError(f"prob must be in (0, 1), got {prob!r}")
    n, sq, nll, inside, log_px = 0, 0.0, 0.0, 0, 0.0
    for X, y in as_chunk_tensors(chunks, dtype):
        with torch.no_grad():
            Z = feature_fn(X).detach().cpu()
            if log_px_fn is not None:
                log_px += float(log_px_fn(X).to(torch.float64).sum())
        y_np = y.numpy()
        mean = head.predict(Z)
        lo, hi = head.predict_dist(Z).interval(prob)
        sq += float(np.sum((y_np - mean) ** 2))
        nll -= float(np.sum(head.log_predictive(Z, y_np)))
        inside += int(np.sum((y_np >= lo) & (y_np <= hi)))
        n += len(y_np)
    if n == 0:
        raise ValueError("chunks is empty: nothing to evaluate")
    out = {"n": n, "rmse": math.sqrt(sq / n), "mean_nll": nll / n, "coverage": inside / n}
    if log_px_fn is not None:
        out["mean_log_px"] = log_px / n
    return out
