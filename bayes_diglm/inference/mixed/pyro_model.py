r"""The GLMM heads' generative model as a Pyro model, with the fitted variance components and nuisance values.

Sites, as :mod:`bayes_diglm.inference.nuts` names them: ``"beta"`` (D,) and ``"intercept"`` under flat priors
(``ImproperUniform``, the heads' own flat prior on the fixed effects; they cannot be sampled, so Pyro's
``Predictive`` needs them conditioned or a proper ``N(0, prior_scale^2)`` instead); per factor the spherical effects
``"z_<factor>"`` ~ N(0, I), shape (G, q), and the deterministic site ``"u_<factor>"`` = ``z L_k^T`` (the random
effects, (G,) for a scalar factor, as :meth:`sample` names them; non-centred, so a singular fitted covariance is
no obstacle for NUTS); the observation site ``"y"`` inside ``pyro.plate("data", n)`` with ``obs=`` per row, its
log-likelihood scaled by ``sample_weight``. The variance components (``re_cov_``) and the family's nuisance
parameters (``nuisance_``) are the fitted plug-ins, as in the heads' Laplace posterior (empirical Bayes), so NUTS on
this model samples the posterior that :meth:`sample` approximates.
"""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch.distributions import constraints

from ..pyro_model import as_pyro_distribution

__all__ = ["glmm_pyro_model"]


def _fixed_prior(shape: tuple[int, ...], prior_scale):
    if prior_scale is None:
        return dist.ImproperUniform(constraints.real, (), shape)
    return dist.Normal(torch.zeros(shape, dtype=torch.float64), float(prior_scale)).to_event(len(shape))


def glmm_pyro_model(head, Z: np.ndarray, y, codes: list[np.ndarray], weights, context: dict, prior_scale=None):
    """Run the model of a fitted GLMM ``head`` on validated ``Z`` (n, D), targets ``y`` as the family reads them
    (None to sample them), each factor's level codes per row (spec order), row weights (or None) and the family's
    per-row context; ``prior_scale`` None for flat priors on beta and the intercept, else the sd of a
    ``N(0, prior_scale^2)`` on each. Returns the ``"y"`` site's value."""
    Zt = torch.from_numpy(Z)
    n, D = Zt.shape
    f = Zt @ pyro.sample("beta", _fixed_prior((D,), prior_scale))
    if head.fit_intercept:
        f = f + pyro.sample("intercept", _fixed_prior((), prior_scale))
    lams = dict(zip(head.order_, head._lams, strict=True))
    for k, fac in enumerate(head.factors_):
        G, q = fac.levels.size, fac.q
        z = pyro.sample(f"z_{fac.name}", dist.Normal(torch.zeros(G, q, dtype=torch.float64), 1.0).to_event(2))
        u = z @ torch.from_numpy(lams[k]).T
        pyro.deterministic(f"u_{fac.name}", u[:, 0] if q == 1 else u)
        A = torch.from_numpy(fac.design(Z))
        f = f + (A * u[torch.from_numpy(codes[k])]).sum(-1)
    lik = head.likelihood_
    obs = None if y is None else torch.as_tensor(np.asarray(y, dtype=np.float64))
    scale = 1.0 if weights is None else torch.as_tensor(np.asarray(weights, dtype=np.float64))
    with pyro.plate("data", n), poutine.scale(scale=scale):
        return pyro.sample("y", as_pyro_distribution(lik.dist(f[:, None], **context)), obs=obs)
