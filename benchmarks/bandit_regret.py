"""Wheel regret of bandit agents, episode by episode, so that a run cut short still leaves whole seeds.

``nice -n 19 python benchmarks/bandit_regret.py OUT.jsonl [--steps 2000] [--seeds 5] [--agents NeuralLinear
FlowLinear] [--summary]`` plays the published wheel (noise 0.05 / 0.01) with seeds outer and deltas inner, and
appends one JSON line per (agent, delta, seed) episode: cumulative expected regret, Uniform's on the same episode,
the regret normalised per episode (Uniform = 100) and the agent's CPU ms per decision. Episodes and agents are
seeded as ``bayes-diglm bandit wheel --protocol riquelme2018 --steps STEPS`` seeds them (episode and agent seed
``s``; FlowLinear names get the wheel's ``augment_dims=6``), so its cells are that command's episodes.
``--deltas`` picks deltas and ``--set NAME=JSON ...`` (with ``--label``) passes constructor settings, for runs
that isolate one setting. ``--summary`` prints the table of mean +- s.e. over seeds from OUT (and from any
further JSONL files given).
A rerun with the same OUT resumes: episodes already in the file (same agent, delta, seed and steps) are skipped,
so a long protocol can be played across several sittings.
Not part of ``make bench``: it gives the regret beside the bench's CPU rows (docs/bandits.md).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict

import numpy as np
import torch

from bayes_diglm.bandits import AGENTS, WHEEL_DELTAS, UniformAgent, make_agent, run_agent, wheel_bandit
from bayes_diglm.experiments.bandits import AGENT_SETTINGS

__all__ = ["play", "summary", "main"]


def play(out: str, steps: int, seeds: int, agents: list[str], deltas=WHEEL_DELTAS, label: str = "",
         settings: dict | None = None) -> None:
    """Append one JSON line per episode to ``out``: seeds outer, deltas inner, ``agents`` in order.

    Episodes already in ``out`` (same agent name with ``label``, delta, seed and steps) are not played again.
    ``settings`` are passed to every agent's constructor on top of the wheel's (give them a ``label``)."""
    done = set()
    if os.path.exists(out):
        done = {(r["agent"], r["delta"], r["seed"], r["steps"]) for r in map(json.loads, open(out))}
    for seed in range(seeds):
        for delta in deltas:
            todo = [name for name in agents if (name + label, delta, seed, steps) not in done]
            if not todo:
                continue
            data = wheel_bandit(steps, delta, seed=seed, std=0.05, std_outer=0.01)
            uniform = run_agent(data, UniformAgent(5, 2, seed=seed)).cumulative_regret
            for name in todo:
                kwargs = {**AGENT_SETTINGS["wheel"].get(AGENTS[name].cls.kind, {}), **(settings or {})}
                agent = make_agent(name, 5, 2, seed=seed, **kwargs)
                start = time.perf_counter()
                run = run_agent(data, agent)
                row = {"agent": name + label, "delta": delta, "seed": seed, "steps": steps,
                       "regret": run.cumulative_regret, "uniform": uniform,
                       "normalised": 100 * run.cumulative_regret / uniform, "cpu_ms": 1e3 * run.cpu_seconds / steps,
                       "wall_s": time.perf_counter() - start, "load": os.getloadavg()[0]}
                with open(out, "a") as f:
                    f.write(json.dumps(row) + "\n")


def summary(paths: list[str]) -> str:
    """A Markdown table: per agent and delta, the normalised regret's mean +- s.e. over seeds (n seeds)."""
    rows = [json.loads(line) for path in paths for line in open(path)]
    cells = defaultdict(list)
    for row in rows:
        cells[row["agent"], row["delta"]].append(row)
    deltas = sorted({row["delta"] for row in rows})
    lines = ["| agent | " + " | ".join(f"delta {d}" for d in deltas) + " | CPU ms / decision |",
             "|---|" + "---|" * (len(deltas) + 1)]
    for agent in dict.fromkeys(row["agent"] for row in rows):
        out, cpu = [], []
        for delta in deltas:
            values = np.array([r["normalised"] for r in cells[agent, delta]])
            cpu += [r["cpu_ms"] for r in cells[agent, delta]]
            if len(values) > 1:
                out.append(f"{values.mean():.2f} +- {values.std(ddof=1) / np.sqrt(len(values)):.2f} ({len(values)})")
            else:
                out.append(f"{values[0]:.2f} (1)" if len(values) else "")
        lines.append(f"| {agent} | " + " | ".join(out) + f" | {np.mean(cpu):.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="+", help="JSONL file to append to (more files: read them too for --summary)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--agents", nargs="+", default=["NeuralLinear", "FlowLinear"])
    parser.add_argument("--label", default="", help="appended to each agent's name in the rows, e.g. '(old)'")
    parser.add_argument("--deltas", nargs="+", type=float, default=list(WHEEL_DELTAS))
    parser.add_argument("--set", nargs="+", default=[], metavar="NAME=JSON",
                        help="constructor settings for every agent, e.g. reset_lr=true lr_decay=0 (with --label)")
    parser.add_argument("--summary", action="store_true", help="print the table of the files instead of playing")
    args = parser.parse_args(argv)
    if args.summary:
        print(summary(args.out))
        return
    torch.set_num_threads(1)
    settings = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set expects NAME=VALUE, got {item!r}")
        settings[name] = json.loads(value)
    if settings and not args.label:
        parser.error("--set changes the agents: give a --label so that their rows are told apart")
    play(args.out[0], args.steps, args.seeds, args.agents, deltas=tuple(args.deltas), label=args.label,
         settings=settings)


if __name__ == "__main__":
    main()
