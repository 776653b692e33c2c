"""A fitted head's posterior over beta written out: ArviZ netCDF (with observation groups) and a forest plot."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..arviz import plot_forest_png, to_inference_data

__all__ = ["write_beta_posterior"]


def write_beta_posterior(model, out: str | os.PathLike, tag: str, *, X, y, feature_names=None, max_rows: int = 500,
                         draws: int = 250, chains: int = 4, seed: int = 0,
                         var_names=("beta", "intercept", "sigma"), title: str | None = None,
                         xlabel: str | None = None) -> tuple[Path, Path]:
    """Write ``beta_posterior_<tag>.nc`` (:func:`~bayes_diglm.arviz.to_inference_data`) and
    ``forest_beta_<tag>.png`` (its 90% HDI of ``var_names``) into the folder ``out``.

    ``model`` is a fitted head or DIGLM estimator, ``X`` its inputs (features for a head, data for an
    estimator) and ``y`` the targets of the observation groups (``log_likelihood``, ``posterior_predictive``,
    ``observed_data``, for ``az.loo`` / ``az.plot_ppc``); they cover a seeded subsample of at most ``max_rows``
    rows (every row times the draws would be gigabytes for a large test set; the same ``seed`` picks the same
    rows for every model). Returns the two paths.

    Example:
        >>> import tempfile
        >>> from bayes_diglm.inference.conjugate import ConjugateLinearRegression
        >>> rng = np.random.default_rng(0)
        >>> Z = rng.normal(size=(50, 2)); y = Z[:, 0] + 0.1 * rng.normal(size=50)
        >>> head = ConjugateLinearRegression().fit(Z, y)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     nc, png = write_beta_posterior(head, d, "blr", X=Z, y=y, max_rows=20, draws=20, chains=2)
        ...     nc.is_file() and png.is_file()
        True
    """
    if not isinstance(tag, str) or not tag:
        raise ValueError(f"tag must be a non-empty string, got {tag!r}")
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise ValueError(f"max_rows must be a positive integer, got {max_rows!r}")
    y = np.asarray(y, dtype=np.float64)
    if len(X) != len(y) or len(y) == 0:
        raise ValueError(f"X and y must be non-empty and of one length, got {len(X)} and {len(y)}")
    out = Path(out)
    rows = np.random.default_rng(seed).choice(len(y), min(max_rows, len(y)), replace=False)
    idata = to_inference_data(model, X=X[rows], y=y[rows], draws=draws, chains=chains, feature_names=feature_names,
                              seed=seed)
    nc, png = out / f"beta_posterior_{tag}.nc", out / f"forest_beta_{tag}.png"
    idata.to_netcdf(str(nc))
    plot_forest_png(idata, png, var_names=var_names, title=title, xlabel=xlabel)
    return nc, png
