"""Figures of OOD detection: histograms of each score per set, and selective-prediction curves."""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ._figure import save_figure

__all__ = ["plot_score_histograms", "plot_selective_curves"]


def _view(values: dict[str, np.ndarray]) -> tuple[float, float]:
    """An x-range that shows the test set and every OOD set near it; sets far off pile up at an edge."""
    test = np.asarray(values["test"], dtype=float)
    lo, hi = np.quantile(test, [0.01, 0.99])
    span = max(hi - lo, 1e-12)
    pooled = np.concatenate([np.asarray(v, dtype=float) for v in values.values()])
    lo_all, hi_all = np.quantile(pooled, [0.01, 0.99])
    return max(lo_all, lo - 3 * span), min(hi_all, hi + 3 * span)


def plot_score_histograms(scores: dict[str, dict[str, np.ndarray]], path: str | os.PathLike, *,
                          auroc: dict[tuple[str, str], float] | None = None, title: str | None = None) -> Path:
    """One panel per score: normalised histograms of the score on the test set and each OOD set.

    Values outside the panel's range are clipped onto its edges (the edge bins then hold them), so a set
    far from the test data (noise under a density model) stays visible. ``auroc[(score, set)]`` adds the
    AUROC to the legend.

    Example:
        >>> import tempfile
        >>> rng = np.random.default_rng(0)
        >>> s = {"-log p(x)": {"test": rng.normal(0, 1, 100), "noise": rng.normal(9, 1, 50)}}
        >>> with tempfile.TemporaryDirectory() as d:
        ...     plot_score_histograms(s, f"{d}/h.png").is_file()
        True
    """
    if not scores:
        raise ValueError("scores must be a non-empty dict of score -> set -> values")
    names = list(scores)
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.3 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        values = scores[name]
        lo, hi = _view(values)
        bins = np.linspace(lo, hi, 50)
        for k, v in values.items():
            label = k if auroc is None or (name, k) not in auroc else f"{k} (AUROC {auroc[(name, k)]:.2f})"
            ax.hist(np.clip(np.asarray(v, float), lo, hi), bins=bins, density=True, histtype="step", lw=1.5,
                    label=label, color="black" if k == "test" else None)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("score (higher = more unusual; edges hold clipped values)", fontsize=8)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def plot_selective_curves(curves: dict[str, dict], path: str | os.PathLike, *, ylabel: str = "accuracy",
                          title: str | None = None) -> Path:
    """Metric on the kept inputs against coverage, one line per score (area under each in the legend).

    Example:
        >>> import tempfile
        >>> c = {"-log p(x)": {"coverage": np.array([0.5, 1.0]), "value": np.array([0.9, 0.8]), "area": 0.86}}
        >>> with tempfile.TemporaryDirectory() as d:
        ...     plot_selective_curves(c, f"{d}/s.png").is_file()
        True
    """
    if not curves:
        raise ValueError("curves must be a non-empty dict of score -> curve")
    fig, ax = plt.subplots(figsize=(9.0, 4.4))
    colors = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20").colors
    for i, (name, c) in enumerate(curves.items()):  # a colour and a line style per curve: none repeats a pair
        ax.plot(c["coverage"], c["value"], marker=".", color=colors[i % len(colors)],
                ls=("-", "--", ":")[(i // len(colors)) % 3], label=f"{name} (area {c['area']:.3f})")
    ax.set_xlabel("coverage (fraction kept; the most unusual inputs rejected first)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
