"""US domestic flights of January-June 2001 (npm ``vega-datasets@3.2.1``): the paper-scale flight-delay data.

The package's ``data/flights-3m.parquet`` (BSD-3-Clause package; the data are the US Bureau of
Transportation Statistics' on-time performance records) holds 3,000,000 flights, a seeded random sample of
the non-cancelled flights of 1 January to 30 June 2001 with complete records, sorted by time. Its columns,
as the package's generation script ``scripts/flights.py`` (vega-datasets v3.2.1) defines them:

* ``date``: the flight date combined with the **actual** departure clock time (``FlightDate`` + ``DepTime``;
  a departure at 24:00 is moved to 00:00 of the next day), to the minute; the file is sorted by it;
* ``delay``: the **arrival delay** in minutes (BTS ``ArrDelay``; negative when early); the package's column
  documentation says "Arrival delay in minutes (integer)";
* ``distance``: miles; ``origin``, ``destination``: IATA airport codes (229 and 228 distinct).

Attributes built here (:data:`US_FEATURE_NAMES`): month, day of month, day of week (0 = Monday), departure
time of day (minutes after midnight) and distance: five of the paper's eight. The paper's plane age, air time
and arrival time are **not in this data** (:data:`US_ABSENT_ATTRIBUTES`). Origin and destination airports
are kept as group labels (:data:`US_GROUP_NAMES`) for mixed-effects heads.

The protocol (:func:`split_flights_us`) is the paper's (Deisenroth and Ng's): train on the first 2,900,000
flights in time order, test on the next 100,000 (the paper: first 5M, next 100k), validation at the end of
the training period. Everything is read by pyarrow record batches, so 2.9M rows stream in flat memory.

Quirks of the data, kept as they are: the 335 departures at exactly midnight are dated the next day, so the
six at 24:00 on 30 June are the only flights of July (month 7, in the test rows); a flight departing after
midnight keeps its scheduled date; a few hundred delays exceed ten hours either way (-1,116 to +1,688
minutes), as BTS recorded them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .cache import FETCH_COMMAND, require_file
from .flights import FlightsSplit, MinutesScale

__all__ = [
    "US_ABSENT_ATTRIBUTES",
    "US_FEATURE_NAMES",
    "US_FLIGHTS_FILE",
    "US_GROUP_NAMES",
    "US_TARGET_NAME",
    "US_TEST_ROWS",
    "US_TRAIN_ROWS",
    "FlightsBatch",
    "USFlightsSplit",
    "flights_us_path",
    "iter_flights_us",
    "open_flights_us",
    "read_flights_us",
    "split_flights_us",
]

#: The file inside the extracted package folder.
US_FLIGHTS_FILE = "data/flights-3m.parquet"
#: The five input attributes, in column order of every feature matrix.
US_FEATURE_NAMES: tuple[str, ...] = ("month", "day_of_month", "day_of_week", "dep_time", "distance")
#: The paper's attributes that this data does not have.
US_ABSENT_ATTRIBUTES: tuple[str, ...] = ("plane_age", "air_time", "arr_time")
#: The group labels kept beside the features.
US_GROUP_NAMES: tuple[str, ...] = ("origin", "destination")
#: The target: the arrival delay in minutes (the file's ``delay`` column).
US_TARGET_NAME = "arr_delay"
#: The paper's protocol on this data: the first 2.9M flights train, the next 100k test.
US_TRAIN_ROWS = 2_900_000
US_TEST_ROWS = 100_000

_COLUMNS = ("date", "delay", "distance", "origin", "destination")
_REFETCH = f"fetch it again with `{FETCH_COMMAND} --force vega-datasets`"
_BATCH_ROWS = 65_536


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError as err:  # pragma: no cover - pyarrow is a declared dependency
        raise ImportError("reading the US flights needs pyarrow: pip install pyarrow") from err
    return pa, pc, pq


def flights_us_path(path: str | os.PathLike | None = None) -> Path:
    """The parquet file: ``path`` when given, else the fetched cache copy (:mod:`bayes_diglm.data.cache`).

    Raises
    ------
    FileNotFoundError
        The file is missing; the message gives the command that fetches it.
    """
    if path is None:
        return require_file("vega-datasets", US_FLIGHTS_FILE, what="US flights file")
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no US flights file at {path}; fetch the data with `{FETCH_COMMAND} vega-datasets`")
    return path


def _check_schema(schema, path: Path) -> None:
    pa, _, _ = _pyarrow()
    names = set(schema.names)
    missing = [c for c in _COLUMNS if c not in names]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing} (found {schema.names}); {_REFETCH}")

    def value_type(t):
        return t.value_type if pa.types.is_dictionary(t) else t

    checks = {
        "date": (pa.types.is_timestamp, "a timestamp"),
        "delay": (lambda t: pa.types.is_integer(t) or pa.types.is_floating(t), "numeric"),
        "distance": (lambda t: pa.types.is_integer(t) or pa.types.is_floating(t), "numeric"),
        "origin": (lambda t: pa.types.is_string(t) or pa.types.is_large_string(t), "a string"),
        "destination": (lambda t: pa.types.is_string(t) or pa.types.is_large_string(t), "a string"),
    }
    for name, (ok, kind) in checks.items():
        t = schema.field(name).type
        if not ok(value_type(t)):
            raise TypeError(f"{path}: column {name!r} has type {t}, expected {kind} column; {_REFETCH}")


def open_flights_us(path: str | os.PathLike | None = None):
    """Open the parquet file (a ``pyarrow.parquet.ParquetFile``) after checking its columns and their types.

    Raises
    ------
    FileNotFoundError
        The file is missing (with the fetch command).
    ValueError
        Not a readable parquet file (truncated, corrupt) or a column is missing.
    TypeError
        A column has the wrong type (e.g. ``delay`` as strings).
    """
    pa, _, pq = _pyarrow()
    path = flights_us_path(path)
    try:
        handle = pq.ParquetFile(path)
    except (pa.ArrowException, OSError, UnicodeDecodeError) as err:  # column names that are not UTF-8, too
        raise ValueError(f"{path}: not a readable parquet file, truncated or corrupt ({err}); {_REFETCH}") from err
    _check_schema(handle.schema_arrow, path)
    return handle


@dataclass(frozen=True)
class FlightsBatch:
    """A run of consecutive flights: attributes, target, airports and departure times (float64 / object).

    ``start`` is the index of the first row in the file; ``features`` are in :data:`US_FEATURE_NAMES` order.
    """

    start: int
    features: np.ndarray
    arr_delay: np.ndarray
    origin: np.ndarray
    destination: np.ndarray
    departure: np.ndarray

    def __len__(self) -> int:
        return len(self.arr_delay)


def _numeric(array) -> np.ndarray:
    return array.to_numpy(zero_copy_only=False).astype(np.float64)


def _labels(array) -> np.ndarray:
    if hasattr(array, "dictionary_decode"):
        array = array.dictionary_decode()
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=object)


def _features(record_batch) -> np.ndarray:
    """The five attributes of a record batch, float64, in :data:`US_FEATURE_NAMES` order."""
    _, pc, _ = _pyarrow()
    date = record_batch.column("date")
    return np.column_stack([
        _numeric(pc.month(date)), _numeric(pc.day(date)), _numeric(pc.day_of_week(date)),
        _numeric(pc.hour(date)) * 60.0 + _numeric(pc.minute(date)), _numeric(record_batch.column("distance")),
    ])


def _departures(record_batch) -> np.ndarray:
    return record_batch.column("date").cast("timestamp[us]").to_numpy(zero_copy_only=False).astype("datetime64[us]")


def _check_rows(start: int, stop: int | None, total: int) -> tuple[int, int]:
    for name, value in (("start", start), ("stop", stop)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0):
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    stop = total if stop is None else int(stop)
    if not int(start) < stop <= total:
        raise ValueError(f"rows {start}..{stop} are not a non-empty range within the file's {total} rows")
    return int(start), stop


def _record_slices(start: int, stop: int | None, batch_rows: int, path) -> Iterator[tuple[int, object]]:
    """``(first_row, record_batch)`` over rows ``start .. stop - 1``, checked for nulls and time order."""
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, (int, np.integer)) or batch_rows < 1:
        raise ValueError(f"batch_rows must be a positive integer, got {batch_rows!r}")
    pa, _, _ = _pyarrow()
    handle = open_flights_us(path)
    source = flights_us_path(path)
    start, stop = _check_rows(start, stop, handle.metadata.num_rows)
    sizes = [handle.metadata.row_group(i).num_rows for i in range(handle.metadata.num_row_groups)]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    groups = [i for i in range(len(sizes)) if offsets[i] < stop and offsets[i + 1] > start]
    position, last = int(offsets[groups[0]]), None
    try:
        for record_batch in handle.iter_batches(batch_size=int(batch_rows), row_groups=groups,
                                                columns=list(_COLUMNS)):
            lo, hi = max(start - position, 0), min(stop - position, record_batch.num_rows)
            if lo < hi:
                piece, first = record_batch.slice(lo, hi - lo), position + lo
                for name in _COLUMNS:
                    if piece.column(name).null_count:
                        raise ValueError(f"{source}: column {name!r} has {piece.column(name).null_count} missing "
                                         f"values in rows {first}..{first + piece.num_rows - 1}; {_REFETCH}")
                times = _departures(piece)
                if (last is not None and times[0] < last) or np.any(times[1:] < times[:-1]):
                    raise ValueError(f"{source}: departures are out of time order near row {first}; {_REFETCH}")
                last = times[-1]
                yield first, piece
            position += record_batch.num_rows
            if position >= stop:
                return
    except (pa.ArrowException, OSError) as err:  # pyarrow reports corrupt pages as OSError too
        raise ValueError(f"{source}: unreadable rows near {position} (truncated or corrupt: {err}); "
                         f"{_REFETCH}") from err


def iter_flights_us(start: int = 0, stop: int | None = None, *, batch_rows: int = _BATCH_ROWS,
                    path: str | os.PathLike | None = None) -> Iterator[FlightsBatch]:
    """Stream rows ``start .. stop - 1`` of the file in batches of at most ``batch_rows`` (flat memory).

    Only the parquet row groups that overlap the range are read. Missing values are refused, and so is a
    file whose departure times decrease anywhere (the protocol's split is by time).

    Examples
    --------
    >>> sum(len(b) for b in iter_flights_us(2_900_000, 3_000_000))  # doctest: +SKIP
    100000
    """
    pa, _, _ = _pyarrow()
    for first, piece in _record_slices(start, stop, batch_rows, path):
        try:
            batch = FlightsBatch(
                start=first, features=_features(piece), arr_delay=_numeric(piece.column("delay")),
                origin=_labels(piece.column("origin")), destination=_labels(piece.column("destination")),
                departure=_departures(piece),
            )
        except (pa.ArrowException, UnicodeDecodeError) as err:  # e.g. airport codes that are not UTF-8
            raise ValueError(f"{flights_us_path(path)}: unreadable values in rows {first}..{first + len(piece) - 1} "
                             f"(corrupt: {type(err).__name__}: {err}); {_REFETCH}") from err
        yield batch


def read_flights_us(start: int = 0, stop: int | None = None, *,
                    path: str | os.PathLike | None = None) -> pd.DataFrame:
    """Rows ``start .. stop - 1`` as a DataFrame: the five attributes, ``arr_delay``, the airports, ``datetime``.

    The index is the row number in the file. For all three million rows prefer :func:`iter_flights_us`.
    """
    frames = []
    for b in iter_flights_us(start, stop, path=path):
        frame = pd.DataFrame(b.features, columns=list(US_FEATURE_NAMES),
                             index=pd.RangeIndex(b.start, b.start + len(b)))
        frame[US_TARGET_NAME] = b.arr_delay
        frame["origin"], frame["destination"], frame["datetime"] = b.origin, b.destination, b.departure
        frames.append(frame)
    return pd.concat(frames)


class _Moments:
    """Streaming mean and variance (Chan et al.'s pairwise update), float64, per column."""

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def add(self, x: np.ndarray) -> None:
        n_b = x.shape[0]
        mean_b = x.mean(axis=0)
        m2_b = ((x - mean_b) ** 2).sum(axis=0)
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + delta**2 * (self.n * n_b / n)
        self.n = n

    @property
    def std(self):
        return np.sqrt(self.m2 / self.n)


@dataclass(frozen=True)
class USFlightsSplit(MinutesScale):
    """The time-ordered protocol split of the US flights, with training statistics; rows stay on disk.

    ``bounds[part] = (start, stop)`` file rows for ``part`` in ``"train"`` (the training period less its
    end), ``"val"`` (the end of the training period), ``"test"`` (the rows after it) and ``"period"``
    (train + val: the whole training period). Features are standardised as ``(x - x_mean) / x_std`` and the
    target as ``(delay - y_mean) / y_std``, with the statistics of the ``"train"`` rows (computed in one
    streaming pass); :meth:`to_minutes`, :meth:`scale_to_minutes` and :meth:`nll_to_minutes` map back.
    ``origins`` / ``destinations`` are the airports seen in the training rows.
    """

    path: Path
    bounds: dict
    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: float
    y_std: float
    origins: tuple[str, ...]
    destinations: tuple[str, ...]
    feature_names: tuple[str, ...] = US_FEATURE_NAMES

    @property
    def sizes(self) -> dict[str, int]:
        """Number of rows in each part."""
        return {part: stop - start for part, (start, stop) in self.bounds.items()}

    def _rows(self, part: str) -> tuple[int, int]:
        if part not in self.bounds:
            raise ValueError(f"part must be one of {list(self.bounds)}, got {part!r}")
        return self.bounds[part]

    def _standardise(self, b: FlightsBatch) -> tuple[np.ndarray, np.ndarray]:
        X = ((b.features - self.x_mean) / self.x_std).astype(np.float32)
        y = ((b.arr_delay - self.y_mean) / self.y_std).astype(np.float32)
        return X, y

    def chunks(self, part: str, *, chunk_rows: int = _BATCH_ROWS, groups: bool = False) -> Iterator[tuple]:
        """Stream ``(X, y)`` float32 chunks of ``part`` (standardised), or ``(X, y, origin, destination)``.

        Suits :func:`bayes_diglm.inference.streaming.stream_fit_conjugate` and ``stream_evaluate``; memory is
        that of one chunk.
        """
        start, stop = self._rows(part)
        for b in iter_flights_us(start, stop, batch_rows=chunk_rows, path=self.path):
            X, y = self._standardise(b)
            yield (X, y, b.origin, b.destination) if groups else (X, y)

    def group_chunks(self, part: str, *, chunk_rows: int = _BATCH_ROWS) -> Iterator[tuple]:
        """Stream ``(X, y, groups)`` chunks of ``part``: :meth:`chunks` with the airports as a mapping
        ``{"origin", "destination"}`` of label arrays, the chunks a mixed-effects head's ``fit_mixed_head`` reads.
        """
        for X, y, origin, destination in self.chunks(part, chunk_rows=chunk_rows, groups=True):
            yield X, y, {"origin": origin, "destination": destination}

    @property
    def levels(self) -> dict[str, np.ndarray]:
        """The airports seen in the training rows per grouping factor (object arrays): a mixed head's levels."""
        return {"origin": np.asarray(self.origins, dtype=object),
                "destination": np.asarray(self.destinations, dtype=object)}

    def arrays(self, part: str, *, max_rows: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
        """``part`` in memory: ``X``, ``y`` (standardised, float32), ``origin``, ``destination``, ``row``.

        With ``max_rows``, a uniform random subset of that many rows (without replacement, seeded, kept in
        time order), picked while streaming so memory stays O(max_rows + chunk).
        """
        start, stop = self._rows(part)
        n = stop - start
        if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(max_rows, (int, np.integer))
                                     or max_rows < 1):
            raise ValueError(f"max_rows must be a positive integer or None, got {max_rows!r}")
        keep = None
        if max_rows is not None and max_rows < n:
            keep = start + np.sort(np.random.default_rng(seed).choice(n, size=int(max_rows), replace=False))
        out = {k: [] for k in ("X", "y", "origin", "destination", "row")}
        for b in iter_flights_us(start, stop, path=self.path):
            rows = np.arange(b.start, b.start + len(b))
            pick = slice(None) if keep is None else np.isin(rows, keep[(keep >= rows[0]) & (keep <= rows[-1])])
            X, y = self._standardise(b)
            for key, value in (("X", X), ("y", y), ("origin", b.origin), ("destination", b.destination),
                               ("row", rows)):
                out[key].append(value[pick])
        return {k: np.concatenate(v) for k, v in out.items()}


    def in_memory(self, *, max_train: int | None = None, max_val: int | None = None, max_test: int | None = None,
                  seed: int = 0) -> FlightsSplit:
        """Seeded random subsets of train / val / test in memory, as a :class:`~bayes_diglm.data.FlightsSplit`.

        The standardisation stays that of all the ``"train"`` rows (so the subset and the streamed rows share one
        scale), and ``groups`` carries the airports of each row. ``None`` keeps every row of a part.
        """
        parts = {}
        for offset, (part, limit) in enumerate((("train", max_train), ("val", max_val), ("test", max_test))):
            parts[part] = self.arrays(part, max_rows=limit, seed=seed + offset)
        return FlightsSplit(
            X_train=parts["train"]["X"], y_train=parts["train"]["y"], X_val=parts["val"]["X"],
            y_val=parts["val"]["y"], X_test=parts["test"]["X"], y_test=parts["test"]["y"],
            feature_names=self.feature_names, x_mean=self.x_mean, x_std=self.x_std, y_mean=self.y_mean,
            y_std=self.y_std,
            groups={part: {name: a[name] for name in US_GROUP_NAMES} for part, a in parts.items()},
        )


def _check_count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def split_flights_us(*, n_train: int = US_TRAIN_ROWS, n_test: int = US_TEST_ROWS, n_val: int | None = None,
                     path: str | os.PathLike | None = None) -> USFlightsSplit:
    """The paper's protocol: the first ``n_train`` flights are the training period, the next ``n_test`` test.

    Validation is the last ``n_val`` flights of the training period (default: ``n_test``, at most a tenth of
    the period), and ``"train"`` the rows before them; the split is by position in the time-sorted file (rows
    sharing a departure minute across a boundary keep the file's order). One streaming pass over the
    ``"train"`` rows computes the standardisation and the airports seen.

    Defaults: 2,800,000 train (1 January 00:01 to 19 June 08:06), 100,000 validation (to 25 June 08:00),
    100,000 test (25 June 08:00 to 1 July 00:00). The quick configuration of ``make demo``:
    ``n_train=200_000, n_test=20_000`` (validation the last 20,000 of the 200,000).

    Raises
    ------
    ValueError
        The sizes do not fit in the file (3,000,000 rows) or leave no training rows.
    """
    n_train = _check_count("n_train", n_train, 2)
    n_test = _check_count("n_test", n_test, 1)
    n_val = min(n_test, n_train // 10) if n_val is None else _check_count("n_val", n_val, 0)
    if n_val >= n_train:
        raise ValueError(f"n_val={n_val} leaves no training rows in a training period of {n_train}")
    handle = open_flights_us(path)
    total = handle.metadata.num_rows
    if n_train + n_test > total:
        raise ValueError(f"n_train + n_test = {n_train + n_test} exceeds the file's {total} rows")
    source = flights_us_path(path)
    a, b, c = n_train - n_val, n_train, n_train + n_test
    x_stats, y_stats = _Moments(), _Moments()
    origins, destinations = set(), set()
    _, pc, _ = _pyarrow()
    for _, piece in _record_slices(0, a, _BATCH_ROWS, source):
        x_stats.add(_features(piece))
        y_stats.add(_numeric(piece.column("delay")))
        origins.update(pc.unique(piece.column("origin")).to_pylist())
        destinations.update(pc.unique(piece.column("destination")).to_pylist())
    x_std = np.where(x_stats.std > 0, x_stats.std, 1.0)
    y_std = float(y_stats.std) if y_stats.std > 0 else 1.0
    if not math.isfinite(y_std):
        raise ValueError(f"{source}: the training delays have no finite spread")
    return USFlightsSplit(
        path=source, bounds={"train": (0, a), "val": (a, b), "test": (b, c), "period": (0, b)},
        x_mean=np.asarray(x_stats.mean, dtype=np.float64), x_std=np.asarray(x_std, dtype=np.float64),
        y_mean=float(y_stats.mean), y_std=y_std,
        origins=tuple(sorted(origins)), destinations=tuple(sorted(destinations)),
    )
