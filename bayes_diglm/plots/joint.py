"""Figures of the joint-model experiments: sample grids, error against labels, active-learning curves."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ._figure import save_figure

__all__ = ["plot_active_learning", "plot_error_vs_labels", "plot_sample_grid"]


def _save(fig, path) -> Path:
    return save_figure(fig, path, dpi=110, tight_bbox=True)


def plot_sample_grid(generated: dict[int, np.ndarray], real: dict[int, np.ndarray], path: str | os.PathLike,
                     *, title: str = "") -> Path:
    """One row per class: real images on the left, class-conditional samples on the right.

    Args:
        generated, real: class label -> images (n, H, W) or (n, 1, H, W) with values in [0, 1].
        path: PNG to write.
    """
    labels = sorted(generated)
    if not labels or any(k not in real for k in labels):
        raise ValueError("generated and real must be non-empty dicts over the same class labels")
    n_real = max(len(real[k]) for k in labels)
    n_gen = max(len(generated[k]) for k in labels)
    cols = n_real + 1 + n_gen
    fig, axes = plt.subplots(len(labels), cols, figsize=(0.62 * cols, 0.66 * len(labels) + 0.5), squeeze=False)
    for r, k in enumerate(labels):
        row = [*real[k][:n_real]] + [None] + [*generated[k][:n_gen]]
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            img = row[c] if c < len(row) else None
            if img is not None:
                ax.imshow(np.clip(np.asarray(img).squeeze(), 0, 1), cmap="gray_r", vmin=0, vmax=1)
        axes[r, 0].set_ylabel(str(k), rotation=0, labelpad=10, fontsize=10, va="center")
    axes[0, n_real // 2].set_title("real", fontsize=10)
    axes[0, n_real + 1 + n_gen // 2].set_title("generated, p(x | y)", fontsize=10)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_error_vs_labels(rows: list[dict], path: str | os.PathLike, *, metric: str = "test error (%)") -> Path:
    """``metric`` against the number of labels (log axis), one line per model (rows: ``model``, ``labels``)."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    if not models:
        raise ValueError("rows is empty")
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for m in models:
        pts = sorted((r["labels"], r[metric]) for r in rows if r["model"] == m and isinstance(r[metric], float))
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", label=m)
    ax.set_xscale("log")
    ax.set_xlabel("labelled training images")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_active_learning(curves: dict[str, list[dict]], path: str | os.PathLike, *,
                         target_accuracy: float | None = None) -> Path:
    """Mean test error (with the min-max band over seeds) against labels, one line per strategy.

    Args:
        curves: strategy -> list of per-seed curves, each with ``n_labels`` and ``test_error`` lists.
        target_accuracy: draw the error level ``1 - target_accuracy`` as a dashed line.
    """
    if not curves:
        raise ValueError("curves is empty")
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for strategy, runs in curves.items():
        n = np.asarray(runs[0]["n_labels"])
        err = 100 * np.asarray([r["test_error"] for r in runs])
        ax.plot(n, err.mean(0), label=f"{strategy} ({len(runs)} seeds)")
        ax.fill_between(n, err.min(0), err.max(0), alpha=0.2)
    if target_accuracy is not None:
        ax.axhline(100 * (1 - target_accuracy), color="k", ls="--", lw=0.8,
                   label=f"{100 * target_accuracy:.0f}% accuracy")
    ax.set_xlabel("labels")
    ax.set_ylabel("test error (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
