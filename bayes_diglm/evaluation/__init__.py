"""Metrics for predictions and out-of-distribution detection."""

from .metrics import (
    abstention_curve,
    accuracy,
    expected_calibration_error,
    interval_coverage,
    mean_nll,
    ood_scores,
    predictive_entropy,
    reliability_curve,
    rmse,
)

__all__ = [
    "abstention_curve",
    "accuracy",
    "expected_calibration_error",
    "interval_coverage",
    "mean_nll",
    "ood_scores",
    "predictive_entropy",
    "reliability_curve",
    "rmse",
]
