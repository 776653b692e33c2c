"""Tabular RealNVP: ActNorm, an invertible mixing layer and Pyro affine couplings, used data-to-latent."""

from __future__ import annotations

from pyro.distributions.torch_transform import TransformModule
from pyro.nn import DenseNN
from torch import nn
from torch.distributions import constraints

from .base import ActNorm, SequentialFlow
from .coupling import BoundedAffineCoupling
from .fused import ReverseKernel
from .fused import enabled as fused_enabled
from .linear import ActNormLinear, InvertibleLinear

__all__ = ["Reverse", "realnvp"]


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

    @classmethod
    def fused_kernels(cls, layers: list[Reverse], x):
        """``(kernel, tensors)`` per layer for a chain with hand-written backward passes
        (:mod:`~bayes_diglm.flows.fused`), tabular only."""
        return [(ReverseKernel(), ())] * len(layers) if x.dim() == 2 and fused_enabled() else None


def _coupling(dim: int, hidden_dims: tuple[int, ...], scale_bound: float) -> BoundedAffineCoupling:
    split = dim // 2
    net = DenseNN(split, list(hidden_dims), param_dims=[dim - split, dim - split])
    last = net.layers[-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return BoundedAffineCoupling(split, net, scale_bound=scale_bound)


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

    Each of the ``num_layers`` steps is ``ActNorm -> mixing -> coupling``: the coupling leaves the first
    ``dim // 2`` coordinates unchanged and maps the rest by ``x2 * exp(s(x1)) + t(x1)`` with ``s, t`` from a
    dense network (Pyro ``DenseNN``) whose log-scale is bounded smoothly by ``scale_bound``. ``mixing="lu"``
    puts a learned invertible linear layer between couplings (so every coordinate gets transformed);
    ``mixing="permute"`` reverses the coordinates instead. ActNorm and LU mixing together run as one affine
    map (:class:`ActNormLinear`).

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
        if actnorm and mixing == "lu":
            transforms.append(ActNormLinear(dim, event_dim=1))  # both as one affine map
        else:
            if actnorm:
                transforms.append(ActNorm(dim, event_dim=1))
            transforms.append(InvertibleLinear(dim) if mixing == "lu" else Reverse())
        transforms.append(_coupling(dim, hidden_dims, scale_bound))
    return SequentialFlow(transforms, event_shape=(dim,), base_scale=base_scale)
