"""Stochastic variational inference (Pyro) for the weights of a regression head in any registered family."""

from __future__ import annotations

import numpy as np

from .base import PosteriorHead
from .gaussian_posterior import _GaussianWeights, _RegressionFamily
from .svi import SVIClassifier

__all__ = ["SVIRegressor"]

# SVIClassifier's machinery (Laplace start, natural-gradient or Adam steps, stopping rule, ELBO) does not depend on
# the task: it reads only ``likelihood_`` and the hyper-parameters. Every method of the class except its
# constructor, its parameter checks, its _fit and its documentation is taken from the class itself (not copied), so
# that both heads run the same optimisation whatever it becomes.
_CLASSIFIER_ONLY = {"__init__", "_check_params", "_fit", "__doc__", "__module__", "__qualname__", "__dict__",
                    "__weakref__", "__firstlineno__", "__static_attributes__"}
_SVI_MACHINERY = tuple(name for name in vars(SVIClassifier)
                       if name not in _CLASSIFIER_ONLY and not name.startswith("set_"))  # sklearn's own request setters


class SVIRegressor(_RegressionFamily, _GaussianWeights, PosteriorHead):
    r"""Bayesian GLM regression on features by SVI with a Gaussian guide (Pyro), in any registered regression family.

    Model (float64): ``W ~ N(0, 1/prior_precision)`` on the weights and ``N(0, 1/intercept_prior_precision)`` on
    the bias, ``y_i ~ p(y | w^T [z_i; 1])`` of the family ``likelihood`` (a registered name or a
    :class:`~bayes_diglm.likelihoods.Likelihood` instance, its nuisance known: ``likelihood_kwargs``,
    ``noise_variance``). Guide, initialisation at the Laplace approximation, stopping rule and evidence are
    :class:`~bayes_diglm.inference.SVIClassifier`'s, with the same parameters (less ``classes``). Per-row context
    keywords of the family (``trials=`` ...) go to ``fit``, ``predict_dist``, ``predict``, ``pyro_model`` and the
    ArviZ methods. The natural-gradient optimiser averages the family's curvature
    at the observed ``y`` (the observed curvature where a family's depends on ``y``).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(200, 2)); y = rng.poisson(np.exp(0.5 * Z[:, 0]))
    >>> head = SVIRegressor(likelihood="poisson", covariance="diag", num_steps=300, plateau_tol=None).fit(Z, y)
    >>> head.predict_dist(Z[:2]).mean.shape
    (2,)
    """

    locals().update({name: SVIClassifier.__dict__[name] for name in _SVI_MACHINERY})

    def __init__(
        self,
        *,
        likelihood="poisson",
        noise_variance: float = 1.0,
        likelihood_kwargs: dict | None = None,
        prior_precision: float = 1.0,
        intercept_prior_precision: float | None = None,
        fit_intercept: bool = True,
        prior=None,
        guide=None,
        covariance: str = "auto",
        rank: int | None = None,
        optimizer: str = "auto",
        num_steps: int = 5000,
        lr: float = 0.01,
        batch_size: int | None = None,
        num_particles: int = 4,
        plateau_window: int = 250,
        plateau_tol: float | None = 0.05,
        seed: int = 0,
    ):
        self.likelihood = likelihood
        self.noise_variance = noise_variance
        self.likelihood_kwargs = likelihood_kwargs
        self.prior_precision = prior_precision
        self.intercept_prior_precision = intercept_prior_precision
        self.fit_intercept = fit_intercept
        self.prior = prior
        self.guide = guide
        self.covariance = covariance
        self.rank = rank
        self.optimizer = optimizer
        self.num_steps = num_steps
        self.lr = lr
        self.batch_size = batch_size
        self.num_particles = num_particles
        self.plateau_window = plateau_window
        self.plateau_tol = plateau_tol
        self.seed = seed

    _parameter_constraints = SVIClassifier._parameter_constraints

    def _check_params(self) -> None:
        self._check_settings()
        self._family()

    def _fit(self, Z, y, w, **context) -> None:
        """Maximise the ELBO from the Laplace start for features ``Z`` (n, D) and targets ``y`` of the family.

        ``sample_weight``: integer frequency weights; ``context``: the family's per-row keywords (``trials=`` ...),
        arrays of shape (n,). The ELBO per step is kept in ``elbo_history_``.
        """
        self._check_batch_size(Z.shape[0])
        lik = self._family()
        y = self._check_y(lik, np.asarray(y, dtype=np.float64), context)
        self.likelihood_ = lik
        X = self._design(Z)
        prior = self._prior(lik.num_outputs, X.shape[1])
        self.covariance_ = "full" if self.covariance == "auto" else self.covariance  # one output: P = D + 1
        self.optimizer_ = self._chosen_optimizer()
        self._optimise(X, y, w, prior, context or None)
