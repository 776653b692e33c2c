"""Machine GEMM throughput (GFLOP/s): a small GEMM at the flows' layer shape against a large square one."""

from __future__ import annotations

import statistics
import time

import torch

__all__ = ["run"]


def _median_seconds(fn, repeats: int) -> float:
    """Median CPU seconds of this thread per call (the wall clock would count other processes' turns)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.thread_time()
        fn()
        times.append(time.thread_time() - t0)
    return statistics.median(times)


def gemm_gflops(n: int = 1024, dtype: torch.dtype = torch.float32, repeats: int = 10) -> float:
    """Median GFLOP/s of an ``n x n`` by ``n x n`` matrix product (``2 n^3`` FLOPs)."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=gen, dtype=dtype), torch.randn(n, n, generator=gen, dtype=dtype)
    return 2.0 * n**3 / _median_seconds(lambda: a @ b, repeats) / 1e9


def run(quick: bool = False) -> list[dict]:
    """GEMM at the flow's own layer shape vs a large GEMM, one thread (on a shared machine a second OpenMP
    thread makes small GEMMs wait on busy cores). The flow step's own utilisation is in bench_flows."""
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
    return [
        {"name": f"GEMM {batch}x{width}x{width} (the flow's layer shape) / GEMM 1024^3, float32 GFLOP/s",
         "ratio": small / peak, "detail": f"{small:.1f} vs {peak:.1f} GFLOP/s (1 thread)"},
    ]


if __name__ == "__main__":
    for row in run():
        print(f"{row['ratio']:8.4f}  {row['name']}  ({row['detail']})")
