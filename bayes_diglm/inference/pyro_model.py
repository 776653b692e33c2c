r"""The GLM on features as one Pyro model, written once for every posterior head (its sites, priors and ``obs=``).

:func:`glm_model` is the generative model that every head's ``pyro_model(Z, y=None, sample_weight=None,
**context)`` runs, each head with its own priors:

- one sample site per nuisance parameter that the head has a posterior over (``"noise_variance"``, ``"df"``,
  ...), drawn first so that a prior over beta may depend on it;
- ``"beta"``: shape ``(D,)``, or ``(k, D)`` for a family with ``k > 1`` outputs (softmax);
- ``"intercept"``: shape ``()`` or ``(k,)``, when the head fits one;
- ``"y"``: the observations, one ``obs=`` site per row inside ``pyro.plate("data", n)`` (optionally subsampled),
  each row's log-likelihood scaled by its ``sample_weight``.

The sites may carry batch dimensions to the left of the data plate (vectorised ELBO particles, a parallel
``pyro.infer.Predictive``): the linear predictor is formed for each of them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions.torch_distribution import TorchDistributionMixin
from sklearn.utils.validation import check_is_fitted
from torch.distributions import constraints

from bayes_diglm import likelihoods

__all__ = ["GaussianWeightsModel", "as_pyro_distribution", "check_prior", "features", "gaussian_precision", "glm_model",
           "normal_prior", "prior_over_beta", "weights_shape"]


class _PyroObservation(dist.TorchDistribution):
    """A ``torch.distributions`` object seen by Pyro (``pyro.sample`` needs Pyro's mixin: ``__call__``, ``expand``,
    ``to_event``, masks); log-density, draws and moments are the wrapped distribution's."""

    arg_constraints: dict = {}

    def __init__(self, base: torch.distributions.Distribution):
        self.base = base
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    @property
    def support(self):
        return self.base.support

    @property
    def has_rsample(self) -> bool:
        return self.base.has_rsample

    @property
    def mean(self):
        return self.base.mean

    @property
    def variance(self):
        return self.base.variance

    def sample(self, sample_shape=()):
        return self.base.sample(sample_shape)

    def rsample(self, sample_shape=()):
        return self.base.rsample(sample_shape)

    def log_prob(self, value):
        return self.base.log_prob(value)

    def expand(self, batch_shape, _instance=None):
        return _PyroObservation(self.base.expand(batch_shape))


def as_pyro_distribution(d: torch.distributions.Distribution) -> dist.TorchDistribution:
    """``d`` as a Pyro distribution (returned as is when it already is one)."""
    if isinstance(d, TorchDistributionMixin):
        return d
    if not isinstance(d, torch.distributions.Distribution):
        raise TypeError(f"expected a torch.distributions.Distribution, got {type(d).__name__}")
    return _PyroObservation(d)


def check_prior(prior) -> None:
    """A TypeError unless ``prior`` is None, a (Pyro or torch) distribution over beta or a callable returning one."""
    if prior is not None and not (isinstance(prior, torch.distributions.Distribution) or callable(prior)):
        raise TypeError(f"prior must be a Pyro distribution over beta or a callable, got {prior!r}")


def prior_over_beta(prior, shape: tuple[int, ...], nuisance: dict) -> dist.TorchDistribution:
    """A user's ``prior`` (a distribution, or ``prior(**nuisance) -> distribution``) as a Pyro distribution whose
    event shape is beta's ``shape``; a ValueError naming the shapes when it does not cover beta."""
    d = prior if isinstance(prior, torch.distributions.Distribution) else prior(**nuisance)
    d = as_pyro_distribution(d)
    if tuple(d.batch_shape) + tuple(d.event_shape) != tuple(shape):
        raise ValueError(f"the prior over beta must have shape {tuple(shape)}, got batch {tuple(d.batch_shape)} "
                         f"and event {tuple(d.event_shape)}")
    return d.to_event(len(d.batch_shape)) if len(d.batch_shape) else d


