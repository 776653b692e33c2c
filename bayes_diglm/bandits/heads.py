"""The per-arm GLM head of a flow bandit: one GLM of a registered family per arm on the same features."""

from __future__ import annotations

import torch
from torch import nn

from ..models.heads import GLMHead

__all__ = ["PerArmHead"]


class PerArmHead(GLMHead):
    r"""``num_arms`` GLMs of one registered family on shared features ``z``; each row observes some arms only.

    Arm ``a`` has its own linear predictor ``f_a = W_a z + b_a`` and its own nuisance parameters (a Gaussian's
    noise variance ``sigma_a^2``): with the ``"gaussian"`` family a row that pulled arm ``a`` for reward ``r``
    has :math:`\log p(r \mid z, a) = \log N(r \mid W_a z + b_a, \sigma_a^2)`. Targets are ``(batch, num_arms)``
    with NaN where an arm was not observed; :meth:`log_prob` sums the family's log-density over the observed
    entries of each row. Everything else (the family from the registry, its nuisance learned on the
    unconstrained scale, zero-initialised weights, loading heads saved with a ``log_sigma``) is
    :class:`~bayes_diglm.models.heads.GLMHead`'s, so a :class:`~bayes_diglm.models.diglm.DIGLM` with this head
    trains a bandit's flow by the DIGLM's own hybrid objective.

    Parameters
    ----------
    dim : int
        Width of the features ``z``.
    num_arms : int
        Number of arms (GLMs).
    likelihood : str or Likelihood
        A registered family with scalar nuisance parameters (default ``"gaussian"``).
    **kwargs
        :class:`GLMHead`'s keywords (``fixed=``, the family's constructor keywords).

    Examples
    --------
    >>> import math
    >>> head = PerArmHead(3, 2)
    >>> y = torch.tensor([[0.5, math.nan], [math.nan, -1.0]])  # row 0 pulled arm 0, row 1 arm 1
    >>> head.log_prob(torch.zeros(2, 3), y).shape
    torch.Size([2])
    """

    def __init__(self, dim: int, num_arms: int, likelihood="gaussian", **kwargs) -> None:
        super().__init__(dim, likelihood, **kwargs)
        if isinstance(num_arms, bool) or int(num_arms) != num_arms or int(num_arms) < 1:
            raise ValueError(f"num_arms must be a positive integer, got {num_arms!r}")
        self.num_arms = int(num_arms)
        self.linear = nn.Linear(self.dim, self.num_arms * self.linear.out_features)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        for store in (self.nuisance, self._fixed_nuisance):
            for key, raw in store.items():
                if raw.dim():
                    raise ValueError(f"PerArmHead takes families with scalar nuisance parameters; {key!r} of "
                                     f"{self.family!r} has shape {tuple(raw.shape)}")
                store[key] = nn.Parameter(raw.detach().expand(self.num_arms).clone(), requires_grad=raw.requires_grad)

    def predictor(self, z: torch.Tensor) -> torch.Tensor:
        """Every arm's linear predictor, ``(batch, num_arms, likelihood.num_outputs)``."""
        return self.linear(z).unflatten(-1, (self.num_arms, -1))

    def log_prob(self, z: torch.Tensor, y: torch.Tensor, **context) -> torch.Tensor:
        """``sum over observed arms a of log p(y_a | z, a)`` per row; ``y`` is ``(batch, num_arms)``, NaN where
        unobserved (``context``: the family's per-row keywords, one value per row)."""
        if y.shape != (z.shape[0], self.num_arms):
            raise ValueError(f"y must have shape ({z.shape[0]}, {self.num_arms}) (NaN where an arm was not "
                             f"observed), got {tuple(y.shape)}")
        rows, arms = torch.nonzero(~torch.isnan(y), as_tuple=True)
        per_arm = {key: value[arms] for key, value in self.nuisance_values().items()}
        likelihood = self._family(**self._static, **per_arm)
        context = {key: torch.as_tensor(value)[rows] for key, value in context.items()}
        log_p = likelihood.log_prob(self.predictor(z)[rows, arms], y[rows, arms], **context)
        return z.new_zeros(z.shape[0]).index_add(0, rows, log_p.to(z.dtype))

    def config(self) -> dict:
        """:class:`GLMHead`'s config plus ``num_arms``."""
        return {**super().config(), "num_arms": self.num_arms}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_arms={self.num_arms}"
