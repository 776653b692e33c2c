"""Active learning on a Bayesian GLM head over fixed features: BALD, predictive entropy and random acquisition.

The loop (:func:`run_active_learning`) starts from a small labelled set, fits a posterior head on the
labelled features, scores every unlabelled pool row, queries the labels of the ``step`` best, and repeats,
recording test error and test NLL after each fit. The features are fixed during the loop (the flow is trained
once, before); refitting a head takes seconds where retraining a flow would take minutes.

Scores from ``S`` posterior draws ``beta_s`` of the head (the head contract's ``sample``), with
``p_s = p(y | z, beta_s)`` and ``H`` the entropy of a categorical:

- ``"entropy"``: predictive entropy ``H[mean_s p_s]`` (total uncertainty);
- ``"bald"``: ``H[mean_s p_s] - mean_s H[p_s]``, the Monte Carlo estimate of the mutual information
  ``I(y; beta | z, data)`` between the label and the weights (Houlsby et al., 2011, "Bayesian Active Learning
  for Classification and Preference Learning"): high where the draws disagree, not where each is unsure;
- ``"random"``: uniform over the pool.

Optionally the pool is gated by the flow's density: with ``log_px_pool`` and ``density_quantile = q``, rows
whose ``log p(x)`` is below the ``q``-quantile of the pool are never queried, so that the acquisition does not
spend labels on outliers (inputs the flow finds unlikely are often where the head is most uncertain).

Imports: the heads of :mod:`bayes_diglm.inference` through their public contract only (``clone``, ``fit``,
``predict_dist``, ``sample``), and :func:`bayes_diglm.models.sampling.class_probabilities`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from sklearn.base import clone

from ..models.sampling import class_probabilities

__all__ = [
    "ACQUISITIONS",
    "ActiveLearningCurve",
    "acquisition_scores",
    "bald",
    "labels_to_reach",
    "predictive_entropy_of_draws",
    "run_active_learning",
]

ACQUISITIONS = ("bald", "entropy", "random")


def _entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    return -np.sum(p * np.log(np.clip(p, 1e-300, None)), axis=axis)


def predictive_entropy_of_draws(probs: np.ndarray) -> np.ndarray:
    """``H[mean_s p_s]`` (nats) from per-draw class probabilities ``probs`` of shape (S, n, K)."""
    return _entropy(np.asarray(probs).mean(axis=0))


def bald(probs: np.ndarray) -> np.ndarray:
    """BALD: ``H[mean_s p_s] - mean_s H[p_s]`` (nats), the mutual information between ``y`` and ``beta``.

    ``probs`` has shape (S, n, K) (draws, rows, classes). Non-negative up to rounding (entropy is concave);
    zero when all draws agree.
    """
    probs = np.asarray(probs)
    if probs.ndim != 3:
        raise ValueError(f"probs must have shape (draws, n, K), got {probs.shape}")
    return np.maximum(predictive_entropy_of_draws(probs) - _entropy(probs).mean(axis=0), 0.0)


def acquisition_scores(strategy: str, head, Z: np.ndarray, *, n_draws: int = 100, generator=None,
                       chunk: int = 2048) -> np.ndarray:
    """Scores (higher = query first) of each row of ``Z`` under a fitted posterior classification head.

    ``"random"`` gives uniform noise from ``generator``; ``"bald"`` and ``"entropy"`` use ``n_draws`` posterior
    draws shared by every row (in chunks of ``chunk`` rows, so memory stays at ``chunk x n_draws x K``).
    """
    if strategy not in ACQUISITIONS:
        raise ValueError(f"strategy must be one of {ACQUISITIONS}, got {strategy!r}")
    rng = np.random.default_rng(generator) if not isinstance(generator, np.random.Generator) else generator
    Z = np.asarray(Z, dtype=np.float64)
    if strategy == "random":
        return rng.random(Z.shape[0])
    if isinstance(n_draws, bool) or not isinstance(n_draws, (int, np.integer)) or n_draws < 2:
        raise ValueError(f"n_draws must be an integer of at least 2, got {n_draws!r}")
    draws = head.sample(int(n_draws), generator=rng)
    score = bald if strategy == "bald" else predictive_entropy_of_draws
    return np.concatenate([score(class_probabilities(draws, Z[s:s + chunk]))
                           for s in range(0, Z.shape[0], chunk)])


@dataclass
class ActiveLearningCurve:
    """One run of the loop: labels used and test metrics after each fit, and the pool rows queried in order."""

    strategy: str
    seed: int
    n_labels: list[int] = field(default_factory=list)
    test_error: list[float] = field(default_factory=list)
    test_nll: list[float] = field(default_factory=list)
    queried: list[int] = field(default_factory=list)
    density_quantile: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def labels_to_reach(curve: ActiveLearningCurve, accuracy: float) -> int | None:
    """The smallest number of labels at which the curve's test accuracy reaches ``accuracy`` (None if never)."""
    for n, err in zip(curve.n_labels, curve.test_error, strict=True):
        if 1.0 - err >= accuracy:
            return n
    return None


