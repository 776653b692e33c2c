"""Tabular neural spline flows on Pyro's rational-quadratic splines (autoregressive or coupling), data-to-latent."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pyro.distributions.torch_transform import TransformModule
from pyro.distributions.transforms import SplineAutoregressive, SplineCoupling
from pyro.distributions.transforms.spline import ConditionalSpline
from pyro.nn import AutoRegressiveNN, DenseNN
from torch import nn

from .base import ActNorm, SequentialFlow
from .linear import ActNormLinear
from .realnvp import Reverse

__all__ = ["spline"]


class _SplineCoupling(SplineCoupling):
    """Pyro's :class:`SplineCoupling` shown with ``nn.Module``'s repr (torch's ``Transform.__repr__`` hides it)."""

    __repr__ = nn.Module.__repr__

    def extra_repr(self) -> str:
        spline = self.upper_spline
        return (f"split_dim={self.split_dim}, count_bins={spline.count_bins}, bound={spline.bound}, "
                f"order={spline.order!r}, identity={self.identity}")


def _softmax_over_bins(x: torch.Tensor) -> torch.Tensor:
    """``softmax`` over dim -2 of ``(..., bins, D)``, returned contiguous as ``(..., D, bins)``.

    torch's CPU softmax over a *last* dimension of a few bins is slow (512 x 8 x 8, one thread: 588 us, against
    36 us over a leading dimension of a contiguous tensor; forward and backward 1.19 ms against about 0.1 ms), and
    Pyro's spline takes eight of them per 4-step flow, so the bins go first while normalising.
    """
    return torch.softmax(x.movedim(-2, 0).contiguous(), dim=0).movedim(0, -1).contiguous()


class _ConditionalSpline(ConditionalSpline):
    """Pyro's :class:`ConditionalSpline` on an ``AutoRegressiveNN`` (outputs ``(..., params, D)``), with the bin
    widths and heights normalised by :func:`_softmax_over_bins`: the same parameters, a fraction of the time."""

    def _params(self, context):
        outputs = self.nn(context)
        w, h, d = outputs[:3]
        lam = torch.sigmoid(outputs[3].transpose(-1, -2)) if self.order == "linear" else None
        return _softmax_over_bins(w), _softmax_over_bins(h), F.softplus(d.transpose(-1, -2)), lam


class _SplineAutoregressive(SplineAutoregressive):
    """Pyro's :class:`SplineAutoregressive` shown with ``nn.Module``'s repr, its spline a
    :class:`_ConditionalSpline` (same submodules, so the same ``state_dict``)."""

    __repr__ = nn.Module.__repr__

    def __init__(self, input_dim, autoregressive_nn, count_bins=8, bound=3.0, order="linear"):
        super().__init__(input_dim, autoregressive_nn, count_bins=count_bins, bound=bound, order=order)
        self.spline = _ConditionalSpline(autoregressive_nn, input_dim, count_bins, bound, order)

    def extra_repr(self) -> str:
        spline = self.spline
        return f"count_bins={spline.count_bins}, bound={spline.bound}, order={spline.order!r}"


def _zero_last_layer(net: nn.Module) -> None:
    """Equal bin widths and heights and softplus(0) knot derivatives: a near-identity start."""
    nn.init.zeros_(net.layers[-1].weight)
    nn.init.zeros_(net.layers[-1].bias)


def _spline_autoregressive(dim: int, hidden_dims: tuple[int, ...], count_bins: int, bound: float,
                           order: str) -> SplineAutoregressive:
    param_dims = [count_bins, count_bins, count_bins - 1] + ([count_bins] if order == "linear" else [])
    net = AutoRegressiveNN(dim, list(hidden_dims), param_dims=param_dims)
    _zero_last_layer(net)
    return _SplineAutoregressive(dim, net, count_bins=count_bins, bound=bound, order=order)


def _spline_coupling(dim: int, hidden_dims: tuple[int, ...], count_bins: int, bound: float,
                     order: str) -> SplineCoupling:
    split = dim // 2
    rest = dim - split
    param_dims = [rest * count_bins, rest * count_bins, rest * (count_bins - 1)]
    if order == "linear":
        param_dims.append(rest * count_bins)
    net = DenseNN(split, list(hidden_dims), param_dims=param_dims)
    _zero_last_layer(net)
    return _SplineCoupling(dim, split, net, count_bins=count_bins, bound=bound, order=order)


def spline(
    dim: int,
    *,
    num_layers: int = 4,
    hidden_dims: tuple[int, ...] = (64, 64),
    count_bins: int = 8,
    bound: float = 5.0,
    order: str = "quadratic",
    structure: str = "autoregressive",
    base_scale: float = 1.0,
) -> SequentialFlow:
    """Build a neural spline flow (Durkan et al., 2019) for ``dim``-dimensional tabular data.

    Every coordinate goes through a monotone rational spline with ``count_bins`` bins on ``[-bound, bound]``
    and the identity outside it (linear tails), whose widths, heights and knot derivatives come from a
    network whose last layer starts at zero (a near-identity start). ``order="quadratic"`` is the
    rational-quadratic spline of neural spline flows (zuko's NSF uses it too); ``"linear"`` is Pyro's
    rational-linear one. Two structures, both on Pyro transforms:

    - ``"autoregressive"`` (default; a MAF with spline transforms, as zuko's NSF): each of the
      ``num_layers`` steps is ActNorm followed by Pyro's
      :class:`~pyro.distributions.transforms.SplineAutoregressive`, each coordinate's spline conditioned on
      the coordinates before it in the step's order through a masked network (Pyro ``AutoRegressiveNN``).
      That order is Pyro's default, a random permutation per step drawn from torch's global generator when
      the flow is built (seed it for a reproducible flow; the permutation is a buffer, so a ``state_dict``
      restores it), and a :class:`~bayes_diglm.flows.realnvp.Reverse` sits between steps on top of it: the
      orders are random, not ``< i`` reversed step by step. ``log p(x)`` takes one pass; the inverse
      (sampling) takes ``dim`` passes per step.
    - ``"coupling"``: each step is ``ActNorm + LU mixing`` (one affine map, :class:`ActNormLinear`) and Pyro's
      :class:`~pyro.distributions.transforms.SplineCoupling` (the first ``dim // 2`` coordinates through an
      elementwise learned spline, conditioning the splines of the others through a dense network). Inverse
      in one pass per step.

    On the dequantised flight attributes (``benchmarks/bench_density.py``) the autoregressive structure
    is far better: integer attributes make the density a grid of axis-aligned cells, which a spline per
    coordinate conditioned on all the coordinates before it follows, and which LU mixing rotates away from
    the axes. ActNorm (elementwise) keeps the axes and standardises each step's input, so most mass lies
    inside the splines' interval.

    Args:
        dim: number of input features (at least 2).
        num_layers: number of spline steps.
        hidden_dims: hidden widths of each step's network.
        count_bins: spline bins per coordinate (at least 2).
        bound: half-width of the interval the splines act on.
        order: ``"quadratic"`` or ``"linear"``.
        structure: ``"autoregressive"`` or ``"coupling"``.
        base_scale: standard deviation of the Gaussian base density.

    Example:
        >>> import torch
        >>> flow = spline(4, num_layers=2, hidden_dims=(16,))
        >>> x = torch.randn(10, 4)
        >>> torch.allclose(flow.inverse(flow(x)[0]), x, atol=1e-4)
        True
    """
    if int(dim) != dim or int(dim) < 2:
        raise ValueError(f"dim must be an integer of at least 2 for spline flows, got {dim!r}")
    if int(num_layers) != num_layers or int(num_layers) < 1:
        raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}")
    if int(count_bins) != count_bins or int(count_bins) < 2:
        raise ValueError(f"count_bins must be an integer of at least 2, got {count_bins!r}")
    if not bound > 0:
        raise ValueError(f"bound must be positive, got {bound!r}")
    if order not in ("quadratic", "linear"):
        raise ValueError(f"order must be 'quadratic' or 'linear', got {order!r}")
    if structure not in ("autoregressive", "coupling"):
        raise ValueError(f"structure must be 'autoregressive' or 'coupling', got {structure!r}")
    hidden_dims = tuple(int(h) for h in hidden_dims)
    if not hidden_dims or min(hidden_dims) < 1:
        raise ValueError(f"hidden_dims must be a non-empty tuple of positive widths, got {hidden_dims!r}")
    dim, count_bins, bound = int(dim), int(count_bins), float(bound)
    transforms: list[TransformModule] = []
    for i in range(int(num_layers)):
        if structure == "coupling":
            transforms.append(ActNormLinear(dim, event_dim=1))
            transforms.append(_spline_coupling(dim, hidden_dims, count_bins, bound, order))
            continue
        if i > 0:
            transforms.append(Reverse())
        transforms.append(ActNorm(dim, event_dim=1))
        transforms.append(_spline_autoregressive(dim, hidden_dims, count_bins, bound, order))
    return SequentialFlow(transforms, event_shape=(dim,), base_scale=base_scale)
