"""scikit-learn's feature-name contract on the estimators: get_feature_names_out, set_output(transform="pandas")."""

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bayes_diglm import DIGLMClassifier, DIGLMRegressor


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(60, 3)), columns=["age", "dose", "weight"], index=np.arange(100, 160))
    return X, X["age"].to_numpy() - X["dose"].to_numpy() + 0.1 * rng.normal(size=60)


@pytest.mark.parametrize("cls", [DIGLMRegressor, DIGLMClassifier])
def test_pandas_output_names_the_features(cls, frame):
    X, y = frame
    target = y if cls is DIGLMRegressor else (y > 0).astype(int)
    est = cls(epochs=1, quiet=True, seed=0).fit(X, target)
    plain = est.transform(X)
    names = est.get_feature_names_out()
    assert list(names) == [f"z{j}" for j in range(plain.shape[1])]
    out = est.set_output(transform="pandas").transform(X)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == list(names) and out.index.equals(X.index)
    np.testing.assert_array_equal(out.to_numpy(), plain)
    # In a pipeline, the next step sees the names too.
    piped = make_pipeline(cls(epochs=1, quiet=True, seed=0), StandardScaler()).set_output(transform="pandas")
    assert list(piped.fit(X, target).transform(X).columns) == list(names)


def test_input_features_must_match_fit(frame):
    X, y = frame
    est = DIGLMRegressor(epochs=1, quiet=True, seed=0).fit(X, y)
    assert len(est.get_feature_names_out(["age", "dose", "weight"])) == 3
    with pytest.raises(ValueError, match="input_features"):
        est.get_feature_names_out(["a", "b", "c"])
    with pytest.raises(ValueError, match="input_features"):
        est.get_feature_names_out(["age", "dose"])


def test_names_need_a_fitted_estimator():
    with pytest.raises(NotFittedError):
        DIGLMRegressor().get_feature_names_out()
