"""The Laplace heads: :class:`LaplaceClassifier` and :class:`LaplaceRegressor` (MAP, Laplace posterior,
evidence, empirical Bayes) on fixed features."""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_is_fitted

from bayes_diglm._validation import COUNT, TOLERANCE, StrOptions, check_count, check_positive, check_tolerance

from ..base import PosteriorHead, check_prior_grouping
from ..gaussian_posterior import (
    GAUSSIAN_HEAD_CONSTRAINTS,
    _GaussianPosteriorClassifier,
    _GaussianWeights,
    _RegressionFamily,
)
from .evidence import PRIOR_GROUPINGS, mackay_prior_precision, prior_groups
from .fit import _COVARIANCES, LaplaceFit, laplace_glm
from .solvers import _HESSIANS, _OPTIMIZERS

_LAPLACE_CONSTRAINTS = {**GAUSSIAN_HEAD_CONSTRAINTS, "covariance": [StrOptions(set(_COVARIANCES))],
                        "optimizer": [StrOptions(set(_OPTIMIZERS))], "tol": TOLERANCE, "max_iter": [*COUNT, None],
                        "hessian": [StrOptions(set(_HESSIANS))]}

__all__ = ["LaplaceClassifier", "LaplaceRegressor"]



def _check_options(head) -> None:
    if head.covariance not in _COVARIANCES:
        raise ValueError(f"covariance must be one of {_COVARIANCES}, got {head.covariance!r}")
    if head.optimizer not in _OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {_OPTIMIZERS}, got {head.optimizer!r}")
    if head.hessian not in _HESSIANS:
        raise ValueError(f"hessian must be one of {_HESSIANS}, got {head.hessian!r}")
    if head.rank is not None and (isinstance(head.rank, bool) or not isinstance(head.rank, (int, np.integer))
                                  or head.rank < 1):
        raise ValueError(f"rank must be a positive integer or None, got {head.rank!r}")


class _LaplaceHead(_GaussianWeights, PosteriorHead):
    """MAP, Laplace posterior, evidence and empirical Bayes shared by the Laplace heads.

    Subclasses set ``likelihood_`` before :meth:`_fit_design` and give ``_initial_prior(k_out, D_aug)``.
    """

    def _run(self, X, y, w, prior, init=None, context=None) -> LaplaceFit:
        return laplace_glm(
            X, y, likelihood=self.likelihood_, prior_precision=prior, covariance=self.covariance,
            optimizer=self.optimizer, sample_weight=w, rank=self.rank, tol=self.tol, max_iter=self.max_iter,
            init=init, context=context, hessian=self.hessian,
        )

    def _fit_design(self, X, y, w, context=None) -> None:
        prior = self._user_prior(self._initial_prior(self.likelihood_.num_outputs, X.shape[1]))
        fit = self._run(X, y, w, prior, context=context)
        self._set_fitted(fit, X, y, w, context)

    def _set_fitted(self, fit: LaplaceFit, X, y, w, context=None) -> None:
        d = X.shape[1] - int(self.fit_intercept)
        self.fit_ = fit
        self.posterior_ = fit.posterior
        self.coef_ = fit.mean[:, :d]
        self.intercept_ = fit.mean[:, -1] if self.fit_intercept else np.zeros(fit.mean.shape[0])
        self.prior_precision_ = fit.prior_precision
        self.n_iter_ = fit.n_iter
        self.converged_ = fit.converged
        self._train = (X, y, w, context)

    def log_evidence(self) -> float:
        r"""Laplace approximation of :math:`\log p(y \mid Z)` at the fitted prior (see :func:`laplace_glm`)."""
        check_is_fitted(self)
        return self.fit_.log_evidence

    def optimize_prior_precision(self, per: str = "scalar", *, tol: float | None = None, max_iter: int | None = None):
        """Set the prior precision by maximising the Laplace evidence on the training data, then refit.

        ``per="scalar"`` shares one precision across all weights, ``"class"`` one per class row, and
        ``"feature"`` one per feature column (the bias is its own feature).  A flat bias prior
        (``intercept_prior_precision=0``) stays flat; otherwise the bias joins the scalar/class groups.
        Uses :func:`mackay_prior_precision` (refits the MAP at each step) with relative tolerance ``tol``
        (default 1e-6) and at most ``max_iter`` steps (default 200).
        """
        check_is_fitted(self)
        check_prior_grouping(per, PRIOR_GROUPINGS)
        tol = 1e-6 if tol is None else check_tolerance(tol, "tol")
        max_iter = 200 if max_iter is None else check_count(max_iter, "max_iter")
        X, y, w, context = self._train
        prior = self.fit_.prior_precision
        groups = prior_groups(prior, per)
        fit = mackay_prior_precision(lambda p, init: self._run(X, y, w, p, init, context), prior, groups,
                                     tol=tol, max_iter=max_iter)
        self._set_fitted(fit, X, y, w, context)
        return self


