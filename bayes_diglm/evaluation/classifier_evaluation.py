"""Every measurement of one trained flow classifier and its heads: error and calibration, densities, OOD scores."""

from __future__ import annotations

import numpy as np
import torch

from ..flows.image import bits_per_dim
from .classification_table import classification_metrics, log_px_summary
from .metrics import abstention_curve, class_nll, predictive_entropy, reliability_curve
from .ood import CachedOutputs, HeadOnFeatures
from .ood_table import evaluate_ood

__all__ = ["evaluate_classifier"]


def _head_row(label: str, head: str, proba: dict[str, np.ndarray], y_test, ood_labels: dict, bpd: float) -> dict:
    """One row of Table 1: test error (%), test NLL, ECE, bits/dim, then NLL and entropy per OOD set."""
    row = {"model": label, "head": head, **classification_metrics(y_test, proba["test"]), "bits/dim": bpd}
    for name, labels in ood_labels.items():
        row[f"{name} NLL"] = class_nll(labels, proba[name]) if labels is not None else "n/a"
        row[f"{name} entropy"] = float(predictive_entropy(proba[name]).mean())
    return row


def evaluate_classifier(clf, heads: dict, inputs: dict[str, np.ndarray], *, y_train, y_test,
                        ood_labels: dict, background=None, n_draws: int = 100, seed: int = 0,
                        label: str = "model", selective_head: str = "laplace") -> dict:
    """Table 1 rows, density rows, every OOD score and the curves of one trained flow classifier and its heads.

    The flow runs once per input set: its features and ``log p(x)`` go into the
    :class:`~bayes_diglm.evaluation.CachedOutputs` that the OOD scores of :func:`evaluate_ood` read. Each head
    in ``heads`` (an object with ``predict_proba(Z)`` on the features, and ``sample`` for a Bayesian head,
    whose mutual information the OOD table reports) gets a Table 1 row (:func:`classification_metrics`,
    bits/dim of the test set, NLL and entropy per OOD set), a reliability curve (15 bins) and abstention curves
    ranking its test predictions by ``log p(x)`` and by its entropy. The selective-prediction curves of the
    OOD scores rank the test predictions of ``heads[selective_head]``.

    Parameters
    ----------
    clf : DIGLMClassifier
        The fitted flow estimator (its ``flow_outputs`` give features and ``log p(x)``).
    heads : dict
        Head name -> head on features.
    inputs : dict of str to ndarray
        ``"train"``, ``"test"``, optionally ``"val"`` (the in-distribution reference of the typicality tests and
        the min p-value), and one entry per OOD set named in ``ood_labels``. Scores are cached by array object.
    y_train, y_test : array-like
        Class labels of the training and test inputs.
    ood_labels : dict
        OOD set name -> class labels read as in-distribution classes (for an OOD NLL), or None.
    background : DIGLMClassifier, optional
        A background flow for the likelihood ratio.
    n_draws, seed : int
        Posterior draws of the mutual information and the seed of the scores.
    label : str
        The ``"model"`` column of every row.
    selective_head : str
        The head whose test predictions the selective-prediction curves rank.

    Returns
    -------
    dict
        ``rows``, ``density_rows``, ``ood_rows`` (each row starting with ``"model": label``), ``log_px`` per
        set but train and val, ``reliability`` and ``abstention`` per head, and from :func:`evaluate_ood` the
        ``scores``, ``selective`` curves, ``ood_notes`` and the ``typicality_thresholds`` per batch size.
    """
    if not isinstance(heads, dict) or selective_head not in heads:
        raise ValueError(f"heads must be a dict of name -> head holding {selective_head!r}, got {heads!r}")
    missing = sorted({"train", "test", *ood_labels} - set(inputs))
    if missing:
        raise ValueError(f"inputs lacks {missing}: it needs 'train', 'test' and every OOD set of ood_labels")
    y_test = np.asarray(y_test)
    cached = CachedOutputs(clf)
    outputs = {}
    for name, X in inputs.items():  # one flow pass per set
        outputs[name] = clf.flow_outputs(X)
        cached.store("transform", X, outputs[name].features).store("score_samples", X, outputs[name].log_px)
    Z = {k: v.features for k, v in outputs.items() if k not in ("train", "val")}
    log_px = {k: v.log_px for k, v in outputs.items() if k not in ("train", "val")}
    dim = int(clf.model_.flow.dim)
    bpd = float(bits_per_dim(torch.as_tensor(log_px["test"]), dim).mean())
    rows, reliability, abstention, test_proba = [], {}, {}, {}
    for head_name, head in heads.items():
        proba = {k: head.predict_proba(z) for k, z in Z.items()}
        test_proba[head_name] = proba["test"]
        rows.append(_head_row(label, head_name, proba, y_test, ood_labels, bpd))
        reliability[head_name] = reliability_curve(y_test, proba["test"], n_bins=15)
        correct = (proba["test"].argmax(1) == y_test).astype(float)
        abstention[head_name] = {"log p(x)": abstention_curve(correct, log_px["test"]),
                                 "entropy": abstention_curve(correct, -predictive_entropy(proba["test"]))}
    cached.store("predict_proba", inputs["test"], test_proba[selective_head])  # computed above, not again
    ood = evaluate_ood(cached, X_train=inputs["train"], y_train=y_train, X_val=inputs.get("val"),
                       X_test=inputs["test"], y_test=y_test, ood_sets={k: inputs[k] for k in ood_labels},
                       background=background, n_draws=n_draws,
                       heads={h: HeadOnFeatures(cached, head) for h, head in heads.items()}, own_head=False,
                       seed=seed)
    return {"rows": rows, "density_rows": [{"model": label, **r} for r in log_px_summary(log_px, dim)],
            "ood_rows": [{"model": label, **r} for r in ood["rows"]], "log_px": log_px,
            "reliability": reliability, "abstention": abstention, "scores": ood["scores"],
            "selective": ood["selective"], "ood_notes": ood["notes"],
            "typicality_thresholds": {M: t.threshold_ for M, t in ood["typicality"].items()}}
