"""Tabular neural spline flow: ActNorm + LU mixing and Pyro rational-quadratic spline couplings, data-to-latent."""

from __future__ import annotations

from pyro.distributions.torch_transform import TransformModule
from pyro.distributions.transforms import SplineCoupling
from pyro.nn import DenseNN
from torch import nn

from .base import SequentialFlow
from .linear import ActNormLinear

__all__ = ["spline"]


class _SplineCoupling(SplineCoupling):
    """Pyro's :class:`SplineCoupling` shown with ``nn.Module``'s repr (torch's ``Transform.__repr__`` hides it)."""

    __repr__ = nn.Module.__repr__

    def extra_repr(self) -> str:
        spline = self.upper_spline
        return (f"split_dim={self.split_dim}, count_bins={spline.count_bins}, bound={spline.bound}, "
                f"order={spline.order!r}, identity={self.identity}")


def _spline_coupling(dim: int, hidden_dims: tuple[int, ...], count_bins: int, bound: float,
                     order: str) -> SplineCoupling:
    split = dim // 2
    rest = dim - split
    param_dims = [rest * count_bins, rest * count_bins, rest * (count_bins - 1)]
    if order == "linear":
        param_dims.append(rest * count_bins)
    net = DenseNN(split, list(hidden_dims), param_dims=param_dims)
    # Zero last layer: equal bin widths and heights and softplus(0) derivatives, a near-identity start.
    nn.init.zeros_(net.layers[-1].weight)
    nn.init.zeros_(net.layers[-1].bias)
    return _SplineCoupling(dim, split, net, count_bins=count_bins, bound=bound, order=order)


def spline(
    dim: int,
    *,
    num_layers: int = 4,
    hidden_dims: tuple[int, ...] = (64, 64),
    count_bins: int = 8,
    bound: float = 5.0,
    order: str = "quadratic",
    base_scale: float = 1.0,
) -> SequentialFlow:
    """Build a neural spline flow (Durkan et al., 2019) for ``dim``-dimensional tabular data.

    Each of the ``num_layers`` steps is ``ActNorm + LU mixing`` (one affine map, :class:`ActNormLinear`)
    followed by Pyro's :class:`~pyro.distributions.transforms.SplineCoupling`: the first ``dim // 2``
    coordinates go through an elementwise learned spline and condition a monotone rational spline on each
    remaining coordinate, with
    ``count_bins`` bins on ``[-bound, bound]`` and the identity outside it (linear tails). The spline's widths,
    heights and knot derivatives come from a dense network (Pyro ``DenseNN``) whose last layer starts at zero.
    ``order="quadratic"`` is the rational-quadratic spline of neural spline flows (zuko's NSF uses it too);
    ``"linear"`` is Pyro's rational-linear one. ActNorm standardises each layer's input, so most mass lies
    inside the spline's interval.

    Args:
        dim: number of input features (at least 2).
        num_layers: number of coupling steps.
        hidden_dims: hidden widths of each coupling network.
        count_bins: spline bins per coordinate (at least 2).
        bound: half-width of the interval the splines act on.
        order: ``"quadratic"`` or ``"linear"``.
        base_scale: standard deviation of the Gaussian base density.

    Example:
        >>> import torch
        >>> flow = spline(4, num_layers=2, hidden_dims=(16,))
        >>> x = torch.randn(10, 4)
        >>> torch.allclose(flow.inverse(flow(x)[0]), x, atol=1e-4)
        True
    """
    if int(dim) != dim or int(dim) < 2:
        raise ValueError(f"dim must be an integer of at least 2 for coupling layers, got {dim!r}")
    if int(num_layers) != num_layers or int(num_layers) < 1:
        raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}")
    if int(count_bins) != count_bins or int(count_bins) < 2:
        raise ValueError(f"count_bins must be an integer of at least 2, got {count_bins!r}")
    if not bound > 0:
        raise ValueError(f"bound must be positive, got {bound!r}")
    if order not in ("quadratic", "linear"):
        raise ValueError(f"order must be 'quadratic' or 'linear', got {order!r}")
    hidden_dims = tuple(int(h) for h in hidden_dims)
    if not hidden_dims or min(hidden_dims) < 1:
        raise ValueError(f"hidden_dims must be a non-empty tuple of positive widths, got {hidden_dims!r}")
    transforms: list[TransformModule] = []
    for _ in range(int(num_layers)):
        transforms.append(ActNormLinear(int(dim), event_dim=1))
        transforms.append(_spline_coupling(int(dim), hidden_dims, int(count_bins), float(bound), order))
    return SequentialFlow(transforms, event_shape=(int(dim),), base_scale=base_scale)
