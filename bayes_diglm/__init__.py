"""bayes_diglm: hybrid models with deep invertible features (DIGLM) and Bayesian GLM heads."""

__version__ = "0.1.0"

from .models.estimators import DIGLMClassifier, DIGLMRegressor, load_estimator  # noqa: E402

__all__ = ["DIGLMClassifier", "DIGLMRegressor", "load_estimator", "__version__"]
