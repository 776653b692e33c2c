"""Histograms of ``log p(x)`` for several groups of inputs (the paper's Figure 2b)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ._figure import save_figure

__all__ = ["plot_log_px_histograms"]


def _finite_groups(groups: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if not isinstance(groups, dict) or not groups:
        raise ValueError(f"groups must be a non-empty dict of name -> array, got {type(groups).__name__}")
    out = {}
    for name, values in groups.items():
        arr = np.asarray(values, dtype=np.float64).ravel()
        if arr.size == 0:
            raise ValueError(f"groups[{name!r}] is empty")
        finite = arr[np.isfinite(arr)]
        if finite.size == 0:
            raise ValueError(f"groups[{name!r}] has no finite log p(x) value")
        out[str(name)] = finite
    return out


def plot_log_px_histograms(
    groups: dict[str, np.ndarray],
    path: str | os.PathLike,
    title: str = "log p(x) under the flow",
    *,
    bins: int = 60,
    clip_quantiles: tuple[float, float] = (0.005, 1.0),
    xlabel: str = "log p(x) (nats)",
) -> Path:
    """Overlay normalised histograms of ``log p(x)`` for named groups of inputs and save a PNG.

    Every group is drawn as a density (area 1 less the share outside the view), so groups of different
    sizes compare directly; the legend gives each group's size and mean (dashed line). Values outside the
    pooled ``clip_quantiles`` are left out of the view (flows put a long tail of very low ``log p(x)`` on
    odd inputs, which would squash the bulk); the legend counts how many fell below the view. Non-finite
    values are dropped.

    Parameters
    ----------
    groups : dict of str -> array
        Group name (e.g. ``"train"``, ``"test"``, ``"OOD: notMNIST"``) to its ``log p(x)`` values.
    path : path-like
        Where to write the PNG (folders are created).
    title : str
        Figure title.
    bins : int
        Number of shared bins.
    clip_quantiles : (float, float)
        Pooled quantiles that bound the x axis.
    xlabel : str
        Label of the x axis (e.g. bits/dim instead of nats).

    Returns
    -------
    pathlib.Path
        The written file.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = plot_log_px_histograms({"train": rng.normal(0, 1, 500), "test": rng.normal(-2, 1, 300)},
    ...                                f"{d}/h.png")
    ...     p.is_file()
    True
    """
    data = _finite_groups(groups)
    if not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    lo_q, hi_q = clip_quantiles
    if not 0.0 <= lo_q < hi_q <= 1.0:
        raise ValueError(f"clip_quantiles must satisfy 0 <= low < high <= 1, got {clip_quantiles!r}")
    pooled = np.concatenate(list(data.values()))
    lo, hi = np.quantile(pooled, [lo_q, hi_q])
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, values) in enumerate(data.items()):
        below = int(np.sum(values < lo))
        label = f"{name} (n={values.size:,}, mean {values.mean():.2f}"
        label += f", {below:,} below view)" if below else ")"
        color = colors[i % len(colors)]
        shown = values[(values >= lo) & (values <= hi)]
        # Normalise by the whole group, so a group with many points below the view shows less area.
        weights = np.full(shown.size, 1.0 / (values.size * (edges[1] - edges[0])))
        ax.hist(shown, bins=edges, weights=weights, histtype="stepfilled", alpha=0.35, color=color,
                label=label)
        ax.axvline(values.mean(), color=color, linestyle="--", linewidth=1)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6))  # wide ranges (tens of thousands of nats) stay legible
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)
