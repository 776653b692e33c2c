"""Tests of the ArviZ export (through the public head contract only) on the conjugate regression head."""

from __future__ import annotations

import warnings

import matplotlib
import numpy as np
import pytest
import scipy.stats
from sklearn.exceptions import NotFittedError

from bayes_diglm.arviz import plot_forest_png, to_inference_data
from bayes_diglm.inference.conjugate import ConjugateLinearRegression

matplotlib.use("Agg")
with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

import matplotlib.pyplot as plt  # noqa: E402  (after choosing the Agg backend)

NAMES = ["age", "dose", "weight"]


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(60, 3))
    y = Z @ np.array([1.0, -0.5, 0.25]) + 2.0 + 0.3 * rng.normal(size=60)
    return ConjugateLinearRegression(prior_precision=0.1).fit(Z, y), Z, y


@pytest.fixture(scope="module")
def idata(fitted):
    head, Z, y = fitted
    return to_inference_data(head, X=Z, y=y, draws=250, chains=4, feature_names=NAMES, seed=1)


def test_groups_dims_coords_and_attrs(idata, fitted):
    head, Z, y = fitted
    for group in ("posterior", "log_likelihood", "posterior_predictive", "observed_data"):
        assert group in idata.groups()
    post = idata.posterior
    assert post["beta"].dims == ("chain", "draw", "feature")
    assert list(post["feature"].values) == NAMES
    assert post["sigma"].shape == (4, 250) and post["intercept"].shape == (4, 250)
    assert idata.log_likelihood["y"].shape == (4, 250, 60)
    assert idata.posterior_predictive["y"].dims == ("chain", "draw", "obs")
    np.testing.assert_array_equal(idata.observed_data["y"].values, y)
    assert "i.i.d." in post.attrs["draws"] and "exact" in post.attrs["inference"]
    assert post.attrs["head"] == "ConjugateLinearRegression"


def test_draws_match_the_exact_posterior(idata, fitted):
    head, Z, y = fitted
    beta = idata.posterior["beta"].values.reshape(-1, 3)
    sd = np.sqrt(np.diag(np.linalg.inv(head.posterior_.precision_cholesky @ head.posterior_.precision_cholesky.T)))
    sd *= np.sqrt(head.posterior_.b / (head.posterior_.a - 1))
    # 1000 i.i.d. draws: mean within 4 standard errors
    assert np.all(np.abs(beta.mean(0) - head.coef_) < 4 * sd[:3] / np.sqrt(1000))
    # the log likelihood is the Gaussian density at each draw
    s = 17
    loc = Z @ beta[s] + idata.posterior["intercept"].values.reshape(-1)[s]
    sigma = idata.posterior["sigma"].values.reshape(-1)[s]
    expected = scipy.stats.norm.logpdf(y, loc, sigma)
    np.testing.assert_allclose(idata.log_likelihood["y"].values.reshape(-1, 60)[s], expected, rtol=1e-12)


