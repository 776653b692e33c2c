"""Hybrid (lambda > 0) against discriminative (lambda = 0) training step, same model, side by side."""

from __future__ import annotations

import copy
import statistics
import time

import torch

from bayes_diglm.flows import glow, realnvp
from bayes_diglm.models import DIGLM, make_head


def _step_times(models: dict[str, DIGLM], x, y, repeats: int) -> dict[str, float]:
    """Median seconds of one Adam step per model; the models take turns so load changes hit all alike."""
    optims = {k: torch.optim.Adam(m.parameters(), lr=1e-4) for k, m in models.items()}
    times = {k: [] for k in models}
    for r in range(repeats + 2):
        for name, model in models.items():
            t0 = time.perf_counter()
            value, _ = model.objective(x, y)
            optims[name].zero_grad(set_to_none=True)
            (-value).backward()
            optims[name].step()
            if r >= 2:  # two warm-up rounds
                times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _pair(flow, head) -> dict[str, DIGLM]:
    hybrid = DIGLM(flow, head, px_weight=1.0 / flow.dim)
    discriminative = copy.deepcopy(hybrid)
    discriminative.px_weight = 0.0
    return {"hybrid": hybrid, "discriminative": discriminative}


def run(quick: bool = False) -> list[dict]:
    torch.manual_seed(0)
    repeats = 5 if quick else 30
    rows = []
    x_tab = torch.randn(512, 8)
    models = _pair(realnvp(8, num_layers=4, hidden_dims=(64, 64)), make_head("heteroscedastic", 8))
    t = _step_times(models, x_tab, torch.randn(512), repeats)
    rows.append({"name": "training step, hybrid / discriminative (RealNVP 8-D, 4 layers, batch 512)",
                 "ratio": t["hybrid"] / t["discriminative"],
                 "detail": f"{t['hybrid'] * 1e3:.2f} ms vs {t['discriminative'] * 1e3:.2f} ms"})
    x_img = torch.rand(16 if quick else 64, 1, 28, 28)
    models = _pair(glow((1, 28, 28), levels=2, steps=4, hidden_channels=64), make_head("categorical", 784,
                                                                                      num_classes=10))
    t = _step_times(models, x_img, torch.randint(0, 10, (x_img.shape[0],)), max(3, repeats // 3))
    rows.append({"name": f"training step, hybrid / discriminative (Glow 28x28, 2x4 steps, batch {x_img.shape[0]})",
                 "ratio": t["hybrid"] / t["discriminative"],
                 "detail": f"{t['hybrid'] * 1e3:.1f} ms vs {t['discriminative'] * 1e3:.1f} ms"})
    return rows


if __name__ == "__main__":
    for row in run():
        print(f"{row['ratio']:6.3f}  {row['name']}  ({row['detail']})")
