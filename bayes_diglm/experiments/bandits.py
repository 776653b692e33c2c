"""Thompson-sampling bandit experiments (wheel, digits, Fashion-MNIST, Statlog): regret tables and regret curves."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..bandits.environments import (
    WHEEL_DELTAS,
    BanditData,
    digits_bandit,
    fashion_bandit,
    statlog_bandit,
    wheel_bandit,
)
from ..bandits.registry import AGENTS
from ..bandits.simulation import BanditRun, simulate, summarize
from .common import StageLog, count_arg, fraction_arg, markdown_table, write_results

__all__ = ["run_bandits", "DEFAULTS", "AGENT_SETTINGS", "ENVIRONMENTS", "PROTOCOLS", "RIQUELME2018", "PUBLISHED",
           "VARIANTS"]

ENVIRONMENTS = ("wheel", "digits", "fashion", "statlog")
DEFAULT_AGENTS = ("Uniform", "LinFullPost", "LinGreedy", "NeuralLinear", "FlowLinear")
PROTOCOLS = ("short", "riquelme2018")

# Default configurations. "short": the wheel with Riquelme et al.'s example-script episode of 2,000 contexts
# (10 seeds of all five deltas take about 7 minutes on 2 free cores); digits plays every image once; statlog
# plays that example script's 2,000 contexts (its sample_statlog_data), 5 seeds.
DEFAULTS = {
    "wheel": {"steps": 2000, "seeds": 10},
    "digits": {"steps": 1797, "seeds": 10},
    "fashion": {"steps": 3000, "seeds": 5},
    "statlog": {"steps": 2000, "seeds": 5},
}
QUICK = {
    "wheel": {"steps": 300, "seeds": 2, "deltas": (0.5, 0.95)},
    "digits": {"steps": 300, "seeds": 2},
    "fashion": {"steps": 300, "seeds": 2},
    "statlog": {"steps": 300, "seeds": 2},
}
# The published protocol (wheel only): 80,000 contexts per episode, as the benchmark code that evaluates the
# reprinted table generates them (google/edward2, experimental/attentive_uncertainty/contextual_bandits/
# datasets.py: num_contexts=80000, 100 instances per delta); reward noise of the released example script
# (tensorflow/models research/deep_contextual_bandits/example_main.py: std 0.05 for the small rewards, 0.01
# for the large one). The agents' settings are the released ones (NeuralLinear's defaults).
RIQUELME2018 = {"steps": 80_000, "seeds": 10, "wheel": {"std": 0.05, "std_outer": 0.01}}
WHEEL_SHORT = {"std": 0.01}
# Normalised cumulative regret (Uniform = 100) of the wheel table (Riquelme, Tucker and Snoek 2018), as
# reprinted in Garnelo et al. 2018 ("Neural Processes", table 3), for delta 0.5, 0.7, 0.9, 0.95, 0.99.
PUBLISHED = {"NeuralLinear": dict(zip(WHEEL_DELTAS, (0.95, 1.60, 4.65, 9.56, 49.63), strict=True))}
# Agent settings per environment, by agent class: they apply to every name of that class (FlowGreedy and the
# FlowLinear[...] variants too; a variant's own settings win). FlowLinear on the 2-D wheel runs on the context
# augmented by 6 noise coordinates (8 features); on the 64-D image contexts it needs no augmentation.
# The standardised image features get a larger density jitter (0.3 standard deviations) than the unit disk.
AGENT_SETTINGS = {
    "wheel": {"FlowLinear": {"augment_dims": 6}},
    "digits": {"FlowLinear": {"density_noise": 0.3}},
    "fashion": {"FlowLinear": {"density_noise": 0.3}},
    "statlog": {},
}
#: The variants' own settings (``"Kind[label]"`` names of :data:`bayes_diglm.bandits.AGENTS`).
VARIANTS = {name: dict(spec.settings) for name, spec in AGENTS.items() if "[" in name}


def _agent_settings(env: str, name: str, overrides: dict | None) -> dict:
    """Constructor arguments of agent ``name`` on ``env``: the environment's settings for its class, the
    name's own settings, then the caller's ``overrides``."""
    spec = AGENTS[name]
    return {**AGENT_SETTINGS[env].get(spec.cls.kind, {}), **spec.settings, **(overrides or {})}


def _episode(env: str, delta: float | None, steps: int, seed: int, data_dir=None, wheel_kwargs=None) -> BanditData:
    if env == "wheel":
        return wheel_bandit(steps, delta, seed=seed, **(wheel_kwargs or {}))
    if env == "digits":
        return digits_bandit(steps, seed=seed)
    if env == "statlog":
        path = None if data_dir is None else Path(data_dir)
        return statlog_bandit(steps, seed=seed, path=path / "Shuttle.rda" if path and path.is_dir() else path)
    return fashion_bandit(steps, seed=seed, data_dir=data_dir)


def _play_one(env, delta, steps, seed, agents, agent_kwargs, data_dir, wheel_kwargs) -> dict[str, list[BanditRun]]:
    """One episode for every agent (run in a worker process: one torch thread)."""
    import torch

    torch.set_num_threads(1)
    return simulate(lambda s: _episode(env, delta, steps, s, data_dir, wheel_kwargs), agents, [seed],
                    agent_kwargs=agent_kwargs, quiet=True)


def _play(env, settings, steps, seeds, agents, agent_kwargs, data_dir, wheel_kwargs, jobs, quiet):
    """``{setting label: {agent: [runs]}}``; with ``jobs > 1`` every (setting, seed) episode is one task.

    Unless ``quiet``, a line per setting (one process) or per finished episode (``jobs > 1``) on stderr."""
    log = StageLog(f"bandit {env}", quiet=quiet)
    what = f"{len(agents)} agents x {steps:,} contexts"
    if jobs <= 1:
        played = {}
        for label, delta in settings:
            log(f"{label}: {len(seeds)} seed(s), {what}")
            played[label] = simulate(lambda s, d=delta: _episode(env, d, steps, s, data_dir, wheel_kwargs), agents,
                                     seeds, agent_kwargs=agent_kwargs, quiet=quiet, desc=f"{env} {label}")
        return played
    log(f"{len(settings) * len(seeds)} episodes ({len(settings)} settings x {len(seeds)} seeds, {what}) "
        f"in {jobs} processes")
    out = {label: {name: [] for name in agents} for label, _ in settings}
    show = sys.stderr.isatty() if quiet is None else not quiet
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool, \
            tqdm(total=len(settings) * len(seeds) * len(agents) * steps, desc=env, unit="step", disable=not show,
                 leave=False) as bar:
        futures = [(label, pool.submit(_play_one, env, delta, steps, s, agents, agent_kwargs, data_dir, wheel_kwargs))
                   for label, delta in settings for s in seeds]
        for done, (label, future) in enumerate(futures, start=1):
            for name, agent_runs in future.result().items():
                out[label][name].extend(agent_runs)
            bar.update(len(agents) * steps)
            log(f"episode {done} of {len(futures)} finished ({label})")
    return out


def _curves(runs: dict[str, list[BanditRun]], points: int = 200) -> dict[str, dict]:
    curves = {}
    for name, agent_runs in runs.items():
        cum = np.cumsum(np.stack([r.regret for r in agent_runs]), axis=1)
        idx = np.unique(np.linspace(0, cum.shape[1] - 1, min(points, cum.shape[1])).astype(int))
        se = cum[:, idx].std(axis=0, ddof=1) / np.sqrt(cum.shape[0]) if cum.shape[0] > 1 else np.zeros(idx.size)
        curves[name] = {"steps": idx + 1, "mean": cum[:, idx].mean(axis=0), "se": se}
    return curves


def _normalised_table(per_setting: dict[str, list[dict]], *, published: bool = False) -> str:
    """Agents as rows, settings as columns: normalised regret ``mean +- se`` (Uniform = 100); with
    ``published``, the published figure beside ours where there is one, and the realised-regret version."""
    agents = [row["agent"] for row in next(iter(per_setting.values()))]
    rows = []
    for agent in agents:
        row = {"agent": agent}
        for setting, summary in per_setting.items():
            r = next(x for x in summary if x["agent"] == agent)
            if "normalised (Uniform=100)" not in r:
                continue
            cell = f"{r['normalised (Uniform=100)']:.2f} +- {r['normalised se']:.2f}"
            if published:
                cell += f" (realised {r.get('realised normalised', float('nan')):.2f})"
                delta = float(setting.split("=")[1]) if setting.startswith("delta=") else None
                ref = PUBLISHED.get(agent, {}).get(delta)
                if ref is not None:
                    cell += f"; published {ref:.2f}"
            row[setting] = cell
        rows.append(row)
    return markdown_table(rows)


def _wheel_figure(per_setting_runs, contexts_by_setting, out_dir: Path, agents: Sequence[str]) -> str | None:
    """Draw the decisions of NeuralLinear and FlowLinear (those present) on the first seed's wheel."""
    shown = [next(a for a in agents if a.startswith(kind)) for kind in ("NeuralLinear", "FlowLinear")
             if any(a.startswith(kind) for a in agents)] or [a for a in agents if a != "Uniform"][:2]
    if not shown:
        return None
    labels = list(per_setting_runs)
    label = "delta=0.95" if "delta=0.95" in labels else labels[-1]
    from ..plots.bandits import plot_wheel_decisions

    arms = {name: per_setting_runs[label][name][0].arms for name in shown}
    path = plot_wheel_decisions(contexts_by_setting[label], arms, float(label.split("=")[1]),
                                out_dir / "wheel_decisions.png")
    return path.name


