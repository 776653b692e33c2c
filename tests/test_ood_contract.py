"""The OOD-score contract, checked for every registered score; the registry open to a user's own score."""

import re

import numpy as np
import pytest
import scipy.special
import scipy.stats
from sklearn.exceptions import NotFittedError

from bayes_diglm.evaluation import (
    REQUIREMENTS,
    OODScore,
    class_probability_draws,
    evaluate_ood,
    fit_scores,
    get_score,
    ood_protocol,
    ood_scores,
    register_score,
    score_inputs,
    score_names,
)

# zlib codes every noisy 8x8 toy image in the same number of bytes: the code-length pairs' covariance is singular
# and robust_cholesky jitters it (with a JitterWarning, which is expected here)
pytestmark = pytest.mark.filterwarnings("ignore::bayes_diglm.inference.linalg.JitterWarning")

SHAPE = (1, 8, 8)
SIGNS = np.random.default_rng(42).choice([-1.0, 1.0], size=int(np.prod(SHAPE)))
SD = 0.02


def in_distribution(n, seed):
    """Two classes of 8x8 images: 0.5 +- 0.1 times a fixed sign pattern, pixel noise of sd 0.02, 8-bit levels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    centre = 0.5 + 0.1 * np.where(y[:, None] == 0, SIGNS, -SIGNS)
    X = np.clip(np.round((centre + SD * rng.normal(size=centre.shape)) * 255) / 255, 0, 1)
    return X.reshape(n, *SHAPE), y


def noise(n, seed):
    """Uniform 8-bit noise images: obviously out of distribution."""
    return np.random.default_rng(seed).integers(0, 256, (n, *SHAPE)) / 255.0


class ToyModel:
    """A fitted 'estimator' with the exact density of the two classes, features z = x - 0.5, and a logistic head
    with Gaussian posterior draws around the class direction."""

    classes_ = np.array([0, 1])

    def score_samples(self, X):
        z = np.asarray(X, dtype=np.float64).reshape(len(X), -1) - 0.5
        per_class = [scipy.stats.norm.logpdf(z, s * 0.1 * SIGNS, SD).sum(1) for s in (1, -1)]
        return scipy.special.logsumexp(per_class, axis=0) + np.log(0.5)

    def transform(self, X):
        return np.asarray(X, dtype=np.float64).reshape(len(X), -1) - 0.5

    def sample(self, n, *, generator=None):
        rng = generator if generator is not None else np.random.default_rng(0)
        return {"beta": -SIGNS + rng.normal(size=(n, SIGNS.size))}

    def predict_proba(self, X):
        return class_probability_draws(self, X, n_draws=200, seed=1).mean(axis=0)


class Background:
    """A broad density over images: the likelihood ratio's background model."""

    def score_samples(self, X):
        return scipy.stats.norm.logpdf(np.asarray(X).reshape(len(X), -1), 0.5, 0.3).sum(1)


class Without:
    """``model`` without the methods named in ``missing`` (everything else forwarded)."""

    def __init__(self, model, *missing):
        self._model, self._missing = model, missing

    def __getattr__(self, name):
        if name in self._missing:
            raise AttributeError(name)
        return getattr(self._model, name)


@pytest.fixture(scope="module")
def problem():
    X_train, y_train = in_distribution(300, seed=0)
    X_val, _ = in_distribution(200, seed=1)
    X_test, _ = in_distribution(200, seed=2)
    return {"model": ToyModel(), "X": X_train, "y": y_train, "X_test": X_test, "ood": noise(100, seed=3),
            "needs": {"background": Background(), "X_val": X_val}}


def _fit(score, problem, y="train"):
    needs = {k: v for k, v in problem["needs"].items() if k in score.needs}
    return score.fit(problem["model"], problem["X"], problem["y"] if isinstance(y, str) else y, **needs)


# ---- the contract, for every registered score ------------------------------------------------------------


