"""benchmarks/run.py: a failing row is reported and the run goes on; the quick run completes (no timings checked)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _runner():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FAKE_BENCH = '''
"""A stand-in bench module: a plain row, a thunk that fails, a thunk with two rows, then a failing set-up."""


def run(quick=False):
    yield {"name": "a / b", "ratio": 2.0, "detail": "plain"}
    yield "broken / b", lambda: 1 / 0
    yield "pair", lambda: [{"name": "c / d", "ratio": 0.5}, {"name": "e / f", "ratio": 1.5}]
    raise RuntimeError("set-up of the rest failed")
'''


def test_a_failing_row_is_reported_and_the_run_goes_on(tmp_path, monkeypatch):
    runner = _runner()
    (tmp_path / "bench_fake.py").write_text(FAKE_BENCH)
    (tmp_path / "bench_unloadable.py").write_text("import no_such_module_here\n")
    monkeypatch.setattr(runner, "HERE", tmp_path)  # the folder collect_rows finds the bench_*.py modules in
    rows = runner.collect_rows(["fake", "unloadable"], quick=True)
    assert [r["name"] for r in rows] == ["a / b", "broken / b", "c / d", "e / f",
                                         "fake (the module failed before its remaining rows)",
                                         "unloadable (import failed)"]
    assert [r["benchmark"] for r in rows] == ["fake"] * 5 + ["unloadable"]
    broken, tail, unloadable = rows[1], rows[4], rows[5]
    assert broken["error"] and math.isnan(broken["ratio"]) and "ZeroDivisionError" in broken["detail"]
    assert tail["error"] and "set-up of the rest failed" in tail["detail"]
    assert unloadable["error"] and "ModuleNotFoundError" in unloadable["detail"]
    table = runner.format_table(rows)
    assert table.count("\n") == len(rows) + 1 and "ERROR ZeroDivisionError" in table


def test_quick_run_of_one_module_writes_its_rows(tmp_path, capsys):
    out = tmp_path / "results.json"
    assert _runner().main(["--quick", "--only", "gemm", "--threads", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["quick"] and result["rows"] and all(r["benchmark"] == "gemm" for r in result["rows"])
    # no row may fail ("1 failed" not in the summary let "2 failed" through)
    assert not any(r.get("error") for r in result["rows"]) and ", 0 failed," in result["summary"]
    assert "| GEMM" in capsys.readouterr().out


@pytest.mark.slow
def test_the_whole_quick_run_completes_and_every_row_names_both_sides(tmp_path):
    """Every module in --quick mode (about a minute): no row fails, each row is 'A / B' (needs the bench extra)."""
    pytest.importorskip("zuko")
    pytest.importorskip("normflows")
    pytest.importorskip("laplace")
    out = tmp_path / "results.json"
    sys.path.insert(0, str(ROOT))
    try:
        code = _runner().main(["--quick", "--threads", "1", "--out", str(out)])
    finally:
        sys.path.remove(str(ROOT))
    rows = json.loads(out.read_text())["rows"]
    assert [r["name"] for r in rows if r.get("error")] == [] and code == 0
    assert all(" / " in r["name"] for r in rows)
    modules = {p.stem.removeprefix("bench_") for p in (ROOT / "benchmarks").glob("bench_*.py")}
    assert {r["benchmark"] for r in rows} == modules
