"""Where a bandit decision's CPU goes: retraining steps, the posterior refit, one context's features, draw, update.

``python benchmarks/profile_bandits.py [--steps 1000] [--agents NeuralLinear FlowLinear "FlowLinear[full]"]`` plays
``steps - 1`` decisions of one wheel episode (delta 0.7, the published noise) with each agent, then times, in
process CPU time on one thread, one retraining (per minibatch step), the refit of every arm from the history, and
the three per-decision parts, and adds them up as the amortised CPU per decision. Not part of ``make bench``:
it explains the bench's "FlowLinear / NeuralLinear CPU ms per decision" rows.
"""

from __future__ import annotations

import argparse
import time

import torch

from bayes_diglm.bandits import make_agent, wheel_bandit
from bayes_diglm.experiments.bandits import AGENT_SETTINGS

__all__ = ["profile_agent", "main"]


def _cpu_ms(fn, repeats: int = 200) -> float:
    fn()
    start = time.process_time()
    for _ in range(repeats):
        fn()
    return (time.process_time() - start) / repeats * 1e3


def profile_agent(name: str, steps: int = 1000) -> dict:
    """CPU milliseconds of each part of agent ``name``'s work after ``steps - 1`` wheel decisions."""
    data = wheel_bandit(steps, 0.7, seed=0, std=0.05, std_outer=0.01)
    settings = AGENT_SETTINGS["wheel"].get(make_agent(name, 5, 2).kind, {})
    agent = make_agent(name, 5, 2, seed=0, **settings)
    for t in range(steps - 1):
        arm = agent.act(data.contexts[t])
        agent.update(data.contexts[t], arm, data.rewards[t, arm])
    start = time.process_time()
    agent._retrain()
    step = (time.process_time() - start) / agent.train_steps * 1e3
    start = time.process_time()
    agent._refit()
    refit = (time.process_time() - start) * 1e3
    x = data.contexts[steps - 1]

    def features():
        agent._cache = None
        agent._design_row(x)

    row = agent._design_row(x)
    parts = {"retraining step": step, "refit": refit, "features": _cpu_ms(features),
             "draw": _cpu_ms(lambda: agent.posterior.sample(agent.rng)),
             "update": _cpu_ms(lambda: agent.posterior.update_row(0, row, 1.0))}
    retraining = (agent.train_steps * step + refit) / agent.train_every
    parts["per decision"] = parts["features"] + parts["draw"] + parts["update"] + retraining
    parts["retraining share"] = retraining / parts["per decision"]
    parts["train_steps"], parts["train_every"] = agent.train_steps, agent.train_every
    return parts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--agents", nargs="+", default=["NeuralLinear", "FlowLinear", "FlowLinear[full]"])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for name in args.agents:
        p = profile_agent(name, args.steps)
        print(f"{name}: {p['retraining step']:.2f} ms per retraining step x {p['train_steps']} every "
              f"{p['train_every']} decisions, refit {p['refit']:.2f} ms ({args.steps} rows); per decision: features "
              f"{p['features']:.3f} ms, draw {p['draw']:.3f} ms, update {p['update']:.3f} ms; amortised "
              f"{p['per decision']:.2f} ms per decision ({p['retraining share']:.0%} retraining)", flush=True)


if __name__ == "__main__":
    main()
