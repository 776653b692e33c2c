"""The DIGLM model (flow + GLM head), its GLM heads, and scikit-learn style estimators."""

from .diglm import DIGLM, FlowOutputs, build_diglm, build_flow
from .estimators import DIGLMClassifier, DIGLMRegressor, PointHead, load_estimator
from .heads import (
    HEADS,
    BernoulliHead,
    CategoricalHead,
    GaussianHead,
    GLMHead,
    HeteroscedasticGaussianHead,
    PoissonHead,
    make_head,
)
from .selection import fit_dequantized, tune_px_weight

__all__ = [
    "DIGLM",
    "DIGLMClassifier",
    "DIGLMRegressor",
    "FlowOutputs",
    "HEADS",
    "BernoulliHead",
    "CategoricalHead",
    "GLMHead",
    "GaussianHead",
    "HeteroscedasticGaussianHead",
    "PoissonHead",
    "PointHead",
    "build_diglm",
    "build_flow",
    "fit_dequantized",
    "load_estimator",
    "make_head",
    "tune_px_weight",
]
