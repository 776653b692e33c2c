"""NUTS head against the same logistic model written by hand in Pyro: effective samples per second.

Both run Pyro's NUTS (one chain, the same warm-up and draws, diagonal mass matrix) on a 64-feature logistic
posterior with 10,000 rows (``--quick``: 8 features, 1,000 rows). Ours hands NUTS the log joint written in torch
and starts at the posterior mode; the hand-written model is what a Pyro user would write (``pyro.plate`` and a
``Bernoulli(logits=...)`` observation), started by Pyro's default (uniform in (-2, 2) on the unconstrained scale).
Ratio: our median bulk ESS of beta per second over the hand-written model's.
"""

from __future__ import annotations

import time

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import MCMC, NUTS

from bayes_diglm.inference import NUTSClassifier


def _data(n: int, d: int):
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(n, d)) / np.sqrt(d)
    beta = rng.normal(size=d)
    y = (Z @ beta + rng.logistic(size=n) > 0).astype(np.int64)
    return Z, y


def _hand_model(Z, y):
    d = Z.shape[1]
    beta = pyro.sample("beta", dist.Normal(torch.zeros(d, dtype=torch.float64), 1.0).to_event(1))
    intercept = pyro.sample("intercept", dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0))
    with pyro.plate("data", Z.shape[0]):
        pyro.sample("y", dist.Bernoulli(logits=Z @ beta + intercept), obs=y)


def _ess_per_second(draws: np.ndarray, seconds: float) -> float:
    ess = [float(az.ess(draws[None, :, j])) for j in range(draws.shape[1])]  # one coordinate at a time
    return float(np.median(ess)) / seconds


def _compare(n: int, d: int, warmup: int, samples: int) -> dict:
    Z, y = _data(n, d)
    t0 = time.perf_counter()
    head = NUTSClassifier(num_chains=1, num_warmup=warmup, num_samples=samples, seed=0).fit(Z, y)
    ours_s = time.perf_counter() - t0
    ours = _ess_per_second(head.posterior_["beta"], ours_s)

    Z_t, y_t = torch.from_numpy(Z), torch.from_numpy(y.astype(np.float64))
    pyro.set_rng_seed(0)
    t0 = time.perf_counter()
    mcmc = MCMC(NUTS(_hand_model), num_samples=samples, warmup_steps=warmup, disable_progbar=True)
    mcmc.run(Z_t, y_t)
    hand_s = time.perf_counter() - t0
    hand = _ess_per_second(mcmc.get_samples()["beta"].numpy(), hand_s)
    return {"name": f"NUTS head / hand-written Pyro model, ESS per second (logistic, n={n}, D={d})",
            "ratio": ours / hand,
            "detail": f"ours {ours:.1f} ESS/s ({ours_s:.0f} s), hand-written {hand:.1f} ESS/s ({hand_s:.0f} s); "
                      f"{warmup} warm-up + {samples} draws, one chain"}


def run(quick: bool = False):
    if quick:
        yield "nuts quick", lambda: _compare(1_000, 8, 100, 100)
    else:
        yield "nuts logistic 10k x 64", lambda: _compare(10_000, 64, 300, 300)
