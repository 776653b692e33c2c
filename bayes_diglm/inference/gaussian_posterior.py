"""Heads whose posterior over the GLM weights is a Gaussian (Laplace, SVI): named draws, predictor moments,
the classifiers' predictives, and the regression family side (family, targets, per-row context)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import ClassifierMixin, RegressorMixin

from bayes_diglm import likelihoods
from bayes_diglm._validation import COUNT, NON_NEGATIVE, POSITIVE, StrOptions, check_count
from bayes_diglm.likelihoods import Likelihood

from .base import ContextTags, PosteriorClassifierMixin, PosteriorHead, Predictive, as_generator
from .laplace.solvers import _make_likelihood
from .pyro_model import GaussianWeightsModel

__all__ = ["GAUSSIAN_HEAD_CONSTRAINTS", "_GaussianPosteriorClassifier", "_GaussianWeights", "_RegressionFamily"]

_PREDICTIVES = ("probit", "map", "mc")
#: the constraints of the parameters that the Gaussian-posterior heads (Laplace, SVI) share
GAUSSIAN_HEAD_CONSTRAINTS = {
    "prior_precision": POSITIVE, "intercept_prior_precision": [*NON_NEGATIVE, None], "fit_intercept": ["boolean"],
    "rank": [*COUNT, None], "likelihood": "no_validation", "noise_variance": POSITIVE,
    "likelihood_kwargs": [dict, None], "classes": ["array-like", None],
    "predictive": [StrOptions(set(_PREDICTIVES))], "n_predictive_samples": COUNT, "predictive_seed": "no_validation",
}


class _GaussianWeights(GaussianWeightsModel):
    """Named draws, predictor moments and Pyro model (``pyro_model``, Gaussian prior at ``prior_precision_``) of a
    head whose ``posterior_`` is a Gaussian over the (k, D+1) weights."""

    def _sample_weights(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.posterior_.sample(n, rng)

    def _sample_params(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Draws of ``"beta"`` ((n, D), or (n, K, D) for softmax) and ``"intercept"`` ((n,) or (n, K))."""
        weights = self._sample_weights(n, rng)
        if weights.shape[1] == 1:
            weights = weights[:, 0]
        d = self.n_features_in_
        draws = {"beta": np.ascontiguousarray(weights[..., :d])}
        if self.fit_intercept:
            draws["intercept"] = np.ascontiguousarray(weights[..., d])
        return draws

    def _predictor_moments(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X = self._design(Z)
        return X @ self.posterior_.mean.T, self.posterior_.logit_cov(X)


class _GaussianPosteriorClassifier(_GaussianWeights, PosteriorClassifierMixin, ClassifierMixin, PosteriorHead):
    """Predictives of a classifier whose posterior over the weights is a Gaussian (Laplace and SVI).

    Which predictive is the head's option ``predictive`` (a constructor parameter, the same for every call):
    ``"probit"`` (default): closed form, MacKay's probit for K = 2 and
    :func:`bayes_diglm.likelihoods.multiclass_probit` for K > 2; ``"map"``: plug in the posterior mean;
    ``"mc"``: average the likelihood over ``n_predictive_samples`` posterior draws (seeded by ``predictive_seed``,
    an int, a NumPy Generator, or None for fresh entropy).
    """

    def _likelihood_for(self, K: int) -> Likelihood:
        """The family of K classes: the head's ``likelihood`` when it has one, else the registered logistic
        family for two classes and the softmax for more."""
        return likelihoods.for_classes(getattr(self, "likelihood", None), K)

    def _check_predictive(self) -> None:
        if self.predictive not in _PREDICTIVES:
            raise ValueError(f"predictive must be one of {_PREDICTIVES}, got {self.predictive!r}")
        n = self.n_predictive_samples
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n_predictive_samples must be a positive integer, got {n!r}")

    def _predict_dist(self, Z: np.ndarray, **context) -> Predictive:
        """Predictive over ``classes_``: the class probabilities with the weights integrated out."""
        self._check_predictive()
        X = self._design(Z)
        if self.predictive == "probit":
            mean, cov = X @ self.posterior_.mean.T, self.posterior_.logit_cov(X)
            probs = Predictive(self.likelihood_.predictive(torch.from_numpy(mean), torch.from_numpy(cov), **context),
                               classes=self.classes_).probs
        elif self.predictive == "map":
            probs = self._probs(X @ self.posterior_.mean.T, context)
        else:
            k = self.posterior_.mean.shape[0]  # per draw: the weights (k, D+1) and the logits (n, k)
            n = check_count(self.n_predictive_samples, "n_predictive_samples",
                            per_item=max(self.posterior_.mean.size, X.shape[0] * k))
            draws = self._sample_weights(n, as_generator(self.predictive_seed))
            probs = self._probs(np.einsum("nd,skd->snk", X, draws), context).mean(axis=0)
        dist = torch.distributions.Categorical(probs=torch.from_numpy(np.ascontiguousarray(probs)))
        return Predictive(dist, classes=self.classes_)

    def _probs(self, logits: np.ndarray, context: dict) -> np.ndarray:
        return self.likelihood_.probs(logits, **context)

    def log_predictive(self, Z, y, **context) -> np.ndarray:
        """Log predictive probability ``log p(y_i | z_i, data)`` of each label, shape (n,)."""
        pred = self.predict_dist(Z, **context)
        return np.log(np.clip(np.take_along_axis(pred.probs, self._encode_y(y)[:, None], axis=1)[:, 0],
                              1e-300, None))


class _RegressionFamily(RegressorMixin):
    """The family side of a regression head with a Gaussian posterior over the weights (Laplace, SVI): the
    registered family from ``likelihood`` / ``likelihood_kwargs`` / ``noise_variance``, target and per-row
    context checks, and the predictive with the family's context."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        try:
            tags.target_tags.positive_only = bool(self._family().discrete)  # counts
        except (TypeError, ValueError):
            pass
        return tags

    def _family(self) -> Likelihood:
        """The ``likelihood`` family with its known nuisance values (a ValueError for a classification one)."""
        options = dict(self.likelihood_kwargs or {})
        if not isinstance(options, dict):
            raise TypeError(f"likelihood_kwargs must be a dict or None, got {type(self.likelihood_kwargs).__name__}")
        options.setdefault("noise_variance", self.noise_variance)
        lik = _make_likelihood(self.likelihood, **options)
        if lik.task != "regression":
            raise ValueError(f"likelihood={self.likelihood!r} is a classification family: use a classifier head "
                             "(LaplaceClassifier, SVIClassifier)")
        return lik

    def _check_y(self, lik: Likelihood, y: np.ndarray, context: dict) -> np.ndarray:
        """Targets in the family's support. Counts may be non-integer: the family's log-density continues
        to them (``y eta - exp(eta) - log Gamma(y + 1)`` for Poisson, as scikit-learn's ``PoissonRegressor``)."""
        if lik.discrete:
            if np.any(y < 0):
                raise ValueError(f"y must hold non-negative counts for a {type(lik).__name__} likelihood, "
                                 f"got min {y.min()}")
            lik.check_target(np.ceil(y), **context)  # the rest of the support (e.g. successes <= trials)
            return y
        return lik.check_target(y, **context)

    def _family_context(self) -> tuple[str, ...]:
        lik = getattr(self, "likelihood_", None)
        if lik is None:
            try:
                lik = self._family()
            except (TypeError, ValueError):
                return ()
        return tuple(lik.context)

    def _context_tags(self) -> ContextTags:
        """Frequency weights in ``fit``, or known noise precisions everywhere for a family with a
        ``noise_variance``; the family's per-row keywords."""
        try:
            noise = "noise_variance" in self._family().nuisance
        except (TypeError, ValueError):
            noise = False
        return ContextTags(sample_weight="noise" if noise else "frequency", family=self._family_context())

    def _predict_dist(self, Z: np.ndarray, sample_weight=None, **context) -> Predictive:
        """The predictive at the rows of ``Z``: the family integrated over the Gaussian of the linear predictor
        (Poisson-lognormal by quadrature, exactly ``N(m, v + noise_variance / w)`` for the Gaussian ...).

        ``sample_weight`` (families with a ``noise_variance``, e.g. ``likelihood="gaussian"``): known relative
        noise precisions ``w`` of the new rows, as in ``fit`` (``y ~ N(beta^T z, noise_variance / w)``); default 1.
        ``context``: the family's per-row keywords at the new rows.
        """
        return self._predictive_of(Z, self._draw_likelihood({}, Z.shape[0], sample_weight), **context)

    def _draw_likelihood(self, draws: dict, n: int, sample_weight) -> Likelihood:
        if sample_weight is None:
            return self.likelihood_
        if "noise_variance" not in self.likelihood_.nuisance:
            raise ValueError(f"sample_weight at prediction time holds noise precisions, which a "
                             f"{type(self.likelihood_).__name__} likelihood has not (likelihood='gaussian' has)")
        w = self._validate_weights(sample_weight, n, positive=True)
        config = self.likelihood_.config()
        return type(self.likelihood_)(**{**config, "noise_variance": torch.from_numpy(config["noise_variance"] / w)})

    def predict(self, Z, **context) -> np.ndarray:
        """Predictive mean of ``y`` (``exp(m + v / 2)`` for Poisson, ``m`` for Gaussian, for the predictor's
        ``N(m, v)``)."""
        return self.predict_dist(Z, **context).mean