def gaussian_precision(prior, head: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """The precisions (of ``shape``) of a user's zero-mean independent Gaussian ``prior`` over beta (a
    ``dist.Normal(0, scale)``, batched or ``.to_event``), None for None; any other prior is refused by name."""
    if prior is None:
        return None
    base = prior
    while isinstance(base, torch.distributions.Independent):
        base = base.base_dist
    if not isinstance(base, torch.distributions.Normal):
        what = "a callable" if not isinstance(prior, torch.distributions.Distribution) else type(base).__name__
        raise TypeError(f"{head} takes a Gaussian prior over beta only (prior_precision, or prior=dist.Normal(0, "
                        f"scale)); prior={what} is not one: use the NUTS or SVI heads for any other prior")
    if bool((base.loc != 0).any()):
        raise ValueError(f"{head} takes a zero-mean Gaussian prior; prior has mean {base.loc.tolist()}")
    try:
        scale = np.broadcast_to(base.scale.detach().double().numpy(), shape)
    except ValueError:
        raise ValueError(f"the prior over beta must have shape {shape}, got {tuple(base.scale.shape)}") from None
    return 1.0 / scale**2


def normal_prior(precision) -> dist.TorchDistribution:
    """``N(0, 1 / precision)`` over an array of ``precision``'s shape (one event); all-zero precisions: flat."""
    precision = torch.as_tensor(np.asarray(precision, dtype=np.float64))
    if bool((precision == 0).all()):
        return dist.ImproperUniform(constraints.real, (), tuple(precision.shape))
    if not bool((precision > 0).all()):
        raise ValueError(f"prior precisions must be all positive or all zero (flat), got {precision.tolist()}")
    base = dist.Normal(torch.zeros_like(precision), precision.rsqrt())
    return base.to_event(precision.dim()) if precision.dim() else base


def _per_value(value: torch.Tensor, event_dim: int) -> torch.Tensor:
    """A site's value with its batch dimensions only: ``(*batch, 1, *event)`` (the data plate's slot, as plates
    and vectorised particles leave it) becomes ``(*batch, *event)``; ``(*batch, *event)`` (a parallel
    ``Predictive`` conditions sites with event dimensions so) is kept."""
    lead = value.dim() - event_dim
    if lead and value.shape[lead - 1] == 1:
        return value.squeeze(lead - 1)
    return value


def _with_plate_slot(value: torch.Tensor, event_dim: int) -> torch.Tensor:
    """The inverse of :func:`_per_value` for a nuisance value that the family broadcasts against the rows: batch
    dimensions that do not end in the data plate's slot get it, ``(*batch, *event)`` -> ``(*batch, 1, *event)``."""
    lead = value.dim() - event_dim
    if lead and value.shape[lead - 1] != 1:
        return value.unsqueeze(lead)
    return value


def _linear_predictor(Z: torch.Tensor, beta: torch.Tensor, intercept: torch.Tensor | None, k: int) -> torch.Tensor:
    """``f = Z beta^T + intercept``, shape ``(*batch, n, k)`` for sites of shape ``(*batch, [1,] *event)``."""
    if k == 1:
        f = (_per_value(beta, 1) @ Z.T)[..., None]
    else:
        f = torch.einsum("nd,...kd->...nk", Z, _per_value(beta, 2))
    if intercept is not None:
        b = _per_value(intercept, 0 if k == 1 else 1)
        f = f + (b[..., None, None] if k == 1 else b[..., None, :])
    return f


def _observed(y, likelihood: likelihoods.Likelihood) -> torch.Tensor | None:
    if y is None:
        return None
    obs = y if isinstance(y, torch.Tensor) else torch.from_numpy(np.asarray(y, dtype=np.float64))
    obs = obs.to(torch.float64)
    return obs.long() if likelihood.task == "classification" and likelihood.num_outputs > 1 else obs


def glm_model(
    Z,
    y=None,
    *,
    likelihood: likelihoods.Likelihood,
    beta_prior: Callable[[dict], torch.distributions.Distribution],
    intercept_prior: Callable[[dict], torch.distributions.Distribution] | None = None,
    nuisance: dict | None = None,
    family: Callable[[dict], likelihoods.Likelihood] | None = None,
    sample_weight=None,
    subsample_size: int | None = None,
    **context,
):
    r"""Run the GLM's generative model (a Pyro model; see the module docstring for its sites).

    Parameters
    ----------
    Z : tensor or array (n, D)
        Features (float64).
    y : tensor or array (n,), optional
        Observed targets as the family reads them (class indices for a classifier); None samples them.
    likelihood : Likelihood
        The fitted family: its ``num_outputs`` and ``task`` shape the sites.
    beta_prior, intercept_prior : callable
        ``prior(values) -> distribution`` of the sampled and fixed nuisance ``values`` (a dict); the
        distribution's event shape is the site's. ``intercept_prior=None``: no intercept.
    nuisance : dict, optional
        ``{name: distribution}`` for a nuisance parameter sampled as a site, ``{name: tensor}`` for one held fixed.
    family : callable, optional
        ``family(values) -> Likelihood`` with the nuisance values; default: ``likelihood`` rebuilt with them.
    sample_weight : tensor or array (n,), optional
        Scales each row's log-likelihood.
    subsample_size : int, optional
        Rows per call of the data plate (scaled by ``n / subsample_size``, as Pyro's plates are).
    **context
        The family's per-row keywords (``trials=`` ...), arrays of shape (n,).

    Returns
    -------
    tensor
        The value of the ``"y"`` site.
    """
    Z = Z if isinstance(Z, torch.Tensor) else torch.from_numpy(np.asarray(Z, dtype=np.float64))
    k = likelihood.num_outputs
    values = {}
    for name, value in (nuisance or {}).items():
        if isinstance(value, torch.distributions.Distribution):
            value = _with_plate_slot(pyro.sample(name, as_pyro_distribution(value)), len(value.event_shape))
        values[name] = value
    beta = pyro.sample("beta", as_pyro_distribution(beta_prior(values)))
    intercept = None
    if intercept_prior is not None:
        intercept = pyro.sample("intercept", as_pyro_distribution(intercept_prior(values)))
    if family is None:
        lik = type(likelihood)(**{**likelihood.config(), **values}) if values else likelihood
    else:
        lik = family(values)
    obs = _observed(y, likelihood)
    weight = None if sample_weight is None else torch.as_tensor(np.asarray(sample_weight, dtype=np.float64))
    with pyro.plate("data", Z.shape[0], subsample_size=subsample_size) as rows:
        if subsample_size is not None:
            Z = Z[rows]
            obs = None if obs is None else obs[rows]
            weight = None if weight is None else weight[rows]
            context = {key: np.asarray(v)[rows.numpy()] if np.ndim(v) else v for key, v in context.items()}
        f = _linear_predictor(Z, beta, intercept, k)
        with poutine.scale(scale=1.0 if weight is None else weight):
            return pyro.sample("y", as_pyro_distribution(lik.dist(f, **context)), obs=obs)


def _constant(value):
    """A prior or family that does not depend on the nuisance values: ``f(values) -> value``."""
    return lambda values: value


def weights_shape(k: int, D: int) -> tuple[int, ...]:
    """Beta's site shape for ``k`` outputs and ``D`` features: ``(D,)`` or ``(k, D)``."""
    return (D,) if k == 1 else (k, D)


def features(Z, n_features: int) -> torch.Tensor:
    """``Z`` as a float64 tensor (n, n_features); a ValueError naming its shape otherwise."""
    Z = Z.detach().to(torch.float64) if isinstance(Z, torch.Tensor) else torch.from_numpy(
        np.asarray(Z, dtype=np.float64))
    if Z.dim() != 2 or Z.shape[1] != n_features:
        raise ValueError(f"Z must have shape (n, {n_features}), got {tuple(Z.shape)}")
    return Z


class GaussianWeightsModel:
    """``pyro_model`` of a head whose prior over the weights is Gaussian, ``N(0, 1 / prior_precision_)`` per weight
    (``prior_precision_`` (k, D+1), the bias last), or a user's ``prior`` over beta; the family's nuisance values
    are the head's known ones (no site). ``_takes_any_prior``: whether ``prior=`` may be any distribution (SVI)
    or only a Gaussian, folded into the precisions by :meth:`_user_prior` (Laplace)."""

    _takes_any_prior = False

    def pyro_model(self, Z, y=None, sample_weight=None, **context):
        """The head's model (sites ``beta``, ``intercept``, ``y`` observed in ``pyro.plate("data")``; see
        :mod:`bayes_diglm.inference.pyro_model`) at its fitted prior. ``y``: targets as the family reads them
        (class indices for a classifier); ``sample_weight`` scales each row's log-likelihood; ``context``: the
        family's per-row keywords."""
        check_is_fitted(self, "prior_precision_")
        return self._weights_model(self.prior_precision_, Z, y, sample_weight, **context)

    def _user_prior(self, prior: np.ndarray) -> np.ndarray:
        """Prior precisions (k, D+1) with the feature weights' taken from a Gaussian ``prior=``, where a head that
        takes only Gaussian priors (Laplace) has one; anything else is refused by name."""
        precision = gaussian_precision(getattr(self, "prior", None), type(self).__name__,
                                       weights_shape(prior.shape[0], self.n_features_in_))
        if precision is None:
            return prior
        prior = prior.copy()
        prior[:, :self.n_features_in_] = precision.reshape(prior.shape[0], -1)
        return prior

    def _weights_model(self, precision: np.ndarray, Z, y=None, sample_weight=None, subsample_size=None, **context):
        lik = self.likelihood_
        k, D = lik.num_outputs, self.n_features_in_
        user = getattr(self, "prior", None) if self._takes_any_prior else None  # else it is in ``precision``
        if user is None:
            beta = normal_prior(precision[0, :D] if k == 1 else precision[:, :D])
        else:  # a user's prior may read the family's (known) nuisance values, as for NUTS
            known = {name: torch.as_tensor(getattr(lik, name), dtype=torch.float64) for name in lik.nuisance}
            beta = prior_over_beta(user, weights_shape(k, D), known)
        intercept = normal_prior(precision[0, D] if k == 1 else precision[:, D]) if self.fit_intercept else None
        return glm_model(
            features(Z, D), y, likelihood=lik,
            beta_prior=_constant(beta), intercept_prior=None if intercept is None else _constant(intercept),
            family=_constant(lik), sample_weight=sample_weight,
            subsample_size=subsample_size, **context,
        )
