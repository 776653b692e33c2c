"""The rows of a classification comparison: a head's error, NLL and calibration; log p(x) per input set."""

from __future__ import annotations

import numpy as np
import torch

from ..flows.image import bits_per_dim
from .metrics import accuracy, class_nll, expected_calibration_error

__all__ = ["classification_metrics", "log_px_summary", "selective_summary"]


def classification_metrics(y_true, proba, *, n_bins: int = 15) -> dict[str, float]:
    """Test error (%), mean NLL (nats) and expected calibration error (``n_bins`` equal-width bins) of class
    probabilities ``proba`` (n, K) for labels ``y_true`` (n,).

    Examples
    --------
    >>> m = classification_metrics([0, 1], np.array([[0.9, 0.1], [0.6, 0.4]]))
    >>> m["test error (%)"], round(m["test NLL"], 4)
    (50.0, 0.5108)
    """
    y_true = np.asarray(y_true)
    return {"test error (%)": 100.0 * (1.0 - accuracy(y_true, proba)), "test NLL": class_nll(y_true, proba),
            "ECE": expected_calibration_error(y_true, proba, n_bins=n_bins)}


def log_px_summary(log_px: dict[str, np.ndarray], dim: int, *, reference: str = "test") -> list[dict]:
    """A row per input set: mean and median ``log p(x)`` (nats), mean bits/dim over ``dim`` dimensions, and the
    share (%) of the set's inputs the flow finds *more* likely than the median input of ``reference`` (above 50%
    for an OOD set: the density prefers it, the effect of Nalisnick et al., 2019).

    Examples
    --------
    >>> rows = log_px_summary({"test": np.array([-2.0, -1.0, 0.0]), "ood": np.array([0.5, 1.0, -3.0])}, 1)
    >>> [r["above test median (%)"] for r in rows]
    [33.33333333333333, 66.66666666666666]
    """
    if not isinstance(log_px, dict) or reference not in log_px:
        raise ValueError(f"log_px must be a dict of set name -> log p(x) holding the reference {reference!r}")
    if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    median = float(np.median(log_px[reference]))
    return [{"set": name, "mean log p(x)": float(np.mean(values)), "median log p(x)": float(np.median(values)),
             "mean bits/dim": float(bits_per_dim(torch.as_tensor(values), int(dim)).mean()),
             f"above {reference} median (%)": 100.0 * float(np.mean(np.asarray(values) > median))}
            for name, values in log_px.items()]


def selective_summary(curves: dict[str, dict], *, at: float = 0.8, metric: str = "accuracy") -> list[dict]:
    """A row per selective-prediction curve (:func:`~bayes_diglm.evaluation.selective_curve`): the area under it,
    the metric at coverage ``at`` (linear interpolation between the curve's coverages) and on every input.

    Examples
    --------
    >>> c = {"s": {"coverage": np.array([0.5, 1.0]), "value": np.array([1.0, 0.8]), "area": 0.9, "full": 0.8}}
    >>> selective_summary(c)[0]["accuracy at 80% coverage"]
    0.88
    """
    if not 0 < at <= 1:
        raise ValueError(f"at must be a coverage in (0, 1], got {at!r}")
    return [{"score": name, f"area ({metric}-coverage)": c["area"],
             f"{metric} at {at:.0%} coverage": float(np.interp(at, c["coverage"], c["value"])),
             f"{metric} at 100%": c["full"]} for name, c in curves.items()]