def run_bandits(
    env: str = "wheel",
    *,
    protocol: str = "short",
    deltas: Sequence[float] | None = None,
    steps: int | None = None,
    seeds: int | None = None,
    agents: Sequence[str] | None = None,
    agent_kwargs: dict[str, dict] | None = None,
    out: str | Path = "results/bandits",
    seed: int = 0,
    jobs: int = 1,
    quick: bool = False,
    quiet: bool | None = None,
    data_dir=None,
) -> dict:
    """Play every agent on ``seeds`` episodes of ``env``; write ``<out>/<env>/`` (metrics, tables, PNGs).

    ``protocol="riquelme2018"`` (wheel only) plays the published setting (:data:`RIQUELME2018`: 80,000
    contexts, reward noise 0.05 / 0.01, the table's published figures beside ours); ``"short"`` plays 2,000
    contexts with noise 0.01. ``env="statlog"`` plays the rows of UCI's ``shuttle.trn`` in a random order per
    seed (:func:`~bayes_diglm.bandits.statlog_bandit`; ``data_dir``: ``Shuttle.rda`` or its folder).
    Seeds are ``seed, seed + 1, ...``; every agent sees the same episodes. ``agents`` are names of
    :data:`bayes_diglm.bandits.AGENTS`; ``agent_kwargs[name]`` override :data:`AGENT_SETTINGS` and the name's
    own settings. ``jobs > 1`` plays the (delta, seed) episodes in that
    many processes (one torch thread each). On the wheel it also draws ``wheel_decisions.png``.
    Returns ``{"rows", "table", "out", "seconds"}``.
    """
    if env not in ENVIRONMENTS:
        raise ValueError(f"env must be one of {ENVIRONMENTS}, got {env!r}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if protocol == "riquelme2018" and env != "wheel":
        raise ValueError(f"protocol 'riquelme2018' is the wheel's published setting, not {env!r}'s")
    config = {**DEFAULTS[env], **(RIQUELME2018 if protocol == "riquelme2018" else {}), **(QUICK[env] if quick else {})}
    wheel_kwargs = RIQUELME2018["wheel"] if protocol == "riquelme2018" else WHEEL_SHORT
    steps = int(steps or config["steps"])
    n_seeds = int(seeds or config["seeds"])
    if steps < 1 or n_seeds < 1 or int(jobs) < 1:
        raise ValueError(f"steps, seeds and jobs must be positive, got {steps}, {n_seeds}, {jobs}")
    if env == "wheel":
        deltas = tuple(float(d) for d in (deltas or config.get("deltas", WHEEL_DELTAS)))
    elif deltas:
        raise ValueError(f"--delta applies to the wheel only, not to {env!r}")
    agents = list(agents or DEFAULT_AGENTS)
    if "Uniform" not in agents:
        agents.insert(0, "Uniform")  # the normalisation's reference
    unknown = [name for name in agents if name not in AGENTS]
    if unknown:
        raise ValueError(f"unknown agent(s) {unknown}; choose from {list(AGENTS)}")
    kwargs = {name: _agent_settings(env, name, (agent_kwargs or {}).get(name)) for name in agents}
    seed_list = [int(seed) + i for i in range(n_seeds)]
    out_dir = Path(out) / env
    t0 = time.perf_counter()

    settings = [(f"delta={d:g}", d) for d in deltas] if env == "wheel" else [(env, None)]
    runs_by_setting = _play(env, settings, steps, seed_list, agents, kwargs, data_dir, wheel_kwargs, int(jobs), quiet)
    rows, per_setting, panels = [], {}, {}
    for label, _ in settings:
        summary = summarize(runs_by_setting[label])
        per_setting[label] = summary
        rows += [{"setting": label, **r} for r in summary]
        panels[label] = _curves(runs_by_setting[label])

    from ..plots.bandits import plot_regret_curves

    setting = f"{env} ({protocol} protocol)" if env == "wheel" else env  # the protocols are the wheel's
    figures = [plot_regret_curves(panels, out_dir / "regret_curves.png",
                                  title=f"{setting}: {steps} steps, mean +- s.e. over {n_seeds} seeds").name]
    if env == "wheel":
        contexts = {label: _episode(env, delta, steps, seed_list[0], None, wheel_kwargs).contexts
                    for label, delta in settings}
        figure = _wheel_figure(runs_by_setting, contexts, out_dir, agents)
        figures += [figure] if figure else []
    seconds = time.perf_counter() - t0
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    header = (f"{setting}: {steps} steps, {n_seeds} seeds ({seed_list[0]}..{seed_list[-1]}), "
              f"agents {', '.join(agents)}, jobs={jobs}; {seconds:.0f} s in all; load average at the end "
              f"{'n/a' if load is None else ', '.join(f'{x:.1f}' for x in load)}")
    parts = [
        header,
        "Cumulative expected regret (mean and standard error over seeds), the same normalised to Uniform = 100,"
        " the realised regret so normalised, and milliseconds per decision (wall clock and this process's CPU"
        " time; act + update, retraining included):",
        markdown_table(rows, digits=2),
        "Normalised cumulative regret (Uniform = 100), mean +- s.e."
        + (" (realised regret normalised the same way; the published figure of Riquelme et al. 2018 as reprinted"
           " by Garnelo et al. 2018):" if protocol == "riquelme2018" else ":"),
        _normalised_table(per_setting, published=protocol == "riquelme2018"),
    ]
    table = "\n\n".join(parts)
    metrics = {"experiment": "bandits", "env": env, "protocol": protocol, "steps": steps, "seeds": seed_list,
               "agents": agents, "agent_kwargs": kwargs, "wheel": wheel_kwargs if env == "wheel" else None,
               "deltas": list(deltas) if env == "wheel" else None, "jobs": int(jobs), "quick": bool(quick),
               "rows": rows, "curves": panels, "published": PUBLISHED if protocol == "riquelme2018" else None,
               "seconds": seconds, "load_average": load, "figures": figures}
    write_results(out_dir, metrics, table)
    return {"rows": rows, "table": table, "out": str(out_dir), "seconds": seconds}


def _cli_run(args) -> int:
    try:
        result = run_bandits(args.env, protocol=args.protocol, deltas=args.delta, steps=args.steps, seeds=args.seeds,
                             agents=args.agents, out=args.out, seed=args.seed, jobs=args.jobs, quick=args.quick,
                             quiet=args.quiet or None, data_dir=args.data_dir)
    except FileNotFoundError as err:
        print(f"skipped {args.env}: {err}", file=sys.stderr)
        return 1
    print(result["table"])
    print(f"\nwrote {result['out']}/ (metrics.json, table.md, regret_curves.png"
          + (", wheel_decisions.png)" if args.env == "wheel" else ")"))
    return 0


def register(subparsers) -> None:
    """Add the ``bandit`` subcommand: ``bayes-diglm bandit {wheel,digits,fashion,statlog} [options]``."""
    from .common import add_common_arguments

    p = subparsers.add_parser(
        "bandit", help="Thompson-sampling contextual bandits (wheel, digits, fashion, statlog)",
        description="Play Uniform, LinFullPost, its greedy ablation, NeuralLinear and FlowLinear (flow features) "
                    "on a bandit; write a cumulative-regret table, regret curves and (wheel) the agents' decisions "
                    "to <out>/<env>/. Defaults: "
                    + "; ".join(f"{k}: {v['steps']} steps x {v['seeds']} seeds" for k, v in DEFAULTS.items())
                    + f"; --protocol riquelme2018: {RIQUELME2018['steps']} steps x {RIQUELME2018['seeds']} seeds",
    )
    p.add_argument("env", choices=ENVIRONMENTS, help="the bandit environment")
    add_common_arguments(p, "results/bandits")
    p.add_argument("--protocol", choices=PROTOCOLS, default="short",
                   help="wheel setting: 'short' (2,000 contexts, noise 0.01; default) or 'riquelme2018' (the "
                        "published table's: 80,000 contexts, noise 0.05/0.01, published figures beside ours)")
    p.add_argument("--delta", type=fraction_arg, nargs="+", default=None,
                   help="wheel exploration parameter(s) (default: 0.5 0.7 0.9 0.95 0.99)")
    p.add_argument("--steps", type=count_arg, default=None, help="steps per episode (default: per environment)")
    p.add_argument("--seeds", type=count_arg, default=None, help="number of seeds (default: per environment)")
    p.add_argument("--agents", nargs="+", default=None, choices=list(AGENTS), metavar="AGENT",
                   help=f"agents to run (default: {' '.join(DEFAULT_AGENTS)}); any of: {', '.join(AGENTS)} "
                        "(bayes_diglm.bandits.AGENTS)")
    p.add_argument("--jobs", type=count_arg, default=2, help="worker processes, one per episode at a time (default: 2)")
    p.add_argument("--quick", action="store_true", help="a few hundred steps, 2 seeds (smoke run)")
    p.add_argument("--data-dir", default=None,
                   help="fashion: folder of Fashion-MNIST IDX files; statlog: Shuttle.rda or its folder (default: "
                        "Debian r-cran-mlbench's)")
    p.set_defaults(func=_cli_run)