def test_arviz_functions_run(idata, tmp_path):
    summary = az.summary(idata, var_names=["beta", "sigma"])
    assert list(summary.index[:3]) == [f"beta[{n}]" for n in NAMES]
    assert np.all(summary["r_hat"] < 1.02)  # i.i.d. draws split into chains
    loo = az.loo(idata)
    assert np.isfinite(loo.elpd_loo)
    az.plot_forest(idata, var_names=["beta"])
    az.plot_posterior(idata, var_names=["sigma"])
    az.plot_ppc(idata, num_pp_samples=50)
    plt.close("all")
    path = plot_forest_png(idata, tmp_path / "forest.png")
    with open(path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_loo_matches_exact_leave_one_out(fitted):
    # exact LOO for the conjugate model: refit without each point and take its predictive density
    head, Z, y = fitted
    idata = to_inference_data(head, X=Z, y=y, draws=2000, chains=2, seed=3)
    exact = 0.0
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        refit = ConjugateLinearRegression(prior_precision=0.1).fit(Z[keep], y[keep])
        exact += float(refit.log_predictive(Z[i : i + 1], y[i : i + 1])[0])
    loo = az.loo(idata)
    print(f"PSIS-LOO elpd {loo.elpd_loo:.3f} vs exact leave-one-out {exact:.3f}")
    assert loo.elpd_loo == pytest.approx(exact, abs=0.5)


def test_netcdf_round_trip(idata, tmp_path):
    path = tmp_path / "posterior.nc"
    idata.to_netcdf(str(path), engine="h5netcdf")
    back = az.from_netcdf(str(path), engine="h5netcdf")
    for group in ("posterior", "log_likelihood", "posterior_predictive", "observed_data"):
        for name, var in idata[group].data_vars.items():
            np.testing.assert_array_equal(back[group][name].values, var.values)
    assert list(back.posterior["feature"].values) == NAMES
    assert back.posterior.attrs["inference"] == idata.posterior.attrs["inference"]


def test_bad_arguments(fitted):
    head, Z, y = fitted
    with pytest.raises(ValueError, match="pass both X and y"):
        to_inference_data(head, X=Z)
    with pytest.raises(ValueError, match="feature_names has 2 names"):
        to_inference_data(head, feature_names=["a", "b"])
    with pytest.raises(ValueError, match="draws must be a positive integer"):
        to_inference_data(head, draws=0)
    with pytest.raises(NotFittedError, match="not fitted"):
        to_inference_data(ConjugateLinearRegression())
    without_data = to_inference_data(head, draws=10, chains=2)
    assert without_data.groups() == ["posterior"]


def test_weighted_log_likelihood_matches_the_weighted_model():
    rng = np.random.default_rng(5)
    Z = rng.normal(size=(60, 2))
    w = rng.uniform(0.2, 5.0, size=60)
    y = Z @ np.array([1.0, -1.0]) + rng.normal(size=60) / np.sqrt(w)
    head = ConjugateLinearRegression().fit(Z, y, sample_weight=w)
    idata = to_inference_data(head, X=Z, y=y, sample_weight=w, draws=50, chains=2, seed=1)
    post = idata.posterior
    loc = (post["beta"].values @ Z.T) + post["intercept"].values[..., None]
    sd = post["sigma"].values[..., None] / np.sqrt(w)
    expected = -0.5 * ((y - loc) / sd) ** 2 - np.log(sd) - 0.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(idata.log_likelihood["y"].values, expected, rtol=1e-10)
    with pytest.raises(ValueError, match="positive"):
        to_inference_data(head, X=Z, y=y, sample_weight=-w, draws=5, chains=1)


def test_sample_weight_is_refused_by_heads_without_noise_weights():
    from bayes_diglm.inference import LaplaceClassifier

    rng = np.random.default_rng(0)
    Z = rng.normal(size=(40, 2))
    y = (Z[:, 0] > 0).astype(int)
    head = LaplaceClassifier().fit(Z, y)
    with pytest.raises(ValueError, match="no per-observation noise precisions"):
        to_inference_data(head, X=Z, y=y, sample_weight=np.ones(40), draws=5, chains=1)


def test_forest_draws_each_variable_on_its_own_axis(tmp_path, monkeypatch):
    # Flight-delay-like posterior: betas with tight intervals near zero and a noise scale near 0.9. On one
    # shared axis sigma stretched it until the betas' intervals were dots; each axis must span only its own.
    from matplotlib.figure import Figure

    saved, savefig = [], Figure.savefig

    def keep(fig, *args, **kwargs):  # the figure that plot_forest_png writes, kept to read its axes
        saved.append(fig)
        return savefig(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    rng = np.random.default_rng(2)
    Z = rng.normal(size=(5000, 4))
    y = Z @ np.array([0.02, -0.01, 0.03, 0.0]) + 0.05 + 0.87 * rng.normal(size=5000)
    idata = to_inference_data(ConjugateLinearRegression().fit(Z, y), draws=500, chains=2, seed=0)
    names = ("beta", "intercept", "sigma")
    path = plot_forest_png(idata, tmp_path / "forest.png", var_names=names, hdi_prob=0.9, title="90% HDI",
                           xlabel="units")
    with open(path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    (fig,) = saved
    hdi = az.hdi(idata, hdi_prob=0.9)
    assert len(fig.axes) == len(names)
    for ax, name in zip(fig.axes, names, strict=True):
        low, high = ax.get_xlim()
        ends = np.asarray(hdi[name].values, dtype=float).ravel()
        assert low <= ends.min() and ends.max() <= high, name
        # the axis spans this variable's intervals (and zero, where it is among them), not the others'
        span = max(ends.max(), 0.0) - min(ends.min(), 0.0) if name != "sigma" else np.ptp(ends)
        assert high - low < 2.0 * span, (name, low, high, ends)
    with pytest.raises(ValueError, match="tau"):
        plot_forest_png(idata, tmp_path / "x.png", var_names=("beta", "tau"))
