"""The OOD-score protocol (fit on in-distribution data, then score new inputs) and the one registry of scores.

Every score is an :class:`OODScore`: ``fit(model, X, y=None, **needs)`` with a fitted estimator ``model`` (read
only through public methods: ``score_samples``, ``transform``, ``predict_proba``, ``sample``), in-distribution
inputs ``X``, labels ``y`` and whatever else it needs by keyword (``background=`` a background density model,
``X_val=`` held-out in-distribution inputs), then ``score(X)`` for new inputs, **higher for more unusual
inputs**. What a score needs is declared in class attributes (``requires``, ``needs``), so the table and the
command line skip a score whose requirements are not met and say why (:meth:`OODScore.unmet`), and ``fit``
refuses it. :func:`register_score` adds a score (a user's own included) to the list that
:func:`~bayes_diglm.evaluation.evaluate_ood`, :func:`~bayes_diglm.evaluation.score_inputs` and
``bayes-diglm ood`` take (:func:`score_names`).
"""

from __future__ import annotations

import inspect
from typing import ClassVar

import numpy as np

from .ood import CachedOutputs, HeadOnFeatures, _n_rows

__all__ = ["REQUIREMENTS", "OODScore", "fit_scores", "get_score", "register_score", "score_names"]

#: Every requirement a score may declare in ``OODScore.requires``, with what it means.
REQUIREMENTS: dict[str, str] = {
    "log p(x)": "the model's exact log density, model.score_samples(X)",
    "features": "the model's features z = f(x), model.transform(X)",
    "probabilities": "class probabilities, model.predict_proba(X)",
    "posterior draws": "posterior draws of the head's weights, model.sample(n, generator=...)",
    "labels": "labels y of the in-distribution inputs",
    "in-distribution inputs": "in-distribution inputs X to fit on",
    "images": "images (n, C, H, W) of pixel / 255",
    "background": "a background density model, background= (see fit_background)",
}
# requirements on what an object can do (a TypeError when unmet); the others are about the data (a ValueError)
_CAPABILITIES = ("log p(x)", "features", "probabilities", "posterior draws", "background")


def _name(model) -> str:
    """The class name of the estimator behind the CachedOutputs / HeadOnFeatures wrappers (for messages)."""
    if isinstance(model, CachedOutputs):
        return _name(model.model)
    if isinstance(model, HeadOnFeatures):
        return _name(model.head)
    return type(model).__name__


def _has(obj, method: str) -> bool:
    return callable(getattr(obj, method, None))


def _why_unmet(requirement: str, model, X, y, X_new, needs: dict) -> str | None:
    """Why ``requirement`` is not met by this problem, or None when it is."""
    methods = {"log p(x)": "score_samples", "features": "transform", "probabilities": "predict_proba"}
    if requirement in methods:
        method = methods[requirement]
        return None if _has(model, method) else f"{_name(model)} has no {method}(X)"
    if requirement == "posterior draws":
        if _has(model, "sample") and getattr(model, "posterior", None) != "point":
            return None
        return f"{_name(model)} has no posterior draws (sample); needs a Bayesian head (posterior='laplace' or 'svi')"
    if requirement == "labels":
        return None if y is not None else "no labels y given"
    if requirement == "in-distribution inputs":
        return None if X is not None else "no in-distribution inputs X given"
    if requirement == "images":
        inputs = X_new if X_new is not None else X
        if inputs is None or np.ndim(inputs) == 4:
            return None  # unknown until scored; score() refuses other inputs
        return f"inputs of shape {np.shape(inputs)} are not images (n, C, H, W)"
    if requirement == "background":
        background = needs.get("background")
        if background is None:
            return "no background model given (background=, see fit_background)"
        return None if _has(background, "score_samples") else "the background model has no score_samples(X)"
    raise ValueError(f"unknown requirement {requirement!r}; known: {sorted(REQUIREMENTS)}")


