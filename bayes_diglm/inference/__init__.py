"""Posterior inference over the GLM weights beta.

Posteriors: :class:`ConjugateLinearRegression` (exact Normal-Inverse-Gamma, Gaussian outcomes),
:class:`LaplaceClassifier` and :class:`SVIClassifier` (logistic / softmax), :class:`MixedEffectsRegression`,
:class:`MixedEffectsClassifier` and :class:`MixedEffectsPoisson` (crossed or nested random effects per group,
paper appendix B.1; specified by :class:`RandomEffect`).
"""

from .conjugate import ConjugateLinearRegression, SufficientStats, fit_on_features
from .laplace import LaplaceClassifier, LaplaceFit, laplace_glm, mackay_prior_precision
from .mixed import (
    MixedEffectsClassifier,
    MixedEffectsPoisson,
    MixedEffectsRegression,
    MixedSufficientStats,
    RandomEffect,
)
from .svi import SVIClassifier

__all__ = [
    "ConjugateLinearRegression",
    "LaplaceClassifier",
    "LaplaceFit",
    "MixedEffectsClassifier",
    "MixedEffectsPoisson",
    "MixedEffectsRegression",
    "MixedSufficientStats",
    "RandomEffect",
    "SVIClassifier",
    "SufficientStats",
    "fit_on_features",
    "laplace_glm",
    "mackay_prior_precision",
]
