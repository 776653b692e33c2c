"""``PointHead``: a fitted DIGLM's jointly trained head at its point estimate, read at features."""

from __future__ import annotations

import numpy as np

from ..._validation import numeric_array
from ...inference.base import Predictive

__all__ = ["PointHead"]


class PointHead:
    """The jointly trained GLM head of a fitted DIGLM estimator at its point estimate, as a head on features.

    It answers at features ``Z = estimator.transform(X)`` what ``estimator.predict_dist(X, point=True)`` answers
    at ``X`` (the head's likelihood at its trained weights and nuisance values, in float64), so a pipeline that
    has the features already (one flow pass for several heads) compares the point head with Bayesian heads on
    the same footing. It has no posterior: no ``sample``. Made by the estimator's ``point_head()``; it reads the
    estimator's current fit.

    Examples
    --------
    >>> import numpy as np
    >>> from bayes_diglm.models import DIGLMRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 2)); y = X[:, 0] + 0.1 * rng.normal(size=100)
    >>> reg = DIGLMRegressor(epochs=2, flow_kwargs={"num_layers": 2}, quiet=True).fit(X, y)
    >>> head = reg.point_head()
    >>> bool(np.allclose(head.predict_dist(reg.transform(X)).mean, reg.predict_dist(X, point=True).mean))
    True
    """

    def __init__(self, estimator):
        self.estimator = estimator

    def _features(self, Z) -> np.ndarray:
        dim = int(self.estimator.model_.head.dim)

        def check(a):
            a = np.asarray(a, dtype=np.float64)
            if a.ndim != 2 or a.shape[1] != dim:
                raise ValueError(f"Z must have shape (n, {dim}) (the flow's features), got {a.shape}")
            if not np.all(np.isfinite(a)):
                raise ValueError("Z holds NaN or infinite values")
            return a

        return numeric_array(Z, "Z", check)

    def predict_dist(self, Z, **context) -> Predictive:
        """The point head's predictive at features ``Z`` (n, D); ``context``: the family's per-row keywords."""
        Z = self._features(Z)
        est = self.estimator
        return est._point_predictive(Z, getattr(est, "classes_", None), est._family_context(context, Z.shape[0]))

    def predict_proba(self, Z, **context) -> np.ndarray:
        """Class probabilities (n, K) at features ``Z``, columns in the estimator's ``classes_`` order."""
        if not hasattr(self.estimator, "classes_"):
            raise AttributeError("predict_proba is for classifiers; this is a regressor's head (use predict_dist)")
        return self.predict_dist(Z, **context).probs

    def predict(self, Z, **context) -> np.ndarray:
        """The predictive mean (regression) or the most probable class (classification) at features ``Z``."""
        pred = self.predict_dist(Z, **context)
        if hasattr(self.estimator, "classes_"):
            return self.estimator.classes_[pred.probs.argmax(axis=1)]
        return pred.mean

    def __repr__(self) -> str:
        return f"PointHead({type(self.estimator).__name__})"
