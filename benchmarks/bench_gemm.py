"""Machine GEMM throughput (GFLOP/s) and the RealNVP training step's FLOP utilisation, side by side."""

from __future__ import annotations

import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from bayes_diglm.flows import realnvp
from bayes_diglm.models import DIGLM, make_head

__all__ = ["run"]


def _median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def gemm_gflops(n: int = 1024, dtype: torch.dtype = torch.float32, repeats: int = 10) -> float:
    """Median GFLOP/s of an ``n x n`` by ``n x n`` matrix product (``2 n^3`` FLOPs)."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=gen, dtype=dtype), torch.randn(n, n, generator=gen, dtype=dtype)
    return 2.0 * n**3 / _median_seconds(lambda: a @ b, repeats) / 1e9


def run(quick: bool = False) -> list[dict]:
    """GEMM at the flow's own shape vs a large GEMM, and the training step's achieved vs peak GFLOP/s.

    The step's FLOPs are counted by ``torch.utils.flop_counter`` (matrix products of forward and backward);
    utilisation = (counted FLOPs / median step time) / large-GEMM GFLOP/s, all measured in this run on one
    thread (on a shared machine, a second OpenMP thread makes small GEMMs wait on busy cores).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _measure(quick)
    finally:
        torch.set_num_threads(threads)


def _measure(quick: bool) -> list[dict]:
    torch.manual_seed(0)
    repeats = 5 if quick else 20
    peak = gemm_gflops(512 if quick else 1024, repeats=repeats)
    batch, width = 512, 64
    gen = torch.Generator().manual_seed(1)
    a, w = torch.randn(batch, width, generator=gen), torch.randn(width, width, generator=gen)
    small = 2.0 * batch * width * width / _median_seconds(lambda: a @ w, repeats * 20) / 1e9
    model = DIGLM(realnvp(8, num_layers=4, hidden_dims=(width, width)), make_head("heteroscedastic", 8),
                  px_weight=1.0 / 8)
    optim = torch.optim.Adam(model.parameters(), lr=1e-4)
    x, y = torch.randn(batch, 8), torch.randn(batch)

    def step():
        value, _ = model(x, y)
        optim.zero_grad(set_to_none=True)
        (-value).backward()
        optim.step()

    step()  # ActNorm's data-dependent initialisation happens outside the counted step
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    achieved = flops / _median_seconds(step, repeats) / 1e9
    return [
        {"name": f"GEMM {batch}x{width}x{width} (the flow's layer shape) / GEMM 1024^3, float32 GFLOP/s",
         "ratio": small / peak, "detail": f"{small:.1f} vs {peak:.1f} GFLOP/s (1 thread)"},
        {"name": f"RealNVP step FLOP utilisation (8-D, 4 layers, {width}x{width}, batch {batch}) vs GEMM peak",
         "ratio": achieved / peak,
         "detail": f"{flops / 1e6:.1f} MFLOP/step, {achieved:.2f} of {peak:.1f} GFLOP/s"},
    ]


if __name__ == "__main__":
    for row in run():
        print(f"{row['ratio']:8.4f}  {row['name']}  ({row['detail']})")
