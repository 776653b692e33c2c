"""Tests for the synthetic data: two-class 2-D set, regression with known noise, flights-like stream."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from bayes_diglm.data.flights import FEATURE_NAMES
from bayes_diglm.data.synthetic import (
    flights_like,
    flights_like_frame,
    make_regression_data,
    make_two_class_2d,
    regression_mean,
    regression_noise_std,
    two_moons_like,
)


def _collect(stream):
    xs, ys = zip(*stream, strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def test_two_class_2d_matches_make_moons():
    from sklearn.datasets import make_moons

    X, y = make_two_class_2d(301, seed=4, noise=0.2)
    X_ref, y_ref = make_moons(301, noise=0.2, random_state=np.random.RandomState(4))
    np.testing.assert_array_equal(X, X_ref)
    np.testing.assert_array_equal(y, y_ref)
    assert X.dtype == np.float64 and y.dtype == np.int64
    assert two_moons_like is make_two_class_2d
    assert not np.array_equal(X, make_two_class_2d(301, seed=5, noise=0.2)[0])
    with pytest.raises(ValueError, match="n must"):
        make_two_class_2d(0)


@pytest.mark.parametrize("heteroscedastic", [True, False])
def test_regression_residuals_follow_the_stated_noise(heteroscedastic):
    X, y = make_regression_data(20_000, d=3, seed=0, heteroscedastic=heteroscedastic)
    assert X.shape == (20_000, 3) and y.shape == (20_000,) and X.dtype == np.float64
    z = (y - regression_mean(X)) / regression_noise_std(X, heteroscedastic)
    # standardised residuals are N(0, 1): Kolmogorov-Smirnov against scipy's normal
    assert stats.kstest(z, "norm").pvalue > 0.01
    # the mean function is the one documented: sin(2 x0) + sum_j x_j / (j + 1)
    np.testing.assert_allclose(
        regression_mean(X), np.sin(2 * X[:, 0]) + X[:, 0] + X[:, 1] / 2 + X[:, 2] / 3, rtol=1e-12, atol=1e-14
    )
    resid = y - regression_mean(X)
    near = np.abs(X[:, 0]) < 0.2
    far = np.abs(X[:, 0]) > 1.5
    ratio = resid[far].std() / resid[near].std()
    assert (ratio > 3.0) if heteroscedastic else (0.9 < ratio < 1.1)


def test_flights_like_is_independent_of_chunk_size():
    X1, y1 = _collect(flights_like(70_000, seed=3, chunk_size=70_000))
    X2, y2 = _collect(flights_like(70_000, seed=3, chunk_size=9_999))
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    assert X1.shape == (70_000, 8) and X1.dtype == np.float32 and y1.dtype == np.float32
    sizes = [len(y) for _, y in flights_like(70_000, seed=3, chunk_size=9_999)]
    assert sizes == [9_999] * 7 + [70_000 - 7 * 9_999]
    X3, _ = _collect(flights_like(70_000, seed=4, chunk_size=70_000))
    assert not np.array_equal(X1, X3)


def test_flights_like_shards_tile_the_stream():
    X, y = _collect(flights_like(70_000, seed=1, chunk_size=50_000))
    X_a, y_a = _collect(flights_like(65_000, seed=1, chunk_size=30_000))
    X_b, y_b = _collect(flights_like(5_000, seed=1, chunk_size=1_000, start=65_000))
    np.testing.assert_array_equal(np.concatenate([X_a, X_b]), X)
    np.testing.assert_array_equal(np.concatenate([y_a, y_b]), y)


def test_flights_like_columns_are_plausible():
    X, y = _collect(flights_like(20_000, seed=0))
    col = {name: X[:, i] for i, name in enumerate(FEATURE_NAMES)}
    assert set(np.unique(col["month"])) == set(range(1, 13))
    assert col["day_of_month"].min() == 1 and col["day_of_month"].max() == 31
    assert set(np.unique(col["day_of_week"])) == set(range(7))
    for clock in ("dep_time", "arr_time"):
        assert col[clock].min() >= 0 and col[clock].max() <= 1439
    assert (col["air_time"] > 0).all() and (col["distance"] >= 80).all() and (col["plane_age"] >= 0).all()
    # day of week agrees with the calendar (0 = Monday)
    pairs = zip(col["month"][:200], col["day_of_month"][:200], strict=True)
    dates = np.array([np.datetime64(f"2013-{int(m):02d}-{int(d):02d}") for m, d in pairs])
    weekday = (dates.astype("datetime64[D]").view("int64") - 4) % 7  # 1970-01-05 was a Monday
    np.testing.assert_array_equal(weekday, col["day_of_week"][:200])
    # delays: right-skewed, spread of tens of minutes, later flights more delayed and more spread out
    assert stats.skew(y) > 0.3 and 20 < y.std() < 80
    late = col["dep_time"] > 1000
    early = col["dep_time"] < 500
    assert y[late].mean() > y[early].mean() + 5 and y[late].std() > 1.5 * y[early].std()


def test_flights_like_refuses_bad_arguments():
    with pytest.raises(ValueError, match="chunk_size"):
        next(flights_like(10, chunk_size=0))
    with pytest.raises(ValueError, match="start"):
        next(flights_like(10, start=-1))


def test_flights_like_frame_is_shaped_like_load_flights():
    frame = flights_like_frame(500, seed=0)
    assert list(frame.columns) == [*FEATURE_NAMES, "arr_delay", "plane_age_missing", "datetime"]
    assert frame["datetime"].is_monotonic_increasing
    assert frame["plane_age_missing"].sum() == 25 == frame["plane_age"].isna().sum()
    np.testing.assert_array_equal(frame["month"], frame["datetime"].dt.month)
