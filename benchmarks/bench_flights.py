"""The flights pipeline per stage on a small configuration, and the training step's optimiser, fused or not.

The per-stage rows run :func:`bayes_diglm.experiments.flights.run_flights` once on a small us2001 configuration
(nyc2013 when the US flights are not fetched) and give each stage's share of the pipeline's wall time, with its
wall and CPU seconds (``metrics.json``'s ``stage_seconds`` and ``stage_cpu_seconds``). The full configuration's
profile is in docs/flights.md.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _small_config(quick: bool):
    from bayes_diglm.data import flights_us_path
    from bayes_diglm.experiments.flights import FlightsConfig

    small = dict(max_train=4_000 if quick else 10_000, max_val=2_000, epochs=1, mlp_epochs=1,
                 ensemble_size=2, logpx_rows=2_000, logpx_draws=2, px_weight=0.02)
    try:
        flights_us_path()
    except FileNotFoundError:
        return FlightsConfig.quick("nyc2013", max_test=5_000, **small)
    return FlightsConfig.quick("us2001", train_rows=60_000, test_rows=5_000, **small)


def _stage_rows(quick: bool) -> list[dict]:
    from bayes_diglm.experiments.flights import run_flights

    config = _small_config(quick)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as out:
        result = run_flights(out, config, quiet=True)
        metrics = json.loads((Path(out) / "metrics.json").read_text())
    stages, cpu = metrics["stage_seconds"], metrics["stage_cpu_seconds"]
    total = result["seconds"]
    size = (f"{config.dataset}, networks on {config.max_train:,} flights, 1 epoch, {config.ensemble_size} MLPs; "
            f"pipeline {total:.1f} s at load {load:.1f}")
    return [{"name": f"flights stage '{stage}' / whole pipeline (small config)", "ratio": seconds / total,
             "detail": f"{seconds:.2f} s wall, {cpu[stage]:.2f} s CPU ({size})"} for stage, seconds in stages.items()]


def _adam_rows(quick: bool) -> list[dict]:
    """The default flights DIGLM's training step with Adam's per-tensor loop against the fused kernel."""
    from bayes_diglm.flows import realnvp
    from bayes_diglm.models import DIGLM, make_head

    torch.manual_seed(0)
    x, y = torch.randn(512, 5), torch.randn(512)
    model = DIGLM(realnvp(5, num_layers=4, hidden_dims=(64, 64)), make_head("heteroscedastic", 5), px_weight=0.02)
    optims = {"per-tensor": torch.optim.Adam(model.parameters(), lr=1e-5, foreach=False),
              "fused": torch.optim.Adam(model.parameters(), lr=1e-5, fused=True)}
    times = {k: [] for k in optims}
    for r in range((5 if quick else 40) + 2):
        for name, opt in optims.items():
            t0 = time.thread_time()
            value, _ = model(x, y)
            opt.zero_grad(set_to_none=True)
            (-value).backward()
            opt.step()
            if r >= 2:
                times[name].append(time.thread_time() - t0)
    t = {k: statistics.median(v) for k, v in times.items()}
    return [{"name": "flights DIGLM training step, Adam per-tensor / fused (RealNVP 5-D, 4 x (64, 64), batch 512)",
             "ratio": t["per-tensor"] / t["fused"],
             "detail": f"{t['per-tensor'] * 1e3:.2f} vs {t['fused'] * 1e3:.2f} ms (thread CPU time; "
                       "bayes_diglm.training.train_module's default Adam is not fused)"}]


def run(quick: bool = False):
    yield "flights Adam step", lambda: _adam_rows(quick)
    yield "flights pipeline stages", lambda: _stage_rows(quick)


if __name__ == "__main__":
    for _label, thunk in run():
        for row in thunk():
            print(f"{row['ratio']:6.3f}  {row['name']}  ({row['detail']})")