class LaplaceClassifier(_LaplaceHead, _GaussianPosteriorClassifier):
    r"""Bayesian logistic (K=2) or softmax (K>2) regression on features by the Laplace approximation.

    Model: ``p(y | z, W) = Cat(softmax(W [z; 1]))`` with prior ``W ~ N(0, 1/prior_precision)``.  Binary
    problems use one weight vector (``p(y=1) = sigmoid(w^T z + b)``); K > 2 classes use the full,
    over-parametrised K*D softmax (the Gaussian prior makes it identifiable), as scikit-learn does.
    Labels may be any sortable values; they are encoded through ``classes_``.

    The bias gets prior precision ``intercept_prior_precision`` (default: the same as the weights).
    ``intercept_prior_precision=0`` is a flat prior on the bias, which is scikit-learn's convention
    (``LogisticRegression(C=1/prior_precision)`` does not penalise the intercept); it is refused for
    K > 2, where the softmax bias is not identifiable without a prior.

    Parameters
    ----------
    prior_precision : float
    intercept_prior_precision : float or None
    fit_intercept : bool
    covariance : {"full", "diag", "kron", "lowrank"}
        Structure of the posterior precision: full (Cholesky of the K*D x K*D Hessian), diagonal of the
        Hessian, Kronecker-factored (K-FAC, see :class:`_KronPosterior`), or low-rank plus prior
        (:class:`_LowRankPosterior`, ``rank`` eigenpairs).
    rank : int or None
        Rank of ``covariance="lowrank"`` (default 20).
    optimizer : {"auto", "newton", "lbfgs"}
        MAP solver; Newton uses the full Hessian at every step, L-BFGS only gradients (large K*D, or
        ``covariance="kron"``/``"diag"``, whose posterior needs no full Hessian). ``"auto"`` (default): Newton
        for ``covariance="full"``/``"lowrank"`` up to 2,000 weights, L-BFGS otherwise.
    tol : float
        Stop when the largest absolute gradient entry of the negative log posterior is <= tol.
    max_iter : int or None
        Defaults to 100 for Newton, 15000 for L-BFGS.
    hessian : {"exact", "fisher"}
        The likelihood curvature of the posterior precision: the exact Hessian (default) or the Fisher
        information (see :func:`laplace_glm`); equal for the canonical links of the classification families.
    classes : array-like or None
        All labels, when the training data may miss some; inferred from ``y`` when None.
    likelihood : str, Likelihood or None
        A registered classification family (built with ``num_classes=K`` where it takes one) or an instance for
        K classes; None: the logistic family for two classes, the softmax for more.
    prior : pyro.distributions.Normal or None
        A zero-mean Gaussian prior over beta (``dist.Normal(0, scale)``, shape (D,) or (K, D)) replacing
        ``prior_precision`` for the feature weights; any other prior is refused by name (use the NUTS or SVI heads).
    predictive : {"probit", "map", "mc"}
        How :meth:`predict_dist` (and ``predict_proba``, ``predict``) integrates over the weights: closed form
        (MacKay's probit, its multiclass extension), plug-in at the posterior mean, or Monte Carlo.
    n_predictive_samples : int
        Posterior draws of ``predictive="mc"``.
    predictive_seed : int, numpy Generator or None
        Seeds the draws of ``predictive="mc"`` and of a regression family's Monte Carlo predictive (a family with
        several linear predictors, e.g. the heteroscedastic ones): with an int, every call gives the same
        predictive (None: fresh entropy).

    Attributes
    ----------
    classes_, coef_ (k, D), intercept_ (k,), n_features_in_ :
        As scikit-learn's ``LogisticRegression`` (``k = 1`` for two classes).
    posterior_ :
        The Gaussian ``N(mean, H^{-1})``: ``mean`` (k, D+1) with the bias last, and the structure's factor
        (``chol``, ``precision``, Kronecker eigenbases, or low-rank ``u``, ``s``).
    prior_precision_, n_iter_, converged_, fit_ (the :class:`LaplaceFit`)

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(300, 2)); y = (Z @ [2.0, -1.0] + rng.logistic(size=300) > 0).astype(int)
    >>> clf = LaplaceClassifier(prior_precision=1.0).fit(Z, y)
    >>> clf.predict_proba(Z[:2]).shape
    (2, 2)
    >>> bool(clf.score(Z, y) > 0.7)
    True
    """

    _arviz_attrs = {"inference": "Laplace approximation (Gaussian at the MAP, Hessian curvature)",
                    "draws": "i.i.d. from an approximate posterior"}
    _parameter_constraints = _LAPLACE_CONSTRAINTS

    def __init__(
        self,
        *,
        prior_precision: float = 1.0,
        intercept_prior_precision: float | None = None,
        fit_intercept: bool = True,
        covariance: str = "full",
        rank: int | None = None,
        optimizer: str = "auto",
        tol: float = 1e-8,
        max_iter: int | None = None,
        classes=None,
        likelihood=None,
        predictive: str = "probit",
        n_predictive_samples: int = 1000,
        predictive_seed=None,
        hessian: str = "exact",
        prior=None,
    ):
        self.prior = prior
        self.prior_precision = prior_precision
        self.intercept_prior_precision = intercept_prior_precision
        self.fit_intercept = fit_intercept
        self.covariance = covariance
        self.rank = rank
        self.optimizer = optimizer
        self.tol = tol
        self.max_iter = max_iter
        self.classes = classes
        self.likelihood = likelihood
        self.predictive = predictive
        self.n_predictive_samples = n_predictive_samples
        self.predictive_seed = predictive_seed
        self.hessian = hessian

    def _initial_prior(self, k_out: int, D_aug: int) -> np.ndarray:
        prior = np.full((k_out, D_aug), check_positive(self.prior_precision, "prior_precision"))
        if self.fit_intercept:
            b = self.intercept_prior_precision
            b = self.prior_precision if b is None else b
            b = check_positive(b, "intercept_prior_precision", allow_zero=True)
            if b == 0 and k_out > 1:
                raise ValueError("intercept_prior_precision=0 (flat bias prior) is only allowed for K=2: the "
                                 "softmax bias is not identifiable without a prior")
            prior[:, -1] = b
        return prior

    def _check_params(self) -> None:
        _check_options(self)
        self._check_predictive()

    def _fit(self, Z, y, sample_weight) -> None:
        """The MAP and the Laplace posterior for labels ``y``; ``sample_weight`` weights each row's
        log-likelihood (an integer weight equals repeating the row)."""
        classes, index = self._encode_train_labels(y)
        self.classes_ = classes
        self.likelihood_ = self._likelihood_for(classes.size)
        self._fit_design(self._design(Z), index, sample_weight)


