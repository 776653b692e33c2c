"""A user's own flows trained through bayes_diglm (``as_flow``) against the same flows trained in their library.

Same transforms (deep copies), same data (8-D Gaussian, batch 512), Adam on ``-mean log p(x)`` (forward, log-det,
backward, optimiser). Each ratio is the library's median step time over ours, measured alternately in this run:
1 means the adapter costs nothing, above 1 ours is faster.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from torch import nn
from torch.distributions.transforms import _InverseTransform

from bayes_diglm.flows import as_flow, clear_transform_cache

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_flows import _step_fn, alternating_step_times  # noqa: E402 - the folder of this file, added above

__all__ = ["run"]

DIM, BATCH, HIDDEN = 8, 512, [64, 64]


def _pyro_spline_couplings() -> list:
    transforms = []
    for _ in range(4):
        transforms += [T.spline_coupling(DIM, hidden_dims=HIDDEN, count_bins=8), T.Permute(torch.arange(DIM).flip(0))]
    return transforms[:-1]


def _pyro_maf() -> list:
    """Pyro's affine autoregressive transforms handed over as ``T.inv``: read base to data, so a MAF on data."""
    return [T.affine_autoregressive(DIM, hidden_dims=HIDDEN).inv for _ in range(4)]


def _pyro_step(transforms: list):
    """Pyro's own way: ``TransformedDistribution(base, transforms).log_prob``, caches cleared every step."""
    model = dist.TransformedDistribution(dist.Normal(torch.zeros(DIM), 1.0).to_event(1), transforms)
    inner = [t._inv if isinstance(t, _InverseTransform) else t for t in transforms]
    modules = nn.ModuleList(t for t in inner if isinstance(t, nn.Module))

    def log_prob(x):
        clear_transform_cache(transforms)  # before each step: what Pyro's tutorials do after it
        return model.log_prob(x)

    return _step_fn(modules, log_prob)


def _ours_step(user_flow):
    flow = as_flow(copy.deepcopy(user_flow), (DIM,))
    return _step_fn(flow, flow.log_prob)


def _row(name: str, library: str, build, library_step, quick: bool) -> dict:
    torch.manual_seed(0)
    user_flow = build()
    steps = {"library": library_step(user_flow), "ours": _ours_step(user_flow)}
    x = torch.randn(BATCH, DIM, generator=torch.Generator().manual_seed(1))
    t = alternating_step_times(steps, x, repeats=3 if quick else 30)
    return {"name": f"{name} training step, {library} / as_flow", "ratio": t["library"] / t["ours"],
            "detail": f"{library} {1e3 * t['library']:.1f} ms, ours {1e3 * t['ours']:.1f} ms per step "
                      f"(thread CPU time, batch {BATCH}, {DIM}-D)"}


def _zuko_nsf():
    import zuko

    return zuko.flows.NSF(DIM, transforms=4, hidden_features=HIDDEN)


def _zuko_step(nsf):
    return _step_fn(nsf, lambda x: nsf().log_prob(x))


def run(quick: bool = False):
    yield "Pyro spline couplings", lambda: _row("Pyro spline coupling x4 + Permute", "TransformedDistribution",
                                                _pyro_spline_couplings, _pyro_step, quick)
    yield "Pyro MAF", lambda: _row("Pyro affine_autoregressive(...).inv x4 (MAF)", "TransformedDistribution",
                                   _pyro_maf, _pyro_step, quick)
    yield "zuko NSF", lambda: _row("zuko NSF x4", "zuko flow().log_prob", _zuko_nsf, _zuko_step, quick)
