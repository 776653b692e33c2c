"""Smoke tests of the joint-model experiments (sampling, semi-supervised, active) on tiny 8x8 digits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bayes_diglm.data import notmnist_letters, sklearn_digits_28, uniform_noise
from bayes_diglm.experiments.joint_data import DigitData, subset_rows

TINY_FLOW = {"flow_kwargs": {"levels": 2, "steps": 1, "hidden_channels": 8}, "batch_size": 64, "lr": 2e-3,
             "warmup_steps": 5}


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _to_8x8(images: np.ndarray) -> np.ndarray:
    crop = images[:, 2:26, 2:26].astype(np.float64)
    return (crop.reshape(-1, 8, 3, 8, 3).mean(axis=(2, 4)) / 255.0).astype(np.float32)[:, None]


@pytest.fixture(scope="module")
def tiny_digits() -> DigitData:
    images, labels = sklearn_digits_28(700, seed=0)
    images = _to_8x8(images)
    return DigitData(images[:500], labels[:500], images[500:], labels[500:],
                     ood={"letters": _to_8x8(notmnist_letters(100, seed=1)[0]),
                          "noise": _to_8x8(uniform_noise(100, seed=2))},
                     description="sklearn digits at 8x8")


def test_subset_rows_is_balanced_and_seeded():
    labels = np.repeat(np.arange(4), [30, 10, 25, 35])
    rows = subset_rows(labels, 22, seed=3)
    assert len(set(rows.tolist())) == 22
    assert np.all(np.bincount(labels[rows[:20]], minlength=4) == 5)
    assert np.array_equal(rows, subset_rows(labels, 22, seed=3))
    assert sorted(subset_rows(labels, None, seed=0).tolist()) == list(range(100))


def test_sampling_experiment_writes_grid_and_self_consistency(tmp_path, tiny_digits):
    from bayes_diglm.experiments.sampling import run_sampling

    cfg = {**TINY_FLOW, "n_train": None, "epochs": 2, "px_weight": 1.0, "per_class": 3, "real_per_class": 2,
           "n_check": 100, "n_joint": 300, "n_reference": 5000, "temperatures": [1.0, 0.7]}
    result = run_sampling(tmp_path, data=tiny_digits, config=cfg, quiet=True)
    assert (tmp_path / "samples_T1.png").stat().st_size > 1000
    assert (tmp_path / "samples_T0.7.png").stat().st_size > 1000
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(metrics["rows"]) == 10
    rates = [r["acceptance rate = p(y=k)"] for r in result["rows"]]
    assert 0.9 < sum(rates) < 1.1  # the classes' marginals p(y = k) add up to one (Monte Carlo)
    for r in result["rows"]:  # exact sampler: the model labels its own samples at the predicted rate
        assert abs(r["classified as k (%)"] - r["predicted by confidence (%)"]) < 5 * r["binomial se (%)"] + 2
    j = result["joint"]
    assert abs(j["accuracy on own samples (%)"] - j["mean confidence (%)"]) < 5 * j["se of the difference (%)"] + 1


@pytest.mark.parametrize("posterior", ["point", "laplace"])
def test_semisupervised_experiment_smoke(tmp_path, tiny_digits, posterior):
    from bayes_diglm.experiments.semisupervised import run_semisupervised

    cfg = {**TINY_FLOW, "labels": [30, None], "n_train": None, "n_test": None, "n_ood": 100, "steps": 12,
           "labeled_fraction": 0.5, "px_weight": 1.0 / 64, "posterior": posterior, "laplace_covariance": "kron",
           "prior_precision": 1.0, "evidence_iter": 1}
    result = run_semisupervised(tmp_path, data=tiny_digits, config=cfg, quiet=True)
    models = [(r["labels"], r["model"]) for r in result["rows"]]
    assert models == [(30, "semi-supervised"), (30, "labelled only"), (30, "discriminative"),
                      (500, "labelled only"), (500, "discriminative")]
    for r in result["rows"]:
        assert 0 <= r["test error (%)"] <= 100 and r["test NLL"] > 0
        assert (posterior == "laplace") == ("Laplace NLL" in r)
        assert 0 <= r["letters AUROC -log p(x)"] <= 1
    assert (tmp_path / "error_vs_labels.png").stat().st_size > 1000
    assert json.loads((tmp_path / "metrics.json").read_text())["configuration"] == "default"


def test_active_experiment_smoke(tmp_path, tiny_digits):
    from bayes_diglm.experiments.active import run_active

    cfg = {**TINY_FLOW, "n_pool": None, "n_test": None, "epochs": 1, "px_weight": 1.0 / 64, "n_initial": 10,
           "step": 10, "n_final": 30, "seeds": [0, 1], "n_draws": 10,
           "strategies": ["random", "bald", "bald+density"], "prior_precision": 1.0, "covariance": "kron",
           "target_accuracy": 0.5}
    result = run_active(tmp_path, data=tiny_digits, config=cfg, quiet=True)
    assert set(result["curves"]) == {"random", "bald", "bald+density"}
    for runs in result["curves"].values():
        assert [c.n_labels for c in runs] == [[10, 20, 30]] * 2
    assert (tmp_path / "active_learning.png").stat().st_size > 1000
    assert len(result["rows"]) == 3
