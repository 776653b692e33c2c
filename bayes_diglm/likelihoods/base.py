r"""The ``Likelihood`` base class, the registry of GLM families and the helpers every family shares."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.distributions import Categorical as _TorchCategorical
from torch.distributions import Distribution, MixtureSameFamily

__all__ = ["Likelihood", "LOGISTIC_VARIANCE_MATCH", "get", "multiclass_probit", "names", "probit_scale", "register"]

# rate exp(f) is capped at 1e8 so that one extreme predictor cannot overflow a Poisson (or its gradient)
_MAX_LOG_RATE = math.log(1e8)


def _to_tensor(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    return torch.from_numpy(np.asarray(x, dtype=np.float64))


def _like(out: torch.Tensor, template):
    """Return ``out`` as ``template``'s kind: a float64 ndarray for NumPy input, a tensor otherwise."""
    if isinstance(template, torch.Tensor):
        return out
    return out.detach().cpu().to(torch.float64).numpy()


def probit_scale(var):
    r"""MacKay's :math:`\kappa(v) = (1 + \pi v / 8)^{-1/2}`: :math:`E[\sigma(f)] \approx \sigma(\kappa(v) m)`."""
    return 1.0 / torch.sqrt(1.0 + math.pi * var / 8.0)


#: the constant of :func:`multiclass_probit`: sigma(x) ~= Phi(x sqrt(3) / pi) matches the logistic distribution's
#: variance pi^2 / 3 (MacKay's pi / 8 matches the slope at 0 instead)
LOGISTIC_VARIANCE_MATCH = 3.0 / math.pi**2


def multiclass_probit(mean: torch.Tensor, cov: torch.Tensor, *, scale: float = LOGISTIC_VARIANCE_MATCH):
    r"""Closed-form approximation of :math:`E[\mathrm{softmax}(f)]` for :math:`f \sim N(m, S)`, shape ``(..., K)``.

    The pairwise mean-field approximation of Lu, Ie and Sha (2020, "Mean-field approximations to the
    Gaussian-softmax integral with application to uncertainty estimation", arXiv:2006.07584): writing
    :math:`\mathrm{softmax}_k(f) = (1 + \sum_{j \ne k} e^{-(f_k - f_j)})^{-1}` and replacing each logistic of a
    logit difference by a probit with the variance of that difference,

    .. math:: p_k \propto \Big(1 + \sum_{j \ne k} \exp\big(-(m_k - m_j) / \sqrt{1 + \lambda v_{kj}}\big)\Big)^{-1},
              \qquad v_{kj} = S_{kk} + S_{jj} - 2 S_{kj},

    renormalised over k, with :math:`\lambda = 3 / \pi^2` (``scale``), the logistic-to-Gaussian match of
    variances, rather than MacKay's :math:`\pi / 8`. Using the variances of logit *differences* makes a shift
    shared by all logits (the redundant direction of an over-parametrised K*D softmax) leave the prediction
    alone. Measured against 20,000-draw Monte Carlo on a full Laplace posterior of sklearn's digits (K = 10,
    64 standardised features, prior precision 1, 30% held out): held-out NLL 0.381 against Monte Carlo's 0.368
    (0.453 with :math:`\pi / 8`, which under-states confidence; 0.335 for laplace-torch's
    :math:`\mathrm{softmax}(m_k / \sqrt{1 + \pi S_{kk} / 8})`, which over-states it), mean absolute
    probability error 0.0077 (0.0153 with :math:`\pi / 8`).
    """
    var = torch.diagonal(cov, dim1=-2, dim2=-1)
    diff_var = (var[..., :, None] + var[..., None, :] - 2.0 * cov).clamp_min(0.0)
    diff_mean = mean[..., :, None] - mean[..., None, :]
    # log of sum_j exp(-(m_k - m_j) / sqrt(1 + lambda v_kj)); the j = k term is exp(0) = 1, the "1 +" above
    log_odds = torch.logsumexp(-diff_mean / torch.sqrt(1.0 + scale * diff_var), dim=-1)
    return torch.softmax(-log_odds, dim=-1)


