"""``bayes-diglm ood score``: a folder of PNG images or a CSV of rows against a saved estimator."""

import csv

import numpy as np
import pytest

from bayes_diglm.cli import main
from bayes_diglm.evaluation import compressor_description, input_complexity, score_inputs
from bayes_diglm.experiments.ood import read_inputs
from bayes_diglm.models.estimators import DIGLMClassifier, DIGLMRegressor


def _read(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return rows


def test_ood_score_on_a_csv_of_rows(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2)).astype(np.float32)
    y = (X[:, 0] - X[:, 1]).astype(np.float32)
    reg = DIGLMRegressor(head="gaussian", epochs=2, batch_size=64, quiet=True,
                         flow_kwargs={"num_layers": 2, "hidden_dims": (8,)}).fit(X, y)
    reg.save(tmp_path / "reg.pt")
    rows = np.r_[X[:3], [[9.0, -9.0]]]
    (tmp_path / "rows.csv").write_text("a,b\n" + "\n".join(f"{a},{b}" for a, b in rows))
    (tmp_path / "ref.csv").write_text("a,b\n" + "\n".join(f"{a},{b}" for a, b in X))
    out = tmp_path / "scores.csv"
    assert main(["ood", "score", "--model", str(tmp_path / "reg.pt"), "--input", str(tmp_path / "rows.csv"),
                 "--reference", str(tmp_path / "ref.csv"), "--out", str(out)]) == 0
    written = _read(out)
    assert [r["input"] for r in written] == ["0", "1", "2", "3"]
    expected = -reg.score_samples(rows.astype(np.float32))
    assert np.allclose([float(r["-log p(x)"]) for r in written], expected, rtol=1e-5)
    assert "entropy" not in written[0] and written[3]["typicality (M=1) flagged"] == "1"
    said = capsys.readouterr().out  # the scores left out, each with its reason
    assert "left out feature Gaussian (full): needs labels" in said and "left out entropy: needs probabilities" in said


def test_ood_score_on_a_folder_of_images(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    X = (rng.integers(0, 256, (64, 1, 8, 8)) / 255.0).astype(np.float32)
    clf = DIGLMClassifier(flow="glow", epochs=1, batch_size=32, quiet=True,
                          flow_kwargs={"levels": 2, "steps": 1, "hidden_channels": 4}).fit(X, np.arange(64) % 2)
    clf.save(tmp_path / "clf.pt")
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.round(X[i, 0] * 255).astype(np.uint8), mode="L").save(folder / f"im{i}.png")
    out = tmp_path / "s.csv"
    assert main(["ood", "score", "--model", str(tmp_path / "clf.pt"), "--input", str(folder), "--out", str(out)]) == 0
    written = _read(out)
    assert [r["input"] for r in written] == ["im0.png", "im1.png", "im2.png"]
    column = f"input complexity ({compressor_description().split()[0]})"
    assert np.allclose([float(r[column]) for r in written], input_complexity(clf, X[:3]), rtol=1e-5)
    assert all(0 <= float(r["entropy"]) <= np.log(2) + 1e-6 for r in written)
    # an image of the wrong size is refused with its name
    Image.fromarray(np.zeros((5, 5), dtype=np.uint8)).save(folder / "small.png")
    with pytest.raises(ValueError, match="small.png"):
        read_inputs(folder, clf)
    assert main(["ood", "score", "--model", str(tmp_path / "clf.pt"), "--input", str(folder)]) == 2


def test_read_inputs_refuses_other_files(tmp_path):
    (tmp_path / "x.txt").write_text("1")
    with pytest.raises(ValueError, match="folder of .png"):
        read_inputs(tmp_path / "x.txt")
    (tmp_path / "bad.csv").write_text("a,b\n1,x\n")
    with pytest.raises(ValueError, match="non-numeric"):
        read_inputs(tmp_path / "bad.csv")
    with pytest.raises(FileNotFoundError):
        read_inputs(tmp_path)
    with pytest.raises(ValueError, match="two dimensions"):
        score_inputs(DIGLMRegressor(), np.zeros(3))


def test_ood_evaluate_smoke(tmp_path):
    from bayes_diglm.data import DEFAULT_DATA_DIR
    from bayes_diglm.experiments.ood import run_ood_evaluation

    if not DEFAULT_DATA_DIR.is_dir():
        pytest.skip("Fashion-MNIST is not installed (make test installs it)")
    config = {"n_train": 200, "n_val": 60, "n_test": 100, "n_ood": 50, "epochs": 1, "batch_size": 50,
              "flow_kwargs": {"levels": 1, "steps": 1, "hidden_channels": 4}}
    result = run_ood_evaluation(tmp_path, quick=True, background=False, config=config, quiet=True)
    scores = {r["score"] for r in result["rows"]}
    assert {"-log p(x)", "input complexity (png)", "min p-value (log p tails, complexity)",
            "mutual information (laplace)", "typicality (M=25)"} <= scores
    assert {r["OOD set"] for r in result["rows"]} == {"letters", "digits", "noise"}
    assert (tmp_path / "score_histograms.png").is_file() and (tmp_path / "checkpoints" / "fashion_model.pt").is_file()
    again = run_ood_evaluation(tmp_path, quick=True, background=False, config=config, quiet=True)
    assert again["rows"] == result["rows"]  # the saved flow is reused, and scoring is deterministic
    import json

    assert "training (s)" not in json.loads((tmp_path / "metrics.json").read_text())["timings"]
    # other training images (a smaller subset, same estimator settings): the saved flow must not be reused
    run_ood_evaluation(tmp_path, quick=True, background=False, config={**config, "n_train": 150}, quiet=True)
    assert "training (s)" in json.loads((tmp_path / "metrics.json").read_text())["timings"]
