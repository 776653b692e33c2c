"""Statlog (shuttle): the validating Shuttle.rda reader (real file, small written files, mutated files), the
bandit built from it, and the ``bandit statlog`` pipeline."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from bayes_diglm._fuzz import FuzzTarget, fuzz
from bayes_diglm.bandits import statlog_bandit
from bayes_diglm.data import SHUTTLE_CLASSES, SHUTTLE_PATH, load_shuttle, read_shuttle
from bayes_diglm.experiments.bandits import run_bandits

rdata = pytest.importorskip("rdata", reason="the PyPI package rdata (the dev extra) reads Shuttle.rda")
needs_mlbench = pytest.mark.skipif(not SHUTTLE_PATH.is_file(),
                                   reason=f"{SHUTTLE_PATH} missing: install Debian's r-cran-mlbench")

# UCI's documentation of shuttle.trn (Statlog, 43,500 rows): rows per class, in class order 1..7
UCI_TRAIN_COUNTS = (34108, 37, 132, 6748, 2458, 6, 11)
# the first line of UCI's shuttle.trn and of shuttle.tst (nine attributes, then the class 1..7)
UCI_TRAIN_FIRST = (50, 21, 77, 0, 28, 0, 27, 48, 22, 2)
UCI_TEST_FIRST = (55, 0, 81, 0, -6, 11, 25, 88, 64, 4)


def _frame(n: int = 12, seed: int = 0, levels=SHUTTLE_CLASSES) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.integers(-50, 120, (n, 9)).astype(np.float64), columns=[f"V{i}" for i in range(1, 10)])
    frame["Class"] = pd.Categorical.from_codes(np.arange(n) % len(levels), categories=list(levels))
    return frame


def _write(path, objects, compression="gzip"):
    rdata.write_rda(path, objects, compression=compression)
    return path


@needs_mlbench
def test_real_file_matches_uci_shuttle():
    data = load_shuttle()
    assert data.X.shape == (58_000, 9) and data.X.dtype == np.float64 and data.y.dtype == np.int64
    train, test = load_shuttle(split="train"), load_shuttle(split="test")
    assert train.X.shape[0] == 43_500 and test.X.shape[0] == 14_500
    assert tuple(np.bincount(train.y, minlength=7)) == UCI_TRAIN_COUNTS
    np.testing.assert_array_equal(np.append(train.X[0], train.y[0] + 1), UCI_TRAIN_FIRST)
    np.testing.assert_array_equal(np.append(test.X[0], test.y[0] + 1), UCI_TEST_FIRST)
    assert np.all(data.X == np.round(data.X))  # the sensors are integer-valued


def test_written_file_round_trips_with_uci_class_order(tmp_path):
    levels = SHUTTLE_CLASSES[::-1]  # a file may order the factor's levels differently: classes follow the names
    frame = _frame(levels=levels)
    for compression in ("gzip", None, "xz", "bzip2"):
        data = read_shuttle(_write(tmp_path / f"s-{compression}.rda", {"Shuttle": frame}, compression), rows=None)
        np.testing.assert_array_equal(data.X, frame.iloc[:, :9].to_numpy())
        expected = [SHUTTLE_CLASSES.index(name) for name in frame["Class"].astype(str)]
        np.testing.assert_array_equal(data.y, expected)
    with pytest.raises(ValueError, match="12 rows"):
        read_shuttle(tmp_path / "s-gzip.rda")  # mlbench's 58,000 by default


@pytest.mark.parametrize("case, match", [
    ("name", "exactly one object"), ("nan", "missing or infinite"), ("levels", "Class levels"),
    ("columns", "columns"), ("factor", "factor"), ("logical", "numeric"), ("garbage", "not an R data file"),
])
def test_bad_files_raise_value_errors_naming_the_file(tmp_path, case, match):
    frame = _frame()
    if case == "nan":
        frame.iloc[3, 2] = np.nan
    elif case == "levels":
        frame["Class"] = pd.Categorical.from_codes(np.arange(12) % 7, categories=[*SHUTTLE_CLASSES[:6], "Other"])
    elif case == "columns":
        frame = frame.rename(columns={"V9": "time"})
    elif case == "factor":
        frame["Class"] = np.arange(12) % 7
    elif case == "logical":
        frame["V1"] = frame["V1"] > 0  # an R logical vector
    path = tmp_path / "bad.rda"
    if case == "garbage":
        path.write_bytes(b"PK\x03\x04 a zip archive, not R data" * 8)
    else:
        _write(path, {"Other" if case == "name" else "Shuttle": frame})
    with pytest.raises(ValueError, match=match) as err:
        read_shuttle(path, rows=None)
    assert "bad.rda" in str(err.value)
    with pytest.raises(FileNotFoundError, match="r-cran-mlbench"):
        load_shuttle(tmp_path / "absent.rda")
    with pytest.raises(ValueError, match="split"):
        load_shuttle(path, split="validation")


def test_mutated_files_give_a_result_or_a_named_error(tmp_path):
    seeds = [(_write(tmp_path / f"{c}.rda", {"Shuttle": _frame(9, 1)}, c)).read_bytes() for c in (None, "gzip")]

    def check(result):
        assert result.X.shape[1] == 9 and np.isfinite(result.X).all() and result.y.min() >= 0 and result.y.max() < 7

    target = FuzzTarget("read_shuttle", lambda p: read_shuttle(p, rows=None), seeds, check=check, suffix=".rda")
    report = fuzz(target, int(os.environ.get("BAYES_DIGLM_FUZZ_ITERATIONS", "150")), seed=0)
    assert report.inputs > 0
    assert not report.findings, "\n".join(f"#{f.iteration}: {f.error}" for f in report.findings[:5])


def test_statlog_bandit_refuses_a_file_that_is_not_mlbenchs(tmp_path):
    path = _write(tmp_path / "Shuttle.rda", {"Shuttle": _frame(40, 2)})
    with pytest.raises(ValueError, match="40 rows"):  # the splits are mlbench's rows: 43,500 + 14,500
        statlog_bandit(10, path=path)


@needs_mlbench
def test_statlog_bandit_on_the_real_file():
    data = statlog_bandit(300, seed=3)
    train = load_shuttle(split="train")
    assert data.contexts.shape == (300, 9) and data.num_arms == 7
    np.testing.assert_array_equal(data.rewards.sum(axis=1), 1.0)  # one arm pays 1, the others 0
    # each context is a standardised row of shuttle.trn, and its paying arm is that row's class
    Z = (train.X - train.X.mean(0)) / train.X.std(0)
    rows = [int(np.flatnonzero(np.all(np.isclose(Z, c), axis=1))[0]) for c in data.contexts[:20]]
    np.testing.assert_array_equal(data.optimal_arms[:20], train.y[rows])
    assert not np.array_equal(statlog_bandit(300, seed=4).contexts, data.contexts)


@needs_mlbench
def test_statlog_pipeline_smoke(tmp_path):
    result = run_bandits("statlog", steps=60, seeds=2, agents=["LinFullPost", "NeuralLinear"], out=tmp_path,
                         agent_kwargs={"NeuralLinear": {"train_every": 30, "train_steps": 3, "batch_size": 16}},
                         quiet=True)
    metrics = json.loads((tmp_path / "statlog" / "metrics.json").read_text())
    assert metrics["env"] == "statlog" and metrics["steps"] == 60
    for name in ("table.md", "regret_curves.png"):
        assert (tmp_path / "statlog" / name).is_file()
    rows = {r["agent"]: r for r in result["rows"]}
    assert set(rows) == {"Uniform", "LinFullPost", "NeuralLinear"}
    # rewards are 0 or 1 and exactly one arm pays: regret per step is 0 or 1
    assert all(0 <= r["cumulative regret"] <= 60 for r in rows.values())
    assert "statlog" in result["table"]


@needs_mlbench
@pytest.mark.slow
def test_statlog_quick_from_the_command_line(tmp_path, capsys):
    from bayes_diglm.cli import main

    assert main(["bandit", "statlog", "--quick", "--jobs", "1", "--quiet", "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "statlog" / "metrics.json").read_text())
    assert metrics["steps"] == 300 and len(metrics["seeds"]) == 2
    assert {r["agent"] for r in metrics["rows"]} == {"Uniform", "LinFullPost", "LinGreedy", "NeuralLinear",
                                                   "FlowLinear"}
    assert "| statlog | FlowLinear |" in capsys.readouterr().out
