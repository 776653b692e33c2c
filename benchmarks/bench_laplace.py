"""Our Laplace head against laplace-torch's last-layer Laplace: fit + predictive time, and agreement of the
Gaussian predictive over the logits where the two approximations coincide."""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import torch

from bayes_diglm.inference.laplace import LaplaceClassifier

__all__ = ["run"]

PRIOR = 1.0


def _data(n: int, d: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, d)) / np.sqrt(d) * 3.0
    logits = Z @ rng.standard_normal((d, k)) + rng.standard_normal(k)
    y = (logits + rng.gumbel(size=logits.shape)).argmax(1)
    return Z, y


def _ours(Z, y, Z_test, covariance: str, k: int) -> tuple[LaplaceClassifier, np.ndarray]:
    # the default optimizer="auto": Newton for the full covariance up to 2,000 weights, L-BFGS otherwise (the
    # Kronecker posterior needs no full Hessian)
    clf = LaplaceClassifier(prior_precision=PRIOR, covariance=covariance, classes=np.arange(k))
    clf = clf.fit(Z, y)
    return clf, clf.predict_proba(Z_test)


def _theirs(weights: np.ndarray, Z, y, Z_test, structure: str):
    """laplace-torch on a model whose last (only) layer holds our MAP: softmax over K outputs (K=2 too)."""
    from laplace import Laplace

    k = weights.shape[0]
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(Z.shape[1], k)).double()
    with torch.no_grad():
        model[1].weight.copy_(torch.from_numpy(weights[:, :-1]))
        model[1].bias.copy_(torch.from_numpy(weights[:, -1]))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(Z), torch.from_numpy(y)),
                                         batch_size=1000)
    la = Laplace(model, "classification", subset_of_weights="last_layer", hessian_structure=structure,
                 prior_precision=PRIOR)
    la.fit(loader)
    # in batches: its GLM predictive forms the (batch, K, K(D+1)) Jacobian, 6 GB for 10,000 x 10 x 7,860
    probs = torch.cat([la(chunk, pred_type="glm", link_approx="probit")
                       for chunk in torch.from_numpy(Z_test).split(500)])
    return la, probs


def _binary_to_softmax(weights: np.ndarray) -> np.ndarray:
    return np.concatenate([np.zeros_like(weights), weights])  # logit of class 1 minus class 0


def _case(n: int, d: int, k: int, covariance: str, repeats: int) -> dict:
    Z, y = _data(n, d, k, seed=d + k)
    Z_test, _ = _data(n, d, k, seed=d + k + 1)
    t_ours, t_theirs = [], []
    for _ in range(repeats):
        t0 = time.thread_time()
        clf, _ = _ours(Z, y, Z_test, covariance, k)
        t_ours.append(time.thread_time() - t0)
        map_weights = np.concatenate([clf.coef_, clf.intercept_[:, None]], axis=1)  # (outputs, D + 1)
        weights = map_weights if k > 2 else _binary_to_softmax(map_weights)
        t0 = time.thread_time()
        la, _ = _theirs(weights, Z, y, Z_test, covariance)
        t_theirs.append(time.thread_time() - t0)
    row = {"ours": statistics.median(t_ours), "theirs": statistics.median(t_theirs)}
    if k > 2:  # same model (over-parametrised softmax, same prior, same MAP): compare the logit Gaussians
        X_test = np.concatenate([Z_test[:500], np.ones((500, 1))], axis=1)  # the first 500 test points
        mu_ours, cov_ours = X_test @ map_weights.T, clf.posterior_.logit_cov(X_test)
        f_mu, f_var = la._glm_predictive_distribution(torch.from_numpy(Z_test[:500]))
        row["max_diff"] = max(float(np.abs(mu_ours - f_mu.numpy()).max()),
                              float(np.abs(cov_ours - f_var.numpy()).max()))
    return row


def _row(n: int, d: int, k: int, cov: str, repeats: int) -> dict:
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            r = _case(n, d, k, cov, repeats)
    finally:
        torch.set_num_threads(threads)
    agree = (f"; logit mean/cov max |diff| {r['max_diff']:.1e} (same approximation)"
             if cov == "full" and "max_diff" in r else
             f"; logit mean/cov max |diff| {r['max_diff']:.1e} (different K-FAC scalings may "
             f"differ)" if "max_diff" in r else "; binary: logistic vs 2-way softmax, not compared")
    return {"name": f"Laplace fit + predictive, laplace-torch / ours ({cov}, "
                    f"{'binary' if k == 2 else f'softmax K={k}'}, D={d}, n={n:,})",
            "ratio": r["theirs"] / r["ours"],
            "detail": f"ours {r['ours'] * 1e3:.0f} ms, laplace-torch {r['theirs'] * 1e3:.0f} ms "
                      f"(aim >= 2){agree}"}


def run(quick: bool = False):
    """Ratio = laplace-torch's time / ours (above 1: ours faster), 10,000 training and 10,000 test points.

    Ours: ``LaplaceClassifier.fit`` (MAP by its default solver + posterior) and ``predict_proba`` (probit).
    laplace-torch: ``fit`` (curvature at our MAP, copied into its model: it does not find the MAP) and the GLM probit
    predictive. Both in float64 on one thread; times are this thread's CPU time. One ``(label, thunk)`` per
    case (benchmarks/run.py reports a failing one and goes on); medians of 3 repeats at D = 64, one run at
    D = 785 (minutes each); ``--quick``: 2,000 points, the D = 64 cases.
    """
    import laplace  # noqa: F401  - laplace-torch, in the bench extra; run.py reports it missing

    n = 2_000 if quick else 10_000
    repeats = 1 if quick else 3
    cases = [(64, 2, "full"), (785, 2, "full"), (64, 10, "full"), (64, 2, "kron"), (785, 2, "kron"),
             (64, 10, "kron"), (785, 10, "kron")]
    for d, k, cov in cases:
        if quick and d > 64:
            continue
        yield (f"Laplace {cov} D={d} K={k}",
               lambda d=d, k=k, cov=cov: _row(n, d, k, cov, repeats if d <= 64 else 1))


if __name__ == "__main__":
    for _, thunk in run("--quick" in sys.argv):
        row = thunk()
        print(f"{row['ratio']:8.3f}  {row['name']}  ({row['detail']})")
