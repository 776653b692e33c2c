"""The heteroscedastic MLP baseline (Lakshminarayanan, Pritzel, Blundell 2017) and a deep ensemble of them."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ..inference.base import Predictive
from ..training import batched, train_module
from .predictive import GaussianMixturePredictive

__all__ = ["HeteroscedasticMLP", "train_mlp", "train_ensemble", "ensemble_predictive"]


class HeteroscedasticMLP(nn.Module):
    r"""A ReLU network with two outputs, mean and variance: ``y ~ N(mu(x), sigma^2(x))``.

    ``sigma^2 = softplus(raw) + 1e-6`` as in Lakshminarayanan et al. (2017). ``module(x, y)`` returns the mean
    Gaussian log-likelihood of the batch, the objective :func:`bayes_diglm.training.train_module` maximises.
    """

    def __init__(self, dim: int, hidden: tuple[int, ...] = (64, 64)):
        super().__init__()
        layers, width = [], dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 2))
        self.net = nn.Sequential(*layers)

    def mean_and_variance(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictive mean and variance of ``y`` per row."""
        out = self.net(x)
        return out[:, 0], nn.functional.softplus(out[:, 1]) + 1e-6

    def nll(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean Gaussian negative log-likelihood of a batch."""
        mean, var = self.mean_and_variance(x)
        return 0.5 * (torch.log(2 * math.pi * var) + (y - mean) ** 2 / var).mean()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        log_lik = -self.nll(x, y)
        return log_lik, {"log_py": log_lik.detach()}

    def predictive(self, X: np.ndarray, batch_size: int = 8192) -> Predictive:
        """The Gaussian predictive at rows ``X`` (a float64 ``Normal`` in the head contract's ``Predictive``)."""
        X = torch.as_tensor(np.asarray(X, dtype=np.float32))
        mean = batched(lambda xb: self.mean_and_variance(xb)[0], X, batch_size).double().numpy()
        var = batched(lambda xb: self.mean_and_variance(xb)[1], X, batch_size).double().numpy()
        return Predictive(torch.distributions.Normal(torch.from_numpy(mean), torch.from_numpy(np.sqrt(var))))


def train_mlp(X, y, X_val, y_val, *, hidden=(64, 64), epochs: int = 10, batch_size: int = 256,
              lr: float = 1e-3, seed: int = 0, quiet: bool | None = True) -> HeteroscedasticMLP:
    """Train a :class:`HeteroscedasticMLP` with the one training loop; keep the epoch with the best validation NLL."""
    X, y = torch.as_tensor(X), torch.as_tensor(y)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = HeteroscedasticMLP(X.shape[1], tuple(hidden))
    train_module(model, X, y, X_val=torch.as_tensor(X_val), y_val=torch.as_tensor(y_val), epochs=epochs,
                 batch_size=batch_size, lr=lr, clip_grad=10.0, seed=seed, quiet=quiet)
    return model.eval()


def train_ensemble(X, y, X_val, y_val, *, size: int = 5, seed: int = 0,
                   on_member: Callable[[int], None] | None = None, **mlp_kwargs) -> list[HeteroscedasticMLP]:
    """A deep ensemble: ``size`` heteroscedastic MLPs trained from seeds ``seed * 1000 + k``.

    ``on_member(k)`` is called after member ``k`` is trained (e.g. to move a progress bar); ``mlp_kwargs``
    go to :func:`train_mlp`.
    """
    members = []
    for k in range(int(size)):
        members.append(train_mlp(X, y, X_val, y_val, seed=seed * 1000 + k, **mlp_kwargs))
        if on_member is not None:
            on_member(k)
    return members


def ensemble_predictive(members: list[HeteroscedasticMLP], X) -> GaussianMixturePredictive:
    """The deep ensemble's predictive: the equal-weight mixture of its members' Gaussians."""
    singles = [m.predictive(X) for m in members]
    return GaussianMixturePredictive(np.stack([p.mean for p in singles]), np.stack([p.stddev for p in singles]))
