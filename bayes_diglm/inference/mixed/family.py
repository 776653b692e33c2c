r"""The family of a GLMM head, from the registry: its free nuisance parameters as a flat vector, its per-row context.

A GLMM head optimises the family's nuisance parameters (the negative binomial's dispersion, a Gamma's shape, a
Student-t's scale and degrees of freedom, a Gaussian's noise variance) jointly with the variance components and
the fixed effects, as glmmTMB does: each on the unconstrained scale of ``transform_to(constraint)`` (the log for a
positive parameter). The family is rebuilt from its ``config()`` with the new values, so nothing here knows which
family it is.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.distributions import transform_to

from bayes_diglm import likelihoods
from bayes_diglm.likelihoods import Likelihood

from ..base import family_context

__all__ = ["FamilyParameters", "glmm_family", "row_context"]

# unconstrained nuisance values are clipped to this box: beyond it a log-dispersion of -15 is a Poisson to 1e-6
# relative, and lgamma(y + 1/alpha) - lgamma(1/alpha) loses its digits
_UNCONSTRAINED_BOX = 15.0


def glmm_family(spec) -> Likelihood:
    """The registry's family ``spec`` (a name or an instance) checked for a Laplace GLMM: one linear predictor and
    an expected information (:meth:`~bayes_diglm.likelihoods.Likelihood.fisher`) for the PIRLS weights."""
    lik = likelihoods.build(spec)
    if lik.num_outputs != 1:
        raise ValueError(f"likelihood={spec!r} has {lik.num_outputs} linear predictors; the mixed heads model one")
    if not getattr(lik, "laplace_glmm", True):
        raise ValueError(f"likelihood={spec!r} cannot be a GLMM family: {type(lik).__name__} declares "
                         "laplace_glmm = False (its Laplace GLMM is not validated)")
    probe = {key: np.ones(1) for key in lik.context}
    try:
        lik.fisher(np.zeros((1, 1)), **probe)
    except NotImplementedError as err:
        raise ValueError(f"likelihood={spec!r} cannot be a GLMM family: {err}") from None
    return lik


def row_context(lik: Likelihood, context: dict, n: int) -> dict[str, np.ndarray]:
    """The family's per-row keywords (``trials=`` for the binomial) as float64 arrays of shape (n,).

    A keyword the family does not take is a TypeError, a missing one a ValueError; scalars broadcast."""
    unknown = sorted(set(context) - set(lik.context))
    if unknown:
        raise TypeError(f"the {lik.name!r} family takes no per-row keyword {unknown}; its context is "
                        f"{list(lik.context)}")
    return family_context(tuple(lik.context), context, n, f"the {lik.name!r} family")


class FamilyParameters:
    """The free nuisance parameters of ``lik`` (its ``nuisance``; fixed ones excluded) as one unconstrained vector.

    ``start`` is the family's current values (what the user built it with, or the declared start), mapped to the
    unconstrained scale; ``bounds`` the box each unconstrained value is kept in (the optimiser's bounds, so that
    no region outside it is flat); :meth:`build` gives the family at a vector, :meth:`values` the constrained
    values.
    """

    def __init__(self, lik: Likelihood):
        self.lik = lik
        self.names = list(lik.nuisance)
        self.transforms, self.shapes, starts = [], [], []
        for key in self.names:
            value = torch.as_tensor(getattr(lik, key), dtype=torch.float64)
            t = transform_to(lik.nuisance[key].constraint)
            self.transforms.append(t)
            self.shapes.append(tuple(value.shape))
            starts.append(t.inv(value).reshape(-1).numpy())
        self.start = np.clip(np.concatenate(starts), -_UNCONSTRAINED_BOX, _UNCONSTRAINED_BOX) if starts \
            else np.zeros(0)
        self.size = self.start.size
        self.bounds = [(-_UNCONSTRAINED_BOX, _UNCONSTRAINED_BOX)] * self.size

    def values(self, x: np.ndarray) -> dict:
        """The constrained values at the unconstrained vector ``x``: floats, or lists for shaped parameters."""
        x = np.clip(np.asarray(x, dtype=np.float64), -_UNCONSTRAINED_BOX, _UNCONSTRAINED_BOX)
        out, off = {}, 0
        for key, t, shape in zip(self.names, self.transforms, self.shapes, strict=True):
            k = int(np.prod(shape, dtype=int))
            value = t(torch.from_numpy(x[off:off + k].copy()).reshape(shape))
            out[key] = float(value) if value.dim() == 0 else value.tolist()
            off += k
        return out

    def build(self, x: np.ndarray) -> Likelihood:
        """The family with its free nuisance parameters at ``x`` (the others as configured)."""
        if not self.names:
            return self.lik
        return type(self.lik)(**{**self.lik.config(), **self.values(x)})
