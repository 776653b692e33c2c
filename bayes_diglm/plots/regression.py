"""Regression figures: predicted against actual values, and interval calibration over nominal levels."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ._figure import save_figure

__all__ = ["plot_interval_calibration", "plot_predicted_vs_actual"]


def _save(fig, path) -> Path:
    fig.tight_layout()
    return save_figure(fig, path, dpi=120, tight_bbox=True)  # keeps a legend placed below the axes


def _check_panels(panels: dict, name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if not isinstance(panels, dict) or not panels:
        raise ValueError(f"{name} must be a non-empty dict of label -> (array, array)")
    out = {}
    for label, (a, b) in panels.items():
        a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
        if a.size == 0 or a.shape != b.shape:
            raise ValueError(f"{name}[{label!r}] needs two non-empty arrays of one length, got {a.size} and {b.size}")
        out[str(label)] = (a, b)
    return out


def plot_predicted_vs_actual(
    panels: dict[str, tuple[np.ndarray, np.ndarray]],
    path: str | os.PathLike,
    *,
    unit: str = "minutes",
    quantiles: tuple[float, float] = (0.005, 0.995),
    title: str | None = None,
) -> Path:
    """One hexbin panel per model of predicted mean (y axis) against the actual value (x axis).

    ``panels`` maps a model name to ``(y_true, y_pred)``. Counts are on a log colour scale (the bulk of
    the points sits in a small region); both axes share the range between the pooled ``quantiles`` of the
    actual values, and the legend of each panel counts the points outside it. The diagonal ``y = x`` is
    drawn dashed.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.normal(size=500)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     plot_predicted_vs_actual({"model": (y, 0.5 * y)}, f"{d}/p.png").is_file()
    True
    """
    data = _check_panels(panels, "panels")
    pooled = np.concatenate([a for a, _ in data.values()])
    lo, hi = np.quantile(pooled, quantiles)
    if hi <= lo:
        lo, hi = lo - 1.0, hi + 1.0
    fig, axes = plt.subplots(1, len(data), figsize=(4.2 * len(data), 4.0), squeeze=False)
    for ax, (label, (y_true, y_pred)) in zip(axes[0], data.items(), strict=True):
        inside = (y_true >= lo) & (y_true <= hi) & (y_pred >= lo) & (y_pred <= hi)
        hb = ax.hexbin(y_true[inside], y_pred[inside], gridsize=45, bins="log", cmap="viridis",
                       extent=(lo, hi, lo, hi), mincnt=1)
        ax.plot([lo, hi], [lo, hi], "k--", linewidth=1, label="y = x")
        ax.plot([], [], " ", label=f"{int((~inside).sum()):,} of {y_true.size:,} outside view")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel(f"actual ({unit})")
        ax.set_ylabel(f"predicted mean ({unit})")
        ax.legend(fontsize=7, loc="upper left")
        fig.colorbar(hb, ax=ax, label="points per cell")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_interval_calibration(
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    path: str | os.PathLike,
    *,
    title: str = "Central predictive intervals: nominal against empirical coverage",
) -> Path:
    """Empirical coverage of central predictive intervals against their nominal level, one line per model.

    ``curves`` maps a model name to ``(nominal_levels, empirical_coverage)``; a calibrated model lies on
    the diagonal, an over-confident one below it.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> levels = np.array([0.5, 0.9])
    >>> with tempfile.TemporaryDirectory() as d:
    ...     plot_interval_calibration({"model": (levels, levels - 0.05)}, f"{d}/c.png").is_file()
    True
    """
    data = _check_panels(curves, "curves")
    fig, ax = plt.subplots(figsize=(5.8, 7.4))
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="calibrated")
    markers = "osD^v<>ph*"
    for i, (label, (nominal, empirical)) in enumerate(data.items()):
        ax.plot(nominal, empirical, marker=markers[i % len(markers)], markersize=4, linewidth=1.2, label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("nominal coverage of the central interval")
    ax.set_ylabel("empirical coverage on the test set")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    # Below the axes: the curves of over- and under-confident models fill both corners.
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=1, frameon=False)
    return _save(fig, path)
