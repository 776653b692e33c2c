"""Heads whose posterior over the GLM weights is a Gaussian (Laplace, SVI): named draws, predictor moments,
the classifiers' predictives, and the regression family side (family, targets, per-row context)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import ClassifierMixin, RegressorMixin

from bayes_diglm import likelihoods
from bayes_diglm.likelihoods import Likelihood

from .base import PosteriorClassifierMixin, PosteriorHead, Predictive, as_generator
from .laplace.solvers import _make_likelihood

__all__ = ["_GaussianPosteriorClassifier", "_GaussianWeights", "_RegressionFamily"]

_PREDICTIVES = ("probit", "map", "mc")


class _GaussianWeights:
    """Named draws and predictor moments of a head whose ``posterior_`` is a Gaussian over the (k, D+1) weights."""

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

    ``method="probit"`` (default): closed form, MacKay's probit for K = 2 and
    :func:`bayes_diglm.likelihoods.multiclass_probit` for K > 2; ``"map"``: plug in the posterior mean;
    ``"mc"``: average the likelihood over ``n_samples`` posterior draws (``generator`` seeds them).
    """

    def _likelihood_for(self, K: int) -> Likelihood:
        """The family of K classes: the head's ``likelihood`` when it has one, else the registered logistic
        family for two classes and the softmax for more."""
        return likelihoods.for_classes(getattr(self, "likelihood", None), K)

    def predict_dist(self, Z, method: str = "probit", n_samples: int = 1000, generator=None) -> Predictive:
        """Predictive over ``classes_``: the class probabilities with the weights integrated out."""
        if method not in _PREDICTIVES:
            raise ValueError(f"method must be one of {_PREDICTIVES}, got {method!r}")
        Z = self._validate_Z(Z)
        X = self._design(Z)
        if method == "probit":
            mean, cov = X @ self.posterior_.mean.T, self.posterior_.logit_cov(X)
            probs = Predictive(self.likelihood_.predictive(torch.from_numpy(mean), torch.from_numpy(cov)),
                               classes=self.classes_).probs
        elif method == "map":
            probs = self._probs(X @ self.posterior_.mean.T)
        else:
            if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
                raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
            draws = self._sample_weights(int(n_samples), as_generator(generator))
            probs = self._probs(np.einsum("nd,skd->snk", X, draws)).mean(axis=0)
        dist = torch.distributions.Categorical(probs=torch.from_numpy(np.ascontiguousarray(probs)))
        return Predictive(dist, classes=self.classes_)

    def _probs(self, logits: np.ndarray) -> np.ndarray:
        return self.likelihood_.probs(logits)

    def predict_proba(self, Z, method: str = "probit", n_samples: int = 1000, generator=None) -> np.ndarray:
        """Predictive class probabilities (n, K), columns in ``classes_`` order (``method`` as in predict_dist)."""
        return self.predict_dist(Z, method=method, n_samples=n_samples, generator=generator).probs

    def predict(self, Z, method: str = "probit") -> np.ndarray:
        """Most probable label under the predictive."""
        index = np.argmax(self.predict_proba(Z, method=method), axis=1)
        return self.classes_[index]

    def log_predictive(self, Z, y, method: str = "probit", n_samples: int = 1000, generator=None) -> np.ndarray:
        """Log predictive probability ``log p(y_i | z_i, data)`` of each label, shape (n,)."""
        pred = self.predict_dist(Z, method=method, n_samples=n_samples, generator=generator)
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

    @staticmethod
    def _validate_context(lik: Likelihood, context: dict, n: int) -> dict:
        """The family's per-row keywords as float64 arrays of shape (n,) (a TypeError for others)."""
        unknown = sorted(set(context) - set(lik.context))
        if unknown:
            raise TypeError(f"a {type(lik).__name__} likelihood takes no per-row keyword {unknown}; its context is "
                            f"{list(lik.context)}")
        out = {}
        for key in lik.context:
            if context.get(key) is None:
                raise ValueError(f"a {type(lik).__name__} likelihood needs the per-row keyword {key!r}")
            value = np.broadcast_to(np.asarray(context[key], dtype=np.float64), (n,)).copy()
            if not np.all(np.isfinite(value)):
                raise ValueError(f"{key} must be finite")
            out[key] = value
        return out

    def predict_dist(self, Z, sample_weight=None, **context) -> Predictive:
        """The predictive at the rows of ``Z``: the family integrated over the Gaussian of the linear predictor
        (Poisson-lognormal by quadrature, exactly ``N(m, v + noise_variance / w)`` for the Gaussian ...).

        ``sample_weight`` (families with a ``noise_variance``, e.g. ``likelihood="gaussian"``): known relative
        noise precisions ``w`` of the new rows, as in ``fit`` (``y ~ N(beta^T z, noise_variance / w)``); default 1.
        ``context``: the family's per-row keywords at the new rows.
        """
        Z = self._validate_Z(Z)
        lik = self._draw_likelihood({}, Z.shape[0], sample_weight)
        return self._predictive_of(Z, lik, **self._validate_context(lik, context, Z.shape[0]))

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
