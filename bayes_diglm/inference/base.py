r"""The posterior-head contract: one scikit-learn base class and one predictive object for every Bayesian head.

A head puts a posterior on the weights ``beta`` of a GLM on fixed features ``Z`` (the flow's output). Every head

- has a keyword-only ``__init__`` that only stores its hyper-parameters (so ``clone``, ``get_params``,
  ``set_params``, ``GridSearchCV`` and pipelines work as for any scikit-learn estimator);
- ``fit(Z, y, *, sample_weight=None, **context)`` returns ``self`` and accepts integer, float and object-numeric
  ``Z`` (scikit-learn's ``validate_data`` conventions); a failed ``fit`` leaves the previous state intact. The
  base class owns ``fit`` (hyper-parameter checks, input validation, the state kept on failure) and calls the
  head's ``_fit`` with validated arrays;
- per-row context is passed the same way to every method (``fit``, ``predict_dist``, ``predict``,
  ``pointwise_log_likelihood``, ...): the keywords ``sample_weight=``, ``groups=`` and the family's own
  (``trials=`` ...), each an array of one value per row; a head declares which it takes through scikit-learn's
  tags (``get_tags(head).context_tags``, a :class:`ContextTags`), and refuses others by name;
- after ``fit`` has ``coef_``, ``intercept_``, ``posterior_``, ``n_features_in_`` (and ``classes_`` for classifiers);
  before it, every method raises ``sklearn.exceptions.NotFittedError``;
- ``predict``, ``predict_dist(Z, **context)`` (a :class:`Predictive`; how it is computed, e.g. a classifier's
  probit or Monte Carlo predictive, is an option of the head, never of the call), ``sample(n, generator=)``
  (named posterior draws), ``log_evidence()`` and, on every head with an evidence,
  ``optimize_prior_precision(per=, *, tol=, max_iter=)``, and the two methods ArviZ export and diagnostics use,
  ``pointwise_log_likelihood(draws, Z, y, **context)`` and ``sample_predictive(draws, Z, generator=, **context)``.

Classifiers encode any hashable labels through ``classes_`` (sorted, as scikit-learn does) and refuse continuous
targets ("Unknown label type: continuous").
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import inspect

import numpy as np
import scipy.special
import scipy.stats
import torch
from sklearn.base import BaseEstimator, is_classifier
from sklearn.utils import Tags
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from bayes_diglm._validation import (
    check_count,
    check_labels,
    check_params,
    check_sample_weight,
    check_targets,
    numeric_array,
)
from bayes_diglm._validation import refuse_overflow as _refuse_overflow
from bayes_diglm._validation import refuse_text as _refuse_strings
from bayes_diglm.likelihoods import Likelihood

__all__ = ["COVARIANCES", "ContextTags", "HeadTags", "PosteriorHead", "PosteriorClassifierMixin", "Predictive",
           "as_generator", "check_prior_grouping", "check_probability", "context_tags", "encode_labels",
           "family_context"]

#: the one vocabulary of posterior covariance structures (Laplace and SVI)
COVARIANCES = ("full", "diag", "kron", "lowrank")


def as_generator(generator) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a Generator, an int seed, or None (fresh entropy)."""
    if isinstance(generator, np.random.Generator):
        return generator
    if generator is None or (isinstance(generator, (int, np.integer)) and not isinstance(generator, bool)):
        return np.random.default_rng(generator)
    raise TypeError(f"generator must be a numpy Generator, an int seed or None, not {type(generator).__name__}")


def _torch_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**62))


def check_probability(prob) -> float:
    """``prob`` as a float in (0, 1), or a ``ValueError`` naming it."""
    if isinstance(prob, bool) or not isinstance(prob, (int, float, np.floating, np.integer)):
        raise ValueError(f"prob must be a number in (0, 1), got {prob!r}")
    if not 0.0 < float(prob) < 1.0:
        raise ValueError(f"prob must be in (0, 1), got {prob!r}")
    return float(prob)


def check_prior_grouping(per, allowed: tuple[str, ...]) -> str:
    """``per`` of ``optimize_prior_precision`` (which weights share a prior precision), one of ``allowed``."""
    if per not in allowed:
        raise ValueError(f"per must be one of {allowed}, got {per!r}")
    return per


def _check_num_draws(n, per_draw: int = 1) -> int:
    return check_count(n, "n", per_item=per_draw)


def encode_labels(y, classes: np.ndarray, *, error: str) -> np.ndarray:
    """Indices of the labels ``y`` (1-D) in the sorted array ``classes``; labels not among them raise
    ``ValueError(f"{error}: [the first ten]")``. The one label encoder of heads, predictives and estimators."""
    y = column_or_1d(y)
    index = np.clip(np.searchsorted(classes, y), 0, len(classes) - 1)
    unknown = classes[index] != y
    if np.any(unknown):
        raise ValueError(f"{error}: {np.unique(y[unknown])[:10].tolist()}")
    return index


