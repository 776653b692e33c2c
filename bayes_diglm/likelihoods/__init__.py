r"""GLM likelihood families, one module each, found by name in one registry.

Each family gives the distribution, derivatives and predictive of a linear predictor.

Every family works on a linear predictor ``f`` of shape ``(..., k)``, where ``k = num_outputs`` (1 for Gaussian,
Bernoulli and Poisson, 2 for the heteroscedastic Gaussian's mean and log-variance, K for the softmax), and offers

- :meth:`Likelihood.dist`: the ``torch.distributions`` object ``p(y | f)`` with batch shape ``f.shape[:-1]``;
- :meth:`Likelihood.log_prob`, :meth:`Likelihood.grad` (:math:`\partial_f \log p(y \mid f)`) and
  :meth:`Likelihood.curvature` (:math:`-\partial^2_f \log p(y \mid f)`, shape ``(..., k, k)``), for Newton/IRLS and
  Laplace. For the canonical links (Gaussian identity, Bernoulli logit, softmax, Poisson log) the curvature does not
  depend on ``y``, so the Hessian and the generalized Gauss-Newton matrix coincide;
- :meth:`Likelihood.predictive`: ``p(y) = \int p(y | f) N(f | m, S) df`` as a distribution: exact for the Gaussian,
  MacKay's probit for the Bernoulli, a mean-field probit for the softmax, and otherwise Gauss-Hermite quadrature
  (one output) or Monte Carlo (several), as GPyTorch's likelihoods do;
- :meth:`Likelihood.sample`: draws of ``y`` given ``f``.

NumPy arrays in give NumPy arrays out (float64), tensors in give tensors out, so the NumPy posterior algebra of the
Laplace heads and the torch point heads share one definition. Closed-form derivatives are checked against autograd
in the tests; a family that does not override them gets autograd's.

Examples
--------
>>> import numpy as np
>>> lik = Bernoulli()
>>> lik.log_prob(np.array([[0.0], [2.0]]), np.array([1, 0])).round(4)
array([-0.6931, -2.1269])
>>> round(float(lik.predictive(np.array([[2.0]]), np.array([[[4.0]]])).probs[0]), 4)
0.7768

Families are found by name: :func:`get` returns the registered class, :func:`names` lists them and
:func:`register` adds a user's own :class:`Likelihood` subclass (see its docstring for what a family provides).
"""

from .base import LOGISTIC_VARIANCE_MATCH, Likelihood, Nuisance, get, multiclass_probit, names, probit_scale, register
from .bernoulli import Bernoulli
from .beta import Beta
from .binomial import Binomial
from .categorical import Categorical
from .gamma import Gamma
from .gaussian import Gaussian, HeteroscedasticGaussian
from .negative_binomial import NegativeBinomial
from .ordinal import CumulativeLogit
from .poisson import Poisson
from .student_t import HeteroscedasticStudentT, StudentT
from .zero_inflated_poisson import ZeroInflatedPoisson

__all__ = [
    "Bernoulli",
    "Beta",
    "Binomial",
    "Categorical",
    "CumulativeLogit",
    "Gamma",
    "Gaussian",
    "HeteroscedasticGaussian",
    "HeteroscedasticStudentT",
    "Likelihood",
    "NegativeBinomial",
    "Nuisance",
    "Poisson",
    "StudentT",
    "ZeroInflatedPoisson",
    "LOGISTIC_VARIANCE_MATCH",
    "get",
    "multiclass_probit",
    "names",
    "probit_scale",
    "register",
]