def _initial_rows(y_pool: np.ndarray, n_initial: int, rng: np.random.Generator) -> np.ndarray:
    """A class-balanced random start (as many rows of each class as ``n_initial`` allows, then at random)."""
    classes = np.unique(y_pool)
    per = n_initial // classes.size
    rows = [rng.choice(np.flatnonzero(y_pool == c), size=per, replace=False) for c in classes if per]
    rows = np.concatenate(rows) if rows else np.zeros(0, dtype=int)
    rest = np.setdiff1d(np.arange(y_pool.size), rows)
    extra = rng.choice(rest, size=n_initial - rows.size, replace=False)
    return np.concatenate([rows, extra]).astype(int)


def _check_budget(n_initial, step, n_final, pool_size):
    for name, v in (("n_initial", n_initial), ("step", step), ("n_final", n_final)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if n_final < n_initial:
        raise ValueError(f"n_final={n_final} is below n_initial={n_initial}")
    if n_final > pool_size:
        raise ValueError(f"n_final={n_final} exceeds the pool of {pool_size} rows")


def run_active_learning(
    head,
    Z_pool: np.ndarray,
    y_pool: np.ndarray,
    Z_test: np.ndarray,
    y_test: np.ndarray,
    *,
    strategy: str = "bald",
    n_initial: int = 20,
    step: int = 20,
    n_final: int = 500,
    n_draws: int = 100,
    seed: int = 0,
    log_px_pool: np.ndarray | None = None,
    density_quantile: float | None = None,
) -> ActiveLearningCurve:
    """Pool-based active learning with a posterior head refitted (a fresh ``clone``) after every query batch.

    Args:
        head: an unfitted posterior classification head (the contract of :mod:`bayes_diglm.inference`), e.g.
            ``LaplaceClassifier(classes=range(10))``; fix its classes so that every fit knows all of them.
        Z_pool, y_pool: features and labels of the pool (labels are revealed only when queried).
        Z_test, y_test: held-out features and labels for the curve.
        strategy: ``"bald"``, ``"entropy"`` or ``"random"``.
        n_initial: size of the class-balanced random start (the same for every strategy given ``seed``).
        step: labels queried per round. n_final: stop once this many labels are used.
        n_draws: posterior draws per scoring round.
        seed: seeds the start, the draws and the random strategy.
        log_px_pool, density_quantile: the optional density gate (see the module docstring).

    Returns:
        :class:`ActiveLearningCurve` with one entry per fit (``n_initial, n_initial + step, ..., n_final``).
    """
    if strategy not in ACQUISITIONS:
        raise ValueError(f"strategy must be one of {ACQUISITIONS}, got {strategy!r}")
    Z_pool, Z_test = np.asarray(Z_pool, dtype=np.float64), np.asarray(Z_test, dtype=np.float64)
    y_pool, y_test = np.asarray(y_pool), np.asarray(y_test)
    if Z_pool.ndim != 2 or y_pool.shape != (Z_pool.shape[0],):
        raise ValueError(f"Z_pool (n, D) and y_pool (n,) must match, got {Z_pool.shape} and {y_pool.shape}")
    if Z_test.ndim != 2 or y_test.shape != (Z_test.shape[0],) or Z_test.shape[1] != Z_pool.shape[1]:
        raise ValueError(f"Z_test (m, {Z_pool.shape[1]}) and y_test (m,) must match, got {Z_test.shape} and "
                         f"{y_test.shape}")
    _check_budget(n_initial, step, n_final, Z_pool.shape[0])
    allowed = np.ones(Z_pool.shape[0], dtype=bool)
    if density_quantile is not None:
        if log_px_pool is None:
            raise ValueError("density_quantile needs log_px_pool (log p(x) of every pool row)")
        log_px_pool = np.asarray(log_px_pool, dtype=np.float64)
        if log_px_pool.shape != (Z_pool.shape[0],):
            raise ValueError(f"log_px_pool must have shape ({Z_pool.shape[0]},), got {log_px_pool.shape}")
        if not 0.0 <= float(density_quantile) < 1.0:
            raise ValueError(f"density_quantile must be in [0, 1), got {density_quantile!r}")
        allowed = log_px_pool >= np.quantile(log_px_pool, float(density_quantile))
    rng = np.random.default_rng(seed)
    labelled = _initial_rows(y_pool, int(n_initial), rng)
    curve = ActiveLearningCurve(strategy=strategy, seed=int(seed), queried=labelled.tolist(),
                                density_quantile=density_quantile)
    while True:
        fitted = clone(head).fit(Z_pool[labelled], y_pool[labelled])
        predictive = fitted.predict_dist(Z_test)
        curve.n_labels.append(int(labelled.size))
        curve.test_error.append(float(np.mean(predictive.classes[predictive.probs.argmax(1)] != y_test)))
        curve.test_nll.append(float(-np.mean(predictive.log_prob(y_test))))
        if labelled.size >= n_final:
            return curve
        candidates = np.flatnonzero(allowed & ~np.isin(np.arange(Z_pool.shape[0]), labelled))
        take = min(int(step), int(n_final) - labelled.size)
        if candidates.size < take:
            raise ValueError(f"the pool has only {candidates.size} queryable rows left, {take} needed")
        scores = acquisition_scores(strategy, fitted, Z_pool[candidates], n_draws=n_draws, generator=rng)
        best = candidates[np.argsort(-scores, kind="stable")[:take]]
        labelled = np.concatenate([labelled, best])
        curve.queried.extend(best.tolist())