def _numpy(t) -> np.ndarray:
    return t.detach().cpu().to(torch.float64).numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


# ----------------------------------------------------------------------------------------------------------
# the predictive distribution
# ----------------------------------------------------------------------------------------------------------


class Predictive:
    r"""Predictive distribution of new targets at ``n`` inputs, :math:`p(y^* \mid z^*, \text{data})`.

    Wraps a ``torch.distributions`` object with batch shape ``(n,)`` (float64) and answers in NumPy:

    - ``mean``, ``variance``: shape (n,) for regression; for a classifier the class probabilities (n, K) and
      their Bernoulli variances :math:`p_k (1 - p_k)` (the moments of the one-hot outcome);
    - ``log_prob(y)``: pointwise :math:`\log p(y_i)`, shape (n,) (labels are read through ``classes``);
    - ``interval(prob=0.9)``: equal-tailed ``(lo, hi)``; for a discrete target the smallest values of the
      support whose CDF reaches each tail, for a classifier the same over the ordered ``classes`` (so it returns
      labels); for a continuous one the distribution's ``icdf`` where torch has one, else its ``cdf`` inverted
      by bisection, else quantiles of Monte Carlo draws;
    - ``sample(n, generator=None)``: shape (n, N), labels for a classifier.

    Parameters
    ----------
    distribution : torch.distributions.Distribution
        ``StudentT``, ``Normal``, ``Bernoulli``, ``Categorical`` or a ``MixtureSameFamily`` (quadrature or Monte
        Carlo predictive of a likelihood, see :meth:`bayes_diglm.likelihoods.Likelihood.predictive`).
    classes : array-like or None
        The labels of a classifier's outcomes (``classes_``); None for regression.
    discrete : bool or None
        Whether ``y`` takes integer values (the family's ``discrete``); None reads it from the distribution's
        support.
    """

    def __init__(self, distribution: torch.distributions.Distribution, *, classes=None, discrete: bool | None = None):
        if len(distribution.batch_shape) != 1:
            raise ValueError(f"the predictive must have batch shape (n,), got {tuple(distribution.batch_shape)}")
        self.distribution = distribution
        self.classes = None if classes is None else np.asarray(classes)
        self.discrete = _has_discrete_support(distribution) if discrete is None else bool(discrete)

    def __len__(self) -> int:
        return int(self.distribution.batch_shape[0])

    @property
    def probs(self) -> np.ndarray:
        """Class probabilities (n, K) of a classifier's predictive (columns in the order of ``classes``)."""
        if self.classes is None:
            raise AttributeError("probs exists for a classifier's predictive only")
        d = self.distribution
        if isinstance(d, torch.distributions.Bernoulli):
            p1 = _numpy(d.probs)
            return np.stack([1.0 - p1, p1], axis=1)
        if isinstance(d, torch.distributions.Categorical):
            return _numpy(d.probs)
        # any other predictive over the class indices 0..K-1 (a mixture, an ordinal family ...)
        support = torch.arange(len(self.classes), dtype=torch.float64)[:, None].expand(-1, len(self))
        return np.exp(_numpy(d.log_prob(support))).T

    @property
    def mean(self) -> np.ndarray:
        if self.classes is not None:
            return self.probs
        return _numpy(self.distribution.mean)

    @property
    def variance(self) -> np.ndarray:
        if self.classes is not None:
            p = self.probs
            return p * (1.0 - p)
        return _numpy(self.distribution.variance)

    @property
    def stddev(self) -> np.ndarray:
        return np.sqrt(self.variance)

    def _encode(self, y) -> torch.Tensor:
        y = np.asarray(y)
        if y.shape != (len(self),):
            raise ValueError(f"y must have shape ({len(self)},), got {y.shape}")
        if self.classes is None:
            return torch.as_tensor(check_targets(y, "y"))
        index = encode_labels(y, self.classes, error="y contains labels not seen in fit")
        return torch.as_tensor(index.astype(np.float64 if self.classes.size == 2 else np.int64))

    def log_prob(self, y) -> np.ndarray:
        """Pointwise log predictive density (or mass) of ``y``, shape (n,)."""
        target = self._encode(y)
        d = self.distribution
        if isinstance(d, torch.distributions.Bernoulli):
            target = target.to(d.probs.dtype)
        elif isinstance(d, torch.distributions.Categorical):
            target = target.long()
        else:
            _check_support(d, target)
        return _numpy(d.log_prob(target))

    def cdf(self, y) -> np.ndarray:
        """``P(Y <= y)`` per input, shape (n,), for a regression predictive whose distribution (or each mixture
        component) has a CDF in torch or scipy (a ValueError names the distribution otherwise).

        Mixtures (the Monte Carlo and quadrature predictives) are the weighted sum of their components' CDFs;
        components without a CDF in torch (the Student-t) use scipy's. The coverage of every central interval
        follows from one call: ``y`` lies in the central ``p`` interval when ``|cdf(y) - 1/2| <= p / 2``
        (continuous predictives), far cheaper than :meth:`interval` on large mixtures.
        """
        if self.classes is not None:
            raise AttributeError("cdf exists for a regression predictive only (a classifier's has probs)")
        target = self._encode(y)
        if not bool(torch.isfinite(target).all()):
            raise ValueError("y must be finite to evaluate the predictive CDF")
        # a report asks for coverage at one level, then calibration at many, of the same targets: the CDF of a
        # 512-draw mixture over 100,000 rows is tens of seconds, so the last one is kept (a copy is returned)
        key = (target.dtype, tuple(target.shape), hashlib.blake2b(target.numpy().tobytes(), digest_size=16).digest())
        cached = getattr(self, "_last_cdf", None)
        if cached is None or cached[0] != key:
            cached = self._last_cdf = (key, _cdf(self.distribution, target))
        return cached[1].copy()

    def interval(self, prob: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        """Equal-tailed predictive interval ``(lo, hi)`` with probability ``prob`` (each tail ``(1 - prob) / 2``)."""
        prob = check_probability(prob)
        tails = np.array([(1.0 - prob) / 2.0, (1.0 + prob) / 2.0])
        d = self.distribution
        if self.classes is not None:
            cdf = np.cumsum(self.probs, axis=1)
            idx = [np.minimum((cdf < q - 1e-12).sum(axis=1), len(self.classes) - 1) for q in tails]
            return self.classes[idx[0]], self.classes[idx[1]]
        if self.discrete:
            return self._discrete_interval(tails)
        return _quantile(d, tails[0]), _quantile(d, tails[1])

    def _discrete_interval(self, tails: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Quantiles from the CDF summed over the integers between the support's bounds (or mean -+ 12 sd)."""
        d = self.distribution
        mean, sd = _numpy(d.mean), np.sqrt(_numpy(d.variance))
        lower = _support_bound(d, "lower_bound", np.floor(mean - 12.0 * sd - 10.0))
        upper = _support_bound(d, "upper_bound", np.ceil(mean + 12.0 * sd + 10.0))
        upper = np.minimum(upper, np.ceil(mean + 12.0 * sd + 10.0))
        lower = np.maximum(lower, np.floor(mean - 12.0 * sd - 10.0))
        start = float(lower.min())
        grid = start + np.arange(int(np.max(upper) - start) + 1, dtype=np.float64)[:, None]  # (m, 1)
        inside = (grid >= lower) & (grid <= upper)  # (m, n): rows outside a row's support have mass 0
        values = torch.from_numpy(np.clip(grid, lower, upper))
        mass = np.where(inside, np.exp(_numpy(d.log_prob(values))), 0.0)
        cdf = np.cumsum(mass, axis=0)
        lo, hi = (start + (cdf < q - 1e-12).sum(axis=0).astype(np.float64) for q in tails)
        return np.minimum(lo, upper), np.minimum(hi, upper)

    def sample(self, n: int = 1, generator=None) -> np.ndarray:
        """``n`` draws per input, shape (n, N) (labels of ``classes`` for a classifier)."""
        n = _check_num_draws(n, len(self))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_torch_seed(as_generator(generator)))
            draws = _numpy(self.distribution.sample((n,)))
        if self.classes is not None:
            return self.classes[draws.astype(np.int64)]
        return draws

    def __repr__(self) -> str:
        return f"Predictive({type(self.distribution).__name__}, n={len(self)})"


def _check_support(d: torch.distributions.Distribution, target: torch.Tensor) -> None:
    """Refuse targets outside the predictive's support by name, whatever torch's global validation setting (a
    library such as zuko turns it off for the whole process when imported, and torch then returns NaN)."""
    bad = ~torch.isfinite(target)
    if bool(bad.any()):
        raise ValueError(f"y must be finite: NaN or infinite at rows {torch.nonzero(bad)[:5, 0].tolist()}")
    try:
        inside = d.support.check(target)
    except NotImplementedError:
        return
    if not bool(inside.all()):
        rows = torch.nonzero(~inside)[:5, 0].tolist()
        raise ValueError(f"y lies outside the predictive's support ({d.support}) at rows {rows}")


def _has_discrete_support(d) -> bool:
    try:
        return bool(d.support.is_discrete)
    except NotImplementedError:
        return False


def _support_bound(d, name: str, default: np.ndarray) -> np.ndarray:
    """A bound of the distribution's support per row (``default`` where it has none)."""
    try:
        support = d.support
    except NotImplementedError:
        return default
    while hasattr(support, "base_constraint"):  # a mixture's or an independent's constraint wraps its components'
        support = support.base_constraint
    bound = getattr(support, name, None)
    if bound is None:
        return default
    bound = _numpy(torch.as_tensor(bound, dtype=torch.float64))
    while bound.ndim > default.ndim:  # one bound per mixture component: the widest
        bound = bound.max(axis=-1) if name == "upper_bound" else bound.min(axis=-1)
    return np.broadcast_to(bound, default.shape).astype(np.float64)


#: exact quantiles of predictive distributions that torch gives no ``icdf``: the conjugate head's Student-t
_SCIPY_QUANTILES = {
    torch.distributions.StudentT: lambda d, q: scipy.stats.t.ppf(q, df=_numpy(d.df), loc=_numpy(d.loc),
                                                                 scale=_numpy(d.scale)),
}
#: CDFs of components that torch gives none
_SCIPY_CDFS = {
    # the special functions themselves: scipy.stats' argument handling costs more than the CDF on large mixtures
    torch.distributions.StudentT: lambda d, x: scipy.special.stdtr(_numpy(d.df), (x - _numpy(d.loc)) / _numpy(d.scale)),
    torch.distributions.Beta: lambda d, x: scipy.special.betainc(_numpy(d.concentration1), _numpy(d.concentration0),
                                                                 np.clip(x, 0.0, 1.0)),
}


#: rows of a mixture whose component CDFs are evaluated at once: temporaries of (rows, components) stay a few
#: tens of MB whatever the number of rows (a 100,000 x 512 Monte Carlo predictive at once needed 0.4 GB each)
_CDF_BLOCK_ROWS = 4096


def _cdf(d, x: torch.Tensor) -> np.ndarray:
    """``P(Y <= x)`` of a distribution with batch shape (n,) at ``x`` (n,)."""
    if isinstance(d, torch.distributions.MixtureSameFamily):
        component, probs = d.component_distribution, d.mixture_distribution.probs
        n = x.shape[0]
        blocks = [slice(start, start + _CDF_BLOCK_ROWS) for start in range(0, n, _CDF_BLOCK_ROWS)]
        parts = [_rows_of(component, rows) for rows in blocks] if len(blocks) > 1 else [component]
        if any(part is None for part in parts):  # a component type that cannot be sliced: all rows at once
            blocks, parts = [slice(0, n)], [component]
        out = np.empty(n, dtype=np.float64)
        for rows, part in zip(blocks, parts, strict=True):
            out[rows] = (_numpy(probs[rows]) * _cdf(part, x[rows, None].expand(part.batch_shape)
                                                    .to(torch.float64))).sum(-1)
        return out
    scipy_cdf = _SCIPY_CDFS.get(type(d))
    if scipy_cdf is not None:
        return np.asarray(scipy_cdf(d, _numpy(x)), dtype=np.float64)
    try:
        return _numpy(d.cdf(x.to(d.mean.dtype)))
    except NotImplementedError as err:
        raise ValueError(f"the predictive's {type(d).__name__} distribution has no CDF") from err


def _rows_of(d, rows: slice):
    """The distribution ``d`` (batch shape (n, ...)) restricted to ``rows``, rebuilt from its parameters sliced
    (views, no copies); None for a distribution that cannot be rebuilt that way."""
    try:
        params = {name: getattr(d, name)[rows] for name in d.arg_constraints if name in d.__dict__}
        return type(d)(**params, validate_args=False) if params else None
    except (TypeError, ValueError, IndexError):
        return None


_BISECTION_STEPS = 200
_MONTE_CARLO_QUANTILE_DRAWS = 20_000


def _quantile(d, q: float) -> np.ndarray:
    """The ``q``-quantile per row of a continuous distribution with batch shape (n,)."""
    exact = _SCIPY_QUANTILES.get(type(d))
    if exact is not None:
        return np.asarray(exact(d, q), dtype=np.float64)
    n = int(d.batch_shape[0])
    try:
        return _numpy(d.icdf(torch.full((n,), q, dtype=torch.float64)))
    except NotImplementedError:
        pass
    try:
        return _bisect_cdf(d, q)
    except NotImplementedError:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return _monte_carlo_quantile(d, q)


def _monte_carlo_quantile(d, q: float) -> np.ndarray:
    """The ``q``-quantile per row of Monte Carlo draws. A mixture is not sampled as torch samples it (every
    component for every draw, which for a 512-draw predictive is 512 times the memory): each round draws one
    value per component, weighted by the mixing probabilities."""
    if not isinstance(d, torch.distributions.MixtureSameFamily):
        return np.quantile(_numpy(d.sample((_MONTE_CARLO_QUANTILE_DRAWS,))), q, axis=0)
    probs = _numpy(d.mixture_distribution.probs)  # (n, Q)
    rounds = max(1, -(-_MONTE_CARLO_QUANTILE_DRAWS // probs.shape[-1]))
    values = np.concatenate([_numpy(d.component_distribution.sample()) for _ in range(rounds)], axis=-1)
    weights = np.tile(probs, rounds) / rounds
    order = np.argsort(values, axis=-1)
    values, weights = np.take_along_axis(values, order, -1), np.take_along_axis(weights, order, -1)
    index = (np.cumsum(weights, axis=-1) < q).sum(axis=-1).clip(max=values.shape[-1] - 1)
    return np.take_along_axis(values, index[:, None], -1)[:, 0]


def _bisect_cdf(d, q: float) -> np.ndarray:
    """Invert the distribution's CDF by bisection from a bracket of mean -+ 10 sd (widened until it holds)."""
    mean, sd = d.mean.double(), torch.sqrt(d.variance.double())
    lo, hi = mean - 10.0 * sd - 1.0, mean + 10.0 * sd + 1.0
    # within the support (a Gamma's CDF refuses negative values): its bounds are bracket ends that always hold
    lo = torch.from_numpy(_support_bound(d, "lower_bound", _numpy(lo))).maximum(lo)
    hi = torch.from_numpy(_support_bound(d, "upper_bound", _numpy(hi))).minimum(hi)
    for _ in range(60):  # widen each side until the CDF brackets q
        below, above = d.cdf(lo) > q, d.cdf(hi) < q
        if not (bool(below.any()) or bool(above.any())):
            break
        width = hi - lo
        lo, hi = torch.where(below, lo - width, lo), torch.where(above, hi + width, hi)
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        left = d.cdf(mid) < q
        lo, hi = torch.where(left, mid, lo), torch.where(left, hi, mid)
        if bool(((hi - lo) <= 1e-12 * (1.0 + mid.abs())).all()):
            break
    return _numpy(0.5 * (lo + hi))


# ----------------------------------------------------------------------------------------------------------
# per-row context, declared through scikit-learn tags
# ----------------------------------------------------------------------------------------------------------

#: what a head reads ``sample_weight`` as: frequency weights of the rows' log-likelihood (fit only), or known
#: relative noise precisions ``y_i ~ N(f_i, sigma^2 / w_i)`` (fit and prediction alike), or nothing
SAMPLE_WEIGHT_KINDS = ("frequency", "noise", None)


@dataclasses.dataclass
class ContextTags:
    """The per-row context a head's methods take, beside ``Z`` (and ``y``): one value per row each.

    Attributes
    ----------
    sample_weight : {"frequency", "noise"} or None
        ``"frequency"``: ``fit`` weights each row's log-likelihood (an integer weight equals repeating the row);
        ``"noise"``: known relative noise precisions, taken by ``fit`` and by every predictive method;
        None: no ``sample_weight``.
    groups : bool
        Whether the head takes ``groups=`` (random effects per group).
    family : tuple of str
        The likelihood family's own per-row keywords (``("trials",)`` for the binomial), taken by every method.
    """

    sample_weight: str | None = "frequency"
    groups: bool = False
    family: tuple[str, ...] = ()

    def keywords(self, *, fitting: bool) -> tuple[str, ...]:
        """The keywords a method takes: ``fit``'s (``fitting=True``) or a predictive method's."""
        weight = self.sample_weight == "noise" or (fitting and self.sample_weight is not None)
        return ("sample_weight",) * weight + ("groups",) * self.groups + tuple(self.family)


@dataclasses.dataclass
class HeadTags(Tags):
    """scikit-learn's tags of a posterior head, with the per-row context it takes (:class:`ContextTags`)."""

    context_tags: ContextTags = dataclasses.field(default_factory=ContextTags)


def family_context(names: tuple[str, ...], context: dict, n: int, owner: str) -> dict[str, np.ndarray]:
    """A family's per-row keywords ``names`` from ``context`` as float64 arrays of shape (n,) (a scalar is
    broadcast); each is required, numeric (``TypeError``) and finite (``ValueError`` naming it)."""
    out = {}
    for key in names:
        if context.get(key) is None:
            raise ValueError(f"{owner} needs the per-row keyword {key!r} (its family's)")
        value = context[key]
        value = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
        try:
            numeric = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{key} must be numeric, got {type(value).__name__}") from None
        try:
            value = np.broadcast_to(numeric, (n,)).copy()
        except ValueError as err:
            raise ValueError(f"{key} must hold one value per row ({n}), got shape {np.shape(value)}") from err
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{key} must be finite")
        out[key] = value
    return out


def context_tags(head) -> ContextTags:
    """The per-row context ``head`` declares (scikit-learn tags; the default :class:`ContextTags` for an object
    with plain scikit-learn tags)."""
    tags = head.__sklearn_tags__()
    return getattr(tags, "context_tags", ContextTags())


# ----------------------------------------------------------------------------------------------------------
# the head base class
# ----------------------------------------------------------------------------------------------------------


class PosteriorHead(BaseEstimator):
    """Base class of every Bayesian head over GLM weights; see the module docstring for the contract.

    Subclasses implement ``_fit(Z, y, sample_weight, **context)`` (validated arrays; :meth:`fit` checks the
    hyper-parameters by ``_check_params`` first and restores the state when it raises), ``_sample_params(n, rng)``
    (the named draws of :meth:`sample`), ``_draw_predictor(draws, Z)`` (linear predictors per draw, shape
    (S, n, k)), ``_draw_likelihood(draws, n, sample_weight)`` and ``_predictor_moments(Z)`` (mean (n, k) and
    covariance (n, k, k) of the linear predictor under the posterior), or override the methods built on them
    (``_predict_dist(Z, **context)`` for a predictive of another form). Per-row context is declared by
    ``_context_tags()``.
    """

    #: attributes of an ArviZ export: how the posterior was computed and what kind of draws ``sample`` gives
    _arviz_attrs = {"draws": "i.i.d. from an approximate posterior"}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        fields = {f.name: getattr(tags, f.name) for f in dataclasses.fields(tags) if f.name != "context_tags"}
        return HeadTags(**fields, context_tags=self._context_tags())

    def _context_tags(self) -> ContextTags:
        """The per-row context this head takes: frequency weights, the family's keywords, and ``groups`` when a
        head that still defines its own ``fit`` (the mixed-effects heads) names it there."""
        groups = type(self).fit is not PosteriorHead.fit and "groups" in inspect.signature(type(self).fit).parameters
        return ContextTags(groups=groups, family=self._family_context())

    def _family_context(self) -> tuple[str, ...]:
        """The family's per-row keywords: the fitted family's, else none (heads whose family is known before
        ``fit`` override this)."""
        return tuple(getattr(getattr(self, "likelihood_", None), "context", ()))

    # ---- fitting ---------------------------------------------------------------------------------------

    def fit(self, Z, y, *, sample_weight=None, **context):
        """Fit the posterior over the weights to features ``Z`` (n, D) and targets ``y`` (n,); return ``self``.

        ``sample_weight`` and ``context`` are the per-row context the head declares (:func:`context_tags`).
        The hyper-parameters are checked before any work; a rejected or failed fit leaves the head as it was.
        """
        with self._keep_state_on_error():
            if hasattr(self, "_parameter_constraints"):
                check_params(self)
            self._check_params()
            Z, y, w = self._validate_train(Z, y, sample_weight, y_numeric=not is_classifier(self))
            context = self._validate_context(context, Z.shape[0], fitting=True, sample_weight=w)
            self._fit(Z, y, w, **context)
        return self

    def _check_params(self) -> None:
        """Check the hyper-parameters (before any data are read); a ``ValueError`` / ``TypeError`` names the bad one."""

    def _fit(self, Z: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None, **context) -> None:
        raise NotImplementedError  # pragma: no cover - abstract

    def _validate_context(self, context: dict, n: int, *, fitting: bool, sample_weight=None) -> dict:
        """The per-row keywords checked against the declared ones: the family's as float64 arrays of shape (n,),
        ``groups`` as given (its head checks it); a keyword the head does not take is a ``TypeError`` naming it."""
        tags = context_tags(self)
        allowed = tags.keywords(fitting=fitting)
        given = set(context) | ({"sample_weight"} if sample_weight is not None else set())
        unknown = sorted(given - set(allowed))
        if unknown == ["sample_weight"] and not fitting and tags.sample_weight == "frequency":
            raise ValueError(f"{type(self).__name__} has no per-observation noise precisions: pass no sample_weight "
                             "(its sample_weight weights the rows of fit)")
        if unknown:
            raise TypeError(f"{type(self).__name__} takes no per-row keyword {unknown} here; it takes "
                            f"{list(allowed) or 'none'}")
        out = {key: value for key, value in context.items() if key not in tags.family}
        return {**out, **family_context(tags.family, context, n, type(self).__name__)}

    # ---- validation ------------------------------------------------------------------------------------

    def _keep_state_on_error(self):
        """Restore the fitted state when the body raises: a rejected ``fit`` leaves the head as it was."""
        return keep_state_on_error(self)

    def _validate_train(self, Z, y, sample_weight=None, *, y_numeric: bool = True, positive_weights=False):
        """Validated float64 ``(Z, y, w)``; sets ``n_features_in_`` (and ``feature_names_in_``)."""
        _refuse_strings(Z, "Z")
        y = check_targets(y, "y") if y_numeric else check_labels(y, "y")
        Z, y = validate_data(self, Z, y, dtype=np.float64, y_numeric=y_numeric, reset=True)
        _refuse_overflow(Z, "Z")
        if y_numeric:
            _refuse_overflow(np.asarray(y, dtype=np.float64), "y")
        w = self._validate_weights(sample_weight, Z.shape[0], positive=positive_weights)
        return Z, y, w

    @staticmethod
    def _validate_weights(sample_weight, n: int, *, positive: bool) -> np.ndarray | None:
        return check_sample_weight(sample_weight, n, positive=positive)

    def _validate_Z(self, Z) -> np.ndarray:
        """Float64 features checked against the fit (``NotFittedError`` before it, feature count after)."""
        check_is_fitted(self)
        return numeric_array(Z, "Z", lambda a: validate_data(self, a, dtype=np.float64, reset=False))

    def _design(self, Z: np.ndarray) -> np.ndarray:
        """Features with a trailing column of ones when the head fits an intercept."""
        if getattr(self, "fit_intercept", False):
            return np.hstack([Z, np.ones((Z.shape[0], 1))])
        return Z

    # ---- posterior draws -------------------------------------------------------------------------------

    def sample(self, n: int, *, generator=None) -> dict[str, np.ndarray]:
        """``n`` i.i.d. posterior draws, named: ``"beta"`` (n, D) or (n, K, D), ``"intercept"``, ``"sigma"``...

        ``generator`` is a ``numpy.random.Generator``, an int seed, or None.
        """
        check_is_fitted(self)
        return self._sample_params(_check_num_draws(n, np.size(self.coef_) + np.size(self.intercept_)),
                                   as_generator(generator))

    def _sample_params(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def _feature_names(self, feature_names) -> list[str]:
        """The ``feature`` coordinate: ``feature_names``, else ``feature_names_in_``, else ``z0, z1, ...``."""
        check_is_fitted(self)
        d = self.n_features_in_
        if feature_names is None:
            feature_names = getattr(self, "feature_names_in_", None)
        names = [f"z{j}" for j in range(d)] if feature_names is None else [str(v) for v in feature_names]
        if len(names) != d:
            raise ValueError(f"feature_names has {len(names)} names for {d} features")
        return names

    def posterior_dims(self, feature_names=None) -> tuple[dict[str, list[str]], dict[str, list]]:
        """ArviZ ``dims`` and ``coords`` of the draws of :meth:`sample` (``feature``, and ``class`` for softmax)."""
        coords: dict[str, list] = {"feature": self._feature_names(feature_names)}
        dims = {"beta": ["feature"], "intercept": []}
        if np.ndim(self.coef_) == 2 and np.shape(self.coef_)[0] > 1:
            coords["class"] = [_plain(c) for c in self.classes_]
            dims = {"beta": ["class", "feature"], "intercept": ["class"]}
        return dims, coords

    # ---- ArviZ / diagnostics protocol ------------------------------------------------------------------

    def _draw_predictor(self, draws: dict, Z: np.ndarray) -> np.ndarray:
        """Linear predictors ``f`` (S, n, k) of each draw at the validated features ``Z``."""
        beta = np.asarray(draws["beta"], dtype=np.float64)
        beta = beta[:, None, :] if beta.ndim == 2 else beta  # (S, k, D)
        f = np.einsum("nd,skd->snk", Z, beta)
        if "intercept" in draws:
            bias = np.asarray(draws["intercept"], dtype=np.float64)
            f = f + (bias[:, None] if bias.ndim == 1 else bias)[:, None, :]
        return f

    def _draw_likelihood(self, draws: dict, n: int, sample_weight) -> Likelihood:
        if sample_weight is not None:
            raise ValueError(f"{type(self).__name__} has no per-observation noise precisions: pass no sample_weight")
        return self.likelihood_

    def _encode_y(self, y) -> np.ndarray:
        return check_targets(y, "y").reshape(-1)

    def _check_draws(self, draws) -> dict:
        if not isinstance(draws, dict) or "beta" not in draws:
            raise TypeError("draws must be a dict of named posterior draws with a 'beta' entry (from sample())")
        return draws

    def pointwise_log_likelihood(self, draws: dict, Z, y, **context) -> np.ndarray:
        """``log p(y_i | z_i, draw_s)`` for every draw and observation, shape (S, n) (for ``az.loo``);
        ``context``: the per-row keywords the head declares (``sample_weight=`` noise precisions, ``trials=`` ...)."""
        Z = self._validate_Z(Z)
        draws = self._check_draws(draws)
        y = self._encode_y(y)
        if y.shape[0] != Z.shape[0]:
            raise ValueError(f"mismatched lengths: Z has {Z.shape[0]} rows, y has {y.shape[0]}")
        context = self._validate_context(context, Z.shape[0], fitting=False)
        sample_weight = context.pop("sample_weight", None)
        f = self._draw_predictor(draws, Z)
        return self._draw_likelihood(draws, Z.shape[0], sample_weight).log_prob(f, y, **context)

    def sample_predictive(self, draws: dict, Z, *, generator=None, **context) -> np.ndarray:
        """One replicate ``y ~ p(y | z_i, draw_s)`` per draw and input, shape (S, n) (posterior predictive)."""
        Z = self._validate_Z(Z)
        draws = self._check_draws(draws)
        context = self._validate_context(context, Z.shape[0], fitting=False)
        sample_weight = context.pop("sample_weight", None)
        f = self._draw_predictor(draws, Z)
        lik = self._draw_likelihood(draws, Z.shape[0], sample_weight)
        g = torch.Generator().manual_seed(_torch_seed(as_generator(generator)))
        out = lik.sample(torch.from_numpy(f), g, **context)
        return self._decode_samples(_numpy(out))

    def _decode_samples(self, y: np.ndarray) -> np.ndarray:
        return y

    # ---- predictive ------------------------------------------------------------------------------------

    def _predictor_moments(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def predict_dist(self, Z, **context) -> Predictive:
        """The predictive distribution at the rows of ``Z``: the likelihood integrated over the posterior
        (``context``: the per-row keywords the head declares, at those rows)."""
        Z, context = self._validate_rows(Z, context)
        return self._predict_dist(Z, **context)

    def _validate_rows(self, Z, context: dict) -> tuple[np.ndarray, dict]:
        """Validated features of a fitted head and the per-row keywords of a predictive method at those rows."""
        Z = self._validate_Z(Z)
        return Z, self._validate_context(context, Z.shape[0], fitting=False)

    def _predict_dist(self, Z: np.ndarray, sample_weight=None, **context) -> Predictive:
        """The predictive at validated rows ``Z`` with validated context."""
        return self._predictive_of(Z, self._draw_likelihood({}, Z.shape[0], sample_weight), **context)

    def _predictive_of(self, Z: np.ndarray, likelihood: Likelihood, **context) -> Predictive:
        """``likelihood`` integrated over the posterior of the linear predictor at validated rows ``Z``
        (``context``: the family's per-row keywords at those rows)."""
        mean, cov = self._predictor_moments(Z)
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))):
            raise ValueError("the predictive overflowed float64 at these inputs (linear predictor or its variance "
                             "is not finite): Z lies far outside the training range; standardise the features")
        # a head's ``predictive_seed`` seeds a Monte Carlo predictive (families with several linear predictors)
        seed = getattr(self, "predictive_seed", None)
        generator = None if seed is None else torch.Generator().manual_seed(_torch_seed(as_generator(seed)))
        dist = likelihood.predictive(torch.from_numpy(mean), torch.from_numpy(cov), generator=generator, **context)
        return Predictive(dist, classes=getattr(self, "classes_", None), discrete=likelihood.discrete)


@contextlib.contextmanager
def keep_state_on_error(obj):
    """Restore ``obj``'s attributes when the body raises (a rejected ``fit`` leaves a head or estimator as it was)."""
    saved = dict(obj.__dict__)
    try:
        yield
    except BaseException:
        obj.__dict__.clear()
        obj.__dict__.update(saved)
        raise


def _plain(v):
    """A label as a plain Python value (ArviZ coordinates, JSON)."""
    return v.item() if isinstance(v, np.generic) else v


class PosteriorClassifierMixin:
    """Label handling for classifier heads: ``classes_`` from the labels, predictions mapped back to them.

    Put it before ``ClassifierMixin`` and :class:`PosteriorHead` in the bases. The optional ``classes``
    hyper-parameter fixes the label set (e.g. when a subset of the data misses a class).
    """

    def _encode_train_labels(self, y) -> tuple[np.ndarray, np.ndarray]:
        """``(classes, y_index)`` for training labels; refuses continuous targets and a single class."""
        y = column_or_1d(check_labels(y, "y"), warn=True)
        check_classification_targets(y)
        given = getattr(self, "classes", None)
        if given is None:
            classes, index = np.unique(y, return_inverse=True)
        else:
            classes = np.unique(np.asarray(given))
            if classes.size != np.asarray(given).size:
                raise ValueError(f"classes must hold distinct labels, got {given!r}")
            index = encode_labels(y, classes, error=f"y contains labels outside classes={given!r}")
        if classes.size < 2 or np.unique(index).size < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes in the data, but the data contain "
                f"only one class: {_plain(classes[index[0]])!r}"
            )
        return classes, index.astype(np.int64)

    def _encode_y(self, y) -> np.ndarray:
        return encode_labels(y, self.classes_, error="y contains labels not seen in fit")

    def _decode_samples(self, y: np.ndarray) -> np.ndarray:
        return self.classes_[y.astype(np.int64)]

    def predict_proba(self, Z, **context) -> np.ndarray:
        """Predictive class probabilities ``p(y | z, data)``, shape (n, K), columns in ``classes_`` order."""
        return self.predict_dist(Z, **context).probs

    def predict(self, Z, **context) -> np.ndarray:
        """The most probable label under the predictive."""
        index = np.argmax(self.predict_proba(Z, **context), axis=1)
        return self.classes_[index]

    def log_predictive(self, Z, y, **context) -> np.ndarray:
        """Pointwise log predictive probability of the labels ``y``, shape (n,)."""
        return self.predict_dist(Z, **context).log_prob(column_or_1d(y))