@pytest.mark.parametrize("name", score_names())
def test_fit_then_score_gives_one_finite_value_per_input_higher_for_ood(name, problem):
    score = get_score(name)
    assert isinstance(score, OODScore) and score.name == name
    assert score.unmet(problem["model"], problem["X"], problem["y"], **problem["needs"]) == []
    assert _fit(score, problem) is score
    s_in, s_out = score.score(problem["X_test"]), score.score(problem["ood"])
    assert s_in.shape == (200,) and s_out.shape == (100,) and s_in.dtype == np.float64
    assert np.isfinite(s_in).all() and np.isfinite(s_out).all()
    assert ood_scores(s_in, s_out)["auroc"] > 0.9, score.label  # higher = more unusual, for every score
    assert np.array_equal(score.score(problem["X_test"]), s_in)  # deterministic once fitted


@pytest.mark.parametrize("name", score_names())
def test_a_score_refuses_to_score_before_fit_and_refuses_bad_inputs(name, problem):
    score = get_score(name)
    with pytest.raises(NotFittedError):
        score.score(problem["X_test"])
    with pytest.raises(TypeError, match="takes no"):
        get_score(name).fit(problem["model"], problem["X"], problem["y"], colour="blue")
    with pytest.raises(ValueError, match="y must have shape"):
        _fit(get_score(name), problem, y=problem["y"][:5])
    fitted = _fit(get_score(name), problem)
    with pytest.raises(ValueError, match="two dimensions"):
        fitted.score(np.zeros(3))
    with pytest.raises(ValueError, match="empty"):
        fitted.score(np.zeros((0, *SHAPE)))


LACKING = {
    "log p(x)": {"model": Without(ToyModel(), "score_samples")},
    "features": {"model": Without(ToyModel(), "transform")},
    "probabilities": {"model": Without(ToyModel(), "predict_proba")},
    "posterior draws": {"model": Without(ToyModel(), "sample")},
    "labels": {"y": None},
    "in-distribution inputs": {"X": None},
    "images": {"X": in_distribution(300, seed=0)[0].reshape(300, -1)},
    "background": {"drop": "background"},
}
CASES = [(name, req) for name in score_names() for req in get_score(name).requires]


def test_every_requirement_is_known_and_has_a_lacking_case():
    assert set(LACKING) == set(REQUIREMENTS)
    for name in score_names():
        assert set(get_score(name).requires) <= set(REQUIREMENTS), name


@pytest.mark.parametrize(("name", "requirement"), CASES, ids=[f"{n}/{r}" for n, r in CASES])
def test_a_declared_requirement_is_reported_and_enforced(name, requirement, problem):
    lacking = dict(LACKING[requirement])
    drop = lacking.pop("drop", None)
    model, X, y = lacking.get("model", problem["model"]), lacking.get("X", problem["X"]), \
        lacking.get("y", problem["y"])
    needs = {k: v for k, v in problem["needs"].items() if k != drop}
    score = get_score(name)
    reasons = score.unmet(model, X, y, **needs)
    assert any(r.startswith(f"needs {requirement}:") for r in reasons), reasons
    with pytest.raises((TypeError, ValueError), match=re.escape(f"needs {requirement}")):
        score.fit(model, X, y, **{k: v for k, v in needs.items() if k in score.needs})
    assert not hasattr(score, "model_")  # refused before any fitting


# ---- the registry -------------------------------------------------------------------------------------------


@pytest.fixture
def own_registry(monkeypatch):
    """Registrations made in a test are undone after it."""
    monkeypatch.setattr(ood_protocol, "_REGISTRY", dict(ood_protocol._REGISTRY))


class DistanceToMean(OODScore):
    """A user's own score: the Euclidean distance of the features from their training mean."""

    name = "distance to the mean"
    requires = ("features", "in-distribution inputs")

    def _fit(self, model, X, y):
        self.mean_ = model.transform(X).mean(axis=0)

    def _score(self, X):
        return np.linalg.norm(self.model_.transform(X) - self.mean_, axis=1)


