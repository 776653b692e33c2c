"""Laplace approximation of the posterior over GLM weights on fixed features, in any registered family.

Which approximation (``covariance=`` "full", "diag", "kron" or "lowrank": how the Gaussian's precision is stored,
:mod:`.structures`) is kept apart from where the curvature comes from (the likelihood family of
:mod:`bayes_diglm.likelihoods`: for canonical links the Hessian of the negative log-likelihood equals the
generalized Gauss-Newton matrix). The layout: :mod:`.kernels` (BLAS products, the Hessian), :mod:`.structures`,
:mod:`.solvers` (MAP by Newton or L-BFGS), :mod:`.fit` (:func:`laplace_glm`, the evidence), :mod:`.evidence`
(empirical Bayes), :mod:`.heads` (the estimators). ``bayes_diglm.inference.laplace`` keeps the names it always had.
"""

# the private names that other modules reached through this module before it was split, re-exported explicitly
from ..gaussian_posterior import _GaussianPosteriorClassifier as _GaussianPosteriorClassifier
from ..gaussian_posterior import _GaussianWeights as _GaussianWeights
from ..gaussian_posterior import _RegressionFamily as _RegressionFamily
from .evidence import mackay_prior_precision
from .fit import LaplaceFit, laplace_glm
from .heads import LaplaceClassifier, LaplaceRegressor
from .kernels import _full_hessian as _full_hessian
from .kernels import _gram as _gram
from .solvers import _lbfgs as _lbfgs
from .solvers import _make_likelihood as _make_likelihood
from .solvers import _neg_log_posterior as _neg_log_posterior
from .solvers import _newton as _newton
from .solvers import _Objective as _Objective
from .structures import _STRUCTURES as _STRUCTURES
from .structures import _DiagPosterior as _DiagPosterior
from .structures import _FullPosterior as _FullPosterior
from .structures import _KronPosterior as _KronPosterior
from .structures import _LowRankPosterior as _LowRankPosterior

__all__ = [
    "LaplaceClassifier",
    "LaplaceFit",
    "LaplaceRegressor",
    "laplace_glm",
    "mackay_prior_precision",
]
