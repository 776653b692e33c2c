"""Posterior inference over the GLM weights beta: every head follows one contract (:mod:`.base`).

Heads: :class:`ConjugateLinearRegression` (exact Normal-Inverse-Gamma, Gaussian outcomes; streaming, rank-one
updates, merges), :class:`LaplaceClassifier` (logistic / softmax), :class:`LaplaceRegressor` (any registered
regression family: Poisson counts, Gaussian with known noise, a user's own ...), :class:`SVIClassifier` and
:class:`SVIRegressor` (Pyro, Gaussian guide; the regressor in any registered family), :class:`NUTSRegressor`
and :class:`NUTSClassifier` (Pyro's NUTS on any registered family, real chains), :class:`MixedEffectsRegression`,
:class:`MixedEffectsClassifier`, :class:`MixedEffectsPoisson` and :class:`MixedEffectsGLM` (any registered family with
one linear predictor; crossed or nested random effects per group, paper appendix B.1; specified by
:class:`RandomEffect`).
"""

from .base import COVARIANCES, PosteriorClassifierMixin, PosteriorHead, Predictive
from .conjugate import ConjugateLinearRegression, NIGPosterior, SufficientStats, fit_on_features
from .laplace import LaplaceClassifier, LaplaceFit, LaplaceRegressor, laplace_glm, mackay_prior_precision
from .mixed import (
    MixedEffectsClassifier,
    MixedEffectsGLM,
    MixedEffectsPoisson,
    MixedEffectsRegression,
    MixedSufficientStats,
    RandomEffect,
    SingularFitWarning,
)
from .nuts import NUTSClassifier, NUTSRegressor
from .svi import SVIClassifier
from .svi_regression import SVIRegressor

__all__ = [
    "COVARIANCES",
    "ConjugateLinearRegression",
    "LaplaceClassifier",
    "LaplaceFit",
    "LaplaceRegressor",
    "MixedEffectsClassifier",
    "MixedEffectsGLM",
    "MixedEffectsPoisson",
    "MixedEffectsRegression",
    "MixedSufficientStats",
    "NIGPosterior",
    "NUTSClassifier",
    "NUTSRegressor",
    "PosteriorClassifierMixin",
    "PosteriorHead",
    "Predictive",
    "RandomEffect",
    "SVIClassifier",
    "SingularFitWarning",
    "SVIRegressor",
    "SufficientStats",
    "fit_on_features",
    "laplace_glm",
    "mackay_prior_precision",
]
