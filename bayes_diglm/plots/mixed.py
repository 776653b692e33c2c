"""Caterpillar plot of random effects (BLUPs or conditional modes) with their conditional intervals."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from ._figure import save_figure

__all__ = ["plot_caterpillar"]


def plot_caterpillar(levels, means: np.ndarray, covs: np.ndarray, path: str | os.PathLike, *,
                     effect_names: list[str] | None = None, prob: float = 0.95, title: str = "",
                     reference: np.ndarray | None = None, reference_label: str = "reference") -> Path:
    """One panel per random effect: each level's estimate with its equal-tailed ``prob`` interval
    (``mean +- z sqrt(var)``), levels sorted by the first effect; ``reference`` (same shape as ``means``) is
    overlaid as crosses (e.g. another package's BLUPs)."""
    means = np.asarray(means, dtype=float).reshape(len(levels), -1)
    sds = np.sqrt(np.stack([np.diag(np.atleast_2d(c)) for c in covs]))
    q = means.shape[1]
    names = effect_names or [f"effect {j}" for j in range(q)]
    order = np.argsort(means[:, 0])
    z = stats.norm.ppf(0.5 + prob / 2)
    fig, axes = plt.subplots(1, q, figsize=(4.2 * q, 0.22 * len(levels) + 1.6), sharey=True, squeeze=False)
    pos = np.arange(len(levels))
    for j, ax in enumerate(axes[0]):
        m, s = means[order, j], sds[order, j]
        ax.errorbar(m, pos, xerr=z * s, fmt="o", ms=3.5, color="tab:blue", ecolor="tab:blue", elinewidth=1,
                    capsize=0, label=f"estimate, {int(round(prob * 100))}% interval")
        if reference is not None:
            ref = np.asarray(reference, dtype=float).reshape(len(levels), -1)
            ax.plot(ref[order, j], pos, "x", color="tab:red", ms=4, label=reference_label)
        ax.axvline(0.0, color="0.5", lw=0.8, ls="--")
        ax.set_xlabel(names[j])
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(pos)
    axes[0][0].set_yticklabels([str(levels[i]) for i in order], fontsize=7)
    axes[0][0].set_ylabel("group")
    axes[0][0].legend(loc="lower right", fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
