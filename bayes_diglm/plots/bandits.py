"""Bandit figures: cumulative expected regret against steps, one panel per environment setting."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["plot_regret_curves"]

_STYLE = {"Uniform": ("0.5", "--"), "LinFullPost": ("C0", "-"), "LinGreedy": ("C0", ":"),
          "NeuralLinear": ("C1", "-"), "NeuralGreedy": ("C1", ":"), "FlowLinear": ("C3", "-"),
          "FlowGreedy": ("C3", ":")}


def plot_regret_curves(panels: dict[str, dict[str, dict]], path: str | Path, *, title: str = "",
                       log_scale: bool = True) -> Path:
    """Plot mean cumulative regret (band: +- one standard error over seeds) for every agent.

    Parameters
    ----------
    panels : dict
        ``{panel title: {agent: {"steps": (m,), "mean": (m,), "se": (m,)}}}``; one subplot per panel.
    path : path
        Where the PNG goes.
    title : str
        Figure title.
    log_scale : bool
        Logarithmic regret axis (agents differ by orders of magnitude from Uniform).
    """
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(3.3 * n + 1.2, 3.6), squeeze=False, sharey=log_scale)
    for ax, (panel, curves) in zip(axes[0], panels.items(), strict=True):
        for agent, curve in curves.items():
            color, style = _STYLE.get(agent, (None, "-"))
            steps, mean, se = (np.asarray(curve[k], dtype=float) for k in ("steps", "mean", "se"))
            ax.plot(steps, mean, style, color=color, label=agent, lw=1.6)
            ax.fill_between(steps, np.maximum(mean - se, 0.5), mean + se, color=color, alpha=0.2, lw=0)
        if log_scale:
            ax.set_yscale("log")
            ax.set_ylim(bottom=1.0)
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("cumulative expected regret")
    if title:
        fig.suptitle(title, fontsize=11)
    if n == 1:  # one narrow panel: a legend below it would be cut off
        axes[0, 0].legend(loc="lower right", fontsize=8, framealpha=0.9)
        fig.tight_layout()
    else:
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False, fontsize=9)
        fig.tight_layout(rect=(0, 0.08, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
