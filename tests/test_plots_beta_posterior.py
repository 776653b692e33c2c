"""Plots contract: a head's posterior over beta written as ArviZ netCDF and a forest plot."""

import numpy as np
import pytest

from bayes_diglm.inference.conjugate import ConjugateLinearRegression
from bayes_diglm.plots.posterior import write_beta_posterior

az = pytest.importorskip("arviz")


def test_write_beta_posterior_writes_the_seeded_rows_and_the_forest(tmp_path):
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(80, 2))
    y = Z @ np.array([1.0, -2.0]) + 0.1 * rng.normal(size=80)
    head = ConjugateLinearRegression().fit(Z, y)
    nc, png = write_beta_posterior(head, tmp_path, "blr", X=Z, y=y, max_rows=25, draws=30, chains=2, seed=4,
                                   feature_names=["a", "b"])
    assert png.is_file() and png.stat().st_size > 0
    idata = az.from_netcdf(str(nc))
    rows = np.random.default_rng(4).choice(80, 25, replace=False)
    np.testing.assert_allclose(idata.observed_data["y"].values, y[rows])
    assert idata.posterior["beta"].shape == (2, 30, 2)
    # the posterior draws agree with the closed-form posterior mean (within Monte Carlo error)
    draws = idata.posterior["beta"].values.reshape(-1, 2)
    sd = draws.std(axis=0)
    assert np.all(np.abs(draws.mean(axis=0) - head.coef_) < 5 * sd / np.sqrt(len(draws)))


@pytest.mark.parametrize("kwargs", [{"tag": ""}, {"max_rows": 0}, {"y": np.zeros(3)}])
def test_write_beta_posterior_refuses_bad_arguments(tmp_path, kwargs):
    Z = np.random.default_rng(0).normal(size=(10, 2))
    head = ConjugateLinearRegression().fit(Z, Z[:, 0])
    args = {"tag": "t", "X": Z, "y": Z[:, 0], **kwargs}
    with pytest.raises(ValueError):
        write_beta_posterior(head, tmp_path, args.pop("tag"), **args)
