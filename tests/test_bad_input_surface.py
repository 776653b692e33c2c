"""Bad input on the public surface that takes data: every estimator flavour (``posterior=``), every method.

Each bad call must raise ``ValueError`` or ``TypeError`` whose message names the problem, and leave the fitted
model's predictions bit-identical. One parametrised sweep: estimators x methods x kinds of bad input.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from bayes_diglm import DIGLMClassifier, DIGLMRegressor

D = 3
_rng = np.random.default_rng(0)
X_TRAIN = _rng.normal(size=(80, D)).astype("float32")
Y_REG = (X_TRAIN[:, 0] - X_TRAIN[:, 1] + 0.1 * _rng.normal(size=80)).astype("float32")
Y_CLF = np.where(X_TRAIN[:, 0] > 0, "yes", "no")
PROBE = _rng.normal(size=(7, D)).astype("float32")
SMALL = {"epochs": 1, "quiet": True, "flow_kwargs": {"num_layers": 2, "hidden_dims": (8,)}}

FLAVOURS = {
    "regressor-point": lambda: DIGLMRegressor(posterior="point", **SMALL),
    "regressor-conjugate": lambda: DIGLMRegressor(posterior="conjugate", **SMALL),
    "classifier-point": lambda: DIGLMClassifier(posterior="point", **SMALL),
    "classifier-laplace": lambda: DIGLMClassifier(posterior="laplace", **SMALL),
    "classifier-svi": lambda: DIGLMClassifier(posterior="svi", **SMALL),
}


def _nan_frame():
    frame = pd.DataFrame(PROBE, columns=[f"x{i}" for i in range(D)])
    frame.iloc[2, 1] = np.nan
    return frame


#: bad X -> a pattern its error message must match
BAD_X = {
    "nan": (lambda: np.where(np.arange(7 * D).reshape(7, D) == 4, np.nan, PROBE), r"(?i)nan|finite|missing"),
    "inf": (lambda: np.where(np.arange(7 * D).reshape(7, D) == 4, np.inf, PROBE), r"(?i)inf|finite"),
    "too many features": (lambda: np.zeros((7, D + 1), "float32"), r"(?i)feature|shape"),
    "1-D": (lambda: PROBE[:, 0], r"(?i)2d|2-d|dimension|shape|reshape"),
    "3-D": (lambda: PROBE[:, :, None], r"(?i)dimension|shape|dim"),
    "empty": (lambda: np.zeros((0, D), "float32"), r"(?i)0 sample|empty|at least|no rows|minimum"),
    "strings": (lambda: PROBE.astype(str).astype(object) + "x", r"(?i)string|numeric|convert|float|could not"),
    "DataFrame with missing values": (_nan_frame, r"(?i)nan|missing|finite"),
    "complex": (lambda: PROBE.astype(np.complex64), r"(?i)complex"),
}


def _methods(flavour: str):
    common = {
        "predict": lambda est, X: est.predict(X),
        "predict_dist": lambda est, X: est.predict_dist(X),
        "score_samples": lambda est, X: est.score_samples(X),
        "transform": lambda est, X: est.transform(X),
        "score": lambda est, X: est.score(X, _targets(flavour, len(np.asarray(X)))),
        "log_predictive": lambda est, X: est.log_predictive(X, _targets(flavour, len(np.asarray(X)))),
    }
    if flavour.startswith("classifier"):
        common["predict_proba"] = lambda est, X: est.predict_proba(X)
    else:
        common["predict(return_std)"] = lambda est, X: est.predict(X, return_std=True)
    return common


def _targets(flavour: str, n: int):
    return np.resize(Y_CLF, n) if flavour.startswith("classifier") else np.resize(Y_REG, n)


class _Fitted(dict):
    """Fit each flavour once, when a test first asks for it (so one broken flavour fails only its own tests)."""

    def __missing__(self, name):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = FLAVOURS[name]().fit(X_TRAIN, Y_CLF if name.startswith("classifier") else Y_REG)
        self[name] = (est, _snapshot(est))
        return self[name]


@pytest.fixture(scope="module")
def fitted():
    return _Fitted()


def _snapshot(est):
    out = [np.asarray(est.predict(PROBE)), est.score_samples(PROBE)]
    if hasattr(est, "predict_proba"):
        out.append(est.predict_proba(PROBE))
    return out


def _assert_unchanged(est, before, what):
    after = _snapshot(est)
    for a, b in zip(before, after, strict=True):
        assert np.array_equal(a, b), f"{what} changed the fitted model's predictions"


SWEEP = [(f, m, b) for f in FLAVOURS for m in _methods(f) for b in BAD_X]


@pytest.mark.parametrize(("flavour", "method", "bad"), SWEEP, ids=["/".join(s) for s in SWEEP])
def test_bad_input_is_refused_by_name_and_changes_nothing(fitted, flavour, method, bad):
    est, before = fitted[flavour]
    make_bad, pattern = BAD_X[bad]
    with pytest.raises((ValueError, TypeError), match=pattern):
        _methods(flavour)[method](est, make_bad())
    _assert_unchanged(est, before, f"{method}({bad})")


BAD_Y = {
    "nan target": (lambda f, n: np.where(np.arange(n) == 1, np.nan, Y_REG[:n]) if not f.startswith("classifier")
                   else np.where(np.arange(n) == 1, None, Y_CLF[:n]), r"(?i)nan|finite|missing|none|label"),
    "wrong length": (lambda f, n: _targets(f, n + 2), r"(?i)length|samples|rows|inconsistent|shape"),
    "unseen label": (lambda f, n: np.where(np.arange(n) == 0, "maybe", Y_CLF[:n]) if f.startswith("classifier")
                     else np.where(np.arange(n) == 0, "maybe", Y_REG[:n].astype(str)),
                     r"(?i)label|class|unseen|string|numeric|convert|float|could not"),
}


@pytest.mark.parametrize("bad", list(BAD_Y))
@pytest.mark.parametrize("flavour", list(FLAVOURS))
@pytest.mark.parametrize("method", ["score", "log_predictive"])
def test_bad_targets_are_refused_by_name_and_change_nothing(fitted, flavour, method, bad):
    if method == "score" and bad == "unseen label" and flavour.startswith("classifier"):
        pytest.skip("accuracy against a label the model never predicts is well defined (it counts as wrong)")
    est, before = fitted[flavour]
    make_bad, pattern = BAD_Y[bad]
    with pytest.raises((ValueError, TypeError), match=pattern):
        getattr(est, method)(PROBE, make_bad(flavour, len(PROBE)))
    _assert_unchanged(est, before, f"{method}({bad})")


# (a refit on more features is a legal new fit, so it is not in this list)
@pytest.mark.parametrize("bad", ["nan", "inf", "1-D", "empty", "strings", "DataFrame with missing values", "complex"])
@pytest.mark.parametrize("flavour", list(FLAVOURS))
def test_a_refused_refit_leaves_the_fitted_model_alone(fitted, flavour, bad):
    est, before = fitted[flavour]
    make_bad, pattern = BAD_X[bad]
    X = make_bad()
    y = _targets(flavour, len(np.asarray(X)))
    with pytest.raises((ValueError, TypeError), match=pattern):
        est.fit(X, y)
    _assert_unchanged(est, before, f"fit({bad})")


@pytest.mark.parametrize("flavour", list(FLAVOURS))
@pytest.mark.parametrize("n", [0, -1, 2.5, "3", True])
def test_sample_refuses_a_bad_number_of_draws(fitted, flavour, n):
    est, before = fitted[flavour]
    pattern = r"(?i)needs a posterior" if flavour.endswith("point") else r"(?i)\bn\b|draws|positive|integer"
    with pytest.raises((ValueError, TypeError), match=pattern):
        est.sample(n)
    _assert_unchanged(est, before, f"sample({n!r})")


# ---- the rest of the new surface: OOD scores, the joint sampler, the semi-supervised fit ---------------------

def _either(pattern: str, extra: str) -> str:
    return "(?i)(" + pattern.replace("(?i)", "") + "|" + extra + ")"


def _ood_methods():
    from bayes_diglm.evaluation import ood

    return {
        "neg_log_px": lambda est, X: ood.neg_log_px(est, X),
        "bits_per_dim_score": lambda est, X: ood.bits_per_dim_score(est, X, num_bins=None),
        "predictive_entropy_score": lambda est, X: ood.predictive_entropy_score(est, X),
    }


OOD_SWEEP = [(f, m, b) for f in ("classifier-point", "classifier-laplace") for m in _ood_methods()
             for b in ("nan", "inf", "too many features", "1-D", "empty", "strings", "DataFrame with missing values")]


@pytest.mark.parametrize(("flavour", "method", "bad"), OOD_SWEEP, ids=["/".join(s) for s in OOD_SWEEP])
def test_ood_scores_refuse_bad_input_by_name(fitted, flavour, method, bad):
    est, before = fitted[flavour]
    make_bad, pattern = BAD_X[bad]
    with pytest.raises((ValueError, TypeError), match=_either(pattern, r"X must|shape|empty")):
        _ood_methods()[method](est, make_bad())
    _assert_unchanged(est, before, f"{method}({bad})")


@pytest.mark.parametrize("flavour", ["regressor-point", "classifier-point", "classifier-laplace"])
@pytest.mark.parametrize("n", [0, -1, 2.5, "3"])
def test_joint_sampler_refuses_a_bad_number_of_samples(fitted, flavour, n):
    est, before = fitted[flavour]
    with pytest.raises((ValueError, TypeError), match=r"(?i)\bn\b|positive|integer"):
        est.sample_joint(n)
    _assert_unchanged(est, before, f"sample_joint({n!r})")


def test_class_conditional_sampler_refuses_an_unseen_label(fitted):
    est, before = fitted["classifier-point"]
    with pytest.raises((ValueError, TypeError), match=r"(?i)label|class|maybe"):
        est.sample_joint(3, y="maybe")
    _assert_unchanged(est, before, "sample_joint(y='maybe')")


@pytest.mark.parametrize("bad", ["nan", "inf", "too many features", "1-D", "strings", "DataFrame with missing values"])
@pytest.mark.parametrize("flavour", ["regressor-conjugate", "classifier-laplace"])
def test_semi_supervised_fit_refuses_bad_unlabelled_rows_and_keeps_the_model(fitted, flavour, bad):
    est, before = fitted[flavour]
    make_bad, pattern = BAD_X[bad]
    y = Y_CLF if flavour.startswith("classifier") else Y_REG
    with pytest.raises((ValueError, TypeError), match=_either(pattern, r"X_unlabeled")):
        est.fit(X_TRAIN, y, X_unlabeled=make_bad())
    _assert_unchanged(est, before, f"fit(X_unlabeled={bad})")


def test_predictive_refuses_bad_targets_whatever_torch_validation_says():
    """zuko turns torch's argument validation off for the whole process when imported; the predictive's own
    support check still refuses a NaN target and a count outside the support by name."""
    import torch

    from bayes_diglm.inference import Predictive

    previous = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(False)
    try:
        normal = Predictive(torch.distributions.Normal(torch.zeros(3, dtype=torch.float64), 1.0))
        with pytest.raises(ValueError, match="finite"):
            normal.log_prob([0.0, float("nan"), 1.0])
        counts = Predictive(torch.distributions.Poisson(torch.ones(3, dtype=torch.float64)))
        with pytest.raises(ValueError, match="support"):
            counts.log_prob([0.0, -1.0, 2.5])
        assert np.all(np.isfinite(counts.log_prob([0.0, 1.0, 2.0])))
    finally:
        torch.distributions.Distribution.set_default_validate_args(previous)
