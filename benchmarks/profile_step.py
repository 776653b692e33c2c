"""Profile one training step (forward, -log p(x), backward, Adam) of our RealNVP and Glow with torch.profiler.

``python benchmarks/profile_step.py [--flow realnvp|zuko|glow] [--top 15] [--python]`` prints the top operators
by self CPU time over a few profiled steps (one thread; ``zuko`` is zuko's RealNVP on the same shapes, the bench's
reference); ``--python`` prints cProfile's top Python functions instead (where per-call overhead sits). Not part
of ``make bench``: it explains the bench rows.
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from bayes_diglm.flows import glow, realnvp


def _setup(name: str):
    torch.manual_seed(0)
    if name == "realnvp":
        return realnvp(8, num_layers=4, hidden_dims=(64, 64)), torch.randn(512, 8)
    if name == "zuko":
        import zuko

        flow = zuko.flows.RealNVP(8, transforms=4, hidden_features=(64, 64))
        flow.log_prob = lambda x: flow().log_prob(x)
        return flow, torch.randn(512, 8)
    return glow((1, 28, 28), levels=2, steps=4, hidden_channels=64), torch.rand(64, 1, 28, 28)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flow", choices=("realnvp", "zuko", "glow"), default="realnvp")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--python", action="store_true", help="cProfile's Python functions, not torch operators")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    flow, x = _setup(args.flow)
    optim = torch.optim.Adam(flow.parameters(), lr=1e-4)

    def step():
        loss = -flow.log_prob(x).mean()
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()

    for _ in range(3):
        step()
    if args.python:
        import cProfile
        import pstats
        import time

        pr = cProfile.Profile(timer=time.thread_time)
        pr.enable()
        for _ in range(args.steps):
            step()
        pr.disable()
        pstats.Stats(pr).sort_stats("tottime").print_stats(args.top)
        return
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))


if __name__ == "__main__":
    main()
