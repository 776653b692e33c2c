"""Seeded synthetic data: a 2-D two-class set, a regression set with known noise, flights-like rows."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from bayes_diglm.data.flights import FEATURE_NAMES, TARGET_NAME

__all__ = [
    "flights_like",
    "flights_like_frame",
    "make_regression_data",
    "make_two_class_2d",
    "regression_mean",
    "regression_noise_std",
    "two_moons_like",
]

# Rows are generated in fixed blocks, each from its own seed, so the data do not depend on the chunk size.
_BLOCK = 65_536
_YEAR_START = np.datetime64("2013-01-01", "D")


def _check_count(n, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name} must be a positive integer, got {n!r}")
    return int(n)


def make_two_class_2d(n: int, seed: int = 0, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved half moons in 2-D (scikit-learn's ``make_moons``), float64 ``(n, 2)`` and int64 labels.

    Examples
    --------
    >>> X, y = make_two_class_2d(100, seed=0)
    >>> X.shape, X.dtype, y.dtype, int(y.sum())
    ((100, 2), dtype('float64'), dtype('int64'), 50)
    """
    from sklearn.datasets import make_moons

    n = _check_count(n, "n")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a non-negative number, got {noise!r}")
    X, y = make_moons(n_samples=n, noise=noise, random_state=np.random.RandomState(seed))
    return X.astype(np.float64), y.astype(np.int64)


#: Same as :func:`make_two_class_2d`.
two_moons_like = make_two_class_2d


def regression_mean(X: np.ndarray) -> np.ndarray:
    """Mean function of :func:`make_regression_data`: ``m(x) = sin(2 x_0) + sum_j x_j / (j + 1)``."""
    X = np.asarray(X, dtype=np.float64)
    return np.sin(2.0 * X[:, 0]) + X @ (1.0 / np.arange(1, X.shape[1] + 1))


def regression_noise_std(X: np.ndarray, heteroscedastic: bool = True) -> np.ndarray:
    """Noise scale of :func:`make_regression_data`: ``0.1 + 0.4 |x_0|`` (heteroscedastic) or ``0.3``."""
    X = np.asarray(X, dtype=np.float64)
    return 0.1 + 0.4 * np.abs(X[:, 0]) if heteroscedastic else np.full(X.shape[0], 0.3)


