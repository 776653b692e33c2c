"""The DIGLM model (flow + GLM head), its GLM heads, and scikit-learn style estimators."""

from .diglm import DIGLM, build_diglm, build_flow
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

__all__ = [
    "DIGLM",
    "HEADS",
    "BernoulliHead",
    "CategoricalHead",
    "GLMHead",
    "GaussianHead",
    "HeteroscedasticGaussianHead",
    "PoissonHead",
    "build_diglm",
    "build_flow",
    "make_head",
]
