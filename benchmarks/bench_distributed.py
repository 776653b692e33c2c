"""DDP training throughput of the flights-like DIGLM with 1 and 2 processes (gloo, torchrun), side by side."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

__all__ = ["run"]

GLOBAL_BATCH, STEPS, WARMUP = 512, 30, 5


def _worker() -> None:
    """Under torchrun: time ``STEPS`` DDP steps (after ``WARMUP``) at a fixed global batch; rank 0 prints JSON."""
    import torch

    from bayes_diglm.models.diglm import build_diglm
    from bayes_diglm.training.distributed import (
        distributed_batches,
        init_distributed,
        shutdown_distributed,
        wrap_ddp,
    )

    torch.set_num_threads(1)
    ctx = init_distributed("gloo")
    try:
        torch.manual_seed(0)
        n = GLOBAL_BATCH * (STEPS + WARMUP)
        X, y = torch.randn(n, 8, generator=torch.Generator().manual_seed(0)), torch.randn(n)
        model = build_diglm({"kind": "realnvp", "dim": 8, "num_layers": 4, "hidden_dims": [64, 64]},
                            {"family": "heteroscedastic"}, 1.0 / 8)
        net = wrap_ddp(model, X, y, batch_size=GLOBAL_BATCH, seed=0)
        optim = torch.optim.Adam(model.parameters(), lr=1e-4)
        batches = distributed_batches(n, GLOBAL_BATCH, epoch=0, seed=0, rank=ctx.rank, world_size=ctx.world_size)
        for k, idx in enumerate(batches):
            if k == WARMUP:
                torch.distributed.barrier()
                t0 = time.perf_counter()
            value, _ = net(X[idx], y[idx])
            optim.zero_grad(set_to_none=True)
            (-value).backward()
            optim.step()
        torch.distributed.barrier()
        if ctx.is_main:
            print(json.dumps({"samples_per_s": GLOBAL_BATCH * STEPS / (time.perf_counter() - t0)}))
    finally:
        shutdown_distributed()


def _launch(processes: int) -> float:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
           os.path.abspath(__file__), "--worker"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"torchrun with {processes} processes failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["samples_per_s"]


def run(quick: bool = False) -> list[dict]:
    """Ratio = samples/s with 2 processes / with 1 (one thread each, global batch 512); launches alternate."""
    one, two = [], []
    for _ in range(1 if quick else 3):
        one.append(_launch(1))
        two.append(_launch(2))
    a, b = statistics.median(one), statistics.median(two)
    return [{"name": f"DDP training throughput, 2 processes / 1 (gloo, global batch {GLOBAL_BATCH}, 1 thread each)",
             "ratio": b / a, "detail": f"{b:,.0f} vs {a:,.0f} samples/s"}]


if __name__ == "__main__":
    if "--worker" in sys.argv:
        _worker()
    else:
        for row in run():
            print(f"{row['ratio']:6.3f}  {row['name']}  ({row['detail']})")