class OODScore:
    """Base class of every OOD score: ``fit(model, X, y=None, **needs)`` then ``score(X)``, higher = more unusual.

    Subclasses set the class attributes and implement ``_score(X)`` (and ``_fit`` when they learn from data):

    - ``name``: the registry's name, and the row label unless :attr:`label` says more (e.g. a setting);
    - ``requires``: keys of :data:`REQUIREMENTS` that must hold (checked by :meth:`unmet`, enforced by :meth:`fit`);
    - ``needs``: the keyword arguments ``fit`` takes beyond ``X`` and ``y`` (``"background"``, ``"X_val"``);
    - ``batched``: ``True`` when ``score`` rates batches of ``batch_size`` consecutive inputs (one value per batch).

    A score that reads the head (``requires`` has ``"probabilities"`` or ``"posterior draws"``) is computed for
    each head by the table (:attr:`reads_head`). ``fit`` keeps the model as ``model_``: pass a
    :class:`~bayes_diglm.evaluation.CachedOutputs` to share one flow pass between scores.
    """

    name: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    needs: ClassVar[tuple[str, ...]] = ()
    batched: ClassVar[bool] = False

    @property
    def label(self) -> str:
        """The score's row label in tables and column name in CSV files."""
        return self.name or type(self).__name__

    @property
    def note(self) -> str | None:
        """A sentence for the table's notes (e.g. which compressor), or None."""
        return None

    @property
    def reads_head(self) -> bool:
        """Whether the score reads the head's predictions (then the table computes it for every head)."""
        return bool({"probabilities", "posterior draws"} & set(self.requires))

    @classmethod
    def from_settings(cls, **settings) -> OODScore:
        """An instance built from the ``settings`` its constructor takes (shared settings such as ``seed``
        or ``compressor``, given once for every score); the other settings are left out."""
        names = [p.name for p in inspect.signature(cls).parameters.values()
                 if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
        return cls(**{k: v for k, v in settings.items() if k in names})

    def unmet(self, model, X=None, y=None, *, X_new=None, **needs) -> list[str]:
        """The declared requirements this problem does not meet, each as ``"needs <requirement>: <why>"``.

        ``X_new``: inputs to be scored, when known (whether they are images decides the ``"images"`` requirement
        when no ``X`` is given); ``needs`` may hold keywords the score does not take (they are ignored here).
        """
        return [f"needs {r}: {why}" for r, why in self._problems(model, X, y, X_new, needs)]

    def _problems(self, model, X, y, X_new, needs) -> list[tuple[str, str]]:
        found = ((r, _why_unmet(r, model, X, y, X_new, needs)) for r in self.requires)
        return [(r, why) for r, why in found if why is not None]

    def fit(self, model, X=None, y=None, **needs) -> OODScore:
        """Fit on in-distribution inputs ``X`` (labels ``y``) read through ``model``; return ``self``.

        Raises:
            TypeError: a keyword that the score does not take, or a model (or background) without a method the
                score requires.
            ValueError: malformed inputs, or missing data the score requires (labels, inputs, images).
        """
        self._check_params()
        unknown = sorted(set(needs) - set(self.needs))
        if unknown:
            raise TypeError(f"{self.label!r} takes no {unknown} (it takes {list(self.needs) or 'no keywords'})")
        if X is not None:
            n = _n_rows(X)
            if y is not None and np.shape(y) != (n,):
                raise ValueError(f"y must have shape ({n},), got {np.shape(y)}")
        problems = self._problems(model, X, y, None, needs)
        if problems:
            message = f"{self.label!r} cannot be fitted: " + "; ".join(f"needs {r}: {why}" for r, why in problems)
            raise (TypeError if all(r in _CAPABILITIES for r, _ in problems) else ValueError)(message)
        self._fit(model, X, y, **needs)
        self.model_ = model
        return self

    def score(self, X) -> np.ndarray:
        """The score of each input (each batch of ``batch_size`` when ``batched``), float64, higher = more unusual."""
        if not hasattr(self, "model_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit first")
        n = _n_rows(X)
        if "images" in self.requires and np.ndim(X) != 4:
            raise ValueError(f"{self.label!r} needs images (n, C, H, W), got shape {np.shape(X)}")
        values = np.asarray(self._score(X), dtype=np.float64)
        expected = (n // int(getattr(self, "batch_size", 1)),) if self.batched else (n,)
        if values.shape != expected:
            raise ValueError(f"{self.label!r} returned shape {values.shape} for {n} inputs, expected {expected}")
        return values

    def _check_params(self) -> None:
        """Refuse bad constructor arguments (called first by :meth:`fit`, before any work)."""

    def _fit(self, model, X, y, **needs) -> None:
        """Learn from the in-distribution data (nothing for scores that need none)."""

    def _score(self, X) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        params = inspect.signature(type(self)).parameters
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in params if hasattr(self, k))
        return f"{type(self).__name__}({args})"


_REGISTRY: dict[str, type[OODScore]] = {}


def register_score(cls: type[OODScore]) -> type[OODScore]:
    """Add an :class:`OODScore` subclass to the registry under its ``name`` (usable as a class decorator).

    A registered score appears in :func:`~bayes_diglm.evaluation.evaluate_ood`'s table, in
    :func:`~bayes_diglm.evaluation.score_inputs` and in ``bayes-diglm ood`` wherever its requirements are met,
    in the order of registration. A second class under a name already taken is refused (a typo cannot silently
    replace a built-in score).
    """
    if not (isinstance(cls, type) and issubclass(cls, OODScore)):
        raise TypeError(f"register_score takes an OODScore subclass, got {cls!r}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{cls.__name__} needs a class attribute `name` (a non-empty string) to be registered")
    unknown = [r for r in cls.requires if r not in REQUIREMENTS]
    if unknown:
        raise ValueError(f"{cls.__name__} requires unknown {unknown}; known requirements: {sorted(REQUIREMENTS)}")
    required = [p.name for p in inspect.signature(cls).parameters.values()
                if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if required:
        raise ValueError(f"{cls.__name__} must be constructible with no arguments to be registered (the table "
                         f"builds it from shared settings); {required} have no default")
    known = _REGISTRY.get(name)
    if known is not None and known is not cls:
        raise ValueError(f"an OOD score named {name!r} is already registered ({known.__qualname__})")
    _REGISTRY[name] = cls
    return cls


def _score_class(name: str) -> type[OODScore]:
    if not isinstance(name, str):
        raise TypeError(f"a score name must be a string, got {type(name).__name__}")
    if name not in _REGISTRY:
        raise ValueError(f"unknown OOD score {name!r}; registered: {list(_REGISTRY)}")
    return _REGISTRY[name]


def get_score(name: str, **params) -> OODScore:
    """A new instance of the score registered as ``name``, built with ``params``."""
    return _score_class(name)(**params)


def score_names() -> tuple[str, ...]:
    """The names of every registered score, in the order of registration (the table's order)."""
    return tuple(_REGISTRY)


def fit_scores(model, X=None, y=None, *, names=None, settings: dict | None = None, X_new=None,
               **needs) -> tuple[dict[str, OODScore], dict[str, str]]:
    """Fit every registered score (or those in ``names``) whose requirements this problem meets.

    Each score is built by :meth:`OODScore.from_settings` from ``settings`` (shared settings: ``seed``,
    ``compressor``, ``n_draws``, ...) and fitted on ``(model, X, y)`` with the ``needs`` it takes. Returns the
    fitted scores and, for the others, why they were skipped, both keyed by label.
    """
    classes = [_score_class(name) for name in (score_names() if names is None else names)]
    fitted, skipped = {}, {}
    for cls in classes:
        score = cls.from_settings(**(settings or {}))
        reasons = score.unmet(model, X, y, X_new=X_new, **needs)
        if reasons:
            skipped[score.label] = "; ".join(reasons)
            continue
        fitted[score.label] = score.fit(model, X, y, **{k: v for k, v in needs.items() if k in score.needs})
    return fitted, skipped
