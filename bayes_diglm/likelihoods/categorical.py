r"""The categorical family (softmax link) for K classes."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.distributions import Categorical as _TorchCategorical

from .base import Likelihood, _to_tensor, multiclass_probit, register

__all__ = ["Categorical"]


@register
class Categorical(Likelihood):
    r""":math:`y \sim \mathrm{Categorical}(\mathrm{softmax}(f))` with ``num_classes`` K outputs, ``y`` in 0..K-1.

    Gradient :math:`e_y - p`, curvature :math:`\mathrm{diag}(p) - p p^T`; the predictive under a Gaussian
    over ``f`` is :func:`multiclass_probit`.
    """

    name = "categorical"
    task = "classification"
    discrete = True
    link = "softmax"

    def __init__(self, num_classes: int):
        if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        self.num_outputs = int(num_classes)

    @property
    def num_classes(self) -> int:
        return self.num_outputs

    def config(self):
        return {"num_classes": self.num_outputs}

    def _check_target(self, y, **context):
        if not np.all((y == np.round(y)) & (y >= 0) & (y < self.num_outputs)):
            raise ValueError(f"y must hold class indices 0..{self.num_outputs - 1} for a Categorical likelihood")
        return y

    def _probs(self, f):
        return torch.softmax(f, dim=-1)

    def _mean(self, f):
        raise TypeError("a Categorical likelihood has no mean of y (its classes are labels); use probs")

    def _target(self, y, f):
        return _to_tensor(y).long()

    def _dist(self, f):
        return _TorchCategorical(logits=f)

    def _log_prob(self, f, y):
        log_p = torch.log_softmax(f, dim=-1)
        index = y.expand(f.shape[:-1])[..., None]
        return torch.gather(log_p, -1, index)[..., 0]

    def _grad(self, f, y):
        onehot = F.one_hot(y.expand(f.shape[:-1]), self.num_outputs).to(f.dtype)
        return onehot - torch.softmax(f, dim=-1)

    def _curvature(self, f, y):
        p = torch.softmax(f, dim=-1)
        return torch.diag_embed(p) - p[..., :, None] * p[..., None, :]

    def _sample(self, f, generator):
        u = torch.rand(f.shape, dtype=f.dtype, generator=generator).clamp_min(torch.finfo(f.dtype).tiny)
        return torch.argmax(f - torch.log(-torch.log(u)), dim=-1)  # Gumbel-max

    def _predictive(self, mean, cov, generator):
        return _TorchCategorical(probs=multiclass_probit(mean, cov))

