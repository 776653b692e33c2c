"""Flight-delay pipeline: predictive math against independent computations, and an end-to-end smoke run."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.integrate
import scipy.optimize
import scipy.stats
import torch

from bayes_diglm.baselines import GaussianMixturePredictive, train_mlp
from bayes_diglm.cli import build_parser
from bayes_diglm.data.flights import load_flights, split_flights
from bayes_diglm.data.flights_us import split_flights_us
from bayes_diglm.experiments import flights as flights_module
from bayes_diglm.experiments.flights import FlightsConfig, conjugate_head, run_flights
from bayes_diglm.flows import TabularDequantizer
from bayes_diglm.inference.base import Predictive
from bayes_diglm.models import DIGLMRegressor


def _quadrature_moments_and_quantile(pdf, q: float) -> tuple[float, float, float]:
    mean = scipy.integrate.quad(lambda y: y * pdf(y), -60, 60, limit=200)[0]
    var = scipy.integrate.quad(lambda y: (y - mean) ** 2 * pdf(y), -60, 60, limit=200)[0]
    quantile = scipy.optimize.brentq(lambda y: scipy.integrate.quad(pdf, -60, y)[0] - q, -50, 50, xtol=1e-10)
    return mean, var, quantile


def test_mixture_moments_density_and_quantiles_by_quadrature():
    rng = np.random.default_rng(3)
    locs, scales = rng.normal(size=(5, 4)) * 3, rng.uniform(0.5, 2.0, size=(5, 4))
    mix = GaussianMixturePredictive(locs, scales)
    for i in range(4):
        def pdf(y, i=i):
            return scipy.stats.norm.pdf(y, locs[:, i], scales[:, i]).mean()

        mean, var, q95 = _quadrature_moments_and_quantile(pdf, 0.95)
        assert math.isclose(mix.mean[i], mean, rel_tol=1e-6, abs_tol=1e-8)
        assert math.isclose(mix.variance[i], var, rel_tol=1e-6)
        assert math.isclose(math.exp(mix.log_prob(np.full(4, 0.7))[i]), pdf(0.7), rel_tol=1e-10)
        assert math.isclose(mix.quantile(0.95)[i], q95, rel_tol=1e-7, abs_tol=1e-7)


def test_mixture_is_a_predictive_with_exact_intervals():
    """The ensemble's mixture answers as every other row (Predictive): torch moments, density, sampling; its
    interval's tails each hold (1 - prob) / 2 of the mixture's mass."""
    rng = np.random.default_rng(4)
    locs, scales = rng.normal(size=(3, 6)), rng.uniform(0.5, 2, (3, 6))
    mix = GaussianMixturePredictive(locs, scales)
    assert isinstance(mix, Predictive) and len(mix) == 6
    lo, hi = mix.interval(0.9)
    np.testing.assert_allclose(mix.cdf(lo), 0.05, atol=1e-10)
    np.testing.assert_allclose(mix.cdf(hi), 0.95, atol=1e-10)
    draws = mix.sample(40_000, generator=0)
    np.testing.assert_allclose(draws.mean(axis=0), mix.mean, atol=5 * np.sqrt(mix.variance / 40_000).max())
    with pytest.raises(ValueError, match="same shape"):
        GaussianMixturePredictive(locs, scales[:, :3])
    with pytest.raises(ValueError, match="positive"):
        GaussianMixturePredictive(locs, -scales)


@pytest.mark.parametrize("q", [0.0, 1.0, 1.5, -0.1, float("nan"), "0.5", True])
def test_mixture_quantile_refuses_a_level_outside_the_unit_interval(q):
    """Outside (0, 1) the bisection started from +-inf or NaN member quantiles and returned NaN / -inf silently."""
    mix = GaussianMixturePredictive(np.zeros((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="q must be a probability"):
        mix.quantile(q)
    with pytest.raises(ValueError, match="iterations"):
        mix.quantile(0.5, iterations=0)


def test_mlp_learns_heteroscedastic_noise():
    torch.manual_seed(0)
    rng = np.random.default_rng(5)
    X = rng.uniform(-1, 1, size=(3000, 1)).astype("float32")
    sd = 0.1 + 0.5 * (X[:, 0] > 0)
    y = (2 * X[:, 0] + sd * rng.normal(size=3000)).astype("float32")
    mlp = train_mlp(X[:2500], y[:2500], X[2500:], y[2500:], hidden=(32,), epochs=30, batch_size=128, lr=3e-3)
    pred = mlp.predictive(np.array([[-0.5], [0.5]], dtype="float32"))
    np.testing.assert_allclose(pred.stddev, [0.1, 0.6], atol=0.06)  # a homoscedastic fit gives ~0.43 twice
    assert pred.stddev[1] / pred.stddev[0] > 3
    np.testing.assert_allclose(pred.mean, [-1.0, 1.0], atol=0.1)


def test_config_validation():
    with pytest.raises(ValueError, match="epochs"):
        run_flights("unused", FlightsConfig(epochs=0))
    with pytest.raises(ValueError, match="px_weight"):
        run_flights("unused", FlightsConfig(px_weight=-1.0))
    with pytest.raises(TypeError, match="FlightsConfig"):
        run_flights("unused", {"epochs": 1})
    assert FlightsConfig(px_weight=0.5).candidate_px_weights(8) == (0.5,)
    assert FlightsConfig(px_grid=(0.08, 0.8)).candidate_px_weights(8) == pytest.approx((0.01, 0.1))


def test_cli_registers_flights_and_demo():
    parser = build_parser()
    args = parser.parse_args(["flights", "--quick", "--epochs", "3", "--px-weight", "0.01", "--seed", "2"])
    assert (args.quick, args.epochs, args.px_weight, args.seed, args.dataset) == (True, 3, 0.01, 2, "us2001")
    assert parser.parse_args(["demo"]).main_job == "flights"
    args = parser.parse_args(["flights", "--dataset", "nyc2013", "--max-train", "5000"])
    config = FlightsConfig.from_args(args)
    assert (config.dataset, config.max_train, config.max_val) == ("nyc2013", 5000, 20_000)
    assert config.dequantize
    assert not FlightsConfig.from_args(parser.parse_args(["flights", "--no-dequantize"])).dequantize
    assert FlightsConfig.from_args(parser.parse_args(["flights", "--epochs", "3"])).mlp_epochs == 3
    config = FlightsConfig.from_args(parser.parse_args(["flights", "--quick"]))
    assert (config.dataset, config.train_rows, config.test_rows, config.max_train) == ("us2001", 200_000, 20_000,
                                                                                       20_000)
    with pytest.raises(SystemExit):
        parser.parse_args(["flights", "--dataset", "uk1999"])
    with pytest.raises(ValueError, match="dataset must be one of"):
        FlightsConfig.quick("uk1999")


def test_demo_falls_back_to_nyc2013_when_us_flights_are_absent(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BAYES_DIGLM_DATA", str(tmp_path / "empty-cache"))
    seen = {}
    def fake_run(out, config, quiet):
        seen["config"] = config
        return {"table": "", "seconds": 0.0, "out": str(out), "peak_rss_mb": 0.0}

    monkeypatch.setattr(flights_module, "run_flights", fake_run)
    args = build_parser().parse_args(["demo", "--out", str(tmp_path / "demo")])
    assert args.func(args) == 0
    assert seen["config"].dataset == "nyc2013"
    err = capsys.readouterr().err
    assert "US flights 2001 are not available" in err and "python -m bayes_diglm.data.fetch" in err


SMOKE = FlightsConfig.quick("nyc2013", max_train=3000, max_val=1000, max_test=2000, epochs=2, mlp_epochs=2,
                            ensemble_size=2, px_grid=(0.1, 1.0), logpx_rows=2000, num_layers=2,
                            hidden_dims=(16, 16), mlp_hidden=(32, 32))


def test_smoke_pipeline_writes_finite_results(tmp_path):
    result = run_flights(tmp_path, SMOKE, quiet=True)
    for name in ("metrics.json", "table.md", "log_px_hist.png", "predicted_vs_actual.png", "calibration.png",
                 "forest_beta_diglm.png", "forest_beta_blr.png", "beta_posterior_diglm.nc",
                 "beta_posterior_blr.nc"):
        assert (tmp_path / name).stat().st_size > 0, name
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["sizes"] == {"train": 3000, "val": 1000, "test": 2000}
    assert len(metrics["px_weight_tuning"]) == 2 and metrics["px_weight_chosen"] in (0.1 / 8, 1.0 / 8)
    assert len(result["rows"]) == 12 and result["rows"][-1]["model"] == flights_module.CONSTANT_ROW
    student = [row["model"] for row in result["rows"] if "Student-t head" in row["model"]]
    assert len(student) == 2 and set(metrics["student_t_df"]) == {str(metrics["px_weight_chosen"]), "0.0"}
    assert all(df > 0 for df in metrics["student_t_df"].values()) and "degrees of freedom" in result["table"]
    assert result["rows"][-3]["model"].endswith("Bayesian head, density-aware (p(x))")
    assert result["rows"][-2]["model"].endswith("same mixture with one weight (no p(x))")
    aware = metrics["density_aware"]
    assert aware["val_nll_density_aware"] <= aware["val_nll_plain"] + 1e-9  # power 0 (the plain head) is in the grid
    inflation = aware["variance_inflation"]  # measured against its controls; slope 0 / factor 1 are in the grids
    assert inflation["plain"]["val"] == pytest.approx(aware["val_nll_plain"])
    assert max(inflation["p(x)"]["val"], inflation["constant"]["val"]) <= inflation["plain"]["val"] + 1e-9
    assert metrics["dequantized_attributes"] == list(flights_module.FEATURE_NAMES)
    assert "dequantised" in result["table"] and "Density-aware row" in result["table"]
    assert (tmp_path / "selective_nll.png").stat().st_size > 0
    for row in result["rows"]:
        values = [v for k, v in row.items() if k != "model" and v != "-"]
        assert values and all(math.isfinite(v) for v in values), row
        assert 0.0 <= row["90% coverage"] <= 1.0
        if row["model"].startswith("DIGLM"):
            assert 0.0 <= row["AUROC train/test"] <= 1.0
    assert "| model |" in (tmp_path / "table.md").read_text()


def _us_flights_parquet(path, n=6000, seed=0):
    """A small file in the vega-datasets schema: delays depend on the hour, the distance and the airports."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rng = np.random.default_rng(seed)
    minutes = np.sort(rng.integers(0, 60 * 24 * 60, size=n))
    distance = rng.integers(100, 2500, size=n)
    hour = (minutes // 60) % 24
    airports = np.array(["ATL", "ORD", "DFW", "LAX", "SFO", "DEN"])
    origin, destination = rng.integers(0, 6, size=n), rng.integers(0, 6, size=n)
    effect = np.array([-15.0, 20.0, 0.0, 8.0, -10.0, 30.0])  # per airport, as origin and (halved) destination
    noise = rng.standard_t(4, size=n) * (5 + hour)
    delay = np.round(0.8 * hour + distance / 200 + effect[origin] + effect[destination] / 2 + noise).astype(np.int64)
    table = pa.table({
        "date": pa.array(np.datetime64("2001-01-01T00:01", "us") + minutes.astype("timedelta64[m]"),
                         pa.timestamp("us")),
        "delay": delay, "distance": distance.astype(np.int64),
        "origin": pa.array(airports[origin], pa.large_string()),
        "destination": pa.array(airports[destination], pa.large_string()),
    })
    pq.write_table(table, path, row_group_size=1000)
    return path


def test_us2001_smoke_pipeline_streams_the_heads(tmp_path):
    path = _us_flights_parquet(tmp_path / "flights.parquet")
    config = FlightsConfig.quick("us2001", data_path=str(path), train_rows=4000, test_rows=1000, max_train=1500,
                                 max_val=300, epochs=2, mlp_epochs=2, ensemble_size=2, px_grid=(0.1, 1.0),
                                 logpx_rows=1000, num_layers=2, hidden_dims=(16, 16), mlp_hidden=(32, 32))
    result = run_flights(tmp_path / "out", config, quiet=True)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["us2001_sizes"] == {"train": 3600, "val": 400, "test": 1000, "period": 4000}
    assert metrics["sizes"] == {"train": 1500, "val": 300, "test": 1000}
    assert metrics["streaming"]["rows"] == 3600 and metrics["streaming"]["peak_rss_mb_after"] > 0
    assert metrics["px_weight_chosen"] in (0.1 / 5, 1.0 / 5)
    assert "5 of the paper's 8 attributes" in result["table"] and "arr_time" in result["table"]
    mixed = metrics["mixed_effects_head"]
    assert mixed["rows"] == 3600 and mixed["levels"] == {"origin": 6, "destination": 6}
    assert set(mixed["random_effect_sd_minutes"]) == {"origin", "destination"}
    assert len(result["rows"]) == 13 and "mixed-effects head" in result["rows"][-4]["model"]
    assert "density-aware" in result["rows"][-3]["model"]
    assert metrics["dequantized_attributes"] == ["month", "day_of_month", "day_of_week", "dep_time", "distance"]
    assert result["rows"][-1]["model"] == flights_module.CONSTANT_ROW
    for row in result["rows"]:
        values = [v for k, v in row.items() if k != "model" and v != "-"]
        assert values and all(math.isfinite(v) for v in values), row
    # the per-stage profile: every stage in the order run, wall and CPU seconds, together within the run's time
    stages, cpu = metrics["stage_seconds"], metrics["stage_cpu_seconds"]
    assert list(stages) == list(cpu) and list(stages)[:2] == ["loading flights", "DIGLM px_weight=0.02"]
    assert {"mixed-effects head (origin x destination)", "test predictives", "metrics and figures"} <= set(stages)
    assert all(v >= 0 for v in [*stages.values(), *cpu.values()]) and sum(stages.values()) <= metrics["seconds"]


def test_streamed_head_equals_the_head_fit_in_memory(tmp_path):
    """fit_posterior over the pipeline's parquet chunks equals the conjugate head fit on all rows' features and
    noise weights at once."""
    path = _us_flights_parquet(tmp_path / "flights.parquet", n=3000)
    config = FlightsConfig.quick("us2001", data_path=str(path), train_rows=2500, test_rows=500, max_train=800,
                                 max_val=200, epochs=1, num_layers=2, hidden_dims=(8, 8))
    split, us = _split(config)
    reg = _diglm(split).fit_posterior(us.chunks("train", chunk_rows=333))
    data = us.arrays("train")
    Z, weight = reg.transform(data["X"]), reg.noise_weights(data["X"])
    direct = conjugate_head().fit(Z, data["y"].astype(np.float64), sample_weight=weight)
    assert reg.posterior_.stats_.n == len(data["y"]) == us.sizes["train"]
    np.testing.assert_allclose(reg.posterior_.coef_, direct.coef_, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(reg.posterior_.posterior_.b, direct.posterior_.b, rtol=1e-6)


def _split(config: FlightsConfig):
    """The pipeline's us2001 split: the on-disk rows the heads stream over and the networks' rows in memory."""
    us = split_flights_us(n_train=config.train_rows, n_test=config.test_rows, path=config.data_path)
    return us.in_memory(max_train=config.max_train, max_val=config.max_val, seed=config.seed), us


def _diglm(split, px_weight: float = 0.1) -> DIGLMRegressor:
    """The pipeline's hybrid (RealNVP, heteroscedastic head, the run's conjugate head), one epoch of a small flow."""
    return DIGLMRegressor(flow="realnvp", head="heteroscedastic", posterior=conjugate_head(), px_weight=px_weight,
                          epochs=1, batch_size=256, seed=0, quiet=True,
                          flow_kwargs={"num_layers": 2, "hidden_dims": (8, 8)}).fit(
        split.X_train, split.y_train, X_val=split.X_val, y_val=split.y_val)


def _dequantizer(split) -> TabularDequantizer:
    """The pipeline's dequantiser: a unit cell on every (integer-valued, standardised) attribute."""
    return TabularDequantizer.for_standardized([True] * len(split.feature_names), split.x_std, unit=1.0)


@pytest.mark.slow
def test_full_run(tmp_path):
    result = run_flights(tmp_path, FlightsConfig.default("nyc2013"), quiet=True)
    assert all(math.isfinite(r["NLL (nats)"]) for r in result["rows"])


def test_streamed_mixed_head_equals_one_fit_and_predicts_unseen_airports(tmp_path):
    """Summed chunk statistics give the same REML fit as all rows at once; unseen airports get the prior."""
    path = _us_flights_parquet(tmp_path / "flights.parquet", n=3000, seed=3)
    config = FlightsConfig.quick("us2001", data_path=str(path), train_rows=2500, test_rows=500, max_train=800,
                                 max_val=200, epochs=1, num_layers=2, hidden_dims=(8, 8))
    split, us = _split(config)
    reg = _diglm(split)
    levels = us.levels
    chunks = list(us.group_chunks("train", chunk_rows=300))
    one = [next(us.group_chunks("train", chunk_rows=10_000))]
    data = us.arrays("train")
    for key in ("origin", "destination"):
        np.testing.assert_array_equal(np.concatenate([c[2][key] for c in chunks]), data[key])
        assert set(data[key]) == set(levels[key])
    assert len(chunks) > 1 and sum(len(c[1]) for c in chunks) == len(one[0][1]) == us.sizes["train"]
    chunked = reg.fit_mixed_head(chunks, levels=levels)
    whole = reg.fit_mixed_head(one, levels=levels)
    np.testing.assert_allclose(chunked.coef_, whole.coef_, rtol=1e-6, atol=1e-9)
    for k in chunked.re_cov_:
        np.testing.assert_allclose(chunked.re_cov_[k], whole.re_cov_[k], rtol=1e-5, atol=1e-10)
    Z, noise = reg.head_inputs(split.X_test[:3])  # features and the hybrid's noise weights, one flow pass
    seen = whole.predict_dist(Z, groups={"origin": np.array(["ATL"] * 3, dtype=object),
                                         "destination": np.array(["ORD"] * 3, dtype=object)}, **noise)
    unseen = whole.predict_dist(Z, groups={"origin": np.array(["XXX"] * 3, dtype=object),
                                           "destination": np.array(["YYY"] * 3, dtype=object)},
                                allow_unseen=True, **noise)
    np.testing.assert_allclose(unseen.mean, whole.predict(Z), rtol=1e-10)
    assert np.all(unseen.stddev > seen.stddev)  # the prior variance of two random intercepts is added


@pytest.mark.slow
def test_mixed_head_matches_statsmodels_on_real_us_flights():
    """Crossed origin x destination random intercepts on 3,000 real training flights: REML fixed effects and
    variance components against statsmodels MixedLM (one all-covering group, variance components per factor)."""
    import warnings

    import pandas as pd
    import statsmodels.formula.api as smf

    from bayes_diglm.data import cache_dir, split_flights_us
    from bayes_diglm.inference.mixed import MixedEffectsRegression

    if not (cache_dir() / "vega-datasets-3.2.1" / "MANIFEST.json").is_file():
        pytest.skip("US flights 2001 not fetched: run `make data`")
    a = split_flights_us().arrays("train", max_rows=3000, seed=0)
    X, y = a["X"].astype(np.float64), a["y"].astype(np.float64)
    ours = MixedEffectsRegression().fit(X, y, groups={"origin": a["origin"], "destination": a["destination"]})
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(5)]).assign(y=y, origin=a["origin"],
                                                                      destination=a["destination"], one=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = smf.mixedlm("y ~ x0 + x1 + x2 + x3 + x4", df, groups="one", re_formula="0",
                          vc_formula={"origin": "0 + C(origin)", "destination": "0 + C(destination)"}).fit(reml=True)
    np.testing.assert_allclose(ours.coef_, ref.fe_params.values[1:], rtol=1e-4, atol=1e-6)
    assert ours.intercept_ == pytest.approx(ref.fe_params.values[0], abs=1e-5)
    vc = dict(zip(ref.model.exog_vc.names, ref.vcomp, strict=True))
    for name in ("origin", "destination"):
        assert float(ours.re_cov_[name].ravel()[0]) == pytest.approx(vc[name], rel=1e-3)
    assert ours.sigma2_ == pytest.approx(ref.scale, rel=1e-4)


def _cell_log_px(model, X, dq, *, draws: int = 4, seed: int = 0) -> np.ndarray:
    """What ``DIGLMRegressor.log_cell_probability`` computes, for a stand-in with ``score_samples`` (the
    dequantiser's estimate with the model's density; ``score_samples`` alone without a dequantiser)."""
    if dq is None:
        return model.score_samples(X)
    return dq.log_cell_probability(lambda v: torch.from_numpy(model.score_samples(v.numpy())), torch.from_numpy(X),
                                   num_samples=draws, generator=torch.Generator().manual_seed(seed)).numpy()


class _PiecewiseConstant:
    """A stand-in estimator whose density is constant on each unit cell of two integer attributes (standardised
    by ``scale``): ``p(v) = P1(k1) P2(k2) / (w1 w2)`` on cell ``(k1, k2)``, so ``log P(cell)`` is known exactly."""

    def __init__(self, mean, scale, p1, p2):
        self.mean, self.scale, self.p1, self.p2 = np.asarray(mean), np.asarray(scale), p1, p2

    def cell(self, V):
        return np.floor(np.asarray(V, dtype=np.float64) * self.scale + self.mean + 0.5).astype(int)

    def score_samples(self, V):
        k = self.cell(V)
        return np.log(self.p1[k[:, 0]]) + np.log(self.p2[k[:, 1]]) + np.log(self.scale).sum()


def test_dequantised_log_px_is_the_log_probability_of_the_cells_for_a_cellwise_constant_density():
    """Brute force of the log-det bookkeeping: for a density constant on every cell, E_u[log p(v)] + sum log w
    equals log P(cell) exactly (no Jensen gap), whatever the draws; without the log-det term it would be off by
    sum log w = -log(std1 * std2)."""
    rng = np.random.default_rng(0)
    p1, p2 = rng.dirichlet(np.ones(12)), rng.dirichlet(np.ones(31))
    mean, scale = np.array([6.0, 15.0]), np.array([3.4, 8.9])
    K = np.column_stack([rng.integers(0, 12, 500), rng.integers(0, 31, 500)])
    X = ((K - mean) / scale).astype(np.float32)
    split = SimpleNamespace(feature_names=("month", "day"), x_std=scale)
    dq = _dequantizer(split)
    model = _PiecewiseConstant(mean, scale, p1, p2)
    assert np.array_equal(model.cell(X), K)
    got = _cell_log_px(model, X, dq, draws=3, seed=1)
    np.testing.assert_allclose(got, np.log(p1[K[:, 0]]) + np.log(p2[K[:, 1]]), rtol=0, atol=1e-5)
    assert dq.log_cell_volume == pytest.approx(-np.log(scale).sum())
    np.testing.assert_allclose(_cell_log_px(model, X, None), got - dq.log_cell_volume, atol=1e-5)


def test_dequantised_log_px_bounds_the_cell_probability_of_a_smooth_density():
    """For a Gaussian density the estimate is below log P(cell) (Jensen), by at most the quadrature-scale gap."""
    scale = np.array([2.0, 3.0])
    split = SimpleNamespace(feature_names=("a", "b"), x_std=scale)
    dq = _dequantizer(split)

    class Gaussian:
        def score_samples(self, V):
            return scipy.stats.norm.logpdf(np.asarray(V, dtype=np.float64)).sum(axis=1)

    K = np.array([[0, 0], [1, -2], [3, 4], [-4, 1]], dtype=np.float64)
    X = (K / scale).astype(np.float32)
    got = _cell_log_px(Gaussian(), X, dq, draws=400, seed=0)
    lo, hi = (K - 0.5) / scale, (K + 0.5) / scale
    exact = np.log(scipy.stats.norm.cdf(hi) - scipy.stats.norm.cdf(lo)).sum(axis=1)
    assert np.all(got <= exact + 1e-3) and np.all(got >= exact - 0.05)


def test_every_flight_attribute_is_integer_valued():
    """The dequantiser gives every attribute a unit cell: check the recorded values are integers (NYC: the
    median-filled plane age is the one non-integer value a column may hold)."""
    split = split_flights(load_flights(max_rows=4000), max_train=2000, max_val=500,
                          max_test=500)
    raw = split.X_train.astype(np.float64) * split.x_std + split.x_mean
    off = np.abs(raw - np.round(raw)) > 1e-2
    age = split.feature_names.index("plane_age")
    assert not off[:, [j for j in range(raw.shape[1]) if j != age]].any()
    assert np.all(np.isclose(raw[off[:, age], age], split.plane_age_fill, atol=1e-2))


def test_print_summary_prints_the_table_the_lines_and_where_it_wrote(capsys):
    from bayes_diglm.experiments.common import print_summary

    assert print_summary({"table": "| a |", "out": "res", "seconds": 12.4}, "table.md", lines=("x", "y")) == 0
    assert capsys.readouterr().out == "| a |\n\nx\n\ny\n\nwrote res/ (table.md) in 12 s\n"
    print_summary({"table": "t", "out": "res"}, "f")
    assert capsys.readouterr().out.endswith("wrote res/ (f)\n")
    with pytest.raises(ValueError, match="table"):
        print_summary({"out": "res"}, "f")
