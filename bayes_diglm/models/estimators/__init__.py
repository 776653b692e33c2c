"""scikit-learn estimators over the DIGLM: ``DIGLMRegressor`` and ``DIGLMClassifier``.

``fit`` trains the flow and a point-estimate GLM head together by maximum likelihood of the hybrid objective
(:class:`bayes_diglm.models.DIGLM`), then, for ``posterior != "point"``, fits a Bayesian head over ``beta`` on
the training features ``z = f(x)`` in one pass (:mod:`bayes_diglm.inference`). Every prediction then goes
through the posterior: ``predict``, ``predict_proba``, ``predict_dist`` (a
:class:`bayes_diglm.inference.base.Predictive`), ``sample`` (posterior draws of the head), and
``bayes_diglm.arviz.to_inference_data(estimator, X=..., y=...)``. ``score_samples`` is ``log p(x)`` under the
flow and ``transform`` gives the features; one pass through the flow gives features, noise weights and
``log p(x)``.

The layout: :mod:`.base` (training, the posterior head, outputs), :mod:`.inputs` (input checks),
:mod:`.persistence` (save / load), :mod:`.streaming` (``fit_posterior``), :mod:`.noise` (per-row noise weights),
:mod:`.regressor`, :mod:`.classifier` and :mod:`.point` (the point head on
features). ``bayes_diglm.models.estimators`` keeps the names it always had.
"""

from .base import CLASSIFICATION_POSTERIORS, REGRESSION_POSTERIORS
from .classifier import DIGLMClassifier
from .persistence import load_estimator
from .point import PointHead
from .regressor import DIGLMRegressor

__all__ = ["DIGLMRegressor", "DIGLMClassifier", "load_estimator", "PointHead", "REGRESSION_POSTERIORS",
           "CLASSIFICATION_POSTERIORS"]