def test_a_users_registered_score_appears_in_the_table_and_in_score_inputs(problem, own_registry):
    assert "distance to the mean" not in score_names()
    register_score(DistanceToMean)
    assert score_names()[-1] == "distance to the mean"
    result = evaluate_ood(problem["model"], X_train=problem["X"], y_train=problem["y"], X_test=problem["X_test"],
                          ood_sets={"noise": problem["ood"]}, typicality_sizes=(5,), n_draws=20)
    row = next(r for r in result["rows"] if r["score"] == "distance to the mean")
    Z, Z_test = problem["X"].reshape(300, -1), problem["X_test"].reshape(200, -1)
    expected = np.linalg.norm(Z_test - Z.mean(0), axis=1)  # computed here, not by the score
    assert np.allclose(result["scores"]["distance to the mean"]["test"], expected)
    assert row["auroc"] > 0.99
    values, skipped = score_inputs(problem["model"], problem["X_test"], reference=problem["X"])
    assert np.allclose(values["distance to the mean"], expected)
    assert "feature Gaussian (full)" in skipped and "labels" in skipped["feature Gaussian (full)"]
    without_reference, skipped = score_inputs(problem["model"], problem["X_test"])
    assert "distance to the mean" not in without_reference
    assert "in-distribution inputs" in skipped["distance to the mean"]


def test_the_table_takes_every_registered_score_and_says_why_one_is_left_out(problem):
    result = evaluate_ood(problem["model"], X_train=problem["X"], y_train=problem["y"], X_test=problem["X_test"],
                          ood_sets={"noise": problem["ood"]}, typicality_sizes=(1, 5), n_draws=20)
    labels = {r["score"] for r in result["rows"]}
    for name in score_names():
        if name == "typicality":
            assert {"typicality (M=1)", "typicality (M=5)"} <= labels
        elif name == "likelihood ratio":  # no background model given: left out, and said so
            assert name not in labels
            assert any(n.startswith("likelihood ratio not available: needs background") for n in result["notes"])
        else:
            assert get_score(name, **({"covariance": "tied"} if name == "feature Gaussian" else {})).label \
                in labels, name
    with_bg = evaluate_ood(problem["model"], X_train=problem["X"], y_train=problem["y"], X_test=problem["X_test"],
                           ood_sets={"noise": problem["ood"]}, background=Background(), names=["likelihood ratio"],
                           typicality_sizes=())
    assert [r["score"] for r in with_bg["rows"]] == ["likelihood ratio"]
    with pytest.raises(ValueError, match="unknown OOD score"):
        evaluate_ood(problem["model"], X_train=problem["X"], y_train=problem["y"], X_test=problem["X_test"],
                     ood_sets={"noise": problem["ood"]}, names=["no such score"])


def test_the_registry_refuses_what_is_not_a_score(own_registry):
    with pytest.raises(TypeError, match="OODScore subclass"):
        register_score(lambda model, X: X)

    class Nameless(OODScore):
        pass

    with pytest.raises(ValueError, match="name"):
        register_score(Nameless)

    class Odd(OODScore):
        name = "odd"
        requires = ("telepathy",)

    with pytest.raises(ValueError, match="telepathy"):
        register_score(Odd)

    class Demanding(OODScore):
        name = "demanding"

        def __init__(self, threshold):
            self.threshold = threshold

    with pytest.raises(ValueError, match="no default"):
        register_score(Demanding)

    class Impostor(OODScore):
        name = "-log p(x)"

    with pytest.raises(ValueError, match="already registered"):
        register_score(Impostor)
    with pytest.raises(ValueError, match="unknown OOD score"):
        get_score("no such score")
    with pytest.raises(TypeError, match="string"):
        get_score(3)


def test_fit_scores_fits_what_applies_and_names_the_rest(problem):
    fitted, skipped = fit_scores(problem["model"], problem["X"], problem["y"], names=["-log p(x)", "likelihood ratio"])
    assert list(fitted) == ["-log p(x)"] and list(skipped) == ["likelihood ratio"]
    assert skipped["likelihood ratio"].startswith("needs background: no background model given")