def make_regression_data(
    n: int, d: int = 1, seed: int = 0, heteroscedastic: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Nonlinear regression data with known mean and noise, float64.

    ``x ~ N(0, I_d)``, ``y = m(x) + s(x) * eps`` with ``eps ~ N(0, 1)``, ``m`` = :func:`regression_mean`
    and ``s`` = :func:`regression_noise_std`, so the true predictive density is known for oracle checks.

    Examples
    --------
    >>> X, y = make_regression_data(5, d=3, seed=0)
    >>> X.shape, y.shape
    ((5, 3), (5,))
    """
    n, d = _check_count(n, "n"), _check_count(d, "d")
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = regression_mean(X) + regression_noise_std(X, heteroscedastic) * rng.standard_normal(n)
    return X, y


def _flights_block(seed: int, block: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One block of flights-like rows in raw units (float64), drawn from ``SeedSequence([seed, block])``."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, block]))
    day = rng.integers(0, 365, size)
    date = _YEAR_START + day
    month = date.astype("datetime64[M]").astype(np.int64) % 12 + 1
    day_of_month = (date - date.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64) + 1
    day_of_week = (day + 1) % 7  # 2013-01-01 was a Tuesday; 0 = Monday
    plane_age = np.clip(rng.gamma(2.0, 6.0, size), 0.0, 50.0).round()
    distance = np.clip(np.exp(rng.normal(6.7, 0.6, size)), 80.0, 5000.0).round()
    air_time = np.maximum(20.0, (distance / 8.0 + 18.0 + rng.normal(0.0, 8.0, size)).round())
    dep = rng.uniform(300.0, 1380.0, size)
    late = (dep - 300.0) / 1080.0  # 0 early morning .. 1 late evening
    season = 1.0 + 0.5 * np.isin(month, (6, 7, 12))
    scale = (12.0 + 30.0 * late) * season
    delay = -6.0 + 20.0 * late * season + scale * rng.standard_normal(size)
    delay += rng.exponential(25.0, size) * (rng.random(size) < 0.15)
    dep_time = np.floor(dep + np.maximum(delay, -10.0)) % 1440.0
    arr_time = np.floor(dep_time + air_time + 20.0 + rng.normal(0.0, 5.0, size)) % 1440.0
    X = np.column_stack([month, day_of_month, day_of_week, plane_age, air_time, distance, arr_time, dep_time])
    return X.astype(np.float64), delay.round()


def _rows(n: int, seed: int, start: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Rows ``start .. start + n - 1`` of the stream, block by block."""
    stop = start + n
    for block in range(start // _BLOCK, (stop - 1) // _BLOCK + 1):
        X, y = _flights_block(seed, block, _BLOCK)
        lo, hi = max(start - block * _BLOCK, 0), min(stop - block * _BLOCK, _BLOCK)
        yield X[lo:hi], y[lo:hi]


def flights_like(
    n: int, seed: int = 0, chunk_size: int = 100_000, start: int = 0
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream ``n`` synthetic flights-like rows as ``(X_chunk, y_chunk)`` float32 pairs.

    Columns follow :data:`~bayes_diglm.data.flights.FEATURE_NAMES` in raw units (month 1..12, day of week
    0 = Monday, clock times in minutes after midnight, distance in miles, air time in minutes); the target
    is an arrival delay in minutes that grows, and spreads, through the day and in June, July and December,
    with an occasional exponential spike (heteroscedastic, right-skewed, like real delays).

    Row ``i`` depends only on ``seed`` and ``i`` (rows come from fixed blocks of 65,536 rows seeded by
    ``(seed, block)``): the same seed gives the same rows whatever ``chunk_size``, and ``start`` skips
    to row ``start`` so that workers can read disjoint shards of one stream.

    Examples
    --------
    >>> chunks = list(flights_like(10, seed=0, chunk_size=4))
    >>> [len(y) for _, y in chunks], chunks[0][0].shape[1], chunks[0][0].dtype
    ([4, 4, 2], 8, dtype('float32'))
    """
    n, chunk_size = _check_count(n, "n"), _check_count(chunk_size, "chunk_size")
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
        raise ValueError(f"start must be a non-negative integer, got {start!r}")
    buf_x, buf_y, held = [], [], 0
    for X, y in _rows(n, seed, int(start)):
        buf_x.append(X)
        buf_y.append(y)
        held += len(y)
        while held >= chunk_size:
            X_all, y_all = np.concatenate(buf_x), np.concatenate(buf_y)
            yield X_all[:chunk_size].astype(np.float32), y_all[:chunk_size].astype(np.float32)
            buf_x, buf_y, held = [X_all[chunk_size:]], [y_all[chunk_size:]], held - chunk_size
    if held:
        yield np.concatenate(buf_x).astype(np.float32), np.concatenate(buf_y).astype(np.float32)


def flights_like_frame(n: int, seed: int = 0) -> pd.DataFrame:
    """The first ``n`` rows of :func:`flights_like` as a frame shaped like :func:`.load_flights` returns.

    Adds ``arr_delay``, ``plane_age_missing`` (every 20th row has its age set to NaN) and a 2013
    ``datetime`` built from month, day and departure time, sorted chronologically; for tests and demos
    without the real data.

    Examples
    --------
    >>> flights_like_frame(3, seed=0).columns[-3:].tolist()
    ['arr_delay', 'plane_age_missing', 'datetime']
    """
    X, y = (np.concatenate(parts) for parts in zip(*flights_like(n, seed=seed, chunk_size=n), strict=True))
    frame = pd.DataFrame(X.astype(np.float64), columns=list(FEATURE_NAMES))
    frame.loc[frame.index % 20 == 19, "plane_age"] = np.nan
    frame[TARGET_NAME] = y.astype(np.float64)
    frame["plane_age_missing"] = frame["plane_age"].isna()
    date = pd.to_datetime({
        "year": np.full(n, 2013),
        "month": frame["month"].astype(int),
        "day": frame["day_of_month"].astype(int),
    })
    frame["datetime"] = date + pd.to_timedelta(frame["dep_time"], unit="min")
    return frame.sort_values("datetime", kind="stable").reset_index(drop=True)
