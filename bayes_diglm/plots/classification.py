"""Figures of the classification experiment: log p(x) histograms, reliability diagrams, abstention curves."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ._figure import save_figure
from .density import plot_log_px_histograms  # noqa: E402

__all__ = ["plot_abstention", "plot_log_px_comparison", "plot_reliability", "view_quantiles"]

# Left to right: the discriminative model beside the hybrid, as in the paper's Figure 2a.
_MODEL_ORDER = ("discriminative", "hybrid")


def _ordered(per_model: dict) -> list[str]:
    if not isinstance(per_model, dict) or not per_model:
        raise ValueError("per_model must be a non-empty dict keyed by model name")
    return [m for m in _MODEL_ORDER if m in per_model] + [m for m in per_model if m not in _MODEL_ORDER]


def view_quantiles(groups: dict[str, np.ndarray], reference: str = "test", width: float = 4.0) -> tuple[float, float]:
    """Pooled quantiles that frame the groups near ``reference`` and leave far-off groups below the view.

    The lower edge is the lowest 1% quantile among groups whose 1% quantile lies within ``width`` times the
    reference's 1-99% range below the reference's own 1% quantile; a group far below (uniform noise under a
    density model, often thousands of nats lower) is then counted as "below view" instead of squashing the
    rest of the histogram into one bin.
    """
    ref = np.asarray(groups[reference], dtype=float)
    q01, q99 = np.quantile(ref, [0.01, 0.99])
    floor = q01 - width * max(q99 - q01, 1e-12)
    lows = [np.quantile(np.asarray(v, dtype=float), 0.01) for v in groups.values()]
    lo = min(low for low in lows if low >= floor)
    pooled = np.concatenate([np.asarray(v, dtype=float).ravel() for v in groups.values()])
    return float(np.mean(pooled < lo)), 1.0


def plot_log_px_comparison(per_model: dict[str, dict[str, np.ndarray]], path: str | os.PathLike) -> Path:
    """Figure 2a: histograms of ``log p(x)`` for test vs each OOD set, one panel per model, side by side.

    Each panel is drawn by :func:`bayes_diglm.plots.density.plot_log_px_histograms` (the shared histogram)
    with a view framed by :func:`view_quantiles`; the panels are then placed discriminative | hybrid.

    Example:
        >>> import tempfile, numpy as np
        >>> rng = np.random.default_rng(0)
        >>> groups = {"test": rng.normal(-800, 30, 200), "letters": rng.normal(-900, 40, 100)}
        >>> with tempfile.TemporaryDirectory() as d:
        ...     plot_log_px_comparison({"hybrid": groups, "discriminative": groups}, f"{d}/f.png").is_file()
        True
    """
    models = _ordered(per_model)
    with tempfile.TemporaryDirectory() as tmp:
        panels = []
        for model in models:
            groups = per_model[model]
            panels.append(plot_log_px_histograms(
                groups, Path(tmp) / f"{model}.png", title=f"{model}: log p(x) under the flow",
                clip_quantiles=view_quantiles(groups) if "test" in groups else (0.005, 1.0)))
        images = [mpimg.imread(p) for p in panels]
    fig, axes = plt.subplots(1, len(images), figsize=(6.4 * len(images), 4.0))
    for ax, image in zip(np.atleast_1d(axes), images, strict=True):
        ax.imshow(image)
        ax.axis("off")
    fig.subplots_adjust(left=0, right=1, bottom=0, top=1, wspace=0.02)
    return _save(fig, path, dpi=120)


def plot_reliability(per_model: dict[str, dict[str, dict]], path: str | os.PathLike) -> Path:
    """Reliability diagrams: accuracy against confidence per bin, one panel per model, one line per head.

    ``per_model[model][head]`` is a :func:`bayes_diglm.evaluation.reliability_curve` dict; bins without
    inputs are left out, and the marker area grows with the bin's count.
    """
    models = _ordered(per_model)
    fig, axes = plt.subplots(1, len(models), figsize=(4.6 * len(models), 4.2), sharey=True)
    for ax, model in zip(np.atleast_1d(axes), models, strict=True):
        ax.plot([0, 1], [0, 1], color="0.6", linestyle=":", label="perfect calibration")
        for head, curve in per_model[model].items():
            count = np.asarray(curve["count"], dtype=float)
            seen = count > 0
            size = 8 + 120 * count[seen] / count.sum()
            line, = ax.plot(np.asarray(curve["confidence"])[seen], np.asarray(curve["accuracy"])[seen],
                            label=f"{head} head")
            ax.scatter(np.asarray(curve["confidence"])[seen], np.asarray(curve["accuracy"])[seen], s=size,
                       color=line.get_color(), alpha=0.6)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("confidence (max predicted probability)")
        ax.set_title(f"{model}: reliability on test")
        ax.legend(fontsize=8, loc="upper left")
    np.atleast_1d(axes)[0].set_ylabel("accuracy in bin")
    fig.tight_layout()
    return _save(fig, path)


def plot_abstention(per_model: dict[str, dict[str, dict]], path: str | os.PathLike, head: str = "point") -> Path:
    """Accuracy on the test inputs kept after rejecting the lowest-``p(x)`` ones (solid), per model.

    ``per_model[model][head]`` maps ``"log p(x)"`` (and optionally ``"entropy"``, drawn dashed as the usual
    uncertainty-based reference) to :func:`bayes_diglm.evaluation.abstention_curve` dicts.
    """
    models = _ordered(per_model)
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    for i, model in enumerate(models):
        color = f"C{i}"
        curves = per_model[model][head]
        for by, style in (("log p(x)", "-"), ("entropy", "--")):
            if by not in curves:
                continue
            c = curves[by]
            label = f"{model}: reject lowest p(x)" if by == "log p(x)" else f"{model}: reject highest entropy"
            ax.plot(100 * np.asarray(c["rejected_fraction"]), 100 * np.asarray(c["accuracy"]), style,
                    color=color, marker="o", markersize=3, label=label)
    ax.set_xlabel("test inputs rejected (%)")
    ax.set_ylabel(f"accuracy on the rest (%), {head} head")
    ax.set_title("Accuracy versus abstention")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path, dpi: int = 110) -> Path:
    return save_figure(fig, path, dpi=dpi)
