"""Density quality on the dequantised NYC flight attributes: our flows against zuko's and a Gaussian mixture.

Every model sees the same random split of the flights (bayes_diglm.data.flights.load_flights), the same
dequantised validation and test draws and, for the flows, the same Adam budget; each flow's epoch is picked
on validation log-likelihood. The split is random, not the experiments' chronological one: that one tests on
November-December, months the training rows never take, so its log p(x) mostly measures how each model
extrapolates in one attribute rather than how well it models the density.
"""

from __future__ import annotations

import copy
import math
import sys
import time

import numpy as np
import torch

from bayes_diglm.flows import TabularDequantizer, realnvp, spline

__all__ = ["run"]

LAYERS, HIDDEN, BINS = 4, (64, 64), 8


def _flows() -> dict[str, tuple[torch.nn.Module, object]]:
    """name -> (module, log_prob on a batch); the zuko ones only when zuko is installed."""
    out = {}
    ours = realnvp(8, num_layers=LAYERS, hidden_dims=HIDDEN)
    out["ours RealNVP (default)"] = (ours, ours.log_prob)
    ours_spline = spline(8, num_layers=LAYERS, hidden_dims=HIDDEN, count_bins=BINS)
    out["ours spline"] = (ours_spline, ours_spline.log_prob)
    try:
        import zuko
    except ModuleNotFoundError:
        print("  zuko is not installed (pip install -e '.[bench]'): skipping its density rows", file=sys.stderr)
        return out
    z_rnvp = zuko.flows.RealNVP(8, transforms=LAYERS, hidden_features=HIDDEN)
    out["zuko RealNVP"] = (z_rnvp, lambda x, f=z_rnvp: f().log_prob(x))
    z_nsf = zuko.flows.NSF(8, transforms=LAYERS, hidden_features=HIDDEN, bins=BINS)
    out["zuko NSF"] = (z_nsf, lambda x, f=z_nsf: f().log_prob(x))
    return out


def _mean_log_density(log_prob, draws: list[torch.Tensor]) -> float:
    with torch.no_grad():
        return float(np.mean([torch.cat([log_prob(c) for c in v.split(8192)]).double().mean().item()
                              for v in draws]))


def _train(module, log_prob, X: torch.Tensor, dq: TabularDequantizer, val: list[torch.Tensor], *, epochs: int,
           batch_size: int, lr: float, seed: int) -> tuple[dict, int, float]:
    """Adam on -mean log p(v), fresh dequantisation noise every batch; (best state, its epoch, its val LL)."""
    gen = torch.Generator().manual_seed(seed)
    optim = torch.optim.Adam(module.parameters(), lr=lr)
    best = (copy.deepcopy(module.state_dict()), 0, -math.inf)
    for epoch in range(1, epochs + 1):
        module.train()
        for rows in torch.randperm(X.shape[0], generator=gen).split(batch_size):
            loss = -log_prob(dq(X[rows], generator=gen)).mean()
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
        module.eval()
        score = _mean_log_density(log_prob, val)
        if score > best[2]:
            best = (copy.deepcopy(module.state_dict()), epoch, score)
    return best


def random_split(n_train: int, n_val: int, n_test: int, seed: int = 0):
    """Disjoint random train / val / test rows of the eight attributes, plane age filled with the training
    median, standardised with training statistics: (X_train, X_val, X_test, std), float32 arrays."""
    from bayes_diglm.data.flights import FEATURE_NAMES, load_flights

    frame = load_flights()
    rows = np.random.default_rng(seed).permutation(len(frame))[: n_train + n_val + n_test]
    X = np.array(frame.loc[rows, list(FEATURE_NAMES)].to_numpy(np.float64))  # a writable copy
    train, val, test = X[:n_train], X[n_train:n_train + n_val], X[n_train + n_val:]
    age = FEATURE_NAMES.index("plane_age")
    fill = np.nanmedian(train[:, age])
    for part in (train, val, test):
        part[np.isnan(part[:, age]), age] = fill
    mean, std = train.mean(0), train.std(0)
    return tuple(((p - mean) / std).astype(np.float32) for p in (train, val, test)) + (std,)


def run(quick: bool = False) -> list[dict]:
    """One row per model: ratio = exp(test LL of the model - test LL of GaussianMixture(64)), the per-row
    likelihood ratio against the mixture (above 1: the model is better); then our spline flow against zuko NSF.
    """
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits

    from bayes_diglm.data.flights import FEATURE_NAMES

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        n_train, epochs = (5_000, 4) if quick else (20_000, 15)
        X_train, X_val, X_test, std = random_split(n_train, 5_000, 10_000)
        # every attribute is an integer in its raw unit (months, days, weekdays, years, minutes, miles); the
        # median-filled plane ages sit on one integer too (or a half-integer, whose cell is just as wide)
        dq = TabularDequantizer.for_standardized([True] * len(FEATURE_NAMES), std)
        X = torch.from_numpy(X_train)
        gen = torch.Generator().manual_seed(123)
        val = [dq(torch.from_numpy(X_val), generator=gen) for _ in range(2)]
        test = [dq(torch.from_numpy(X_test), generator=gen) for _ in range(4)]
        results = {}
        torch.manual_seed(0)
        for name, (module, log_prob) in _flows().items():
            t0 = time.perf_counter()
            state, epoch, val_ll = _train(module, log_prob, X, dq, val, epochs=epochs, batch_size=512, lr=1e-3,
                                          seed=0)
            module.load_state_dict(state)
            module.eval()
            results[name] = (_mean_log_density(log_prob, test), f"epoch {epoch}/{epochs}",
                             time.perf_counter() - t0)
        t0 = time.perf_counter()
        gmm = GaussianMixture(64, covariance_type="full", random_state=0)
        with threadpool_limits(1):
            gmm.fit(dq(X, generator=gen).numpy().astype(np.float64))
        results["GaussianMixture(64)"] = (float(np.mean([gmm.score_samples(v.numpy().astype(np.float64)).mean()
                                                         for v in test])), "EM", time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    ref = results["GaussianMixture(64)"][0]
    size = f"{n_train:,} train / 5,000 val / 10,000 test rows"
    rows = [{"name": f"test log-lik per row, {name} / GaussianMixture(64), dequantised flights ({size})",
             "ratio": math.exp(ll - ref),
             "detail": f"{ll:.3f} vs {ref:.3f} nats ({picked}, {seconds:.0f} s)"}
            for name, (ll, picked, seconds) in results.items() if name != "GaussianMixture(64)"]
    rows.append({"name": "test log-lik per row, GaussianMixture(64) (the reference above)", "ratio": 1.0,
                 "detail": f"{ref:.3f} nats ({results['GaussianMixture(64)'][2]:.0f} s)"})
    if "zuko NSF" in results:
        ours, theirs = results["ours spline"][0], results["zuko NSF"][0]
        rows.append({"name": "test log-lik per row, ours spline / zuko NSF (likelihood ratio per row)",
                     "ratio": math.exp(ours - theirs),
                     "detail": f"{ours:.3f} vs {theirs:.3f} nats (aim >= 1)"})
    return rows


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        print(f"{row['ratio']:8.4f}  {row['name']}  ({row['detail']})")
