"""Export of any Bayesian head's posterior and predictive draws to ArviZ ``InferenceData``."""

from __future__ import annotations

import inspect
import os
import warnings

import numpy as np
import torch

from bayes_diglm.inference.base import PosteriorHead

__all__ = ["plot_forest_png", "to_inference_data"]


def _import_arviz():
    with warnings.catch_warnings():
        # ArviZ 0.2x announces its 1.x refactor on import; the message is not about our use.
        warnings.simplefilter("ignore", FutureWarning)
        import arviz

    return arviz


def _as_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _from_dict(az, groups: dict, **kwargs):
    """``az.from_dict`` with the nested ``{group: {var: array}}`` layout of ArviZ 1.x, also on 0.2x."""
    first = next(iter(inspect.signature(az.from_dict).parameters))
    if first == "posterior":  # ArviZ 0.2x: one keyword argument per group
        return az.from_dict(**groups, **kwargs)
    return az.from_dict(groups, **kwargs)


def to_inference_data(
    head,
    *,
    X=None,
    y=None,
    groups=None,
    sample_weight=None,
    draws: int = 1000,
    chains: int = 4,
    feature_names: list[str] | None = None,
    seed: int = 0,
    **context,
):
    """Build ``arviz.InferenceData`` from a fitted head (or DIGLM estimator) through its public contract.

    Draws ``chains * draws`` samples with ``head.sample(n, generator=)`` (for an estimator, with its fitted head's,
    ``estimator.posterior_.sample``) and reshapes them to
    ``(chain, draw, ...)``, with the dims and coords of ``head.posterior_dims(feature_names)``. When ``X`` (the
    head's inputs: features for a head, raw data for an estimator) and ``y`` are given, adds ``log_likelihood``
    (variable ``"y"``, from ``head.pointwise_log_likelihood``), ``posterior_predictive`` (``"y"``, from
    ``head.sample_predictive``) and ``observed_data`` (``"y"``) over the dimension ``"obs"``, so ``az.loo`` and
    ``az.plot_ppc`` work. ``groups`` (mixed-effects heads) and ``sample_weight`` (known relative noise precisions,
    for the conjugate head) are passed on to those two methods when given, and so are ``context``, the family's
    per-row keywords (``trials=`` ...); a head that takes none of them refuses them with its own error.
    ``head._arviz_attrs`` (when present) are stored as attributes, e.g. that the draws
    are i.i.d. from the exact posterior (for an estimator, its head's attributes). For i.i.d. draws the chains are
    just a split of one sample, so ``r_hat`` is about 1 and ``ess`` about the number of draws. A head with Markov
    chains (``posterior_chains()``, the NUTS heads) exports its own chains and their ``sample_stats``
    (``diverging``, ``energy``, ``tree_depth``, ``step_size``); ``draws`` and ``chains`` are then ignored.

    Examples
    --------
    >>> import numpy as np
    >>> from bayes_diglm.inference.conjugate import ConjugateLinearRegression
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(50, 2)); y = Z @ np.array([1.0, -1.0]) + rng.normal(size=50)
    >>> idata = to_inference_data(ConjugateLinearRegression().fit(Z, y), X=Z, y=y, draws=100, chains=2)
    >>> idata.posterior["beta"].shape
    (2, 100, 2)
    """
    az = _import_arviz()
    for name, value in (("draws", draws), ("chains", chains)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if (X is None) != (y is None):
        raise ValueError("pass both X and y (for log_likelihood and posterior_predictive) or neither")
    rng = np.random.default_rng(seed)
    total = chains * draws
    # a DIGLM estimator holds its fitted head as posterior_ (its own sample() draws (X, y) from p(x, y))
    fitted_head = getattr(head, "posterior_", None)
    source = fitted_head if isinstance(fitted_head, PosteriorHead) else head
    sample_stats = None
    if hasattr(source, "posterior_chains"):  # a Markov chain head: its own chains, not a split of one sample
        by_chain, sample_stats = source.posterior_chains()
        chains, draws = next(iter(by_chain.values())).shape[:2]
        flat = {name: v.reshape((chains * draws,) + v.shape[2:]) for name, v in by_chain.items()}
    else:
        flat = source.sample(total, generator=rng)
    dims, coords = head.posterior_dims(feature_names)
    dims = {name: dim for name, dim in dims.items() if name in flat}
    coords = dict(coords)

    def per_chain(a: np.ndarray) -> np.ndarray:
        return np.asarray(a).reshape(chains, draws, *np.shape(a)[1:])

    data = {"posterior": {name: per_chain(value) for name, value in flat.items()}}
    if sample_stats is not None:
        data["sample_stats"] = dict(sample_stats)
    if X is not None:
        y_obs = _as_numpy(y)
        fit_kwargs = {k: v for k, v in (("groups", groups), ("sample_weight", sample_weight), *context.items())
                      if v is not None}
        log_lik = head.pointwise_log_likelihood(flat, X, y, **fit_kwargs)
        replicated = head.sample_predictive(flat, X, generator=rng, **fit_kwargs)
        data["log_likelihood"] = {"y": per_chain(log_lik)}
        data["posterior_predictive"] = {"y": per_chain(replicated)}
        data["observed_data"] = {"y": y_obs}
        dims["y"] = ["obs"]
        coords["obs"] = np.arange(y_obs.shape[0])
    attrs = {"head": type(head).__name__, "seed": int(seed), **getattr(source, "_arviz_attrs", {})}
    idata = _from_dict(az, data, dims=dims, coords=coords)
    for group in data:  # on every group, so they survive extracting one group or a netCDF round trip
        idata[group].attrs.update(attrs)
    return idata


def plot_forest_png(idata, path: str | os.PathLike, var_names=("beta",), *, hdi_prob: float = 0.9,
                    title: str | None = None, xlabel: str | None = None) -> str:
    """Write ``az.plot_forest`` of ``var_names`` as a PNG at ``path`` (Agg canvas; backend left alone).

    Each variable gets its own axis, stacked top to bottom with heights by its number of rows, so the
    intervals of the coefficients stay visible beside a noise scale (sigma) of another size. ``title``
    replaces ArviZ's default ("90.0% HDI") above the first axis; ``xlabel`` names the units of the
    coefficients, under the first axis. A dotted line marks zero where an axis already spans it.
    """
    fig = _forest_figure(idata, var_names, hdi_prob=hdi_prob, title=title, xlabel=xlabel)
    fig.savefig(os.fspath(path), dpi=100)
    return os.fspath(path)


def _forest_figure(idata, var_names, *, hdi_prob: float, title: str | None, xlabel: str | None):
    """The figure of :func:`plot_forest_png`: one axis per variable, on an Agg canvas."""
    var_names = [var_names] if isinstance(var_names, str) else list(var_names)
    if not var_names:
        raise ValueError("var_names must name at least one variable of idata.posterior")
    missing = [v for v in var_names if v not in idata.posterior]
    if missing:
        raise ValueError(f"var_names {missing} are not in idata.posterior (it has {list(idata.posterior.data_vars)})")
    az = _import_arviz()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    rows = [max(int(np.prod(idata.posterior[v].shape[2:])), 1) for v in var_names]
    fig = Figure(figsize=(6, 0.6 + sum(0.35 * r + 0.75 for r in rows)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(var_names), 1, squeeze=False, gridspec_kw={"height_ratios": [r + 1.5 for r in rows]})
    for i, (name, ax) in enumerate(zip(var_names, axes[:, 0], strict=True)):
        az.plot_forest(idata, var_names=[name], combined=True, hdi_prob=hdi_prob, ax=ax)
        if i > 0 or title is not None:
            ax.set_title(name if i > 0 else title, fontsize=11)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6))  # ArviZ's large tick labels overlap beyond that
        low, high = ax.get_xlim()
        if low < 0.0 < high:
            ax.axvline(0.0, color="grey", linewidth=0.8, linestyle=":")
    if xlabel is not None:
        axes[0, 0].set_xlabel(xlabel)
    fig.tight_layout()
    return fig
