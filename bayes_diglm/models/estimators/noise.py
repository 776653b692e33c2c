"""Per-row noise of the heteroscedastic head: which Bayesian heads take its learned noise as known weights."""

from __future__ import annotations

from ... import likelihoods

__all__ = ["_KNOWN_NOISE_FAMILY", "_per_row_noise"]

#: the family of the Bayesian heads of a point head whose noise variance is given per row (the heteroscedastic
#: head): a Gaussian whose noise, known per row, enters as weights
_KNOWN_NOISE_FAMILY = "gaussian"


def _per_row_noise(lik: likelihoods.Likelihood) -> bool:
    """Whether the family's predictor gives each row its own noise variance (``noise_log_var``)."""
    return callable(getattr(lik, "noise_log_var", None))
