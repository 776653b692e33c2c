"""Bandit figures: cumulative regret against steps per setting; the wheel coloured by the arms an agent chose."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ._figure import save_figure

__all__ = ["plot_regret_curves", "plot_wheel_decisions"]

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
    return save_figure(fig, path, dpi=120)


_ARM_COLORS = ("C0", "C1", "C2", "C3", "0.55")  # arms 0-3 (the quadrants' arms), arm 4 (the inner arm)


def _wheel_outline(ax, delta: float) -> None:
    """The true regions: the inner disk of radius delta (arm 4) and the four outer quadrants (arms 0-3)."""
    angle = np.linspace(0, 2 * np.pi, 400)
    ax.plot(np.cos(angle), np.sin(angle), color="k", lw=1.0)
    ax.plot(delta * np.cos(angle), delta * np.sin(angle), color="k", lw=1.0)
    for x0, y0 in ((delta, 0), (-delta, 0), (0, delta), (0, -delta)):
        ax.plot([x0, x0 / delta if x0 else 0], [y0, y0 / delta if y0 else 0], color="k", lw=1.0)
    for arm, (cx, cy) in enumerate(((0.72, 0.72), (0.72, -0.72), (-0.72, 0.72), (-0.72, -0.72))):
        ax.text(cx, cy, str(arm), ha="center", va="center", fontsize=8, color=_ARM_COLORS[arm], weight="bold")
    ax.text(0, 0, "4", ha="center", va="center", fontsize=8, color="0.3", weight="bold")


def plot_wheel_decisions(contexts: np.ndarray, arms: dict[str, np.ndarray], delta: float, path: str | Path, *,
                         windows: int = 3, points: int = 600) -> Path:
    """The wheel bandit's contexts coloured by the arm each agent pulled, early / middle / late in the episode.

    One row per agent (``arms[name]``: the arm pulled at each step), one column per window of the episode
    (its first, middle and last ``points`` steps, fewer when the episode is short); the black lines are the true
    regions (inner disk: arm 4 pays 1.2; outside radius ``delta`` the quadrant's arm 0-3 pays 50). A point in
    the right colour for its region is an optimal decision; the title gives the fraction of optimal pulls.
    """
    contexts = np.asarray(contexts, dtype=np.float64)
    T = contexts.shape[0]
    n = max(1, min(points, T // windows))
    starts = np.unique(np.linspace(0, T - n, windows).astype(int))
    radius = np.linalg.norm(contexts, axis=1)
    quadrant = 2 * (contexts[:, 0] < 0) + (contexts[:, 1] < 0)
    optimal = np.where(radius >= delta, quadrant, 4)
    names = list(arms)
    fig, axes = plt.subplots(len(names), len(starts), figsize=(2.9 * len(starts), 3.3 * len(names) + 0.4),
                             squeeze=False)
    for row, name in enumerate(names):
        chosen = np.asarray(arms[name])
        for col, start in enumerate(starts):
            ax = axes[row, col]
            steps = slice(start, start + n)
            colors = [_ARM_COLORS[a] for a in chosen[steps]]
            ax.scatter(contexts[steps, 0], contexts[steps, 1], c=colors, s=7, lw=0)
            _wheel_outline(ax, delta)
            ax.set_aspect("equal")
            ax.set_xlim(-1.05, 1.05)
            ax.set_ylim(-1.05, 1.05)
            ax.set_xticks([])
            ax.set_yticks([])
            right = float(np.mean(chosen[steps] == optimal[steps]))
            ax.set_title(f"{name}: steps {start + 1}-{start + n}\n{100 * right:.0f}% optimal", fontsize=8)
    fig.suptitle(f"wheel bandit, delta = {delta:g}: the arm pulled at each context (colour = arm; lines: true "
                 "regions, labelled with their optimal arm)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.subplots_adjust(hspace=0.3)  # equal-aspect axes: tight_layout leaves the titles on the row above
    return save_figure(fig, path, dpi=110)
