"""Posterior fits on ill-conditioned features: adaptive jitter with a warning, or a clear error, never a NaN."""

import warnings

import numpy as np
import pytest

from bayes_diglm.inference import ConjugateLinearRegression, LaplaceClassifier
from bayes_diglm.inference.linalg import JitterWarning, robust_cholesky

HEADS = [ConjugateLinearRegression, LaplaceClassifier]


def _targets(cls, n, rng):
    return rng.normal(size=n) if cls is ConjugateLinearRegression else (np.arange(n) % 2)


def _features(kind, rng):
    Z = rng.normal(size=(200, 4))
    return {
        "collinear": np.c_[Z, Z[:, :2], 2 * Z[:, 0]],
        "scales 1e-8..1e8": rng.normal(size=(200, 5)) * np.array([1e-8, 1e-4, 1.0, 1e4, 1e8]),
        "n < D": rng.normal(size=(5, 50)),
        "collinear and huge": np.c_[Z * 1e8, Z * 1e8],
    }[kind]


@pytest.mark.parametrize("kind", ["collinear", "scales 1e-8..1e8", "n < D", "collinear and huge"])
@pytest.mark.parametrize("cls", HEADS)
def test_fit_succeeds_with_finite_predictions(cls, kind):
    rng = np.random.default_rng(0)
    Z = _features(kind, rng)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        head = cls().fit(Z, _targets(cls, Z.shape[0], rng))
    out = head.predict_proba(Z) if cls is LaplaceClassifier else head.predict(Z, return_std=True)[1]
    assert np.isfinite(out).all()
    jitter = [w for w in caught if issubclass(w.category, JitterWarning)]
    if kind == "collinear and huge":
        assert jitter, "an indefinite precision must be reported"
    for w in jitter:
        assert "added jitter" in str(w.message)


@pytest.mark.parametrize("cls", HEADS)
def test_overflowing_features_fail_clearly(cls):
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(20, 3)) * 1e200
    with pytest.raises(ValueError, match="infinite|overflow|finite"):
        cls().fit(Z, _targets(cls, 20, rng))


def test_robust_cholesky_gives_up_with_a_clear_error():
    A = -np.eye(3)
    with pytest.raises(ValueError, match="not positive definite even with jitter"):
        robust_cholesky(A, "test matrix")
    with pytest.raises(ValueError, match="NaN or infinite"):
        robust_cholesky(np.full((2, 2), np.nan), "test matrix")
    L = robust_cholesky(np.array([[4.0, 2.0], [2.0, 2.0]]), "spd")
    np.testing.assert_allclose(L @ L.T, [[4.0, 2.0], [2.0, 2.0]])


def test_robust_cholesky_retries_on_the_original_matrix_whatever_its_memory_order():
    rng = np.random.default_rng(0)
    B = rng.normal(size=(5, 3))
    A = np.asfortranarray(B @ B.T)  # rank 3: needs jitter
    before = A.copy()
    with pytest.warns(JitterWarning):
        L = robust_cholesky(A, "rank-deficient")
    np.testing.assert_array_equal(A, before)
    np.testing.assert_allclose(L @ L.T, before, atol=1e-6 * np.abs(before).max())


def test_mixed_effects_on_collinear_features_jitters_instead_of_failing():
    from bayes_diglm.inference import MixedEffectsRegression

    rng = np.random.default_rng(0)
    Z = rng.normal(size=(100, 2))
    Z = np.c_[Z, Z[:, 0]]
    groups = rng.integers(0, 5, 100)
    with pytest.warns(JitterWarning):
        model = MixedEffectsRegression().fit(Z, Z[:, 0] + rng.normal(size=100), groups=groups)
    assert np.isfinite(model.predict(Z, groups=groups)).all()


def test_overflow_check_decides_as_the_exact_row_sums_do():
    """The max/min shortcut of the overflow rule never accepts what the exact sum of squares refuses, nor refuses
    what it accepts: asked through a fitted head's ``predict``, whose refusal names the overflow. (NaN and
    infinity never reach the rule there: the array check refuses them first, test_heads_contract's sweep.)"""
    def exact_refuses(X):
        with np.errstate(over="ignore", invalid="ignore"):
            squares = np.square(X, dtype=np.float64).sum(axis=-1)
        return not np.all(np.isfinite(squares))

    def refused(X):
        head = ConjugateLinearRegression().fit(np.ones((3, X.shape[1])) + np.eye(3, X.shape[1]), np.arange(3.0))
        try:
            head.predict(X)
        except ValueError as err:
            assert "whose squares overflow" in str(err), err
            return True
        return False

    big = np.sqrt(np.finfo(np.float64).max)
    cases = [np.zeros((3, 4)), np.full((2, 4), big / 2.01), np.array([[big * 0.9, 0.0, 0.0, 0.0]]),  # bound fails
             np.full((2, 4), big / 1.99), np.array([[big * 1.01, 0.0]]), np.full((5, 1), big * 0.999),
             np.full((5, 1), big * 1.001), np.random.default_rng(0).normal(size=(50, 7)).astype(np.float32)]
    assert [exact_refuses(X) for X in cases] == [False, False, False, True, True, False, True, False]
    for X in cases:
        assert refused(X) == exact_refuses(X), X
