"""The independent sweep of bad calls on the heads (issue 18), as a parametrised test.

Every call below once gave a raw numpy/torch/Pyro error, a silent garbage result or a misleading message.
Each must now raise ``ValueError``/``TypeError`` whose message names the problem, or return a correct, finite
result, and a rejected call must leave the head's predictions bit-identical.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

from bayes_diglm.arviz import to_inference_data
from bayes_diglm.inference import ConjugateLinearRegression, LaplaceClassifier, SVIClassifier

rng = np.random.default_rng(0)
Z = rng.normal(size=(60, 3))
Y = (Z[:, 0] + 0.5 * rng.normal(size=60) > 0).astype(int)
Y3 = np.digitize(Z[:, 0] + 0.3 * rng.normal(size=60), [-0.5, 0.5])
YR = Z @ np.array([1.0, -2.0, 0.5]) + 0.3 * rng.normal(size=60)


@pytest.fixture(scope="module")
def heads():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "laplace": LaplaceClassifier().fit(Z, Y),
            "laplace3": LaplaceClassifier().fit(Z, Y3),
            "svi": SVIClassifier(num_steps=300, seed=0).fit(Z, Y),
            "conjugate": ConjugateLinearRegression().fit(Z, YR),
        }


def _mc(head, n_samples: int):
    """A copy of the fitted head whose predictive is Monte Carlo with ``n_samples`` draws (an option of the head)."""
    return copy.deepcopy(head).set_params(predictive="mc", n_predictive_samples=n_samples, predictive_seed=0)


def _snapshot(head):
    return head.predict_proba(Z[:5]) if hasattr(head, "predict_proba") else head.predict(Z[:5])


REFUSED = {
    "fit on strings": ("laplace", lambda h: h.fit(Z.astype(str), Y), r"(?i)string|numeric|convert|float"),
    "mc with negative n_samples": ("laplace", lambda h: _mc(h, -3).predict_proba(Z), r"n_predictive_samples"),
    "mc with zero n_samples": ("laplace", lambda h: _mc(h, 0).predict_proba(Z), r"n_predictive_samples"),
    "svi with zero n_samples": ("svi", lambda h: _mc(h, 0).predict_proba(Z), r"n_predictive_samples"),
    "ArviZ with y one short": ("laplace", lambda h: to_inference_data(h, X=Z, y=Y[:-1], draws=10, chains=1),
                               r"(?i)y.*(rows|length|samples)|(rows|length|samples).*y"),
    "update with a string target": ("conjugate", lambda h: h.update(Z[0], "abc"), r"(?i)\by\b|target|number"),
    "update with a huge target": ("conjugate", lambda h: h.update(Z[0], 1e200), r"(?i)overflow|large|finite"),
    "predict on huge features": ("conjugate", lambda h: h.predict(Z * 1e200, return_std=True),
                                 r"(?i)overflow|large|finite"),
    "fit on huge targets": ("conjugate", lambda h: h.fit(Z, YR * 1e200), r"(?i)overflow|large|finite"),
    "3-class proba on huge features": ("laplace3", lambda h: h.predict_proba(Z * 1e200),
                                       r"(?i)overflow|large|finite"),
    "svi fit on huge features": ("svi", lambda h: h.fit(Z * 1e200, Y), r"(?i)overflow|large|finite|scale"),
    "label 1e30": ("laplace", lambda h: h.fit(Z, np.where(np.arange(60) == 0, 1e30, Y)),
                   r"(?i)label|class|continuous|integer"),
    "one class": ("laplace", lambda h: h.fit(Z, np.zeros(60, dtype=int)), r"(?i)class"),
    "negative sample_weight": ("conjugate", lambda h: h.fit(Z, YR, sample_weight=-np.ones(60)),
                               r"(?i)sample_weight|negative|non-negative"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_bad_call_is_refused_by_name_and_changes_nothing(heads, case):
    name, call, pattern = REFUSED[case]
    head = heads[name]
    before = _snapshot(head)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises((ValueError, TypeError), match=pattern):
            call(head)
    np.testing.assert_array_equal(_snapshot(head), before)


@pytest.mark.parametrize("name", ["laplace", "laplace3", "svi"])
def test_monte_carlo_probabilities_are_probabilities(heads, name):
    proba = _mc(heads[name], 50).predict_proba(Z)
    assert np.isfinite(proba).all() and np.allclose(proba.sum(axis=1), 1.0)


def test_a_scalar_sample_weight_is_broadcast_as_in_scikit_learn():
    a = LaplaceClassifier().fit(Z, Y, sample_weight=2.0)
    b = LaplaceClassifier().fit(Z, Y, sample_weight=np.full(len(Y), 2.0))
    np.testing.assert_array_equal(a.coef_, b.coef_)
