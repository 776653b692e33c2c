"""Thompson-sampling bandit experiments (wheel, digits, Fashion-MNIST): regret tables and regret curves."""

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

from ..bandits.environments import WHEEL_DELTAS, BanditData, digits_bandit, fashion_bandit, wheel_bandit
from ..bandits.simulation import BanditRun, simulate, summarize
from .common import markdown_table, write_results

__all__ = ["run_bandits", "DEFAULTS", "AGENT_SETTINGS", "ENVIRONMENTS"]

ENVIRONMENTS = ("wheel", "digits", "fashion")
DEFAULT_AGENTS = ("Uniform", "LinFullPost", "LinGreedy", "NeuralLinear", "FlowLinear")

# Default configurations, sized to finish within 30 minutes on 2 CPU cores for the wheel (5 deltas) and digits.
# The wheel uses Riquelme et al.'s 2,000 contexts per episode rather than 5,000; digits plays every image once.
DEFAULTS = {
    "wheel": {"steps": 2000, "seeds": 10},
    "digits": {"steps": 1797, "seeds": 10},
    "fashion": {"steps": 3000, "seeds": 5},
}
QUICK = {
    "wheel": {"steps": 300, "seeds": 2, "deltas": (0.5, 0.95)},
    "digits": {"steps": 300, "seeds": 2},
    "fashion": {"steps": 300, "seeds": 2},
}
# Agent settings per environment. FlowLinear on the 2-D wheel runs on the context augmented by 6 noise
# coordinates (8 features); on the 64-D image contexts it needs no augmentation.
# The standardised image features get a larger density jitter (0.3 standard deviations) than the unit disk.
AGENT_SETTINGS = {
    "wheel": {"FlowLinear": {"augment_dims": 6}, "FlowGreedy": {"augment_dims": 6}},
    "digits": {"FlowLinear": {"density_noise": 0.3}, "FlowGreedy": {"density_noise": 0.3}},
    "fashion": {"FlowLinear": {"density_noise": 0.3}, "FlowGreedy": {"density_noise": 0.3}},
}


def _episode(env: str, delta: float | None, steps: int, seed: int, data_dir=None) -> BanditData:
    if env == "wheel":
        return wheel_bandit(steps, delta, seed=seed)
    if env == "digits":
        return digits_bandit(steps, seed=seed)
    return fashion_bandit(steps, seed=seed, data_dir=data_dir)


def _play_one(env, delta, steps, seed, agents, agent_kwargs, data_dir) -> dict[str, list[BanditRun]]:
    """One episode for every agent (run in a worker process: one torch thread)."""
    import torch

    torch.set_num_threads(1)
    return simulate(lambda s: _episode(env, delta, steps, s, data_dir), agents, [seed],
                    agent_kwargs=agent_kwargs, quiet=True)


def _play(env, delta, steps, seeds, agents, agent_kwargs, data_dir, jobs, quiet, label):
    if jobs <= 1:
        return simulate(lambda s: _episode(env, delta, steps, s, data_dir), agents, seeds,
                        agent_kwargs=agent_kwargs, quiet=quiet, desc=label)
    runs: dict[str, list[BanditRun]] = {name: [] for name in agents}
    show = sys.stderr.isatty() if quiet is None else not quiet
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool, \
            tqdm(total=len(seeds) * len(agents) * steps, desc=label, unit="step", disable=not show,
                 leave=False) as bar:
        futures = [pool.submit(_play_one, env, delta, steps, s, agents, agent_kwargs, data_dir) for s in seeds]
        for future in futures:
            for name, agent_runs in future.result().items():
                runs[name].extend(agent_runs)
            bar.update(len(agents) * steps)
    return runs


def _curves(runs: dict[str, list[BanditRun]], points: int = 200) -> dict[str, dict]:
    curves = {}
    for name, agent_runs in runs.items():
        cum = np.cumsum(np.stack([r.regret for r in agent_runs]), axis=1)
        idx = np.unique(np.linspace(0, cum.shape[1] - 1, min(points, cum.shape[1])).astype(int))
        se = cum[:, idx].std(axis=0, ddof=1) / np.sqrt(cum.shape[0]) if cum.shape[0] > 1 else np.zeros(idx.size)
        curves[name] = {"steps": idx + 1, "mean": cum[:, idx].mean(axis=0), "se": se}
    return curves


def _normalised_table(per_setting: dict[str, list[dict]]) -> str:
    """Agents as rows, settings as columns: normalised regret ``mean +- se`` (Uniform = 100)."""
    agents = [row["agent"] for row in next(iter(per_setting.values()))]
    rows = []
    for agent in agents:
        row = {"agent": agent}
        for setting, summary in per_setting.items():
            r = next(x for x in summary if x["agent"] == agent)
            if "normalised (Uniform=100)" in r:
                row[setting] = f"{r['normalised (Uniform=100)']:.2f} +- {r['normalised se']:.2f}"
        rows.append(row)
    return markdown_table(rows)


