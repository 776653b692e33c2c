"""Bandit speed: the batched NIG state's rank-one update vs refits, a decision step, FlowLinear vs NeuralLinear."""

from __future__ import annotations

import statistics
import time

import numpy as np

from bayes_diglm.bandits import LinFullPost, make_agent
from bayes_diglm.bandits.environments import wheel_bandit
from bayes_diglm.experiments.bandits import AGENT_SETTINGS
from bayes_diglm.inference.conjugate import ConjugateLinearRegression, SufficientStats
from bayes_diglm.inference.nig import NormalInverseGamma

__all__ = ["run"]

D, K = 64, 10


def _interleaved(a, b, repeats: int, inner: int) -> tuple[float, float, float]:
    """Median over ``repeats`` of (CPU seconds of ``a`` / CPU seconds of ``b``), each timed over ``inner`` calls.

    Process CPU time, not wall clock: on the shared machine a wall-clock block of microsecond calls is often
    preempted by other jobs, which CPU time does not count.
    """
    ratios, ta, tb = [], [], []
    for _ in range(repeats + 1):
        t0 = time.process_time()
        for _ in range(inner):
            a()
        t1 = time.process_time()
        for _ in range(inner):
            b()
        t2 = time.process_time()
        ta.append((t1 - t0) / inner)
        tb.append((t2 - t1) / inner)
        ratios.append(ta[-1] / tb[-1])
    return statistics.median(ratios[1:]), statistics.median(ta[1:]), statistics.median(tb[1:])


def _nig_rows(quick: bool) -> list[dict]:
    """One rank-one update of the state (D = 64 features + intercept) against refitting it from statistics."""
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(2000, D))
    y = Z @ rng.normal(size=D) / np.sqrt(D) + 0.1 * rng.normal(size=2000)
    nig = NormalInverseGamma(1, D, prior_precision=0.25, a0=6.0, b0=6.0).fit(Z, y)
    X = nig.design(Z)
    stats = ((X.T @ X)[None], (X.T @ y)[None], np.array([y @ y]), np.array([2000]))
    rows_x = nig.design(Z[:50])
    i = [0]

    def update():
        nig.update_row(0, rows_x[i[0] % 50], float(y[i[0] % 50]))
        i[0] += 1

    refit_state = NormalInverseGamma(1, D, prior_precision=0.25, a0=6.0, b0=6.0)
    head_stats = SufficientStats.from_data(Z, y, fit_intercept=True)
    head = ConjugateLinearRegression(prior_precision=0.25, intercept_prior_precision=0.25, a0=6.0, b0=6.0)
    repeats, inner = (5, 50) if quick else (15, 200)
    r1, t_up, t_refit = _interleaved(update, lambda: refit_state.fit_stats(*stats), repeats, inner)
    r2, t_up2, t_head = _interleaved(update, lambda: head.fit_stats(head_stats), repeats, inner)
    return [
        {"name": f"NIG rank-one update / NIG refit from statistics (D={D}, same state)", "ratio": r1,
         "detail": f"update {t_up * 1e6:.1f} us, refit (LAPACK Cholesky + solve) {t_refit * 1e6:.1f} us; aim <= 0.1"},
        {"name": f"NIG rank-one update / ConjugateLinearRegression.fit_stats (D={D})", "ratio": r2,
         "detail": f"update {t_up2 * 1e6:.1f} us, head refit {t_head * 1e6:.1f} us; aim <= 0.1"},
    ]


def _step_row(quick: bool) -> dict:
    """(act + rank-one update) / (act + refit of all arms from the history), LinFullPost, D = 64, k = 10."""
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
        agent._refit()
        t2 = time.perf_counter()
        if r >= 2:
            step_times.append(t1 - t0)
            refit_times.append(t2 - t1)
    a, b = statistics.median(step_times), statistics.median(refit_times)
    return {"name": f"bandit step, act + rank-one update / act + refit of all arms from the history (D={D}, k={K}, "
                    f"{history} past steps)", "ratio": a / b, "detail": f"{a * 1e3:.3f} ms vs {b * 1e3:.2f} ms"}


def _decision_rows(quick: bool) -> list[dict]:
    """FlowLinear's CPU ms per decision / NeuralLinear's on one wheel episode (act + update, retraining included),
    measured side by side: the default FlowLinear, the former default (``FlowLinear[full]``) and ``[fast]``.

    The agents alternate in blocks of 100 decisions of their own episodes (the same contexts for all), so a change
    in the shared machine's load falls on all of them alike; each agent's CPU seconds are summed over its blocks.
    """
    steps = 300 if quick else 1500
    data = wheel_bandit(steps, 0.7, seed=0, std=0.05, std_outer=0.01)
    flow_settings = AGENT_SETTINGS["wheel"]["FlowLinear"]
    names = ("NeuralLinear", "FlowLinear", "FlowLinear[full]", "FlowLinear[fast]")
    agents = {name: make_agent(name, 5, 2, seed=0, **(flow_settings if name.startswith("Flow") else {}))
              for name in names}
    cpu = dict.fromkeys(names, 0.0)
    for start in range(0, steps, 100):
        block = range(start, min(start + 100, steps))
        for name, agent in agents.items():
            t0 = time.process_time()
            for t in block:
                context = data.contexts[t]
                arm = agent.act(context)
                agent.update(context, arm, data.rewards[t, arm])
            cpu[name] += time.process_time() - t0
    ms = {name: 1e3 * cpu[name] / steps for name in names}
    return [{"name": f"{name} / NeuralLinear CPU ms per decision (wheel, {steps} steps)",
             "ratio": ms[name] / ms["NeuralLinear"],
             "detail": f"{ms[name]:.2f} ms vs {ms['NeuralLinear']:.2f} ms" + ("; aim <= 1.5" if name == "FlowLinear"
                                                                             else "")}
            for name in names[1:]]


def run(quick: bool = False) -> list[dict]:
    """Each row's ``ratio`` is a time ratio measured side by side in this run (see each function)."""
    return [*_nig_rows(quick), _step_row(quick), *_decision_rows(quick)]


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    for row in run():
        print(f"{row['ratio']:8.4f}  {row['name']}  ({row['detail']})")
