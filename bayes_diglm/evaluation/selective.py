"""Selective prediction: a metric on the inputs kept when the most unusual ones are rejected, against coverage."""

from __future__ import annotations

import numpy as np

__all__ = ["selective_against_random", "selective_curve"]


def selective_curve(per_input, score, *, coverages=None) -> dict[str, np.ndarray | float]:
    r"""Mean of a per-input metric over the inputs kept when those of highest ``score`` are rejected.

    Inputs are ranked by ``score`` (higher = more unusual, e.g. an OOD score, or ``-log p(x)``); at coverage
    ``c`` the ``ceil(c n)`` inputs of lowest score are kept and ``per_input`` is averaged over them. Pass
    ``correct`` (0/1) for accuracy against coverage, or ``-log p(y | x)`` for NLL against coverage.

    The area under the curve is the mean over every possible number of kept inputs ``k = 1..n``,

    .. math:: \mathrm{area} = \frac1n \sum_{k=1}^{n} \frac1k \sum_{i \le k} m_{(i)},

    (``m_(i)`` the metric of the input with the ``i``-th lowest score), the exact area under the step curve
    on ``(0, 1]``: for accuracy higher is better, for NLL (the "area under the risk-coverage curve") lower is.
    A score that carries no information gives about the overall mean. Ties keep the inputs' order.

    Returns:
        dict with ``coverage`` (the requested coverages, default 0.05, 0.10, ..., 1.0), ``value`` (the metric
        on the kept inputs at each), ``area`` and ``full`` (the metric on all inputs).

    Example:
        >>> r = selective_curve([1, 1, 0, 0], [0.0, 1.0, 2.0, 3.0], coverages=[0.5, 1.0])
        >>> r["value"].tolist(), round(r["area"], 4)
        ([1.0, 0.5], 0.7917)
    """
    metric = np.asarray(per_input, dtype=np.float64)
    s = np.asarray(score, dtype=np.float64)
    if metric.ndim != 1 or metric.size == 0:
        raise ValueError(f"per_input must be a non-empty 1-D array, got shape {metric.shape}")
    if s.shape != metric.shape:
        raise ValueError(f"score has shape {s.shape}, per_input {metric.shape}")
    if not (np.isfinite(metric).all() and np.isfinite(s).all()):
        raise ValueError("per_input and score must be finite")
    cov = np.linspace(0.05, 1.0, 20) if coverages is None else np.asarray(coverages, dtype=np.float64)
    if cov.ndim != 1 or cov.size == 0 or cov.min() <= 0 or cov.max() > 1:
        raise ValueError(f"coverages must be a non-empty 1-D array in (0, 1], got {coverages!r}")
    n = metric.size
    kept_mean = np.cumsum(metric[np.argsort(s, kind="stable")]) / np.arange(1, n + 1)
    kept = np.clip(np.ceil(cov * n - 1e-9).astype(int), 1, n)
    return {"coverage": cov, "value": kept_mean[kept - 1], "area": float(kept_mean.mean()),
            "full": float(metric.mean())}


def selective_against_random(per_input: dict, score, *, label: str = "highest score first",
                             seed: int = 0) -> dict[str, dict]:
    """:func:`selective_curve` of each named per-input metric with rejection by ``score``, and with one seeded
    random order of rejection as the reference (what rejecting without information gives).

    ``per_input`` maps names to per-input metrics (e.g. each model's ``-log p(y | x)``), all the length of
    ``score``. Returns ``{"<name>, <label>": curve, "<name>, at random": curve}`` for every name, in its order.

    Example:
        >>> r = selective_against_random({"m": [0.0, 0.0, 1.0, 1.0]}, [0.0, 1.0, 2.0, 3.0], label="by s")
        >>> list(r), round(r["m, by s"]["area"], 4)
        (['m, by s', 'm, at random'], 0.2083)
    """
    if not isinstance(per_input, dict) or not per_input:
        raise ValueError("per_input must be a non-empty dict of name -> per-input metric")
    score = np.asarray(score, dtype=np.float64)
    random_order = np.random.default_rng(seed).permutation(len(score))
    curves = {}
    for name, metric in per_input.items():
        curves[f"{name}, {label}"] = selective_curve(metric, score)
        curves[f"{name}, at random"] = selective_curve(metric, random_order)
    return curves
