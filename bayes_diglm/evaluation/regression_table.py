"""The columns of a regression comparison: a predictive's RMSE, NLL and coverage, and the flow's log p(x) shift."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from ..inference.base import Predictive
from .metrics import mean_nll, ood_scores, predictive_coverage, rmse

__all__ = ["constant_predictive", "log_px_shift", "regression_metrics", "regression_rows"]


def regression_metrics(pred, y, *, y_std: float = 1.0, level: float = 0.9, unit: str = "min") -> dict[str, float]:
    r"""RMSE, mean NLL and central-interval coverage of a predictive on standardised targets, in original units.

    ``pred`` is any predictive with ``mean``, ``log_prob`` and ``cdf`` (or ``interval``) on the standardised
    scale of ``y``; ``y_std`` is the standard deviation the targets were divided by, so the RMSE is multiplied
    by it and the NLL gains :math:`\log y_{std}` (the Jacobian of the change of units).

    Returns ``{"RMSE (unit)", "NLL (nats)", "<level> coverage"}``.

    Examples
    --------
    >>> y = np.array([0.0, 1.0])
    >>> m = regression_metrics(constant_predictive(2), y, y_std=2.0)
    >>> round(m["RMSE (min)"], 4), round(m["NLL (nats)"], 4), m["90% coverage"]
    (1.4142, 1.8621, 1.0)
    """
    y = np.asarray(y, dtype=np.float64)
    if not (isinstance(y_std, int | float) and math.isfinite(y_std) and y_std > 0):
        raise ValueError(f"y_std must be a positive finite number, got {y_std!r}")
    if not (isinstance(level, int | float) and 0 < level < 1):
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return {f"RMSE ({unit})": float(y_std * rmse(y, pred.mean)),
            "NLL (nats)": float(mean_nll(pred.log_prob(y)) + math.log(y_std)),
            f"{level:.0%} coverage": float(predictive_coverage(pred, y, [level])[0])}


def regression_rows(preds: dict, y, *, y_std: float = 1.0, extra: dict | None = None,
                    extra_columns: tuple[str, ...] = (), missing: str = "-") -> list[dict]:
    """One table row per named predictive: ``{"model": name}``, :func:`regression_metrics`, then ``extra_columns``.

    ``preds`` maps a row's name to its predictive on the standardised scale of ``y``; ``extra`` maps some of the
    names to a dict holding ``extra_columns`` (e.g. :func:`log_px_shift`'s columns for the rows with a flow);
    the other rows show ``missing`` there.

    Examples
    --------
    >>> y = np.array([0.0, 1.0])
    >>> rows = regression_rows({"a": constant_predictive(2)}, y, extra={}, extra_columns=("AUROC",))
    >>> rows[0]["model"], rows[0]["RMSE (min)"] == regression_metrics(constant_predictive(2), y)["RMSE (min)"]
    ('a', True)
    >>> rows[0]["AUROC"]
    '-'
    """
    if not isinstance(preds, dict) or not preds:
        raise ValueError(f"preds must be a non-empty dict of name -> predictive, got {preds!r}")
    extra = {} if extra is None else extra
    if not isinstance(extra, dict) or not set(extra) <= set(preds):
        raise ValueError(f"extra must be a dict keyed by names of preds; unknown: {sorted(set(extra) - set(preds))}")
    rows = []
    for name, pred in preds.items():
        row = {"model": name, **regression_metrics(pred, y, y_std=y_std)}
        for col in extra_columns:
            row[col] = extra[name][col] if name in extra else missing
        rows.append(row)
    return rows


def constant_predictive(n: int, loc: float = 0.0, scale: float = 1.0) -> Predictive:
    """The same Normal ``N(loc, scale^2)`` for each of ``n`` rows, whatever the inputs (float64): on standardised
    targets the default is the training targets' mean and spread, the reference every model should beat.

    Examples
    --------
    >>> constant_predictive(3).mean.tolist()
    [0.0, 0.0, 0.0]
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not (math.isfinite(loc) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"loc must be finite and scale positive, got loc={loc!r}, scale={scale!r}")
    return Predictive(torch.distributions.Normal(torch.full((int(n),), float(loc), dtype=torch.float64),
                                                 torch.full((int(n),), float(scale), dtype=torch.float64)))


def log_px_shift(log_px: Callable[[np.ndarray, int], np.ndarray], X_train, X_test, *, rows: int,
                 seed: int = 0) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Mean ``log p(x)`` of (a seeded sample of) training and test rows, and the AUROC of ``-log p(x)`` for test
    rows against training rows (0.5: the density does not tell them apart; above: test rows look less likely).

    ``log_px(X, seed)`` scores rows (e.g. ``lambda X, s: reg.log_cell_probability(X, dq, seed=s)``); it gets
    ``seed`` for the training rows and ``seed + 1`` for the test rows. At most ``rows`` of each, drawn without
    replacement in their original order. Returns the three columns and the scores ``{"train", "test"}``.

    Examples
    --------
    >>> X = np.arange(10.0)[:, None]
    >>> cols, s = log_px_shift(lambda X, seed: -X[:, 0], X[:5], X[5:], rows=5)
    >>> cols["AUROC train/test"], s["test"].tolist()
    (1.0, [-5.0, -6.0, -7.0, -8.0, -9.0])
    """
    if not callable(log_px):
        raise TypeError(f"log_px must be callable (X, seed) -> log p(x), got {type(log_px).__name__}")
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ValueError(f"rows must be a positive integer, got {rows!r}")
    rng = np.random.default_rng(seed)

    def take(X):
        return X[np.sort(rng.choice(len(X), size=min(rows, len(X)), replace=False))]

    train = np.asarray(log_px(take(X_train), seed), dtype=np.float64)
    test = np.asarray(log_px(take(X_test), seed + 1), dtype=np.float64)
    return ({"mean log p(x) train": float(train.mean()), "mean log p(x) test": float(test.mean()),
             "AUROC train/test": ood_scores(-train, -test)["auroc"]}, {"train": train, "test": test})
