"""Training by maximum likelihood, checkpoints, and posteriors over the GLM weights beta.

Posteriors: :class:`ConjugateLinearRegression` (exact Normal-Inverse-Gamma, Gaussian outcomes),
:class:`LaplaceClassifier` and :class:`SVIClassifier` (logistic / softmax), :class:`MixedEffectsRegression` and
:class:`MixedEffectsClassifier` (random effects per group, paper appendix B.1).
"""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .conjugate import ConjugateLinearRegression, SufficientStats, fit_on_features
from .laplace import LaplaceClassifier, LaplaceFit, laplace_glm, mackay_prior_precision
from .mixed import MixedEffectsClassifier, MixedEffectsRegression
from .svi import SVIClassifier
from .training import NonFiniteLossError, TrainHistory, batched, evaluate_diglm, train_diglm

__all__ = [
    "CheckpointError",
    "ConjugateLinearRegression",
    "LaplaceClassifier",
    "LaplaceFit",
    "MixedEffectsClassifier",
    "MixedEffectsRegression",
    "NonFiniteLossError",
    "SVIClassifier",
    "SufficientStats",
    "TrainHistory",
    "batched",
    "evaluate_diglm",
    "fit_on_features",
    "laplace_glm",
    "load_checkpoint",
    "mackay_prior_precision",
    "save_checkpoint",
    "train_diglm",
]
