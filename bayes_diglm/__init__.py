"""bayes_diglm: hybrid models with deep invertible features (DIGLM) and Bayesian GLM heads."""

__version__ = "0.1.0"

__all__ = ["DIGLMClassifier", "DIGLMRegressor", "load_estimator", "__version__"]

_ESTIMATOR_NAMES = ("DIGLMClassifier", "DIGLMRegressor", "load_estimator")


def __getattr__(name):
    # The estimators import torch and Pyro (seconds); importing them on first use keeps `bayes-diglm --help` and
    # `import bayes_diglm.data` fast.
    if name in _ESTIMATOR_NAMES:
        from .models import estimators

        return getattr(estimators, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_ESTIMATOR_NAMES})
