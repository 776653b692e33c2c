"""Every registered OOD score of one fitted model: on new inputs, and as an AUROC table over OOD sets."""

from __future__ import annotations

import numpy as np

from .metrics import ood_scores
from .ood import CachedOutputs, _n_rows
from .ood_protocol import _score_class, fit_scores, score_names
from .selective import selective_curve

__all__ = ["evaluate_ood", "score_inputs"]


def _n(X) -> int:
    return int(np.shape(X)[0])


def score_inputs(model, X, *, reference=None, names=None, n_draws: int = 100, seed: int = 0,
                 **needs) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Score inputs ``X`` with every registered score (or those in ``names``) that applies to ``model``.

    Scores that learn from in-distribution inputs (the typicality tests, the min p-value) are fitted on
    ``reference`` and left out without it; the others need nothing beyond the model (``-log p(x)``, bits/dim,
    input complexity for images, entropy and mutual information for classifiers with posterior draws). A score
    with a decision threshold (the typicality test) adds ``"<label> flagged"`` (1 when flagged). ``needs`` are
    passed on to the scores that take them (``background=``). Returns the values by label and, for every score
    left out, why.
    """
    _n_rows(X)
    if reference is not None:
        _n_rows(reference)
    cached = CachedOutputs(model)
    fitted, skipped = fit_scores(cached, reference, names=names, settings={"n_draws": n_draws, "seed": seed},
                                 X_new=X, **needs)
    out = {}
    for label, score in fitted.items():
        out[label] = score.score(X)
        if hasattr(score, "threshold_"):
            out[f"{label} flagged"] = (out[label] > score.threshold_).astype(np.float64)
    return out, skipped


def evaluate_ood(model, *, X_train, y_train, X_test, ood_sets: dict, y_test=None, X_val=None, background=None,
                 typicality_sizes=(1, 5, 25), feature_covariance: str = "tied", n_draws: int = 100,
                 compressor: str = "auto", heads: dict | None = None, own_head: bool = True, names=None,
                 seed: int = 0) -> dict:
    """Score ``X_test`` and each OOD set with every registered score that applies; AUROC, AUPR, FPR95 per pair.

    Every score of :func:`~bayes_diglm.evaluation.score_names` (or those in ``names``; a user's own registered
    score included) is fitted on ``(X_train, y_train)`` with what it takes (``X_val`` held-out inputs, the
    ``background`` model) when its requirements are met, and left out with the reason in ``notes`` otherwise
    (no background model, no posterior draws, inputs that are not images). Shared settings: ``compressor``,
    ``feature_covariance``, ``n_draws``, ``seed``. Scores that read the head (entropy, mutual information) are
    computed for ``model``'s own head (``own_head``) and for each model in ``heads`` (name -> another model of
    the same flow with its own head, e.g. :class:`~bayes_diglm.evaluation.HeadOnFeatures` with a Laplace head),
    as ``"entropy (name)"``. Batched scores (the typicality test) run once per batch size ``M`` in
    ``typicality_sizes`` on random batches (each set in a seeded random order: a set stored by class would
    otherwise give batches of one class), with the share of batches flagged at their threshold. ``y_test`` adds
    accuracy-against-coverage curves on the test set for every per-input score (predictions of ``model``).

    Returns:
        dict with ``rows`` (one per score and OOD set), ``scores`` (label -> set -> values; "test" included),
        ``selective`` (label -> curve, with ``y_test``), ``typicality`` (M -> fitted test), ``notes``.
    """
    if not isinstance(ood_sets, dict) or not ood_sets:
        raise ValueError("ood_sets must be a non-empty dict of name -> inputs")
    if "test" in ood_sets:
        raise ValueError("'test' names the in-distribution set; rename that OOD set")
    names = score_names() if names is None else tuple(names)
    settings = {"compressor": compressor, "covariance": feature_covariance, "n_draws": n_draws, "seed": seed}
    kinds = {name: _score_class(name).from_settings(**settings) for name in names}  # refuses unknown names
    cached = CachedOutputs(model)
    sets = {"test": X_test, **ood_sets}
    problem = {"X_new": X_test, "X_val": X_val, "background": None if background is None else CachedOutputs(background)}
    notes = ["reference inputs of the typicality thresholds (and, for images, of the pair typicality and the "
             "min p-value): " + ("the training inputs (no validation set given)" if X_val is None else
                                 f"{_n(X_val)} held-out validation inputs")]

    def fit(on, subset, suffix="", **extra):
        fitted, skipped = fit_scores(on, X_train, y_train, names=subset, settings={**settings, **extra}, **problem)
        notes.extend(f"{label}{suffix} not available: {why}" for label, why in skipped.items())
        notes.extend(s.note for s in fitted.values() if s.note)
        return {label + suffix: s for label, s in fitted.items()}

    per_input = fit(cached, [n for n in names if not kinds[n].batched and not kinds[n].reads_head])
    own = {"": cached} if own_head else {}
    for suffix, head in {**own, **{f" ({k})": CachedOutputs(v) for k, v in (heads or {}).items()}}.items():
        per_input.update(fit(head, [n for n in names if not kinds[n].batched and kinds[n].reads_head], suffix))
    scores = {label: {k: s.score(X) for k, X in sets.items()} for label, s in per_input.items()}
    rows = [{"score": label, "OOD set": k, **ood_scores(values["test"], values[k])}
            for label, values in scores.items() for k in ood_sets]

    rng = np.random.default_rng(seed)
    order = {k: rng.permutation(_n(X)) for k, X in sets.items()}
    shuffled = {k: cached.take(X, order[k]) for k, X in sets.items()}
    typicality = {}
    for M in typicality_sizes:
        for label, test in fit(cached, [n for n in names if kinds[n].batched], batch_size=M).items():
            typicality[M] = test
            s_in = test.score(shuffled["test"])
            for k in ood_sets:
                s_out = test.score(shuffled[k])
                row = {"score": label, "OOD set": k, **ood_scores(s_in, s_out)}
                if hasattr(test, "threshold_"):
                    row.update({"flagged (%)": 100.0 * float(np.mean(s_out > test.threshold_)),
                                "test flagged (%)": 100.0 * float(np.mean(s_in > test.threshold_))})
                rows.append(row)

    selective = {}
    if y_test is not None:
        proba = cached.predict_proba(X_test)
        classes = getattr(model, "classes_", np.arange(proba.shape[1]))
        correct = (np.asarray(classes)[proba.argmax(axis=1)] == np.asarray(y_test)).astype(float)
        selective = {label: selective_curve(correct, values["test"]) for label, values in scores.items()}
    return {"rows": rows, "scores": scores, "selective": selective, "typicality": typicality,
            "notes": list(dict.fromkeys(notes))}
