"""Training throughput of our RealNVP against an equivalent zuko RealNVP (same data, batch, widths)."""

from __future__ import annotations

import statistics
import sys
import time

import torch

from bayes_diglm.flows import realnvp

__all__ = ["run"]

DIM, LAYERS, HIDDEN = 8, 4, (64, 64)


def _ours(mixing: str, actnorm: bool):
    flow = realnvp(DIM, num_layers=LAYERS, hidden_dims=HIDDEN, mixing=mixing, actnorm=actnorm)
    return flow, lambda x: flow.log_prob(x)


def _zuko():
    import zuko

    flow = zuko.flows.RealNVP(DIM, transforms=LAYERS, hidden_features=HIDDEN)
    return flow, lambda x: flow().log_prob(x)


def _alternating_step_times(makers: dict, x: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median seconds of one Adam step on ``-mean log p(x)`` per flow; the flows take turns (shared load)."""
    torch.manual_seed(0)
    built = {k: make() for k, make in makers.items()}
    optims = {k: torch.optim.Adam(flow.parameters(), lr=1e-4) for k, (flow, _) in built.items()}
    times = {k: [] for k in built}
    for r in range(repeats + 2):
        for name, (_, log_prob) in built.items():
            t0 = time.perf_counter()
            loss = -log_prob(x).mean()
            optims[name].zero_grad(set_to_none=True)
            loss.backward()
            optims[name].step()
            if r >= 2:
                times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def run(quick: bool = False) -> list[dict]:
    """Ratio = our median step time / zuko's (below 1: ours is faster), measured alternately in one run.

    zuko's RealNVP alternates coupling masks with no ActNorm or mixing layer, so the equivalent of ours is
    ``realnvp(mixing="permute", actnorm=False)``: 4 affine couplings with 64x64 conditioners on 8-D data.
    Our default (LU mixing + ActNorm) is measured too. One thread, batch 512, Gaussian data.
    """
    try:
        import zuko  # noqa: F401
    except ModuleNotFoundError:
        print("  zuko is not installed (pip install -e '.[bench]'): skipping the zuko comparison", file=sys.stderr)
        return []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x = torch.randn(512, DIM, generator=torch.Generator().manual_seed(0))
        t = _alternating_step_times({"ours": lambda: _ours("permute", False), "default": lambda: _ours("lu", True),
                                     "zuko": _zuko}, x, 5 if quick else 40)
    finally:
        torch.set_num_threads(threads)
    rows = []
    for key, label in (("ours", "couplings + reverse"), ("default", "default: + LU mixing + ActNorm")):
        rows.append({"name": f"RealNVP training step, ours ({label}) / zuko (8-D, 4 couplings, 64x64, batch 512)",
                     "ratio": t[key] / t["zuko"],
                     "detail": f"{512 / t[key]:,.0f} vs {512 / t['zuko']:,.0f} samples/s"})
    return rows


if __name__ == "__main__":
    for row in run():
        print(f"{row['ratio']:6.3f}  {row['name']}  ({row['detail']})")
