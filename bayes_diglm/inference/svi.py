"""Stochastic variational inference (Pyro) for the posterior over classification-head weights."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import SVI, Predictive, Trace_ELBO
from pyro.infer.autoguide import AutoGuide
from scipy import linalg as sla
from scipy.special import ndtri
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted
from torch.distributions import constraints
from torch.distributions.transforms import ReshapeTransform

from bayes_diglm._validation import COUNT, POSITIVE, SEED, StrOptions, check_count, check_positive

from .base import COVARIANCES, as_generator, check_prior_grouping
from .gaussian_posterior import GAUSSIAN_HEAD_CONSTRAINTS, _GaussianPosteriorClassifier
from .laplace.evidence import PRIOR_GROUPINGS, em_prior_precision, prior_groups
from .laplace.fit import laplace_glm
from .laplace.solvers import _lbfgs, _neg_log_posterior, _Objective
from .laplace.structures import _STRUCTURES
from .pyro_model import check_prior

__all__ = ["SVIClassifier"]

_OPTIMIZERS = ("auto", "natural", "adam")
# covariance="auto": the full covariance up to this many weights (its precision is a P x P Cholesky per step;
# Laplace's Newton MAP is the start there too), the Kronecker-factored one above it
_FULL_MAX_WEIGHTS = 2000
# natural-gradient steps: the draws of the predictor per row rise until n * draws reaches this (the average over
# rows of a sample-average approximation: 4 draws per row at n = 10,000, 82 at n = 200), and the mean solve stops
# where the mean is within _MEAN_SDS posterior sds of its optimum in every direction (see _mean_tol)
_SAA_DRAWS = 16384
_MEAN_SDS = 0.01
_MAX_NATURAL_STEPS = 100
# outputs per block of draws in the sample averages (8 MiB of float64)
_BLOCK_ELEMENTS = 1 << 20

# the ELBO estimate behind log_evidence(): up to this many particles at the fitted guide (full data), fewer
# when particles * n * k would exceed _EVIDENCE_ELEMENTS logits
_EVIDENCE_PARTICLES = 256
_EVIDENCE_ELEMENTS = 4_000_000
# a user's guide is kept as this many of its draws (the posterior draws and predictor moments come from them), and
# its ELBO estimated with this many (non-vectorised: a guide function need not vectorise) particles
_GUIDE_DRAWS = 2000
_GUIDE_EVIDENCE_PARTICLES = 32


class _GaussianFromGuide:
    r"""The guide's Gaussian ``N(mean, F F^T + diag(d^2))`` over the weights (``mean`` (k, D+1), class-major).

    ``factor`` is ``F`` (P, r) or None and ``diag`` the vector ``d`` (P,) or None: a full guide has the lower
    Cholesky factor as ``F``, a diagonal guide only ``d``, a low-rank guide both, a Kronecker guide
    ``F = L_class kron L_feature``. A large diagonal posterior never becomes a dense P x P matrix.
    """

    def __init__(self, mean: np.ndarray, factor: np.ndarray | None, diag: np.ndarray | None):
        self.mean = mean
        self.factor = factor
        self.diag = diag

    def sample(self, num: int, rng: np.random.Generator) -> np.ndarray:
        P = self.mean.size
        out = np.zeros((num, P))
        if self.factor is not None:
            out += rng.standard_normal((num, self.factor.shape[1])) @ self.factor.T
        if self.diag is not None:
            out += rng.standard_normal((num, P)) * self.diag
        return self.mean[None] + out.reshape((num,) + self.mean.shape)

    def logit_cov(self, X: np.ndarray) -> np.ndarray:
        k_out, d = self.mean.shape
        cov = np.zeros((X.shape[0], k_out, k_out))
        if self.diag is not None:  # independent part: diagonal over classes
            var = (X**2) @ (self.diag.reshape(k_out, d) ** 2).T
            idx = np.arange(k_out)
            cov[:, idx, idx] = var
        if self.factor is not None:
            S = self.factor.reshape(k_out, d, -1)  # rows of F grouped by class
            proj = np.einsum("nd,kdp->nkp", X, S)  # J_n F for each input
            cov += np.einsum("nkp,nlp->nkl", proj, proj)
        return cov

    def marginal_variance(self) -> np.ndarray:
        var = np.zeros(self.mean.size)
        if self.factor is not None:
            var += (self.factor**2).sum(axis=1)
        if self.diag is not None:
            var += self.diag**2
        return var.reshape(self.mean.shape)


class _DrawsFromGuide(_GaussianFromGuide):
    """A user's guide kept as its draws ``(S, k, D+1)``: posterior draws are resampled from them, and the moments of
    the linear predictor (the probit and quadrature predictives) are the draws' (the factor is the centred draws)."""

    def __init__(self, draws: np.ndarray):
        S = draws.shape[0]
        mean = draws.mean(axis=0)
        super().__init__(mean, (draws - mean).reshape(S, -1).T / math.sqrt(max(S - 1, 1)), None)
        self.draws = draws

    def sample(self, num: int, rng: np.random.Generator) -> np.ndarray:
        return self.draws[rng.integers(0, self.draws.shape[0], size=num)]