def run_bandits(
    env: str = "wheel",
    *,
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
    """Play every agent on ``seeds`` episodes of ``env``; write ``<out>/<env>/`` (metrics, tables, PNG).

    Seeds are ``seed, seed + 1, ...``; every agent sees the same episodes. ``agent_kwargs`` override
    :data:`AGENT_SETTINGS`. ``jobs > 1`` plays seeds in that many processes (one torch thread each).
    Returns ``{"rows", "table", "out", "seconds"}``.
    """
    if env not in ENVIRONMENTS:
        raise ValueError(f"env must be one of {ENVIRONMENTS}, got {env!r}")
    config = {**DEFAULTS[env], **(QUICK[env] if quick else {})}
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
    kwargs = {**AGENT_SETTINGS[env], **(agent_kwargs or {})}
    kwargs = {name: kw for name, kw in kwargs.items() if name in agents}
    seed_list = [int(seed) + i for i in range(n_seeds)]
    out_dir = Path(out) / env
    t0 = time.perf_counter()

    settings = [(f"delta={d:g}", d) for d in deltas] if env == "wheel" else [(env, None)]
    rows, per_setting, panels = [], {}, {}
    for label, delta in settings:
        runs = _play(env, delta, steps, seed_list, agents, kwargs, data_dir, int(jobs), quiet, f"{env} {label}")
        summary = summarize(runs)
        per_setting[label] = summary
        rows += [{"setting": label, **r} for r in summary]
        panels[label] = _curves(runs)

    from ..plots.bandits import plot_regret_curves

    figure = plot_regret_curves(panels, out_dir / "regret_curves.png",
                                title=f"{env}: {steps} steps, mean +- s.e. over {n_seeds} seeds")
    seconds = time.perf_counter() - t0
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    header = (f"{env}: {steps} steps, {n_seeds} seeds ({seed_list[0]}..{seed_list[-1]}), agents "
              f"{', '.join(agents)}, jobs={jobs}; {seconds:.0f} s in all; load average at the end "
              f"{'n/a' if load is None else ', '.join(f'{x:.1f}' for x in load)}")
    table = "\n\n".join([
        header,
        "Cumulative expected regret (mean and standard error over seeds), the same normalised to Uniform = 100,"
        " and milliseconds per decision (wall clock and this process's CPU time; act + update, retraining"
        " included):",
        markdown_table(rows, digits=2),
        "Normalised cumulative regret (Uniform = 100), mean +- s.e.:",
        _normalised_table(per_setting),
    ])
    metrics = {"experiment": "bandits", "env": env, "steps": steps, "seeds": seed_list, "agents": agents,
               "agent_kwargs": kwargs, "deltas": list(deltas) if env == "wheel" else None, "jobs": int(jobs),
               "quick": bool(quick), "rows": rows, "curves": panels, "seconds": seconds,
               "load_average": load, "figures": [figure.name]}
    write_results(out_dir, metrics, table)
    return {"rows": rows, "table": table, "out": str(out_dir), "seconds": seconds}


def _cli_run(args) -> int:
    try:
        result = run_bandits(args.env, deltas=args.delta, steps=args.steps, seeds=args.seeds, agents=args.agents,
                             out=args.out, seed=args.seed, jobs=args.jobs, quick=args.quick,
                             quiet=args.quiet or None, data_dir=args.data_dir)
    except FileNotFoundError as err:
        print(f"skipped {args.env}: {err}", file=sys.stderr)
        return 1
    print(result["table"])
    print(f"\nwrote {result['out']}/ (metrics.json, table.md, regret_curves.png)")
    return 0


def register(subparsers) -> None:
    """Add the ``bandit`` subcommand: ``bayes-diglm bandit {wheel,digits,fashion} [options]``."""
    from .common import add_common_arguments

    p = subparsers.add_parser(
        "bandit", help="Thompson-sampling contextual bandits (wheel, digits, fashion)",
        description="Play Uniform, LinFullPost, its greedy ablation, NeuralLinear and FlowLinear (flow features) "
                    "on a bandit; write a cumulative-regret table and regret curves to <out>/<env>/. Defaults: "
                    + "; ".join(f"{k}: {v['steps']} steps x {v['seeds']} seeds" for k, v in DEFAULTS.items()),
    )
    p.add_argument("env", choices=ENVIRONMENTS, help="the bandit environment")
    add_common_arguments(p, "results/bandits")
    p.add_argument("--delta", type=float, nargs="+", default=None,
                   help="wheel exploration parameter(s) (default: 0.5 0.7 0.9 0.95 0.99)")
    p.add_argument("--steps", type=int, default=None, help="steps per episode (default: per environment)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default: per environment)")
    p.add_argument("--agents", nargs="+", default=None,
                   help=f"agents to run (default: {' '.join(DEFAULT_AGENTS)}; also FlowGreedy, NeuralGreedy)")
    p.add_argument("--jobs", type=int, default=2, help="worker processes, one per seed at a time (default: 2)")
    p.add_argument("--quick", action="store_true", help="a few hundred steps, 2 seeds (smoke run)")
    p.add_argument("--data-dir", default=None, help="folder of Fashion-MNIST IDX files (fashion only)")
    p.set_defaults(func=_cli_run)
