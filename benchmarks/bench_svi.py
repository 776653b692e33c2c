"""SVI against Laplace on the same classification head: fit time at the sizes of flow-feature heads."""

from __future__ import annotations

import statistics
import sys
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import make_classification

from bayes_diglm.inference import LaplaceClassifier, SVIClassifier

__all__ = ["run"]


def _data(n: int, d: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Standardised features with a linear class structure (half of them informative), 2% of labels flipped."""
    Z, y = make_classification(n_samples=n, n_features=d, n_informative=max(2, d // 2), n_redundant=0,
                               n_classes=k, n_clusters_per_class=1, flip_y=0.02, random_state=n + d + k)
    return (Z - Z.mean(0)) / Z.std(0), y


def _fit_seconds(make, Z, y) -> tuple[float, object]:
    t0 = time.thread_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an unconverged fit shows in the row's detail
        head = make().fit(Z, y)
    return time.thread_time() - t0, head


def _row(n: int, d: int, k: int, covariance: str, repeats: int) -> dict:
    from threadpoolctl import threadpool_limits

    Z, y = _data(n, d, k)
    options = {} if covariance == "full" else {"covariance": covariance}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t_svi, t_lap = [], []
    try:
        with threadpool_limits(1):
            for _ in range(repeats):  # the two sides take turns, so a busy machine slows both alike
                seconds, svi = _fit_seconds(SVIClassifier, Z, y)
                t_svi.append(seconds)
                t_lap.append(_fit_seconds(lambda: LaplaceClassifier(**options), Z, y)[0])
    finally:
        torch.set_num_threads(threads)
    a, b = statistics.median(t_svi), statistics.median(t_lap)
    shape = "binary" if k == 2 else f"softmax K={k}"
    # (getattr: the row also runs on the code before issue 30, to measure before and after side by side)
    structure, optimizer = getattr(svi, "covariance_", svi.covariance), getattr(svi, "optimizer_", "adam")
    return {"name": f"SVI fit / Laplace fit, defaults ({shape}, D={d}, n={n:,}, covariance {structure})",
            "ratio": a / b,
            "detail": f"SVIClassifier() {a * 1e3:.0f} ms ({optimizer}, {svi.n_iter_} steps, converged "
                      f"{svi.converged_}), LaplaceClassifier({', '.join(f'{k}={v!r}' for k, v in options.items())}) "
                      f"{b * 1e3:.0f} ms (aim <= 10)"}


def run(quick: bool = False):
    """Ratio = SVI's fit time / Laplace's (CPU time of one thread, medians of interleaved repeats).

    ``SVIClassifier()`` with its defaults against the Laplace head of the same covariance structure (the
    default, full, up to 2,000 weights; Kronecker above, where both heads' "auto" choices are Kronecker):
    200 x 2 binary, 10,000 x 64 with 10 classes (a flow-feature head), and in the full run 60,000 x 784 with 10
    classes (the MNIST head's shape; synthetic features). ``--quick``: the two small cases, one repeat.
    """
    cases = [(200, 2, 2, "full", 5), (10_000, 64, 10, "full", 3), (60_000, 784, 10, "kron", 1)]
    for n, d, k, cov, repeats in cases:
        if quick and n > 10_000:
            continue
        yield (f"SVI vs Laplace n={n} D={d} K={k}",
               lambda n=n, d=d, k=k, cov=cov, r=repeats: _row(n, d, k, cov, 1 if quick else r))


if __name__ == "__main__":
    for _, thunk in run("--quick" in sys.argv):
        row = thunk()
        print(f"{row['ratio']:8.3f}  {row['name']}  ({row['detail']})", flush=True)
