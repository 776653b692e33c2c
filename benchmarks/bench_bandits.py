"""Thompson-sampling bandit step: decision + rank-one update vs recomputing the posteriors from scratch."""

from __future__ import annotations

import statistics
import time

import numpy as np

from bayes_diglm.bandits.agents import LinFullPost

__all__ = ["run"]

D, K = 64, 10


def run(quick: bool = False) -> list[dict]:
    """Ratio = median seconds of (act + update) / median seconds of (act + refit all arms from the history).

    ``LinFullPost`` with D = 64 context features and k = 10 arms after ``history`` steps; the refit is
    :meth:`ArmPosteriors.fit` on every stored row (what an agent without rank-one updates does per step).
    The two are timed alternately on the same agent state and contexts.
    """
    history = 500 if quick else 2000
    repeats = 10 if quick else 50
    rng = np.random.default_rng(0)
    agent = LinFullPost(K, D, seed=0)
    beta = rng.normal(size=(K, D)) / np.sqrt(D)
    contexts = rng.normal(size=(history + 2 * repeats + 4, D))
    for t in range(history):
        arm = agent.act(contexts[t])
        agent.update(contexts[t], arm, float(beta[arm] @ contexts[t] + 0.1 * rng.normal()))
    step_times, refit_times = [], []
    for r in range(repeats + 2):
        x = contexts[history + r]
        t0 = time.perf_counter()
        arm = agent.act(x)
        agent.update(x, arm, float(beta[arm] @ x))
        t1 = time.perf_counter()
        agent.act(x)
        agent.posterior.fit(*agent.history.data())
        t2 = time.perf_counter()
        if r >= 2:
            step_times.append(t1 - t0)
            refit_times.append(t2 - t1)
    a, b = statistics.median(step_times), statistics.median(refit_times)
    return [{"name": f"bandit step, decision + rank-one update / + refit from scratch (D={D}, k={K}, "
                     f"{history} past steps)",
             "ratio": a / b, "detail": f"{a * 1e3:.3f} ms vs {b * 1e3:.2f} ms"}]


if __name__ == "__main__":
    for row in run():
        print(f"{row['ratio']:6.4f}  {row['name']}  ({row['detail']})")
