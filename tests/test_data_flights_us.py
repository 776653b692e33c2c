"""The US flights 2001 parquet: schema checks, streaming reads, the protocol split, and the real file."""

import datetime

import numpy as np
import pandas as pd
import pytest
import torch

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from bayes_diglm.data import cache_dir  # noqa: E402
from bayes_diglm.data.flights_us import (  # noqa: E402
    US_FEATURE_NAMES,
    iter_flights_us,
    open_flights_us,
    read_flights_us,
    split_flights_us,
)
from bayes_diglm.inference.conjugate import ConjugateLinearRegression  # noqa: E402
from bayes_diglm.inference.streaming import stream_fit_conjugate  # noqa: E402

AIRPORTS = np.array(["ATL", "ORD", "DFW", "LAX", "SFO", "DEN"])


def flights_table(n=1000, seed=0):
    """A time-sorted table in the real file's schema (timestamp[us], int64, int64, large_string x 2)."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2001-01-01T00:01", "us")
    minutes = np.sort(rng.integers(0, 60 * 24 * 180, size=n))
    return pa.table({
        "date": pa.array(start + minutes.astype("timedelta64[m]"), pa.timestamp("us")),
        "delay": pa.array(rng.integers(-30, 200, size=n), pa.int64()),
        "distance": pa.array(rng.integers(50, 2500, size=n), pa.int64()),
        "origin": pa.array(rng.choice(AIRPORTS, size=n), pa.large_string()),
        "destination": pa.array(rng.choice(AIRPORTS, size=n), pa.large_string()),
    })


def write(table, path, row_group_size=128):
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


@pytest.fixture
def flights_file(tmp_path):
    return write(flights_table(), tmp_path / "flights.parquet")


def brute_force(table):
    df = table.to_pandas()
    d = df["date"]
    X = np.column_stack([d.dt.month, d.dt.day, d.dt.day_of_week, d.dt.hour * 60 + d.dt.minute, df["distance"]])
    return X.astype(np.float64), df["delay"].to_numpy(np.float64), df


def test_attributes_against_pandas(flights_file):
    X, y, df = brute_force(pq.read_table(flights_file))
    frame = read_flights_us(path=flights_file)
    assert list(frame.columns[:5]) == list(US_FEATURE_NAMES)
    np.testing.assert_array_equal(frame[list(US_FEATURE_NAMES)].to_numpy(), X)
    np.testing.assert_array_equal(frame["arr_delay"].to_numpy(), y)
    assert frame["origin"].tolist() == df["origin"].tolist()
    assert (frame["datetime"].to_numpy() == df["date"].to_numpy()).all()
    assert frame.index.equals(pd.RangeIndex(0, 1000))


@pytest.mark.parametrize("start, stop, batch_rows", [(0, None, 64), (100, 357, 50), (255, 256, 1000), (999, 1000, 7)])
def test_row_ranges_across_row_groups(flights_file, start, stop, batch_rows):
    X, y, _ = brute_force(pq.read_table(flights_file))
    batches = list(iter_flights_us(start, stop, batch_rows=batch_rows, path=flights_file))
    stop = 1000 if stop is None else stop
    assert all(len(b) <= batch_rows for b in batches)
    assert [b.start for b in batches] == list(np.cumsum([start] + [len(b) for b in batches[:-1]]))
    np.testing.assert_array_equal(np.concatenate([b.features for b in batches]), X[start:stop])
    np.testing.assert_array_equal(np.concatenate([b.arr_delay for b in batches]), y[start:stop])


def test_bad_ranges(flights_file):
    for start, stop in ((10, 10), (0, 1001), (-1, 5), (5, 2)):
        with pytest.raises(ValueError):
            next(iter_flights_us(start, stop, path=flights_file))
    with pytest.raises(ValueError, match="batch_rows"):
        next(iter_flights_us(0, 10, batch_rows=0, path=flights_file))


def test_protocol_split_statistics_and_chunks(flights_file):
    split = split_flights_us(n_train=600, n_test=200, n_val=100, path=flights_file)
    assert split.bounds == {"train": (0, 500), "val": (500, 600), "test": (600, 800), "period": (0, 600)}
    assert split.sizes["period"] == 600
    X, y, df = brute_force(pq.read_table(flights_file))
    np.testing.assert_allclose(split.x_mean, X[:500].mean(0), rtol=1e-12)
    np.testing.assert_allclose(split.x_std, X[:500].std(0), rtol=1e-10)
    assert split.y_mean == pytest.approx(y[:500].mean(), rel=1e-12)
    assert split.y_std == pytest.approx(y[:500].std(), rel=1e-10)
    assert set(split.origins) == set(df["origin"][:500])
    chunks = list(split.chunks("test", chunk_rows=64))
    Xt = np.concatenate([c[0] for c in chunks])
    yt = np.concatenate([c[1] for c in chunks])
    assert Xt.dtype == np.float32 and Xt.shape == (200, 5)
    np.testing.assert_allclose(Xt, (X[600:800] - split.x_mean) / split.x_std, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(split.to_minutes(yt), y[600:800], rtol=1e-5, atol=1e-4)
    arrays = split.arrays("test")
    np.testing.assert_array_equal(arrays["X"], Xt)
    assert arrays["origin"].tolist() == df["origin"][600:800].tolist()
    with_groups = next(split.chunks("val", groups=True))
    n = len(with_groups[1])
    assert len(with_groups) == 4 and with_groups[2].tolist() == df["origin"][500:500 + n].tolist()
    with pytest.raises(ValueError, match="part must be one of"):
        split.arrays("holdout")


def test_default_validation_size_and_bad_sizes(flights_file):
    split = split_flights_us(n_train=500, n_test=100, path=flights_file)
    assert split.bounds["val"] == (450, 500)  # min(n_test, n_train // 10)
    with pytest.raises(ValueError, match="exceeds the file's 1000 rows"):
        split_flights_us(n_train=950, n_test=100, path=flights_file)
    with pytest.raises(ValueError, match="leaves no training rows"):
        split_flights_us(n_train=100, n_test=10, n_val=100, path=flights_file)
    with pytest.raises(ValueError, match="n_train"):
        split_flights_us(n_train=1.5, path=flights_file)


def test_subsample_is_seeded_sorted_and_within_the_part(flights_file):
    split = split_flights_us(n_train=600, n_test=200, n_val=100, path=flights_file)
    a = split.arrays("train", max_rows=50, seed=1)
    b = split.arrays("train", max_rows=50, seed=1)
    assert len(a["y"]) == 50 and np.array_equal(a["row"], b["row"])
    assert np.all(np.diff(a["row"]) > 0) and a["row"].min() >= 0 and a["row"].max() < 500
    assert not np.array_equal(a["row"], split.arrays("train", max_rows=50, seed=2)["row"])
    full = split.arrays("train")
    np.testing.assert_array_equal(a["X"], full["X"][a["row"]])


def test_in_memory_split_keeps_the_full_training_scale(flights_file):
    split = split_flights_us(n_train=600, n_test=200, n_val=100, path=flights_file)
    small = split.in_memory(max_train=100, max_val=30, seed=4)
    assert small.sizes == {"train": 100, "val": 30, "test": 200}
    np.testing.assert_array_equal(small.x_mean, split.x_mean)
    assert small.y_std == split.y_std and small.feature_names == US_FEATURE_NAMES
    full = split.arrays("train")
    rows = split.arrays("train", max_rows=100, seed=4)["row"]
    np.testing.assert_array_equal(small.X_train, full["X"][rows])
    assert small.groups["train"]["origin"].tolist() == full["origin"][rows].tolist()
    assert len(small.groups["test"]["destination"]) == 200 and small.plane_age_fill is None


def test_streamed_conjugate_head_equals_in_memory_fit(flights_file):
    split = split_flights_us(n_train=800, n_test=200, n_val=100, path=flights_file)
    chunks = split.chunks("period", chunk_rows=97)
    streamed = stream_fit_conjugate(ConjugateLinearRegression(), lambda x: x, chunks, dtype=torch.float64)
    data = split.arrays("period")
    direct = ConjugateLinearRegression().fit(data["X"].astype(np.float64), data["y"].astype(np.float64))
    np.testing.assert_allclose(streamed.coef_, direct.coef_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(streamed.intercept_, direct.intercept_, rtol=1e-8, atol=1e-10)


def test_missing_and_corrupt_files(tmp_path, flights_file, monkeypatch):
    with pytest.raises(FileNotFoundError, match="python -m bayes_diglm.data.fetch vega-datasets"):
        open_flights_us(tmp_path / "nope.parquet")
    monkeypatch.setenv("BAYES_DIGLM_DATA", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="vega-datasets@3.2.1 not fetched.*make data"):
        open_flights_us()
    data = flights_file.read_bytes()
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable parquet file.*--force vega-datasets"):
        open_flights_us(cut)
    text = tmp_path / "text.parquet"
    text.write_text("date,delay\n")
    with pytest.raises(ValueError, match="not a readable parquet file"):
        open_flights_us(text)


def test_corrupt_pages_inside_a_valid_footer(tmp_path):
    path = write(flights_table(), tmp_path / "f.parquet", row_group_size=1000)
    raw = bytearray(path.read_bytes())
    raw[200:1200] = bytes(1000)  # zero a stretch of column data, keep the footer intact
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupt|out of time order|missing values"):
        list(iter_flights_us(path=path))


@pytest.mark.parametrize("column, array, error, message", [
    ("delay", pa.array(["5"] * 1000), TypeError, "column 'delay' has type string"),
    ("date", pa.array(np.arange(1000), pa.int64()), TypeError, "column 'date' has type int64"),
    ("origin", pa.array(np.arange(1000), pa.int64()), TypeError, "column 'origin'"),
])
def test_wrong_typed_columns(tmp_path, column, array, error, message):
    table = flights_table().set_column(flights_table().schema.get_field_index(column), column, array)
    with pytest.raises(error, match=message):
        open_flights_us(write(table, tmp_path / "f.parquet"))


def test_missing_column_nulls_and_time_order(tmp_path):
    table = flights_table()
    with pytest.raises(ValueError, match=r"missing column\(s\) \['distance'\]"):
        open_flights_us(write(table.drop(["distance"]), tmp_path / "a.parquet"))
    delays = table.column("delay").to_pylist()
    delays[300] = None
    nulls = table.set_column(1, "delay", pa.array(delays, pa.int64()))
    with pytest.raises(ValueError, match="'delay' has 1 missing values"):
        list(iter_flights_us(path=write(nulls, tmp_path / "b.parquet")))
    order = np.arange(1000)
    order[[10, 900]] = order[[900, 10]]
    shuffled = table.take(pa.array(order))
    with pytest.raises(ValueError, match="out of time order"):
        list(iter_flights_us(path=write(shuffled, tmp_path / "c.parquet")))


def test_dictionary_encoded_airports(tmp_path):
    table = flights_table()
    table = table.set_column(3, "origin", table.column("origin").cast(pa.string()).dictionary_encode())
    frame = read_flights_us(0, 10, path=write(table, tmp_path / "d.parquet"))
    assert frame["origin"].tolist() == table.column("origin").to_pylist()[:10]


def test_real_us_flights_file():
    path = cache_dir() / "vega-datasets-3.2.1" / "data" / "flights-3m.parquet"
    if not path.is_file():
        pytest.skip(f"{path} absent: run `make data` (needs the npm registry) to test the real US flights")
    handle = open_flights_us()
    assert handle.metadata.num_rows == 3_000_000
    head = read_flights_us(0, 1000)
    assert head["datetime"].iloc[0] == pd.Timestamp("2001-01-01 00:01")
    assert head["day_of_week"].iloc[0] == 0  # 1 January 2001 was a Monday
    assert datetime.date(2001, 1, 1).weekday() == 0
    test = read_flights_us(2_900_000, 3_000_000)
    assert len(test) == 100_000 and test["datetime"].min() >= pd.Timestamp("2001-06-25")
    # departures at 24:00 on 30 June are dated 1 July 00:00 by the package's script: the only month-7 rows
    july = test[test["month"] == 7]
    assert test["month"].isin([6, 7]).all() and len(july) < 20 and (july["dep_time"] == 0).all()
    assert test["datetime"].max() <= pd.Timestamp("2001-07-01 00:00")
    last_train = read_flights_us(2_899_999, 2_900_000)["datetime"].iloc[0]
    assert last_train <= test["datetime"].min()
    assert test[["origin", "destination"]].nunique().min() > 100
    assert test["distance"].between(10, 5000).all() and test["dep_time"].between(0, 1439).all()
