"""Old module paths keep working after ``inference/laplace.py`` and ``models/estimators.py`` became packages:
users' imports, and saved states that name a class through the module it used to live in."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bayes_diglm.inference import LaplaceClassifier
from bayes_diglm.inference.persistence import from_state, to_state


def test_old_import_paths_give_the_same_objects():
    import bayes_diglm.inference as inference
    import bayes_diglm.models as models
    from bayes_diglm.inference.laplace import (
        LaplaceFit,
        LaplaceRegressor,
        laplace_glm,
        mackay_prior_precision,
    )
    from bayes_diglm.models.estimators import (
        CLASSIFICATION_POSTERIORS,
        REGRESSION_POSTERIORS,
        DIGLMClassifier,
        DIGLMRegressor,
        load_estimator,
    )

    assert (LaplaceFit, LaplaceRegressor, laplace_glm, mackay_prior_precision) == (
        inference.LaplaceFit, inference.LaplaceRegressor, inference.laplace_glm, inference.mackay_prior_precision)
    assert (DIGLMClassifier, DIGLMRegressor, load_estimator) == (
        models.DIGLMClassifier, models.DIGLMRegressor, models.load_estimator)
    assert "svi" in CLASSIFICATION_POSTERIORS and "conjugate" in REGRESSION_POSTERIORS


def _renamed(state: dict, old: dict[str, str]) -> dict:
    """The state with each class path written as a file saved before the split wrote it."""
    text = state["json"]
    for new, before in old.items():
        text = text.replace(f'"{new}:', f'"{before}:')
    return {"json": text, "tensors": state["tensors"]}


def test_a_state_saved_before_the_split_loads_with_the_same_predictions():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(80, 3))
    y = (Z[:, 0] - Z[:, 1] + rng.logistic(size=80) > 0).astype(int)
    head = LaplaceClassifier(prior_precision=0.5).fit(Z, y)
    state = to_state(head)
    assert "bayes_diglm.inference.laplace.heads:LaplaceClassifier" in state["json"]
    old = _renamed(state, {"bayes_diglm.inference.laplace.heads": "bayes_diglm.inference.laplace",
                           "bayes_diglm.inference.laplace.structures": "bayes_diglm.inference.laplace",
                           "bayes_diglm.inference.laplace.fit": "bayes_diglm.inference.laplace"})
    assert "bayes_diglm.inference.laplace.heads" not in old["json"]
    loaded = from_state(old)
    assert type(loaded) is LaplaceClassifier
    np.testing.assert_array_equal(loaded.predict_proba(Z), head.predict_proba(Z))
    np.testing.assert_array_equal(loaded.sample(5, generator=1)["beta"], head.sample(5, generator=1)["beta"])


def test_a_head_saved_before_a_parameter_was_added_takes_its_default():
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(60, 2))
    y = (Z[:, 0] + rng.logistic(size=60) > 0).astype(int)
    head = LaplaceClassifier().fit(Z, y)
    state = to_state(head)
    tree = json.loads(state["json"])
    for name in ("predictive", "n_predictive_samples", "predictive_seed"):
        del tree["attrs"][name]  # as a file written before the predictive became an option of the head
    loaded = from_state({"json": json.dumps(tree), "tensors": state["tensors"]})
    assert loaded.get_params() == LaplaceClassifier().get_params()
    np.testing.assert_array_equal(loaded.predict_proba(Z), head.predict_proba(Z))


def test_a_class_from_outside_the_package_is_refused_even_through_a_bayes_diglm_module():
    # svi.py imports Pyro's SVI: reachable as bayes_diglm.inference.svi:SVI, but not a class of bayes_diglm
    state = {"json": json.dumps({"object": "bayes_diglm.inference.svi:SVI", "attrs": {}}), "tensors": {}}
    with pytest.raises(ValueError, match="not a class defined in bayes_diglm"):
        from_state(state)
