"""Speed of the conjugate head: batch fit vs a bare GEMM and vs BayesianRidge, and per-row updates."""

from __future__ import annotations

import os
import statistics
import time
import warnings
from collections.abc import Callable

import torch
from sklearn.linear_model import BayesianRidge

from bayes_diglm.inference.conjugate import ConjugateLinearRegression

__all__ = ["run"]


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (allocations, BLAS thread start)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _paired(ours: Callable[[], object], reference: Callable[[], object], repeats: int) -> tuple[float, float, float]:
    """(median ratio ours/reference over interleaved repeats, median ours s, median reference s).

    Interleaving keeps both sides under the same load when the machine is shared.
    """
    a, b = _median_seconds(ours, 1), _median_seconds(reference, 1)
    ratios, t_ours, t_ref = [a / b], [a], [b]
    for _ in range(repeats - 1):
        a, b = _median_seconds(ours, 1), _median_seconds(reference, 1)
        ratios.append(a / b)
        t_ours.append(a)
        t_ref.append(b)
    return statistics.median(ratios), statistics.median(t_ours), statistics.median(t_ref)


def run(quick: bool = False) -> list[dict]:
    """Measure side by side in one run; each row's ``ratio`` is ours / reference (time ratio).

    Aims: fit within 1.3x of the bare ``Z.T @ Z`` GEMM on 1e6 x 64 float32; BayesianRidge at least 5x
    slower than our fit; a rank-one update per row cheaper than refitting the posterior from statistics.
    """
    n, d = (200_000, 64) if quick else (1_000_000, 64)
    repeats = 3 if quick else 5
    gen = torch.Generator().manual_seed(0)
    Z = torch.randn(n, d, generator=gen, dtype=torch.float32)
    y = (Z @ torch.randn(d, generator=gen) + 0.5 * torch.randn(n, generator=gen)).to(torch.float64)
    head = ConjugateLinearRegression()
    rows = []

    ratio, t_fit, t_gemm = _paired(lambda: head.fit(Z, y), lambda: Z.T @ Z, repeats)
    rows.append(
        {
            "name": f"conjugate fit / Z.T@Z GEMM ({n:.0e} x {d})",
            "ratio": ratio,
            "detail": f"fit {t_fit * 1e3:.1f} ms, GEMM {t_gemm * 1e3:.1f} ms (float32 input, "
            f"{torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}; aim <= 1.3)",
        }
    )

    n_br = n // 5 if quick else n
    Z_np, y_np = Z[:n_br].numpy(), y[:n_br].numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ratio, t_br, t_fit_br = _paired(
            lambda: BayesianRidge().fit(Z_np, y_np), lambda: head.fit(Z[:n_br], y[:n_br]), 3
        )
    rows.append(
        {
            "name": f"BayesianRidge fit / conjugate fit ({n_br:.0e} x {d})",
            "ratio": ratio,
            "detail": f"BayesianRidge {t_br * 1e3:.1f} ms, ours {t_fit_br * 1e3:.1f} ms (aim >= 5)",
        }
    )

    num_updates = 200 if quick else 1000
    Z_up, y_up = Z[:num_updates].double().numpy(), y[:num_updates].numpy()
    base = ConjugateLinearRegression().fit(Z[num_updates : num_updates + 1000], y[num_updates : num_updates + 1000])

    def updates():
        h = ConjugateLinearRegression().fit(Z[:1], y[:1])
        h.__dict__.update(base.__dict__)
        for i in range(num_updates):
            h.update(Z_up[i], y_up[i])

    stats = base.stats_

    def refits():
        for _ in range(num_updates):
            ConjugateLinearRegression().fit_stats(stats)

    ratio, t_update, t_refit = _paired(updates, refits, repeats)
    t_update, t_refit = t_update / num_updates, t_refit / num_updates
    rows.append(
        {
            "name": f"update per row / refit from statistics (D={d})",
            "ratio": ratio,
            "detail": f"update {t_update * 1e6:.1f} us/row (O(D^2)), refit {t_refit * 1e6:.1f} us (O(D^3))",
        }
    )
    return rows


if __name__ == "__main__":
    # One thread: on a shared, loaded machine the thread pool's barriers dominate and the ratios turn to
    # noise; both sides of every ratio run under the same setting. Pass --threads N to change it.
    import sys

    threads = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 1
    torch.set_num_threads(threads)
    for row in run():
        print(f"{row['name']:<60s} {row['ratio']:8.2f}   {row['detail']}")
