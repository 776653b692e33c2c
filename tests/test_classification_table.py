"""Evaluation contract: the classification table's rows (head metrics, log p(x) per set, selective summary)."""

import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, log_loss

from bayes_diglm.evaluation import classification_metrics, log_px_summary, selective_summary


def test_classification_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(4), size=300)
    y = rng.integers(0, 4, size=300)
    m = classification_metrics(y, proba)
    assert m["test error (%)"] == pytest.approx(100 * (1 - accuracy_score(y, proba.argmax(1))))
    assert m["test NLL"] == pytest.approx(log_loss(y, proba, labels=range(4)))
    # ECE by brute force: |accuracy - confidence| per equal-width confidence bin, weighted by the bin's share
    conf, correct = proba.max(1), proba.argmax(1) == y
    bins = np.minimum((conf * 15).astype(int), 14)
    ece = sum(np.mean(bins == b) * abs(correct[bins == b].mean() - conf[bins == b].mean())
              for b in range(15) if np.any(bins == b))
    assert m["ECE"] == pytest.approx(ece, abs=1e-9)


def test_log_px_summary_counts_inputs_above_the_reference_median():
    log_px = {"test": np.array([-3.0, -2.0, -1.0, 0.0]), "ood": np.array([5.0, -10.0])}
    rows = log_px_summary(log_px, 2)
    assert [r["set"] for r in rows] == ["test", "ood"]
    assert rows[1]["above test median (%)"] == 50.0 and rows[0]["above test median (%)"] == 50.0
    # bits/dim of 256-level pixels: (-log p + D log 256) / (D log 2), averaged over the set
    assert rows[0]["mean bits/dim"] == pytest.approx((1.5 + 2 * math.log(256)) / (2 * math.log(2)))
    with pytest.raises(ValueError):
        log_px_summary({"ood": np.zeros(2)}, 2)
    with pytest.raises(ValueError):
        log_px_summary(log_px, 0)


def test_selective_summary_reads_the_curve():
    c = {"s": {"coverage": np.array([0.6, 1.0]), "value": np.array([0.9, 0.7]), "area": 0.85, "full": 0.7}}
    row = selective_summary(c, at=0.8)[0]
    assert row == {"score": "s", "area (accuracy-coverage)": 0.85, "accuracy at 80% coverage": pytest.approx(0.8),
                   "accuracy at 100%": 0.7}
    with pytest.raises(ValueError):
        selective_summary(c, at=0.0)