class LaplaceRegressor(_RegressionFamily, _LaplaceHead):
    r"""Bayesian GLM regression on features by the Laplace approximation, in any registered regression family.

    ``likelihood`` is a registered regression family (``likelihoods.names()``) or a
    :class:`~bayes_diglm.likelihoods.Likelihood` instance; its nuisance parameters are known, set by
    ``likelihood_kwargs`` (``noise_variance`` is the Gaussian's, kept as its own parameter). Classification families
    belong to :class:`LaplaceClassifier`. Per-row context keywords of the family (``trials=`` ...) go to ``fit``,
    ``predict_dist``, ``predict`` and the ArviZ methods. The two families described below are the usual ones.

    ``likelihood="poisson"`` (default; so counts have a Bayesian head): ``y ~ Poisson(exp(beta^T z + beta_0))``.
    ``likelihood="gaussian"``: ``y ~ N(beta^T z + beta_0, noise_variance)``, where the Laplace posterior is the
    exact Gaussian posterior (use :class:`~bayes_diglm.inference.ConjugateLinearRegression` to integrate the noise
    variance out as well). Priors: ``beta ~ N(0, 1/prior_precision)``, the intercept
    ``beta_0 ~ N(0, 1/intercept_prior_precision)``. The posterior is ``N(beta*, H^{-1})`` with
    ``H = sum_i Lambda_i x_i x_i^T + prior`` at the MAP (``Lambda_i = exp(eta_i)`` for Poisson); the predictive of a
    new ``y`` integrates the likelihood over the Gaussian of the linear predictor ``N(m, v)``: for Poisson by
    Gauss-Hermite quadrature (a Poisson-lognormal with mean ``exp(m + v / 2)``), for Gaussian exactly
    ``N(m, v + noise_variance)``. Poisson ``y`` must be non-negative; non-integer values use the continuous extension
    ``y eta - exp(eta) - log Gamma(y + 1)`` of the log-likelihood (as scikit-learn's ``PoissonRegressor``).

    ``hessian="fisher"`` uses the Fisher information in place of the exact Hessian of the likelihood (in the
    Newton steps and in ``H``): the choice for families whose log-density is not concave in the predictor
    (Student-t, Beta, zero-inflated Poisson), where outlying rows can make the exact Hessian indefinite.

    ``sample_weight`` weights each row's log-likelihood; for ``likelihood="gaussian"`` that is a known relative
    noise precision (``y_i ~ N(beta^T z_i + beta_0, noise_variance / w_i)``, the form in which a DIGLM's
    heteroscedastic head hands over its learned variances), and :meth:`predict_dist` takes the new rows' ``w``.
    (:meth:`log_evidence` counts a weight as repeated rows, scikit-learn's convention: for the Gaussian, the
    evidence with noise ``noise_variance / w_i`` is that plus the constant ``sum_i (w_i - 1) log(2 pi
    noise_variance) / 2 + sum_i log(w_i) / 2``, which does not move the prior precision it selects.)

    The other parameters are those of :class:`LaplaceClassifier` (without ``classes``; ``prior`` and
    ``predictive_seed`` too, the latter seeding the Monte Carlo predictive of a family with several linear
    predictors, e.g. ``"heteroscedastic_t"``); ``intercept_prior_precision`` defaults to ``1e-6`` (nearly flat: the
    overall level is not shrunk).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(400, 2)); y = rng.poisson(np.exp(0.5 * Z[:, 0] + 1.0))
    >>> head = LaplaceRegressor(likelihood="poisson").fit(Z, y)
    >>> bool(abs(head.coef_[0, 0] - 0.5) < 0.1 and abs(head.coef_[0, 1]) < 0.1)
    True
    >>> head.predict_dist(Z[:3]).mean.shape
    (3,)
    """

    _arviz_attrs = {"inference": "Laplace approximation (Gaussian at the MAP, Hessian curvature)",
                    "draws": "i.i.d. from an approximate posterior"}
    _parameter_constraints = _LAPLACE_CONSTRAINTS

    def __init__(
        self,
        *,
        likelihood="poisson",
        noise_variance: float = 1.0,
        likelihood_kwargs: dict | None = None,
        prior_precision: float = 1.0,
        intercept_prior_precision: float = 1e-6,
        fit_intercept: bool = True,
        covariance: str = "full",
        rank: int | None = None,
        optimizer: str = "auto",
        tol: float = 1e-8,
        max_iter: int | None = None,
        hessian: str = "exact",
        prior=None,
        predictive_seed=None,
    ):
        self.prior = prior
        self.predictive_seed = predictive_seed
        self.likelihood = likelihood
        self.noise_variance = noise_variance
        self.likelihood_kwargs = likelihood_kwargs
        self.prior_precision = prior_precision
        self.intercept_prior_precision = intercept_prior_precision
        self.fit_intercept = fit_intercept
        self.covariance = covariance
        self.rank = rank
        self.optimizer = optimizer
        self.tol = tol
        self.max_iter = max_iter
        self.hessian = hessian

    def _initial_prior(self, k_out: int, D_aug: int) -> np.ndarray:
        prior = np.full((k_out, D_aug), check_positive(self.prior_precision, "prior_precision"))
        if self.fit_intercept:
            prior[:, -1] = check_positive(self.intercept_prior_precision, "intercept_prior_precision",
                                          allow_zero=True)
        return prior

    def _check_params(self) -> None:
        _check_options(self)
        self._family()

    def _fit(self, Z, y, sample_weight, **context) -> None:
        """The MAP and the Laplace posterior for targets ``y`` of the family (``context``: its per-row keywords)."""
        lik = self._family()
        y = self._check_y(lik, np.asarray(y, dtype=np.float64), context)
        self.likelihood_ = lik
        self._fit_design(self._design(Z), y, sample_weight, context or None)
