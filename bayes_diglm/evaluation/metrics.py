"""Predictive and out-of-distribution metrics: RMSE, NLL, coverage, ECE, entropy, AUROC, AUPR, FPR at 95% TPR."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

__all__ = [
    "rmse",
    "mean_nll",
    "interval_coverage",
    "predictive_coverage",
    "accuracy",
    "class_nll",
    "predictive_entropy",
    "expected_calibration_error",
    "reliability_curve",
    "ood_scores",
    "abstention_curve",
]


def _arr(x, name: str, ndim: int | None = None) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    return a


def rmse(y_true, y_pred) -> float:
    """Root mean squared error."""
    y_true, y_pred = _arr(y_true, "y_true", 1), _arr(y_pred, "y_pred", 1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in shape: {y_true.shape} vs {y_pred.shape}")
    return float(np.sqrt(np.mean((y_true - y_pred) ** 2)))


def mean_nll(log_pred) -> float:
    """Mean negative log predictive density (or probability) from per-observation log values."""
    return float(-np.mean(_arr(log_pred, "log_pred", 1)))


def interval_coverage(y_true, lower, upper) -> float:
    """Fraction of observations inside their predictive interval ``[lower, upper]``."""
    y, lo, hi = _arr(y_true, "y_true", 1), _arr(lower, "lower", 1), _arr(upper, "upper", 1)
    return float(np.mean((y >= lo) & (y <= hi)))


def predictive_coverage(pred, y_true, levels) -> np.ndarray:
    """Share of ``y_true`` inside the predictive's central interval of each probability in ``levels``.

    ``pred`` is any predictive with a ``cdf`` (a head's ``Predictive``, mixtures): then ``y`` lies in the central
    ``p`` interval exactly when ``|F(y) - 1/2| <= p / 2``, so one evaluation of the CDF serves every level (a
    mixture's intervals would each need a bisection); otherwise one with ``interval(p)`` (lower, upper).

    Examples
    --------
    >>> import torch
    >>> from bayes_diglm.inference.base import Predictive
    >>> pred = Predictive(torch.distributions.Normal(torch.zeros(4, dtype=torch.float64), 1.0))
    >>> predictive_coverage(pred, [0.1, -1.0, 1.7, 3.0], [0.5, 0.9]).tolist()
    [0.25, 0.5]
    """
    y = _arr(y_true, "y_true", 1)
    probs = _arr(levels, "levels", 1)
    if not np.all((probs > 0) & (probs < 1)):
        raise ValueError(f"levels must lie in (0, 1), got {probs.tolist()}")
    if hasattr(pred, "cdf"):
        distance = np.abs(_arr(pred.cdf(y), "pred.cdf(y)", 1) - 0.5)
        return np.array([float(np.mean(distance <= p / 2)) for p in probs])
    if not hasattr(pred, "interval"):
        raise TypeError(f"pred must have a cdf or an interval method, got {type(pred).__name__}")
    return np.array([interval_coverage(y, *pred.interval(float(p))) for p in probs])


def class_nll(y_true, proba) -> float:
    """Mean negative log probability of integer labels ``y_true`` (0..K-1) under class probabilities ``proba``
    (n, K); a probability of 0 counts as 1e-300 (a finite, very large loss).

    Examples
    --------
    >>> round(class_nll([0, 1], [[0.5, 0.5], [0.2, 0.8]]), 6)
    0.458145
    """
    proba = _arr(proba, "proba", 2)
    labels = np.asarray(y_true)
    if labels.ndim != 1 or labels.shape[0] != proba.shape[0]:
        raise ValueError(f"y_true must hold one label per row of proba ({proba.shape[0]}), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        if not (np.issubdtype(labels.dtype, np.floating) and np.all(labels == np.round(labels))):
            raise ValueError("y_true must hold integer class labels")
        labels = labels.astype(np.int64)
    if labels.min() < 0 or labels.max() >= proba.shape[1]:
        raise ValueError(f"y_true must hold labels in 0..{proba.shape[1] - 1}")
    return mean_nll(np.log(np.clip(proba[np.arange(labels.size), labels], 1e-300, None)))


def accuracy(y_true, proba) -> float:
    """Accuracy of the most probable class in ``proba`` (n, K) against integer labels."""
    proba = _arr(proba, "proba", 2)
    return float(np.mean(proba.argmax(1) == np.asarray(y_true)))


def predictive_entropy(proba) -> np.ndarray:
    """Entropy (nats) of each row of class probabilities."""
    p = np.clip(_arr(proba, "proba", 2), 1e-300, 1.0)
    return -(p * np.log(p)).sum(axis=1)


def reliability_curve(y_true, proba, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Confidence, accuracy and count per equal-width confidence bin (for reliability diagrams and ECE)."""
    proba = _arr(proba, "proba", 2)
    conf = proba.max(1)
    correct = (proba.argmax(1) == np.asarray(y_true)).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(float)
    safe = np.maximum(count, 1)
    return {
        "edges": edges,
        "confidence": np.bincount(idx, conf, n_bins) / safe,
        "accuracy": np.bincount(idx, correct, n_bins) / safe,
        "count": count,
    }


def expected_calibration_error(y_true, proba, n_bins: int = 15) -> float:
    """ECE: the count-weighted mean gap between accuracy and confidence over ``n_bins`` equal-width bins."""
    curve = reliability_curve(y_true, proba, n_bins)
    weights = curve["count"] / curve["count"].sum()
    return float(np.sum(weights * np.abs(curve["accuracy"] - curve["confidence"])))


def ood_scores(score_in, score_out) -> dict[str, float]:
    """Detection of out-of-distribution inputs by a score that is *higher* for OOD points.

    OOD is the positive class. Returns AUROC, AUPR (OOD positive) and the false-positive rate on
    in-distribution inputs at the threshold that flags 95% of OOD inputs (FPR at 95% TPR).

    Example:
        >>> r = ood_scores([0.0, 0.1, 0.2], [1.0, 2.0])
        >>> r["auroc"], r["fpr_at_95_tpr"]
        (1.0, 0.0)
    """
    s_in, s_out = _arr(score_in, "score_in", 1), _arr(score_out, "score_out", 1)
    if not (np.isfinite(s_in).all() and np.isfinite(s_out).all()):
        raise ValueError("OOD scores must be finite")
    labels = np.r_[np.zeros(s_in.size), np.ones(s_out.size)]
    scores = np.r_[s_in, s_out]
    fpr, tpr, _ = roc_curve(labels, scores)
    return {
        "auroc": float(roc_auc_score(labels, scores)),
        "aupr": float(average_precision_score(labels, scores)),
        "fpr_at_95_tpr": float(fpr[np.searchsorted(tpr, 0.95, side="left")]),
    }


def abstention_curve(correct, keep_score, fractions=None) -> dict[str, np.ndarray]:
    """Accuracy on the inputs kept when rejecting those with the lowest ``keep_score`` (e.g. log p(x)).

    Returns the rejected fractions and the accuracy on the remaining inputs for each.
    """
    correct = _arr(correct, "correct", 1)
    keep = _arr(keep_score, "keep_score", 1)
    if fractions is None:
        fractions = np.linspace(0.0, 0.9, 19)
    order = np.argsort(-keep, kind="stable")  # most typical first
    n = correct.size
    accs = []
    for f in fractions:
        kept = order[: max(1, int(round(n * (1 - f))))]
        accs.append(correct[kept].mean())
    return {"rejected_fraction": np.asarray(fractions, dtype=float), "accuracy": np.asarray(accs)}
