"""Generated bad values of each kind of argument (hypothesis), for the contracts' sweeps of the input rules.

One generator per kind (features, numeric targets, class labels, sample weights, counts); each returns the bad
value and a pattern its refusal must match. The head contract (tests/test_heads_contract.py) and the estimator
contract (tests/test_estimators_contract.py) pass them to every public entry that takes the kind; the rules are
written once, in ``bayes_diglm/_validation.py`` (docs/reliability.md, "One input rule per kind of argument").
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

__all__ = ["BAD_COUNTS", "FAST", "bad_features", "bad_labels", "bad_targets", "bad_weights"]

#: 25 examples a property, no deadline (a fit can take a second on a loaded machine)
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])

#: the largest array a sampler may allocate (``MAX_ELEMENTS`` of the rules, as docs/reliability.md states it)
LARGEST = 2**30

BAD_COUNTS = st.one_of(st.integers(max_value=0), st.integers(LARGEST + 1, 10**15),
                       st.floats(allow_nan=True), st.text(max_size=3), st.booleans(), st.none())


def _at(data, shape):
    return data.draw(st.integers(0, shape[0] - 1)), data.draw(st.integers(0, shape[1] - 1))


def bad_features(data, base: np.ndarray):
    """Features that break the rule: numeric text (NumPy, object lists, pandas ``string`` columns), a value whose
    square overflows float64, NaN or infinity at a random place."""
    kind = data.draw(st.sampled_from(["text", "object text", "pandas string", "overflow", "nan", "inf"]))
    X = base.copy()
    i, j = _at(data, X.shape)
    if kind == "text":
        return X.astype(str), r"(?i)string|text"
    if kind == "object text":
        out = X.astype(object)
        out[i, j] = str(out[i, j])
        return out, r"(?i)string|text"
    if kind == "pandas string":
        return pd.DataFrame(X).astype("string"), r"(?i)text|string"
    X[i, j] = data.draw(st.sampled_from([-1.0, 1.0])) * data.draw(st.floats(1.4e154, 1.7e308))
    if kind == "nan":
        X[i, j] = np.nan
    elif kind == "inf":
        X[i, j] = np.inf
    return X, r"(?i)overflow|nan|inf|finite"


def bad_targets(data, base: np.ndarray):
    """Numeric targets that break the rule: NaN, infinity or pandas' NA at a random row, numeric text."""
    kind = data.draw(st.sampled_from(["nan", "inf", "pandas NA", "text"]))
    i = data.draw(st.integers(0, base.size - 1))
    if kind == "text":
        return base.astype(str), r"(?i)string|text"
    if kind == "pandas NA":
        return pd.Series(base, dtype="Float64").mask(np.arange(base.size) == i), r"(?i)missing|nan"
    y = base.astype(float).copy()
    y[i] = np.nan if kind == "nan" else np.inf
    return y, r"(?i)nan|inf|missing|finite"


def bad_labels(data, base: np.ndarray):
    """Class labels that break the rule: one label missing (None, NaN, pandas' NA), infinite, or a number among
    text labels."""
    y = np.asarray(base, dtype=object).copy()
    y[data.draw(st.integers(0, y.size - 1))] = data.draw(st.sampled_from([None, np.nan, np.inf, pd.NA, 1.5]))
    return y, r"(?i)missing|mixes"


def bad_weights(data, n: int):
    """Sample weights that break the rule: negative, NaN, text, overflowing, all zero, or of the wrong length."""
    kind = data.draw(st.sampled_from(["negative", "nan", "text", "overflow", "zero", "length"]))
    w = np.ones(n)
    i = data.draw(st.integers(0, n - 1))
    if kind == "negative":
        w[i] = -data.draw(st.floats(1e-6, 1e6))
    elif kind == "nan":
        w[i] = np.nan
    elif kind == "text":
        return w.astype(str), r"(?i)string|text"
    elif kind == "overflow":
        w[i] = data.draw(st.floats(1.4e154, 1.7e308))
    elif kind == "zero":
        w[:] = 0.0
    else:
        w = np.ones(n + data.draw(st.integers(1, 5)))
    return w, r"(?i)sample_weight"
