"""Fitting a DIGLM estimator on dequantised inputs, and choosing the paper's lambda by validation NLL."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from numbers import Real

import numpy as np
import torch
from sklearn.base import clone

from .._validation import check_seed
from ..flows.dequantize import TabularDequantizer
from .estimators import DIGLMRegressor

__all__ = ["fit_dequantized", "tune_px_weight"]


def _draw(dequantizer: TabularDequantizer | None, X, seed: int):
    """One seeded dequantised draw of the rows of ``X`` (``X`` itself without a dequantiser)."""
    if dequantizer is None or X is None:
        return X
    return dequantizer(torch.from_numpy(np.asarray(X)), generator=torch.Generator().manual_seed(seed)).numpy()


def fit_dequantized(estimator: DIGLMRegressor, X, y, *, X_val=None, y_val=None,
                    dequantizer: TabularDequantizer | None = None, seed: int = 0,
                    fit_posterior: bool = True) -> DIGLMRegressor:
    """Train the flow and point head on dequantised inputs, then fit the Bayesian head on the inputs as recorded.

    With a ``dequantizer`` (integer-valued attributes), the flow and the point head are trained on one seeded
    draw of :class:`~bayes_diglm.flows.TabularDequantizer` over ``X`` (seed ``seed``) and over ``X_val``
    (seed ``seed + 1``), with ``posterior="point"``; the estimator's own ``posterior`` is then put back and
    fitted once by :meth:`~DIGLMRegressor.fit_posterior` on ``(X, y)`` as recorded: the head answers questions
    about the recorded attributes, and is not first fitted on the noisy ones. Without a dequantiser this is
    ``estimator.fit(X, y, X_val=X_val, y_val=y_val)``. With ``fit_posterior=False`` only the flow and point head
    are trained and the posterior is set, unfitted, for a later ``fit_posterior`` (e.g. streamed over more rows).

    Parameters
    ----------
    estimator : DIGLMRegressor
        Unfitted (or to be refitted); fitted in place and returned.
    X, y : array-like
        Training inputs (n, D) and targets (n,).
    X_val, y_val : array-like, optional
        Validation rows for early stopping (dequantised as ``X`` is, with the next seed).
    dequantizer : TabularDequantizer, optional
        The cells of the integer-valued attributes; None trains on ``X`` as given.
    seed : int, default 0
        Seed of the dequantised draws.
    fit_posterior : bool, default True
        Fit the Bayesian head after training.

    Returns
    -------
    DIGLMRegressor
        ``estimator``, fitted.

    Examples
    --------
    >>> import numpy as np
    >>> from bayes_diglm.flows import TabularDequantizer
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 4, size=(120, 2)).astype(np.float32); y = X[:, 0] + rng.normal(size=120)
    >>> reg = DIGLMRegressor(posterior="conjugate", epochs=1, flow_kwargs={"num_layers": 2}, quiet=True)
    >>> reg = fit_dequantized(reg, X, y, dequantizer=TabularDequantizer([1.0, 1.0]), seed=1)
    >>> int(reg.posterior_.stats_.n), reg.posterior
    (120, 'conjugate')
    """
    if not isinstance(estimator, DIGLMRegressor):
        raise TypeError(f"estimator must be a DIGLMRegressor, got {type(estimator).__name__}")
    if dequantizer is not None and not isinstance(dequantizer, TabularDequantizer):
        raise TypeError(f"dequantizer must be a TabularDequantizer or None, got {type(dequantizer).__name__}")
    seed = check_seed(seed)
    if not isinstance(fit_posterior, bool):
        raise TypeError(f"fit_posterior must be a bool, got {fit_posterior!r}")
    posterior = estimator.posterior
    later = dequantizer is not None or not fit_posterior
    estimator.set_params(posterior="point" if later else posterior)
    try:
        estimator.fit(_draw(dequantizer, X, seed), y, X_val=_draw(dequantizer, X_val, seed + 1), y_val=y_val)
    finally:
        estimator.set_params(posterior=posterior)
    if later and fit_posterior:
        estimator.fit_posterior([(X, y)])
    return estimator


def tune_px_weight(estimator: DIGLMRegressor, px_weights: Sequence[float], X, y, X_val, y_val, *,
                   dequantizer: TabularDequantizer | None = None, seed: int = 0,
                   before_fit: Callable[[float], None] | None = None,
                   after_fit: Callable[[float], None] | None = None) -> tuple[DIGLMRegressor, list[dict]]:
    r"""The paper's lambda chosen on a validation slice: the lowest mean NLL of the Bayesian predictive.

    For each weight in ``px_weights`` a clone of ``estimator`` with that ``px_weight`` is fitted by
    :func:`fit_dequantized` on ``(X, y)`` (``X_val, y_val`` for early stopping, ``dequantizer`` and ``seed``
    as there) and scored by :math:`-\frac1n\sum \log p(y_i \mid x_i)` of :meth:`~DIGLMRegressor.log_predictive`
    on ``(X_val, y_val)`` as recorded. Ties keep the earlier weight.

    Parameters
    ----------
    estimator : DIGLMRegressor
        The template (not fitted itself); its ``posterior`` scores the validation rows.
    px_weights : sequence of float
        Candidate lambdas, non-negative and finite, at least one.
    X, y, X_val, y_val : array-like
        Training and validation rows.
    dequantizer, seed
        As in :func:`fit_dequantized`.
    before_fit, after_fit : callable, optional
        Called with each weight before and after its fit (progress lines).

    Returns
    -------
    best : DIGLMRegressor
        The fitted clone of the lowest validation NLL.
    tuning : list of dict
        ``{"px_weight", "val_nll"}`` per candidate, in order.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(150, 2)); y = X[:, 0] + 0.3 * rng.normal(size=150)
    >>> template = DIGLMRegressor(posterior="conjugate", epochs=1, flow_kwargs={"num_layers": 2}, quiet=True)
    >>> best, tuning = tune_px_weight(template, [0.0, 0.5], X[:100], y[:100], X[100:], y[100:])
    >>> [t["px_weight"] for t in tuning], best.px_weight in (0.0, 0.5)
    ([0.0, 0.5], True)
    """
    if not isinstance(estimator, DIGLMRegressor):
        raise TypeError(f"estimator must be a DIGLMRegressor, got {type(estimator).__name__}")
    weights = list(px_weights) if isinstance(px_weights, Sequence | np.ndarray) else None
    if not weights or not all(isinstance(w, Real) and not isinstance(w, bool) and np.isfinite(w) and w >= 0
                              for w in weights):
        raise ValueError(f"px_weights must be a non-empty sequence of finite non-negative numbers, got {px_weights!r}")
    for name, hook in (("before_fit", before_fit), ("after_fit", after_fit)):
        if hook is not None and not callable(hook):
            raise TypeError(f"{name} must be callable or None, got {type(hook).__name__}")
    if X_val is None or y_val is None:
        raise ValueError("X_val and y_val are required: the weights are compared on them")
    seed = check_seed(seed)
    tuning, best = [], None
    for weight in weights:
        if before_fit is not None:
            before_fit(float(weight))
        reg = fit_dequantized(clone(estimator).set_params(px_weight=float(weight)), X, y, X_val=X_val, y_val=y_val,
                              dequantizer=dequantizer, seed=seed)
        val_nll = float(-np.mean(np.asarray(reg.log_predictive(X_val, y_val), dtype=np.float64)))
        tuning.append({"px_weight": float(weight), "val_nll": val_nll})
        if best is None or val_nll < best[0]:
            best = (val_nll, reg)
        if after_fit is not None:
            after_fit(float(weight))
    return best[1], tuning