class _ExpectedLikelihood:
    """The likelihood terms averaged over fixed draws ``delta`` (S, n, K) of the logits' noise under the guide.

    ``logits + delta[s]`` are draws of the linear predictor under ``q(W) = N(m, Sigma)`` when ``logits = X m^T``
    and ``delta`` are draws of ``N(0, x_n^T Sigma x_n)`` per row, so ``log_prob``, ``grad`` and ``curvature`` are
    sample averages of ``E_q`` over the predictor (a sample-average approximation: fixed draws make the objective
    in ``m`` deterministic and smooth, so L-BFGS can solve it). The draws come in antithetic pairs (``+delta``,
    ``-delta``), which makes the gradient's average exact for a likelihood that is quadratic in the predictor.
    """

    def __init__(self, base: _Objective, delta: np.ndarray):
        self.base = base
        self.num_outputs = base.num_outputs
        self.delta = delta

    def _average(self, fn, elements_per_draw: int) -> np.ndarray:
        """Mean over the draws of ``fn(noise)``, ``fn`` taking a block (B, n, K) of them at once: blocks of about
        _BLOCK_ELEMENTS outputs, so that few draws of many rows and many draws of few rows both cost few calls."""
        step = max(1, _BLOCK_ELEMENTS // max(elements_per_draw, 1))
        total = sum(fn(self.delta[i:i + step]).sum(axis=0) for i in range(0, self.delta.shape[0], step))
        return total / self.delta.shape[0]

    def log_prob(self, logits: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self._average(lambda noise: self.base.log_prob(logits + noise, y), logits.size)

    def grad(self, logits: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self._average(lambda noise: self.base.grad(logits + noise, y), logits.size)

    def curvature(self, logits: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        return self._average(lambda noise: self.base.curvature(logits + noise, y), logits.size * logits.shape[-1])


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(z: np.ndarray) -> np.ndarray:
    """Steele, Lea and Flood's SplitMix64 mixing function on uint64 arrays (wrapping arithmetic)."""
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _row_normals(X: np.ndarray, y: np.ndarray, num: int, k_out: int, seed: int) -> np.ndarray:
    """Standard normal draws (num, n, K), each row's a function of that row's bits, its label and ``seed`` only.

    A row repeated w times then gets w copies of the draws that the same row with weight w gets, in any order,
    so an integer ``sample_weight`` is exactly a repetition of rows (scikit-learn's contract), which
    independent draws per row would only give up to Monte Carlo error.
    """
    bits = np.ascontiguousarray(X, dtype=np.float64).view(np.uint64)
    salt = _splitmix64(np.arange(bits.shape[1] + 1, dtype=np.uint64) + np.uint64(seed))
    key = _splitmix64((bits * salt[:-1]).sum(axis=1, dtype=np.uint64) + y.astype(np.uint64) * salt[-1])
    counters = np.arange(1, num * k_out + 1, dtype=np.uint64) * _GOLDEN
    uniform = ((_splitmix64(key[None, :] ^ counters[:, None]) >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53
    return ndtri(uniform).reshape(num, k_out, -1).transpose(0, 2, 1)


def _logit_noise(posterior, X: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """Antithetic draws (2 S, n, K) of ``x_n^T (W - m)`` under the Gaussian ``posterior`` from ``eps`` (S, n, K)."""
    cov = posterior.logit_cov(X)
    # the Cholesky factor, not an eigendecomposition: it is continuous in the covariance, so the noise (and the
    # fixed point of the steps) moves smoothly with the guide; eigenvectors may swap or flip sign between steps
    try:
        root = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:  # a row whose covariance is singular to rounding
        root = np.linalg.cholesky(cov + 1e-12 * np.trace(cov, axis1=1, axis2=2)[:, None, None] * np.eye(cov.shape[1]))
    half = np.einsum("nkl,snl->snk", root, eps)
    return np.concatenate([half, -half])


def _kl_to_prior(posterior, prior: np.ndarray, mean: np.ndarray | None = None) -> float:
    """``KL(N(m, H^{-1}) || N(0, diag(prior)^{-1}))`` in closed form (``m``: ``mean``, else the posterior's)."""
    m = posterior.mean if mean is None else mean
    return 0.5 * float((prior * posterior.marginal_variance()).sum() + (prior * m**2).sum()
                       - prior.size - np.log(prior).sum() + posterior.log_det_precision())


def _full_step(X: np.ndarray, y: np.ndarray, expected: _ExpectedLikelihood, prior: np.ndarray, W: np.ndarray):
    """The full Gaussian after one natural-gradient step of length 1 from mean ``W`` (the guide's draws fixed).

    The new precision is ``diag(prior) + sum_n E_q[Lambda_n] kron x_n x_n^T``, the Hessian of the expected
    negative log joint at ``W``, and the new mean is Newton's step on that objective, halved while it does not
    decrease it (Armijo; a full step where the decrease is below the objective's rounding).
    """
    value, grad, logits = _neg_log_posterior(W, X, y, expected, prior)
    posterior = _STRUCTURES["full"](W, X, expected.curvature(logits, y), prior)
    step = -sla.cho_solve((posterior.chol, True), grad.ravel()).reshape(W.shape)
    slope = float((grad * step).sum())
    measurable = -slope > 1e3 * np.finfo(float).eps * (1.0 + abs(value))
    t = 1.0
    for _ in range(30):
        if not measurable or _neg_log_posterior(W + t * step, X, y, expected, prior)[0] <= value + 1e-4 * t * slope:
            break
        t *= 0.5
    posterior.mean = W + t * step
    return posterior


def _narrowest_sd(gaussian: _GaussianFromGuide) -> float:
    """The sd of ``gaussian`` along its narrowest direction (the smallest marginal sd beyond 4,000 weights).

    For the over-parametrised softmax the marginal sds are those of the unidentified shift shared by all classes
    (about the prior's), while the class contrasts the data pin down are far narrower.
    """
    var = gaussian.marginal_variance().ravel()
    if gaussian.factor is None or var.size > 4000:
        return float(np.sqrt(var.min()))
    cov = gaussian.factor @ gaussian.factor.T
    if gaussian.diag is not None:
        cov[np.diag_indices_from(cov)] += gaussian.diag**2
    return float(np.sqrt(max(np.linalg.eigvalsh(cov)[0], 0.0)))


def _mean_tol(prior: np.ndarray) -> float:
    """The max|grad| at which a mean is within _MEAN_SDS posterior sds of the optimum in every direction.

    Near the optimum the error is ``e = H^{-1} g`` and its size in posterior sds (the Mahalanobis norm) is
    ``sqrt(g^T H^{-1} g) <= |g|_2 / sqrt(min prior) <= sqrt(P) max|g| / sqrt(min prior)``, since the objective's
    Hessian ``H`` is at least the prior precision.
    """
    return _MEAN_SDS * float(np.sqrt(prior.min() / prior.size))


def _settled(before, after, tol: float) -> bool:
    """No mean moved by more than ``tol`` posterior sds and no sd changed by more than a fraction ``tol``."""
    sd_a, sd_b = np.sqrt(before.marginal_variance()), np.sqrt(after.marginal_variance())
    return bool(np.all(np.abs(before.mean - after.mean) <= tol * sd_b) and np.all(np.abs(sd_a - sd_b) <= tol * sd_b))


class SVIClassifier(_GaussianPosteriorClassifier):
    r"""Bayesian logistic (K=2) or softmax (K>2) regression on features by SVI with a Gaussian guide (Pyro).

    ``likelihood`` (default None: the logistic family for two classes, the softmax for more) may name any registered
    classification family (an ordinal one, say), as for :class:`~bayes_diglm.inference.LaplaceClassifier`.

    Model (float64): ``W ~ N(0, 1/prior_precision)`` on every weight and ``N(0, 1/intercept_prior_precision)`` on
    the bias (default: the weights' precision), ``y_i ~ Bernoulli(sigmoid(w^T [z_i; 1]))`` or
    ``Categorical(softmax(W [z_i; 1]))``: the head's :meth:`pyro_model`, with sites ``beta``, ``intercept`` and
    ``y`` (observed, one ``obs=`` per row) inside ``pyro.plate("data", n, subsample_size=batch_size)``. The guide
    is a Gaussian over the flattened weights with the covariance structure ``covariance``: ``"full"`` (lower
    Cholesky factor), ``"diag"`` (mean-field), ``"lowrank"`` (``rank`` factors plus a diagonal), ``"kron"``
    (``L_class kron L_feature``, a matrix-normal guide) or ``"auto"`` (the default: ``"full"`` up to 2,000
    weights, ``"kron"`` above; the choice is ``covariance_``).

    **Optimisers.** ``optimizer="natural"`` (what ``"auto"`` picks without ``batch_size``) runs closed-form steps
    on the full data. The ELBO of a Gaussian ``q = N(m, Sigma)`` in a GLM is stationary where (Opper and
    Archambeau 2009) ``E_q[grad log p(y | W)] = prior * m`` and ``Sigma^{-1} = diag(prior) + sum_n E_q[Lambda_n]
    kron x_n x_n^T``, ``Lambda_n`` the curvature of the negative log-likelihood in the predictor. Each step solves
    the first condition for ``m`` at the current ``Sigma`` (L-BFGS on the expected log joint, the expectation a
    sample average over fixed antithetic draws of each row's predictor, so the objective is deterministic), then
    sets ``Sigma^{-1}`` by the second, stored in the structure ``covariance`` as the Laplace head stores its
    precision: exact for ``"full"`` (a natural-gradient step of length 1, the Bayesian learning rule's Newton
    form) and ``"diag"`` (the mean-field fixed point), the Kronecker (K-FAC) or low-rank projection of the same
    expected curvature for ``"kron"`` and ``"lowrank"``. It starts at the Laplace approximation (the same
    equations with the expectations taken at the mode) and stops when, in two steps in a row, no mean moved by
    more than ``plateau_tol`` posterior sds and no sd changed by more than a fraction ``plateau_tol``
    (``plateau_tol=None``: 1e-8), after at most ``min(num_steps, 100)`` steps; ``num_particles`` is the least
    number of draws per row (raised until ``n * draws`` reaches 16,384). ``lr``, ``plateau_window`` and
    ``batch_size`` are Adam's.

    ``optimizer="adam"`` (what ``"auto"`` picks with ``batch_size``) is Pyro's ``SVI`` with ``Trace_ELBO`` on a
    Pyro guide started at the Laplace approximation. ClippedAdam runs with a learning rate decaying to ``lr / 10``
    over ``num_steps`` and ``num_particles`` vectorised particles, on minibatches of ``batch_size`` rows (the
    plate scales their log-likelihood by ``n / batch_size``). Every ``plateau_window`` steps the window averages
    of the guide's means and standard deviations are compared with the previous window's, with the rule above
    (``plateau_tol=None`` always runs ``num_steps``). The final guide is the average of the parameters over the
    last window (Polyak averaging). Adam moves every parameter by about ``lr`` per step whatever the posterior's
    scale, so ``lr`` must be well below the posterior sds (about ``1 / sqrt(n)``); when the ELBO turns
    non-finite the error says by how much ``lr`` exceeds the smallest sd of the Laplace start.

    **Your own prior and guide.** ``prior=`` replaces the Gaussian prior over beta by any Pyro distribution of
    beta's shape ((D,), or (K, D) for the softmax), or a callable ``prior(**nuisance)`` returning one, as for the
    NUTS heads; ``guide=`` takes a Pyro AutoGuide class (built on the head's model), a callable that builds one
    from the model (``functools.partial(AutoLowRankMultivariateNormal, rank=2)``), an AutoGuide instance or a guide
    function ``guide(Z, y, subsample_size=None)`` that samples ``beta`` and ``intercept``. Either one makes
    ``optimizer="auto"`` choose Adam (the natural-gradient steps need the Gaussian prior and guide) and runs Pyro's
    ``SVI`` on :meth:`pyro_model`: with a user's guide for ``num_steps`` steps (fewer, with ``plateau_tol``, once
    the ELBO's averages over the last two windows of ``plateau_window`` steps differ by less than ``plateau_tol``
    times its sd over the last window), after which the guide is kept as 2,000 of its draws (``sample`` resamples
    them; the predictives use their mean and covariance, as for a Gaussian guide), and ``elbo_`` is a 32-particle
    estimate.

    ``converged_`` says whether the stopping rule was met; when not, a ``ConvergenceWarning`` says so.

    ``likelihood`` is a registered classification family (or an instance for K classes), as
    :class:`~bayes_diglm.inference.LaplaceClassifier`'s; None: the logistic family for two classes, the softmax for
    more. ``predictive``, ``n_predictive_samples`` and ``predictive_seed`` choose how the predictive integrates over
    the weights, as :class:`~bayes_diglm.inference.LaplaceClassifier`'s.

    Each instance keeps its parameters in its own Pyro parameter-store scope, restored around every call, so
    several heads never share or overwrite each other's parameters and the global store is left as it was.
    Random numbers come from a forked torch RNG seeded by ``seed`` (the global torch RNG is not touched).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(200, 2)); y = (Z @ [2.0, -1.0] + rng.logistic(size=200) > 0).astype(int)
    >>> clf = SVIClassifier(covariance="diag", num_steps=400, seed=0).fit(Z, y)
    >>> clf.predict_proba(Z[:2]).shape
    (2, 2)
    """

    _takes_any_prior = True
    _arviz_attrs = {"inference": "stochastic variational inference (Pyro, Gaussian guide)",
                    "draws": "i.i.d. from an approximate posterior"}
    _parameter_constraints = {
        **GAUSSIAN_HEAD_CONSTRAINTS, "covariance": [StrOptions({"auto", *COVARIANCES})],
        "optimizer": [StrOptions(set(_OPTIMIZERS))], "num_steps": COUNT, "lr": POSITIVE, "batch_size": [*COUNT, None],
        "num_particles": COUNT, "plateau_window": COUNT, "plateau_tol": [*POSITIVE, None], "seed": SEED,
    }

    def __init__(
        self,
        *,
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
        classes=None,
        likelihood=None,
        predictive: str = "probit",
        n_predictive_samples: int = 1000,
        predictive_seed=None,
    ):
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
        self.classes = classes
        self.likelihood = likelihood
        self.predictive = predictive
        self.n_predictive_samples = n_predictive_samples
        self.predictive_seed = predictive_seed

    # ---- checks ----------------------------------------------------------------------------------------

    def _check_params(self) -> None:
        self._check_settings()
        self._check_predictive()

    def _check_settings(self) -> None:
        if self.covariance not in ("auto", *COVARIANCES):
            raise ValueError(f"covariance must be 'auto' or one of {COVARIANCES}, got {self.covariance!r}")
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {_OPTIMIZERS}, got {self.optimizer!r}")
        for name in ("num_steps", "num_particles", "plateau_window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        check_positive(self.lr, "lr")
        if self.plateau_tol is not None:
            check_positive(self.plateau_tol, "plateau_tol")
        if self.rank is not None and (isinstance(self.rank, bool) or not isinstance(self.rank, (int, np.integer))
                                      or self.rank < 1):
            raise ValueError(f"rank must be a positive integer or None, got {self.rank!r}")
        if self.batch_size is not None and self.optimizer == "natural":
            raise ValueError(f"batch_size={self.batch_size!r} needs optimizer='adam' (or 'auto'): the natural-gradient "
                             "steps use the full data")
        check_prior(self.prior)
        if self.guide is not None and not callable(self.guide):
            raise TypeError(f"guide must be an AutoGuide class or instance, or a guide function, got {self.guide!r}")
        if self.optimizer == "natural" and (self.prior is not None or self.guide is not None):
            which = "prior" if self.prior is not None else "guide"
            raise ValueError(f"optimizer='natural' takes the Gaussian prior (prior_precision) and the Gaussian guide "
                             f"only; {which}={getattr(self, which)!r} needs optimizer='adam' (or 'auto')")

    def _chosen_optimizer(self) -> str:
        """``optimizer``, with "auto" read as natural-gradient steps unless minibatches, a user's prior or a user's
        guide call for Pyro's SVI."""
        if self.optimizer != "auto":
            return self.optimizer
        plain = self.batch_size is None and self.prior is None and self.guide is None
        return "natural" if plain else "adam"

    def _check_batch_size(self, n: int) -> None:
        if self.batch_size is not None and not (isinstance(self.batch_size, (int, np.integer))
                                                and 1 <= self.batch_size <= n):
            raise ValueError(f"batch_size must be in 1..{n} or None, got {self.batch_size!r}")

    def _prior(self, k_out: int, D_aug: int) -> np.ndarray:
        prior = np.full((k_out, D_aug), check_positive(self.prior_precision, "prior_precision"))
        if self.fit_intercept:
            b = self.prior_precision if self.intercept_prior_precision is None else self.intercept_prior_precision
            prior[:, -1] = check_positive(b, "intercept_prior_precision")
        return prior

    # ---- the Pyro program ------------------------------------------------------------------------------

    def _svi_model(self, prior: np.ndarray, context: dict):
        """The head's Pyro model (:meth:`pyro_model`, prior precisions ``prior``, the family's per-row ``context``)
        as SVI calls it: features without the intercept column, targets, and the rows per step (``subsample_size``)."""

        def model(Z, y, subsample_size=None):
            return self._weights_model(prior, Z, y, None, subsample_size, **context)

        return model

    def _weight_sites(self, W: torch.Tensor) -> None:
        """The model's ``beta`` and ``intercept`` sites as Delta sites at the weights ``W`` (..., k, D+1) of a
        guide's auxiliary (joint) draw, as Pyro's AutoContinuous guides do."""
        d, one = self.n_features_in_, self.likelihood_.num_outputs == 1
        beta = W[..., 0, :d] if one else W[..., :d]
        pyro.sample("beta", dist.Delta(beta, event_dim=1 if one else 2))
        if self.fit_intercept:
            pyro.sample("intercept", dist.Delta(W[..., 0, d] if one else W[..., d], event_dim=0 if one else 1))

    def _user_guide(self, model):
        """``guide=`` as a guide of ``model``: an AutoGuide class (or a callable of the model, e.g. a ``partial``
        of one) is built on it, an AutoGuide instance or a guide function is used as it is."""
        guide = self.guide
        is_factory = (isinstance(guide, type) and issubclass(guide, AutoGuide)) or (
            isinstance(getattr(guide, "func", None), type) and issubclass(guide.func, AutoGuide))
        return guide(model) if is_factory else guide

    def _init_guide(self, X: np.ndarray, y: np.ndarray, w, prior: np.ndarray, context=None) -> dict[str, torch.Tensor]:
        """Guide parameters at the Laplace approximation (full covariance when affordable, else diagonal)."""
        k_out, d = prior.shape
        P = k_out * d
        structure = "full" if P <= 2000 else "diag"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an unconverged MAP is still a fine start
            fit = laplace_glm(X, y, likelihood=self.likelihood_, prior_precision=prior, covariance=structure,
                              optimizer="newton" if structure == "full" else "lbfgs", sample_weight=w, tol=1e-6,
                              max_iter=50 if structure == "full" else 500, context=context)
        loc = torch.from_numpy(fit.mean.ravel().copy())
        var = fit.posterior.marginal_variance().ravel()
        if structure == "full":
            chol = fit.posterior.chol
            cov = np.linalg.solve(chol.T, np.linalg.solve(chol, np.eye(P)))  # small P only
        else:
            cov = np.diag(var)
        cov = 0.5 * (cov + cov.T)
        params = {"loc": loc}
        if self.covariance_ == "full":
            params["scale_tril"] = torch.from_numpy(np.linalg.cholesky(cov + 1e-12 * np.eye(P)))
        elif self.covariance_ == "diag":
            params["scale"] = torch.from_numpy(np.sqrt(var))
        elif self.covariance_ == "lowrank":
            r = min(self.rank if self.rank is not None else max(1, int(round(P**0.5))), P)
            s, u = np.linalg.eigh(cov)
            s, u = np.clip(s[::-1][:r], 0.0, None), u[:, ::-1][:, :r]
            low = (u * s) @ u.T
            params["cov_factor"] = torch.from_numpy(u * np.sqrt(s))
            params["cov_diag"] = torch.from_numpy(np.clip(np.diag(cov - low), 1e-3 * var, None))
        else:  # kron: identity over classes, the features' average Laplace variance
            params["class_tril"] = torch.eye(k_out, dtype=torch.float64)
            params["feature_tril"] = torch.diag(torch.from_numpy(np.sqrt(var.reshape(k_out, d).mean(axis=0))))
        return params

    def _guide_distribution(self, params: dict[str, torch.Tensor], shape: tuple[int, int]):
        loc = params["loc"]
        if self.covariance_ == "full":
            base = dist.MultivariateNormal(loc, scale_tril=params["scale_tril"])
        elif self.covariance_ == "diag":
            base = dist.Normal(loc, params["scale"]).to_event(1)
        elif self.covariance_ == "lowrank":
            base = dist.LowRankMultivariateNormal(loc, params["cov_factor"], params["cov_diag"])
        else:
            base = dist.MultivariateNormal(loc, scale_tril=torch.kron(params["class_tril"], params["feature_tril"]))
        return dist.TransformedDistribution(base, [ReshapeTransform((loc.numel(),), shape)])

    _CONSTRAINTS = {"scale_tril": constraints.lower_cholesky, "scale": constraints.positive,
                    "cov_diag": constraints.positive, "class_tril": constraints.lower_cholesky,
                    "feature_tril": constraints.lower_cholesky}

    def _guide_fn(self, init: dict[str, torch.Tensor], shape: tuple[int, int]):
        def guide(Z, y, subsample_size=None):
            params = {name: pyro.param(f"svi.{name}", value, constraint=self._CONSTRAINTS.get(name, constraints.real))
                      for name, value in init.items()}
            self._gaussian_guide(params, shape)

        return guide

    def _gaussian_guide(self, params: dict[str, torch.Tensor], shape: tuple[int, int]) -> None:
        W = pyro.sample("_weights", self._guide_distribution(params, shape), infer={"is_auxiliary": True})
        self._weight_sites(W)

    def _gaussian(self, params: dict[str, np.ndarray], shape) -> _GaussianFromGuide:
        mean = params["loc"].reshape(shape)
        if self.covariance_ == "full":
            return _GaussianFromGuide(mean, params["scale_tril"], None)
        if self.covariance_ == "diag":
            return _GaussianFromGuide(mean, None, params["scale"])
        if self.covariance_ == "lowrank":
            return _GaussianFromGuide(mean, params["cov_factor"], np.sqrt(params["cov_diag"]))
        return _GaussianFromGuide(mean, np.kron(params["class_tril"], params["feature_tril"]), None)

    # ---- fitting ---------------------------------------------------------------------------------------

    def _fit(self, Z, y, w) -> None:
        """Maximise the ELBO from the Laplace start; see the class notes for the stopping rule.

        ``sample_weight`` weights each row's log-likelihood (an integer weight equals repeating the row; Adam takes
        integer weights only). The ELBO per step (full-data scale) is kept in ``elbo_history_``.
        """
        self._check_batch_size(Z.shape[0])
        classes, index = self._encode_train_labels(y)
        self.classes_ = classes
        self.likelihood_ = self._likelihood_for(classes.size)
        X = self._design(Z)
        prior = self._prior(self.likelihood_.num_outputs, X.shape[1])
        auto = "full" if prior.size <= _FULL_MAX_WEIGHTS else "kron"
        self.covariance_ = auto if self.covariance == "auto" else self.covariance
        self.optimizer_ = self._chosen_optimizer()
        self._optimise(X, index, w, prior)

    def _optimise(self, X: np.ndarray, y: np.ndarray, w, prior: np.ndarray, context: dict | None = None) -> None:
        """Fit the guide at the prior precisions ``prior`` on the design ``X`` (the optimiser ``optimizer_``)."""
        run = self._run_natural if self.optimizer_ == "natural" else self._run_svi
        self._set_fitted(X, prior, *run(X, y, w, prior, context))
        self._train = (X, y, w, context)

    def optimize_prior_precision(self, per: str = "scalar", *, tol: float | None = None, max_iter: int | None = None):
        """Maximise the ELBO (:meth:`log_evidence`) over the prior precisions by variational EM, then keep the fit.

        At the fitted guide ``q = N(m, S)`` the ELBO's prior term is maximised in closed form
        (:func:`~bayes_diglm.inference.laplace.evidence.em_prior_precision`, precisions shared as ``per`` says:
        ``"scalar"``, ``"class"`` rows or ``"feature"`` columns, the bias its own feature); the guide is refitted
        at the new precisions, until every precision changes by less than ``tol`` (default 1e-3) relative, or
        ``max_iter`` refits (default 20). Each step cannot lower the ELBO, up to the optimiser's own accuracy.
        """
        check_is_fitted(self)
        check_prior_grouping(per, PRIOR_GROUPINGS)
        tol, max_iter = 1e-3 if tol is None else tol, 20 if max_iter is None else max_iter
        X, y, w, context = self._train
        prior = self.prior_precision_
        groups = prior_groups(prior, per)
        for _ in range(int(max_iter)):
            new = em_prior_precision(self.posterior_.mean, self.posterior_.marginal_variance(), prior, groups)
            change = float(np.max(np.abs(new - prior) / np.maximum(prior, 1e-300)))
            prior = new
            self._optimise(X, y, w, prior, context)
            if change < tol:
                break
        return self

    def _run_natural(self, X: np.ndarray, y: np.ndarray, w, prior: np.ndarray, context=None):
        """Natural-gradient (closed-form) steps from the Laplace approximation; see the class notes."""
        structure = self.covariance_
        base = _Objective(self.likelihood_, w, context)
        extra = {"lowrank": {"rank": self.rank}, "kron": {"weights": w}}.get(structure, {})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an unconverged MAP is still a fine start
            posterior = laplace_glm(X, y, likelihood=self.likelihood_, prior_precision=prior, covariance=structure,
                                    optimizer="auto", sample_weight=w, rank=self.rank,
                                    tol=_mean_tol(prior), context=context).posterior
        rng = np.random.default_rng(int(self.seed))
        n = X.shape[0]
        rows = n if w is None else float(w.sum())  # as many draws for weighted rows as for the repeated ones
        pairs = max(math.ceil(int(self.num_particles) / 2), math.ceil(_SAA_DRAWS / (2 * rows)))
        eps = _row_normals(X, y, pairs, prior.shape[0], int(self.seed))
        tol = 1e-8 if self.plateau_tol is None else float(self.plateau_tol)
        history, converged, settled = [], False, False
        for _ in range(min(int(self.num_steps), _MAX_NATURAL_STEPS)):
            expected = _ExpectedLikelihood(base, _logit_noise(posterior, X, eps))
            if structure == "full":
                updated = _full_step(X, y, expected, prior, posterior.mean)
            else:  # the structure's precision is no Hessian to take Newton steps with: solve for the mean
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    W = _lbfgs(X, y, expected, prior, posterior.mean, _mean_tol(prior), 15000)[0]
                updated = _STRUCTURES[structure](W, X, expected.curvature(X @ W.T, y), prior, **extra)
            elbo = (float(expected.log_prob(X @ updated.mean.T, y).sum())
                    - _kl_to_prior(posterior, prior, updated.mean))
            if not np.isfinite(elbo):
                raise FloatingPointError(self._diverged_message(len(history), elbo, posterior))
            history.append(elbo)
            # two settled steps in a row: the mean answers a change of the covariance one step later (it is
            # solved at the previous step's draws), so one small step can be a pause, not the end
            settled, previous_settled = _settled(posterior, updated, tol), settled
            posterior = updated
            if settled and previous_settled:
                converged = True
                break
        particles = int(max(8, min(_EVIDENCE_PARTICLES, _EVIDENCE_ELEMENTS // (n * prior.shape[0]))))
        fresh = _ExpectedLikelihood(base, _logit_noise(posterior, X, rng.standard_normal((particles // 2, n,
                                                                                        prior.shape[0]))))
        evidence = float(fresh.log_prob(X @ posterior.mean.T, y).sum()) - _kl_to_prior(posterior, prior)
        return posterior, history, converged, evidence

    def _diverged_message(self, step: int, value: float, start) -> str:
        """Why the ELBO turned non-finite, in the units that matter (the posterior's width against Adam's steps)."""
        where = f"the ELBO became {value} at step {step} of {self.optimizer_!r}"
        if self.optimizer_ == "adam" and start is None:
            return f"SVI diverged ({where}) with the user's guide: lower lr={self.lr:g}"
        if self.optimizer_ == "adam":
            sd = _narrowest_sd(start)
            return (f"SVI diverged ({where}): Adam moves every weight by about lr={self.lr:g} per step, "
                    f"{self.lr / sd:.3g} times the posterior sd in its narrowest direction at the Laplace start "
                    f"({sd:.3g}); use lr <= {0.1 * sd:.2g} or optimizer='natural'")
        return (f"SVI diverged ({where}): the expected log-likelihood under the Gaussian guide is not finite; the "
                f"features may be too large, or the classes separable under a weak prior: standardise the features "
                f"or raise prior_precision")

    def _run_svi(self, X: np.ndarray, y: np.ndarray, w, prior: np.ndarray, context=None):
        """Pyro's SVI with ClippedAdam on the head's model, from the Laplace start or with the user's guide; see the
        class notes."""
        k_out = self.likelihood_.num_outputs
        shape = (k_out, X.shape[1])
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
        context = context or {}
        rows_context = context
        if w is not None:  # integer weights repeat rows (exactly the rows' weighted log-likelihood)
            Xt, yt, rows_context = self._weighted(Xt, yt, w, context)
        Zt = Xt[:, :self.n_features_in_]
        model = self._svi_model(prior, rows_context)
        if self.guide is not None:
            return self._run_user_guide(model, Zt, yt, shape)
        init = self._init_guide(X, y, w, prior, context or None)
        guide = self._guide_fn(init, shape)
        window = int(self.plateau_window)
        history: list[float] = []
        store = pyro.get_param_store()
        with store.scope(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.seed))
            svi = SVI(model, guide, self._adam(), loss=self._loss(vectorize=True))
            sums, previous, converged = None, None, False
            start = self._gaussian({k: v.detach().numpy() for k, v in init.items()}, shape)
            for step in range(int(self.num_steps)):
                history.append(self._elbo_step(svi, step, (Zt, yt, self.batch_size), start))
                current = self._snapshot(store)
                sums = current if sums is None else {k: sums[k] + current[k] for k in sums}
                if (step + 1) % window == 0:
                    averaged = {k: v / window for k, v in sums.items()}
                    sums = None
                    if previous is not None and self.plateau_tol is not None:
                        converged = self._settled(previous, averaged, shape)
                    final, previous = averaged, averaged
                    if converged:
                        break
            if len(history) % window:  # a final partial window (num_steps not a multiple of the window)
                final = {k: v / (len(history) % window) for k, v in sums.items()}
            gaussian = self._gaussian(self._constrained(final), shape)
            evidence = self._elbo_estimate(model, final, shape, Zt, yt)
        return gaussian, history, converged, evidence

    def _adam(self):
        steps = int(self.num_steps)
        return pyro.optim.ClippedAdam({"lr": float(self.lr), "lrd": 0.1 ** (1.0 / steps)})

    def _loss(self, vectorize: bool) -> Trace_ELBO:
        particles = int(self.num_particles)
        return Trace_ELBO(num_particles=particles, vectorize_particles=vectorize and particles > 1,
                          max_plate_nesting=1)

    def _elbo_step(self, svi, step: int, args: tuple, start) -> float:
        """One SVI step; its ELBO, or a FloatingPointError that says why it is not finite."""
        try:
            value = svi.step(*args)
        except ValueError as err:  # a distribution's argument check on NaN parameters
            if "nan" not in str(err).lower():
                raise
            value = math.nan
        if not np.isfinite(value):
            raise FloatingPointError(self._diverged_message(step, value, start)) from None
        return -float(value)

    def _run_user_guide(self, model, Zt: torch.Tensor, yt: torch.Tensor, shape):
        """SVI with the user's ``guide`` for ``num_steps`` steps (fewer when, with ``plateau_tol``, the ELBO's
        averages over the last two windows of ``plateau_window`` steps differ by less than ``plateau_tol`` times
        its sd over the last window); the guide is kept as _GUIDE_DRAWS of its draws."""
        guide = self._user_guide(model)
        window, history, converged = int(self.plateau_window), [], False
        with pyro.get_param_store().scope(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.seed))
            svi = SVI(model, guide, self._adam(), loss=self._loss(vectorize=isinstance(guide, AutoGuide)))
            for step in range(int(self.num_steps)):
                history.append(self._elbo_step(svi, step, (Zt, yt, self.batch_size), None))
                if self.plateau_tol is not None and len(history) >= 2 * window and (step + 1) % window == 0:
                    last, before = np.asarray(history[-window:]), np.asarray(history[-2 * window:-window])
                    converged = abs(last.mean() - before.mean()) <= float(self.plateau_tol) * last.std()
                    if converged:
                        break
            with torch.no_grad():
                draws = self._guide_draws(guide, Zt, yt, shape)
                loss = Trace_ELBO(num_particles=_GUIDE_EVIDENCE_PARTICLES, max_plate_nesting=1)
                evidence = -float(loss.loss(model, guide, Zt, yt, None))
        return _DrawsFromGuide(draws), history, converged, evidence

    def _guide_draws(self, guide, Zt: torch.Tensor, yt: torch.Tensor, shape) -> np.ndarray:
        """_GUIDE_DRAWS draws of the weights (S, k, D+1) from the fitted guide's ``beta`` and ``intercept`` sites:
        vectorised (Pyro's ``Predictive`` on the guide), or one trace at a time for a guide that does not vectorise."""
        d, k = self.n_features_in_, shape[0]
        sites = ("beta", "intercept") if self.fit_intercept else ("beta",)
        site_shapes = {"beta": (k, d), "intercept": (k,)}
        try:
            found = Predictive(guide, num_samples=_GUIDE_DRAWS, parallel=True, return_sites=sites)(Zt, yt, None)
            values = {name: found[name].reshape((_GUIDE_DRAWS,) + site_shapes[name]) for name in sites}
        except (RuntimeError, ValueError, KeyError):
            traces = [poutine.trace(guide).get_trace(Zt, yt, None).nodes for _ in range(_GUIDE_DRAWS)]
            missing = [name for name in sites if name not in traces[0]]
            if missing:
                raise ValueError(f"guide must sample the model's sites {list(sites)}; it samples "
                                 f"{sorted(traces[0])}") from None
            values = {name: torch.stack([t[name]["value"].reshape(site_shapes[name]) for t in traces])
                      for name in sites}
        out = np.zeros((_GUIDE_DRAWS,) + tuple(shape))
        out[:, :, :d] = values["beta"].numpy()
        if self.fit_intercept:
            out[:, :, d] = values["intercept"].numpy()
        return out

    def _set_fitted(self, X: np.ndarray, prior: np.ndarray, posterior, history, converged: bool, evidence) -> None:
        if not converged and self.plateau_tol is not None:
            what = "steps" if self.optimizer_ == "natural" else (
                "window averages" if self.guide is None else "the ELBO's window averages")
            warnings.warn(f"{type(self).__name__} stopped after {len(history)} {self.optimizer_} steps (num_steps="
                          f"{self.num_steps}) before its parameters settled ({what} still moved by more than "
                          f"plateau_tol={self.plateau_tol}); raise num_steps", ConvergenceWarning, stacklevel=4)
        d = X.shape[1] - int(self.fit_intercept)
        self.posterior_ = posterior
        self.coef_ = posterior.mean[:, :d]
        self.intercept_ = posterior.mean[:, -1] if self.fit_intercept else np.zeros(prior.shape[0])
        self.prior_precision_ = prior
        self.elbo_history_ = np.asarray(history)
        self.n_iter_ = len(history)
        self.converged_ = bool(converged)
        self.elbo_ = evidence

    @staticmethod
    def _weighted(Xt, yt, w, context: dict):
        """Integer frequency weights repeat rows (and their per-row context); other weights are refused."""
        if not np.allclose(w, np.round(w)):
            raise ValueError("SVIClassifier takes integer sample_weight (frequency weights) only")
        check_count(int(np.round(w).sum()), "the rows that sample_weight repeats", per_item=Xt.shape[1])
        reps = np.round(w).astype(np.int64)
        context = {key: np.repeat(np.asarray(v), reps) for key, v in context.items()}
        reps = torch.from_numpy(reps)
        return torch.repeat_interleave(Xt, reps, dim=0), torch.repeat_interleave(yt, reps, dim=0), context

    @staticmethod
    def _snapshot(store) -> dict[str, torch.Tensor]:
        return {name: store.get_param(name).detach().clone() for name in store.keys() if name.startswith("svi.")}

    def _constrained(self, params: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {name.removeprefix("svi."): value.numpy().copy() for name, value in params.items()}

    def _settled(self, before: dict, after: dict, shape) -> bool:
        return _settled(self._gaussian(self._constrained(before), shape),
                        self._gaussian(self._constrained(after), shape), float(self.plateau_tol))

    def _elbo_estimate(self, model, params: dict[str, torch.Tensor], shape, Xt, yt) -> float:
        fixed = {name.removeprefix("svi."): value for name, value in params.items()}

        def guide(Z, y, subsample_size=None):
            self._gaussian_guide(fixed, shape)

        num = int(max(8, min(_EVIDENCE_PARTICLES, _EVIDENCE_ELEMENTS // (Xt.shape[0] * shape[0]))))
        loss = Trace_ELBO(num_particles=num, vectorize_particles=True, max_plate_nesting=1)
        with torch.no_grad():
            return -float(loss.loss(model, guide, Xt, yt, None))

    def log_evidence(self) -> float:
        """The ELBO at the fitted guide: a lower bound on ``log p(y | Z)`` (up to 256 particles, full data)."""
        check_is_fitted(self)
        return self.elbo_

    def _sample_weights(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Posterior draws of the weights from the fitted guide, (n, k, D+1)."""
        return self.posterior_.sample(int(n), as_generator(rng))
