"""The estimators' views of a fitted DIGLM at features: ``head_inputs`` (features and the posterior head's
per-row context from one flow pass) and ``point_head()`` (the jointly trained head at its point estimate)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayes_diglm.models import DIGLMClassifier, DIGLMRegressor, PointHead

SMALL = {"epochs": 3, "batch_size": 32, "lr": 1e-2, "flow_kwargs": {"num_layers": 2}, "quiet": True}


@pytest.fixture(scope="module")
def regressor():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 2))
    y = X[:, 0] - X[:, 1] + (0.1 + 0.4 * (X[:, 0] > 0)) * rng.normal(size=150)
    return DIGLMRegressor(posterior="conjugate", **SMALL).fit(X, y), X


@pytest.fixture(scope="module")
def classifier():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(150, 2))
    y = np.where(X[:, 0] + 0.3 * rng.normal(size=150) > 0, "yes", "no")
    return DIGLMClassifier(posterior="laplace", **SMALL).fit(X, y), X


def test_head_inputs_are_the_features_and_noise_weights_of_one_pass(regressor):
    reg, X = regressor
    Z, context = reg.head_inputs(X[:7])
    np.testing.assert_array_equal(Z, reg.transform(X[:7]))
    np.testing.assert_array_equal(context["sample_weight"], reg.noise_weights(X[:7]))
    np.testing.assert_array_equal(reg.posterior_.predict_dist(Z, **context).mean, reg.predict_dist(X[:7]).mean)


def test_head_inputs_refuse_a_keyword_the_family_does_not_take(regressor):
    reg, X = regressor
    with pytest.raises(TypeError, match="trials"):
        reg.head_inputs(X[:3], trials=np.ones(3))


def test_point_head_at_features_is_the_estimators_point_predictive(regressor, classifier):
    reg, X = regressor
    head = reg.point_head()
    assert isinstance(head, PointHead)
    Z = reg.transform(X[:9])
    np.testing.assert_array_equal(head.predict_dist(Z).mean, reg.predict_dist(X[:9], point=True).mean)
    np.testing.assert_array_equal(head.predict(Z), reg.predict_dist(X[:9], point=True).mean)
    clf, X = classifier
    Z = clf.transform(X[:9])
    np.testing.assert_array_equal(clf.point_head().predict_proba(Z), clf.predict_dist(X[:9], point=True).probs)
    np.testing.assert_array_equal(clf.point_head().predict(Z), clf.classes_[clf.predict_dist(X[:9], point=True)
                                                                           .probs.argmax(1)])


def test_point_head_probabilities_match_the_trained_modules_own_softmax(classifier):
    """Independent path: the torch module's head on the features, in float64."""
    clf, X = classifier
    Z = clf.transform(X[:20])
    with torch.no_grad():
        logits = clf.model_.head.predictor(torch.from_numpy(Z).to(next(clf.model_.parameters()).dtype)).double()
    logits = logits.numpy()
    expected = 1.0 / (1.0 + np.exp(-logits[:, 0])) if logits.shape[1] == 1 else None
    probs = clf.point_head().predict_proba(Z)
    if expected is not None:
        np.testing.assert_allclose(probs[:, 1], expected, rtol=1e-10)
    else:
        e = np.exp(logits - logits.max(1, keepdims=True))
        np.testing.assert_allclose(probs, e / e.sum(1, keepdims=True), rtol=1e-10)


def test_point_head_refuses_other_features_and_unfitted_estimators(regressor):
    reg, X = regressor
    head = reg.point_head()
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        head.predict_dist(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="NaN"):
        head.predict_dist(np.full((3, 2), np.nan))
    with pytest.raises(TypeError, match="strings"):
        head.predict_dist(np.full((3, 2), "a"))
    with pytest.raises(AttributeError, match="classifiers"):
        head.predict_proba(reg.transform(X[:3]))
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        DIGLMRegressor().point_head()
    with pytest.raises(NotFittedError):
        DIGLMRegressor().head_inputs(X[:3])
