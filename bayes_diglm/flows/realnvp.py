"""Tabular RealNVP: ActNorm, an invertible mixing layer and Pyro affine couplings, used data-to-latent."""

from __future__ import annotations

import torch
from pyro.distributions.torch_transform import TransformModule
from pyro.distributions.transforms import AffineCoupling, GeneralizedChannelPermute
from pyro.nn import DenseNN
from torch import nn
from torch.distributions import constraints

from .base import ActNorm, SequentialFlow

__all__ = ["StableConditioner", "InvertibleLinear", "Reverse", "realnvp"]


class StableConditioner(nn.Module):
    """Wraps a conditioner ``x1 -> (shift, log_scale)`` and bounds the log-scale smoothly.

    ``log_scale = bound * tanh(raw / bound)``: close to the raw value near zero, never beyond ``+-bound``,
    with gradients everywhere (unlike a hard clamp). The wrapped network's last layer starts at zero, so
    every coupling starts as the identity map.
    """

    def __init__(self, net: nn.Module, bound: float = 3.0):
        super().__init__()
        self.net = net
        self.bound = float(bound)

    def forward(self, x1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shift, raw = self.net(x1)
        return shift, self.bound * torch.tanh(raw / self.bound)


class InvertibleLinear(TransformModule):
    """An invertible linear map ``y = W x`` on tabular data with ``W = P L U`` (LU-parametrised).

    Reuses Pyro's :class:`GeneralizedChannelPermute` (the Glow 1x1 convolution) on ``x`` viewed as
    ``(batch, D, 1, 1)``, so the log-determinant is ``sum log|diag U|`` and the inverse two triangular solves.
    """

    bijective = True
    domain = constraints.independent(constraints.real, 1)
    codomain = constraints.independent(constraints.real, 1)

    __repr__ = nn.Module.__repr__  # torch's Transform.__repr__ would hide the submodule

    def __init__(self, dim: int):
        super().__init__(cache_size=0)
        self.lu = GeneralizedChannelPermute(channels=dim)

    def _call(self, x):
        return self.lu._call(x[..., None, None])[..., 0, 0]

    def _inverse(self, y):
        return self.lu._inverse(y[..., None, None])[..., 0, 0]

    def log_abs_det_jacobian(self, x, y):
        return self.lu.log_abs_det_jacobian(x[..., None, None], y[..., None, None])


class Reverse(TransformModule):
    """Reverse the order of the features (a fixed permutation with log-det 0), so couplings alternate halves.

    A ``TransformModule`` (Pyro's own ``Permute`` is a plain ``Transform`` and cannot sit in a module list).
    """

    bijective = True
    volume_preserving = True
    domain = constraints.independent(constraints.real, 1)
    codomain = constraints.independent(constraints.real, 1)
    __repr__ = nn.Module.__repr__

    def __init__(self):
        super().__init__(cache_size=0)

    def _call(self, x):
        return x.flip(-1)

    def _inverse(self, y):
        return y.flip(-1)

    def log_abs_det_jacobian(self, x, y):
        return x.new_zeros(x.shape[:-1])


def _coupling(dim: int, hidden_dims: tuple[int, ...], scale_bound: float) -> AffineCoupling:
    split = dim // 2
    net = DenseNN(split, list(hidden_dims), param_dims=[dim - split, dim - split])
    last = net.layers[-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    # Pyro's own clamp stays as a last guard; the smooth bound above acts first.
    return AffineCoupling(split, StableConditioner(net, scale_bound), log_scale_min_clip=-scale_bound - 1,
                          log_scale_max_clip=scale_bound + 1)


def realnvp(
    dim: int,
    *,
    num_layers: int = 4,
    hidden_dims: tuple[int, ...] = (64, 64),
    mixing: str = "lu",
    actnorm: bool = True,
    scale_bound: float = 3.0,
    base_scale: float = 1.0,
) -> SequentialFlow:
    """Build a RealNVP flow for ``dim``-dimensional tabular data.

    Each of the ``num_layers`` steps is ``ActNorm -> mixing -> AffineCoupling``: the coupling leaves the first
    ``dim // 2`` coordinates unchanged and maps the rest by ``x2 * exp(s(x1)) + t(x1)`` with ``s, t`` from a
    dense network (Pyro ``DenseNN``) whose log-scale is bounded smoothly by ``scale_bound``. ``mixing="lu"``
    puts a learned invertible linear layer between couplings (so every coordinate gets transformed);
    ``mixing="permute"`` reverses the coordinates instead.

    Args:
        dim: number of input features (at least 2).
        num_layers: number of coupling steps.
        hidden_dims: hidden widths of each coupling network.
        mixing: ``"lu"`` or ``"permute"``.
        actnorm: put an ActNorm (data-dependent initialisation) before each step.
        scale_bound: bound on each coupling's log-scale.
        base_scale: standard deviation of the Gaussian base density.

    Example:
        >>> import torch
        >>> flow = realnvp(4, num_layers=2, hidden_dims=(16,))
        >>> x = torch.randn(10, 4)
        >>> torch.allclose(flow.inverse(flow(x)[0]), x, atol=1e-5)
        True
    """
    if int(dim) < 2:
        raise ValueError(f"dim must be at least 2 for coupling layers, got {dim!r}")
    if int(num_layers) < 1:
        raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}")
    if not scale_bound > 0:
        raise ValueError(f"scale_bound must be positive, got {scale_bound!r}")
    if mixing not in ("lu", "permute"):
        raise ValueError(f"mixing must be 'lu' or 'permute', got {mixing!r}")
    hidden_dims = tuple(int(h) for h in hidden_dims)
    if not hidden_dims or min(hidden_dims) < 1:
        raise ValueError(f"hidden_dims must be a non-empty tuple of positive widths, got {hidden_dims!r}")
    transforms: list[TransformModule] = []
    for _ in range(int(num_layers)):
        if actnorm:
            transforms.append(ActNorm(dim, event_dim=1))
        if mixing == "lu":
            transforms.append(InvertibleLinear(dim))
        else:
            transforms.append(Reverse())
        transforms.append(_coupling(dim, hidden_dims, scale_bound))
    return SequentialFlow(transforms, event_shape=(dim,), base_scale=base_scale)