class Likelihood:
    """A GLM family on a linear predictor ``f`` of shape ``(..., num_outputs)``.

    Subclasses implement :meth:`_dist`; they may override :meth:`_grad`, :meth:`_curvature` (closed forms) and
    :meth:`_predictive`. ``predictive_samples`` sets the Monte Carlo size of the generic predictive and
    ``quadrature_points`` the Gauss-Hermite order for one-output families.
    """

    name = "abstract"
    num_outputs = 1
    predictive_samples = 512
    quadrature_points = 32

    # ---- the distribution --------------------------------------------------------------------------------

    def _dist(self, f: torch.Tensor) -> Distribution:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_predictor(self, f: torch.Tensor) -> torch.Tensor:
        if f.dim() < 1 or f.shape[-1] != self.num_outputs:
            raise ValueError(f"the linear predictor of a {type(self).__name__} likelihood must have shape "
                             f"(..., {self.num_outputs}), got {tuple(f.shape)}")
        return f

    def dist(self, f) -> Distribution:
        """``p(y | f)`` as a ``torch.distributions.Distribution`` with batch shape ``f.shape[:-1]``."""
        return self._dist(self._check_predictor(_to_tensor(f)))

    def _log_prob(self, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._dist(f).log_prob(y)

    def log_prob(self, f, y):
        """``log p(y | f)``, shape ``f.shape[:-1]`` (``y`` broadcasts against it)."""
        f_t = self._check_predictor(_to_tensor(f))
        return _like(self._log_prob(f_t, self._target(y, f_t)), f)

    def _target(self, y, f: torch.Tensor) -> torch.Tensor:
        return _to_tensor(y).to(f.dtype)

    # ---- derivatives in the predictor --------------------------------------------------------------------

    def _grad(self, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            f = f.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self._log_prob(f, y).sum(), f)
        return g

    def grad(self, f, y):
        r""":math:`\partial \log p(y \mid f) / \partial f`, shape ``f.shape``."""
        f_t = self._check_predictor(_to_tensor(f))
        return _like(self._grad(f_t, self._target(y, f_t)), f)

    def _curvature(self, f: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if y is None:
            raise ValueError(f"the curvature of a {type(self).__name__} likelihood depends on y; pass y")
        rows = []
        with torch.enable_grad():
            f = f.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self._log_prob(f, y).sum(), f, create_graph=True)
            for j in range(self.num_outputs):  # rows of the per-observation Hessian (observations independent)
                (h,) = torch.autograd.grad(g[..., j].sum(), f, retain_graph=True)
                rows.append(-h)
        return torch.stack(rows, dim=-2).detach()

    def curvature(self, f, y=None):
        r""":math:`-\partial^2 \log p(y \mid f) / \partial f^2`, shape ``f.shape + (num_outputs,)``.

        For the canonical-link families ``y`` is not needed (the curvature does not depend on it).
        """
        f_t = self._check_predictor(_to_tensor(f))
        return _like(self._curvature(f_t, None if y is None else self._target(y, f_t)), f)

    # ---- sampling ----------------------------------------------------------------------------------------

    def sample(self, f, generator: torch.Generator | None = None):
        """One draw of ``y`` per row of ``f`` (``generator``: a ``torch.Generator`` or None)."""
        f_t = self._check_predictor(_to_tensor(f))
        return _like(self._sample(f_t, generator), f)

    def _sample(self, f: torch.Tensor, generator) -> torch.Tensor:
        with torch.random.fork_rng(devices=[]):
            if generator is not None:
                torch.manual_seed(int(torch.randint(0, 2**62, (), generator=generator)))
            return self._dist(f).sample()

    # ---- predictive given a Gaussian over f --------------------------------------------------------------

    def predictive(self, mean, cov, *, generator: torch.Generator | None = None) -> Distribution:
        r""":math:`p(y) = \int p(y \mid f)\, N(f \mid m, S)\, df` for ``mean`` (..., k) and ``cov`` (..., k, k).

        Exact or closed-form where a family has one; otherwise a mixture over Gauss-Hermite nodes (k = 1) or
        over ``predictive_samples`` Monte Carlo draws of ``f`` (``generator`` seeds them), whose ``mean``,
        ``variance``, ``log_prob`` and ``sample`` are those of the mixture.
        """
        m = self._check_predictor(_to_tensor(mean))
        S = _to_tensor(cov).to(m.dtype)
        if S.shape != m.shape + (self.num_outputs,):
            raise ValueError(f"cov must have shape {tuple(m.shape) + (self.num_outputs,)}, got {tuple(S.shape)}")
        return self._predictive(m, S, generator)

    def _predictive(self, mean: torch.Tensor, cov: torch.Tensor, generator) -> Distribution:
        if self.num_outputs == 1:
            return self._quadrature_predictive(mean, cov[..., 0, 0])
        return self._monte_carlo_predictive(mean, cov, generator)

    def _quadrature_predictive(self, mean: torch.Tensor, var: torch.Tensor) -> Distribution:
        nodes, weights = np.polynomial.hermite.hermgauss(self.quadrature_points)
        nodes = torch.as_tensor(nodes, dtype=mean.dtype)
        probs = torch.as_tensor(weights / math.sqrt(math.pi), dtype=mean.dtype)
        f = mean[..., None, :] + torch.sqrt(2.0 * var.clamp_min(0.0))[..., None, None] * nodes[:, None]  # (..., Q, 1)
        mixing = _TorchCategorical(probs=probs.expand(f.shape[:-1]))
        return MixtureSameFamily(mixing, self._dist(f))

    def _monte_carlo_predictive(self, mean: torch.Tensor, cov: torch.Tensor, generator) -> Distribution:
        S = self.predictive_samples
        chol = torch.linalg.cholesky(cov + 1e-12 * torch.eye(self.num_outputs, dtype=cov.dtype))
        eps = torch.randn(mean.shape[:-1] + (S, self.num_outputs), dtype=mean.dtype, generator=generator)
        f = mean[..., None, :] + torch.einsum("...kl,...sl->...sk", chol, eps)
        mixing = _TorchCategorical(probs=torch.full(f.shape[:-1], 1.0 / S, dtype=mean.dtype))
        return MixtureSameFamily(mixing, self._dist(f))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"




_REGISTRY: dict[str, type[Likelihood]] = {}


def register(cls: type[Likelihood]) -> type[Likelihood]:
    """Add a :class:`Likelihood` subclass to the registry under its ``name`` (usable as a class decorator).

    A user's own family works everywhere a built-in one does once registered; registering a second class
    under a name already taken is refused, so that a typo cannot silently replace a built-in family.
    """
    if not (isinstance(cls, type) and issubclass(cls, Likelihood)):
        raise TypeError(f"register takes a Likelihood subclass, got {cls!r}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name or name == Likelihood.name:
        raise ValueError(f"{cls.__name__} needs a class attribute `name` (a non-empty string) to be registered")
    known = _REGISTRY.get(name)
    if known is not None and known is not cls:
        raise ValueError(f"a likelihood named {name!r} is already registered ({known.__qualname__})")
    _REGISTRY[name] = cls
    return cls


def get(name: str) -> type[Likelihood]:
    """The registered :class:`Likelihood` subclass called ``name``."""
    if not isinstance(name, str):
        raise TypeError(f"a likelihood name must be a string, got {type(name).__name__}")
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown likelihood {name!r}; registered: {sorted(_REGISTRY)}") from None


def names() -> list[str]:
    """The names of every registered family, sorted."""
    return sorted(_REGISTRY)
