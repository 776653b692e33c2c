"""The simulation loop: agents play pre-drawn bandit episodes; cumulative expected regret and timing."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from .agents import BanditAgent
from .environments import BanditData
from .registry import AGENTS, make_agent

__all__ = ["BanditRun", "run_agent", "simulate", "summarize"]


@dataclass
class BanditRun:
    """One agent on one episode: the arms pulled, the per-step expected and realised regret, the decision time.

    ``seconds`` counts the agent's own work (``act`` plus ``update``, retraining included), not the
    environment's, in wall-clock time; ``cpu_seconds`` the same in this process's CPU time (which a busy
    machine inflates less).
    """

    agent: str
    seed: int
    arms: np.ndarray
    regret: np.ndarray
    seconds: float
    cpu_seconds: float = float("nan")
    realised: np.ndarray | None = None

    @property
    def cumulative_regret(self) -> float:
        return float(self.regret.sum())

    @property
    def cumulative_realised_regret(self) -> float:
        return float("nan") if self.realised is None else float(self.realised.sum())

    @property
    def seconds_per_decision(self) -> float:
        return self.seconds / max(len(self.arms), 1)


def run_agent(data: BanditData, agent: BanditAgent, *, seed: int = 0,
              on_step: Callable[[int], None] | None = None) -> BanditRun:
    """Play ``data`` with ``agent``: for each step ``act``, observe the pulled arm's noisy reward, ``update``.

    Regret is expected regret, :math:`\\max_a \\mu_t(a) - \\mu_t(a_t)`, from ``data.mean_rewards``; the run
    also keeps the realised regret (:meth:`BanditData.realised_regret`).
    ``on_step(n)`` is called every 100 steps (and at the end) with the number of steps since the last call.

    Examples
    --------
    >>> from bayes_diglm.bandits import UniformAgent, wheel_bandit
    >>> run = run_agent(wheel_bandit(100, 0.5, seed=0), UniformAgent(5, 2, seed=0))
    >>> run.regret.shape, run.cumulative_regret > 0
    ((100,), True)
    """
    if agent.num_arms != data.num_arms or agent.context_dim != data.context_dim:
        raise ValueError(
            f"agent has {agent.num_arms} arms and context dimension {agent.context_dim}; the data have "
            f"{data.num_arms} and {data.context_dim}"
        )
    arms = np.empty(data.num_steps, dtype=np.int64)
    spent, cpu, last = 0.0, 0.0, 0
    for t in range(data.num_steps):
        context = data.contexts[t]
        start, start_cpu = time.perf_counter(), time.process_time()
        arm = agent.act(context)
        agent.update(context, arm, data.rewards[t, arm])
        spent += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
        arms[t] = arm
        if on_step is not None and (t + 1) % 100 == 0:
            on_step(t + 1 - last)
            last = t + 1
    if on_step is not None and data.num_steps > last:
        on_step(data.num_steps - last)
    return BanditRun(agent.name, seed, arms, data.regret(arms), spent, cpu, data.realised_regret(arms))


def simulate(
    make_data: Callable[[int], BanditData],
    agents: Sequence[str],
    seeds: Sequence[int],
    *,
    agent_kwargs: dict[str, dict] | None = None,
    quiet: bool | None = None,
    desc: str = "bandit",
) -> dict[str, list[BanditRun]]:
    """Every agent on the episode ``make_data(seed)`` of every seed (all agents see the same episode).

    ``agents`` are names of :data:`~bayes_diglm.bandits.registry.AGENTS` (e.g. ``"FlowLinear[fast]"``), built by
    :func:`~bayes_diglm.bandits.registry.make_agent` and reported under that name; ``agent_kwargs[name]`` are
    extra constructor arguments for that agent. Every agent of seed ``s`` is seeded with ``s``. One progress
    bar counts steps over all seeds and agents (hidden when ``quiet`` or when
    stderr is not a terminal and ``quiet`` is None).
    """
    unknown = [name for name in agents if name not in AGENTS]
    if unknown:
        raise ValueError(f"unknown agent(s) {unknown}; choose from {list(AGENTS)}")
    agent_kwargs = agent_kwargs or {}
    runs: dict[str, list[BanditRun]] = {name: [] for name in agents}
    episodes = None
    show = sys.stderr.isatty() if quiet is None else not quiet
    with tqdm(total=None, desc=desc, unit="step", disable=not show, leave=False) as bar:
        for i, seed in enumerate(seeds):
            data = make_data(int(seed))
            if episodes is None:
                episodes = data.num_steps
                bar.total = episodes * len(agents) * len(seeds)
                bar.refresh()
            for name in agents:
                bar.set_postfix(seed=f"{i + 1}/{len(seeds)}", agent=name)
                agent = make_agent(name, data.num_arms, data.context_dim, seed=int(seed), **agent_kwargs.get(name, {}))
                runs[name].append(run_agent(data, agent, seed=int(seed), on_step=bar.update))
    return runs


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    se = float(values.std(ddof=1) / np.sqrt(values.size)) if values.size > 1 else float("nan")
    return float(values.mean()), se


def summarize(runs: dict[str, list[BanditRun]], baseline: str = "Uniform") -> list[dict]:
    """One row per agent: cumulative regret (mean and standard error over seeds), the same relative to the
    baseline's mean times 100 (Riquelme et al.'s normalisation), and milliseconds per decision."""
    base = np.array([r.cumulative_regret for r in runs.get(baseline, [])])
    base_realised = np.array([r.cumulative_realised_regret for r in runs.get(baseline, [])])
    rows = []
    for name, agent_runs in runs.items():
        regret = np.array([r.cumulative_regret for r in agent_runs])
        mean, se = _mean_se(regret)
        row = {"agent": name, "seeds": len(agent_runs), "cumulative regret": mean, "regret se": se}
        if base.size and base.mean() > 0:
            row["normalised (Uniform=100)"] = 100.0 * mean / base.mean()
            row["normalised se"] = 100.0 * se / base.mean()
            realised = np.array([r.cumulative_realised_regret for r in agent_runs])
            if np.all(np.isfinite(realised)) and base_realised.size and base_realised.mean() > 0:
                row["realised normalised"] = 100.0 * realised.mean() / base_realised.mean()
        row["ms / decision"] = 1e3 * float(np.mean([r.seconds_per_decision for r in agent_runs]))
        row["CPU ms / decision"] = 1e3 * float(np.mean([r.cpu_seconds / max(len(r.arms), 1) for r in agent_runs]))
        rows.append(row)
    return rows
