"""Mean +- spread over runs (seeds): the aggregation against NumPy, the summarize command, progress lines."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest

from bayes_diglm.cli import main
from bayes_diglm.evaluation.spread import aggregate_tables, format_spread
from bayes_diglm.experiments.common import StageLog, write_results
from bayes_diglm.experiments.summarize import summarize_runs


def _tables(values: np.ndarray) -> list[list[dict]]:
    """One table per run: rows a and b with a numeric column and a text column."""
    return [[{"model": "a", "error": float(v[0]), "note": "same"},
             {"model": "b", "error": float(v[1]), "note": f"r{i}"}] for i, v in enumerate(values)]


def test_aggregate_matches_numpy_per_row_and_column():
    values = np.random.default_rng(0).normal(size=(4, 2))
    rows = aggregate_tables(_tables(values), ["model"])
    assert [r["model"] for r in rows] == ["a", "b"]
    for j, row in enumerate(rows):
        cell = row["error"]
        assert cell["n"] == 4 and cell["values"] == pytest.approx(values[:, j].tolist())
        assert cell["mean"] == pytest.approx(values[:, j].mean())
        assert cell["sd"] == pytest.approx(values[:, j].std(ddof=1))
        assert cell["se"] == pytest.approx(values[:, j].std(ddof=1) / 2.0)
        assert (cell["min"], cell["max"]) == pytest.approx((values[:, j].min(), values[:, j].max()))
    assert rows[0]["note"] == "same" and rows[1]["note"] == "r0 / r1 / r2 / r3"


def test_a_row_missing_from_a_run_counts_only_the_runs_that_have_it():
    tables = [[{"k": "x", "v": 1.0}, {"k": "y", "v": 5.0}], [{"k": "x", "v": 3.0}], [{"k": "x", "v": 2.0}]]
    rows = {r["k"]: r for r in aggregate_tables(tables, ["k"])}
    assert rows["x"]["v"]["n"] == 3 and rows["y"]["v"]["n"] == 1 and np.isnan(rows["y"]["v"]["sd"])
    text = {r["k"]: r["v"] for r in format_spread(list(rows.values()), runs=3)}
    assert text == {"x": "2.000 +- 1.000", "y": "5.000 (n=1)"}


def test_non_finite_values_as_json_stores_them_stay_in():
    rows = aggregate_tables([[{"k": "x", "v": "inf"}], [{"k": "x", "v": 1.0}]], ["k"])
    assert rows[0]["v"]["mean"] == np.inf


def test_format_spread_writes_mean_and_sd_or_se():
    rows = aggregate_tables([[{"k": "x", "v": v}] for v in (1.0, 2.0, 3.0, 4.0)], ["k"])
    assert format_spread(rows)[0]["v"] == f"2.500 +- {np.std([1, 2, 3, 4], ddof=1):.3f}"
    assert format_spread(rows, spread="se", digits=2)[0]["v"] == f"2.50 +- {np.std([1, 2, 3, 4], ddof=1) / 2:.2f}"


@pytest.mark.parametrize(("tables", "keys", "match"), [
    ([[{"k": "x", "v": 1.0}, {"k": "x", "v": 2.0}]], ["k"], "twice"),
    ([[{"v": 1.0}]], ["k"], "lacks the key"),
    ([[{"k": "x"}]], [], "keys"),
    ([[{"k": "x"}]], "k", "keys"),
    ([], ["k"], "at least one table"),
])
def test_aggregate_refuses_bad_tables(tables, keys, match):
    with pytest.raises(ValueError, match=match):
        aggregate_tables(tables, keys)


def test_format_spread_refuses_an_unknown_spread():
    with pytest.raises(ValueError, match="spread"):
        format_spread([], spread="iqr")


def _classification_run(folder, seed: int, rng) -> dict:
    """A metrics.json shaped like `bayes-diglm classify`'s (random numbers; written by the experiments' writer)."""
    auroc = rng.uniform(size=4)
    metrics = {
        "experiment": "classification", "configuration": "default", "config": {"epochs": 10}, "seed": seed,
        "seconds": float(rng.uniform(100, 200)),
        "rows": [{"model": m, "head": "point", "test error (%)": float(rng.uniform(1, 5)), "noise NLL": "n/a"}
                 for m in ("hybrid", "discriminative")],
        "density_rows": [{"model": "hybrid", "set": "test", "mean log p(x)": float(rng.normal())}],
        "ood_rows": [{"model": m, "score": "-log p(x)", "OOD set": s, "auroc": float(auroc[2 * i + j]), "aupr": 0.5}
                     for i, m in enumerate(("hybrid", "discriminative")) for j, s in enumerate(("letters", "noise"))],
    }
    write_results(folder, metrics, "table")
    return metrics


def test_summarize_classification_runs_to_markdown_and_json(tmp_path):
    rng = np.random.default_rng(1)
    runs = [_classification_run(tmp_path / f"seed{s}", s, rng) for s in range(3)]
    result = summarize_runs([tmp_path / f"seed{s}" for s in range(3)], tmp_path / "summary")
    saved = json.loads((tmp_path / "summary" / "summary.json").read_text())
    table1 = saved["tables"][0]["rows"]
    errors = [r["rows"][0]["test error (%)"] for r in runs]
    assert table1[0]["test error (%)"]["mean"] == pytest.approx(np.mean(errors))
    assert table1[0]["test error (%)"]["sd"] == pytest.approx(np.std(errors, ddof=1))
    assert table1[0]["noise NLL"] == "n/a"
    assert [r["seed"] for r in saved["runs"]] == [0, 1, 2]
    md = (tmp_path / "summary" / "summary.md").read_text()
    assert md.strip() == result["markdown"].strip()
    letters = [r["ood_rows"][0]["auroc"] for r in runs]
    glance = f"| -log p(x) | {np.mean(letters):.3f} +- {np.std(letters, ddof=1):.3f} |"
    assert glance in md and "| score | hybrid letters | hybrid noise | discriminative letters |" in md
    assert "3 runs, seeds 0, 1, 2" in md and "standard deviation" in md


def test_flights_rows_match_across_runs_whatever_lambda_each_run_chose(tmp_path):
    for seed, lam in ((0, 0.002), (1, 0.02)):
        write_results(tmp_path / str(seed), {
            "experiment": "flights", "dataset": "us2001", "config": {"seed": seed, "max_train": 20}, "seed": seed,
            "px_weight_chosen": lam, "seconds": 1.0,
            "rows": [{"model": f"DIGLM hybrid (lambda={lam:.3g}), point head", "NLL (nats)": 4.0 + seed},
                     {"model": "DIGLM discriminative (lambda=0), point head", "NLL (nats)": 5.0}]}, "")
    summary = summarize_runs([tmp_path / "0", tmp_path / "1"])["summary"]
    rows = summary["tables"][0]["rows"]
    assert [r["model"] for r in rows] == ["DIGLM hybrid (lambda tuned), point head",
                                          "DIGLM discriminative (lambda=0), point head"]
    assert rows[0]["NLL (nats)"]["mean"] == pytest.approx(4.5)
    assert [r["hybrid lambda chosen"] for r in summary["runs"]] == [0.002, 0.02]


def test_summarize_command_and_its_refusals(tmp_path, capsys):
    rng = np.random.default_rng(2)
    for s in range(2):
        _classification_run(tmp_path / f"seed{s}", s, rng)
    assert main(["summarize", str(tmp_path / "seed0"), str(tmp_path / "seed1"), "--spread", "se"]) == 0
    assert "mean +- se" in capsys.readouterr().out
    _classification_run(tmp_path / "again", 0, rng)
    assert main(["summarize", str(tmp_path / "seed0"), str(tmp_path / "again")]) == 2
    assert "same seed" in capsys.readouterr().err
    write_results(tmp_path / "other", {"experiment": "classification", "configuration": "quick", "seed": 5}, "")
    assert main(["summarize", str(tmp_path / "seed0"), str(tmp_path / "other")]) == 2
    assert "differ in configuration" in capsys.readouterr().err
    assert main(["summarize", str(tmp_path / "nothing")]) == 2
    assert "no metrics.json" in capsys.readouterr().err


def test_stage_log_lines_carry_the_elapsed_seconds_and_quiet_silences_them():
    out = io.StringIO()
    log = StageLog("classify", stream=out)
    log("training the hybrid flow")
    log("figures")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and all(re.fullmatch(r"classify +\d+ s  \S.*", line) for line in lines)
    silent = io.StringIO()
    StageLog("classify", quiet=True, stream=silent)("anything")
    assert silent.getvalue() == ""
    with pytest.raises(ValueError, match="label"):
        StageLog("")


class _Bar:
    """What StageLog uses of a tqdm bar, recorded."""

    disable, desc, n, closed = True, "", 0, False

    def set_description(self, text):
        self.desc = text

    def update(self, n):
        self.n += n

    def close(self):
        self.closed = True


def test_stage_log_describes_moves_and_closes_a_bar():
    out, bar = io.StringIO(), _Bar()
    with StageLog("flights", bar=bar, stream=out) as log:
        log("loading flights")
        log.update(2)
    assert (bar.desc, bar.n, bar.closed) == ("loading flights", 2, True)
    assert "loading flights" in out.getvalue()
