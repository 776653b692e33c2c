"""Stochastic variational inference (Pyro) for the weights of a regression head in any registered family."""

from __future__ import annotations

import numpy as np

from .base import PosteriorHead
from .laplace import _GaussianWeights, _RegressionFamily
from .svi import SVIClassifier

__all__ = ["SVIRegressor"]

# SVIClassifier's machinery (Gaussian guide from the Laplace start, ClippedAdam, plateau rule, Polyak averaging,
# ELBO) does not depend on the task: it reads only ``likelihood_`` and the hyper-parameters below. It is taken
# from the class itself (not copied) so that both heads run the same optimisation.
_SVI_MACHINERY = (
    "_check_params", "_prior", "_model_fn", "_init_guide", "_guide_distribution", "_CONSTRAINTS", "_guide_fn",
    "_gaussian", "_run_svi", "_weighted", "_snapshot", "_constrained", "_settled", "_elbo_estimate",
    "log_evidence", "_sample_weights", "_arviz_attrs",
)


class SVIRegressor(_RegressionFamily, _GaussianWeights, PosteriorHead):
    r"""Bayesian GLM regression on features by SVI with a Gaussian guide (Pyro), in any registered regression family.

    Model (float64): ``W ~ N(0, 1/prior_precision)`` on the weights and ``N(0, 1/intercept_prior_precision)`` on
    the bias, ``y_i ~ p(y | w^T [z_i; 1])`` of the family ``likelihood`` (a registered name or a
    :class:`~bayes_diglm.likelihoods.Likelihood` instance, its nuisance known: ``likelihood_kwargs``,
    ``noise_variance``). Guide, initialisation at the Laplace approximation, stopping rule and evidence are
    :class:`~bayes_diglm.inference.SVIClassifier`'s, with the same parameters (less ``classes``). Per-row context
    keywords of the family (``trials=`` ...) go to ``predict_dist``, ``predict`` and the ArviZ methods; ``fit``
    takes none yet (the Pyro model has no context).

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
        covariance: str = "full",
        rank: int | None = None,
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
        self.covariance = covariance
        self.rank = rank
        self.num_steps = num_steps
        self.lr = lr
        self.batch_size = batch_size
        self.num_particles = num_particles
        self.plateau_window = plateau_window
        self.plateau_tol = plateau_tol
        self.seed = seed

    def fit(self, Z, y, *, sample_weight=None) -> SVIRegressor:
        """Maximise the ELBO from the Laplace start for features ``Z`` (n, D) and targets ``y`` of the family.

        ``sample_weight``: integer frequency weights. The ELBO per step is kept in ``elbo_history_``.
        """
        with self._keep_state_on_error():
            lik = self._family()
            Z, y, w = self._validate_train(Z, y, sample_weight)
            self._check_params(Z.shape[0])
            y = self._check_y(lik, np.asarray(y, dtype=np.float64), self._validate_context(lik, {}, Z.shape[0]))
            self.likelihood_ = lik
            self._run_svi(self._design(Z), y, w)
        return self
