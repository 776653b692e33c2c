"""Posterior inference over the GLM weights beta.

Posteriors: :class:`ConjugateLinearRegression` (exact Normal-Inverse-Gamma, Gaussian outcomes),
:class:`LaplaceClassifier` and :class:`SVIClassifier` (logistic / softmax), :class:`MixedEffectsRegression` and
:class:`MixedEffectsClassifier` (random effects per group, paper appendix B.1).
"""

from .conjugate import ConjugateLinearRegression, SufficientStats, fit_on_features
from .laplace import LaplaceClassifier, LaplaceFit, laplace_glm, mackay_prior_precision
from .mixed import MixedEffectsRegression
from .svi import SVIClassifier

__all__ = [
    "ConjugateLinearRegression",
    "LaplaceClassifier",
    "LaplaceFit",
    "MixedEffectsRegression",
    "SVIClassifier",
    "SufficientStats",
    "fit_on_features",
    "laplace_glm",
    "mackay_prior_precision",
]
