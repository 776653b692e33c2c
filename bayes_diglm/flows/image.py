"""Pixel-space pieces of image flows: 2x2 squeeze, 8-bit dequantisation with a logit map, and bits/dim."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pyro.distributions.torch_transform import TransformModule
from torch import nn
from torch.distributions import constraints

__all__ = ["Squeeze", "Dequantize", "bits_per_dim"]

_NUM_BINS = 256  # 8-bit pixels


def bits_per_dim(log_px: torch.Tensor, dim: int, *, num_bins: int = _NUM_BINS) -> torch.Tensor:
    """Bits per dimension of discrete pixels from the log density of their dequantised values.

    With ``v`` the dequantised image on ``[0, 1]^D`` and ``p(v)`` its density (``log_px``, nats), the
    discrete ``num_bins``-level image gets ``P(x) ~= p(v) / num_bins^D`` (a lower bound in expectation
    over uniform dequantisation noise), so

    .. math:: \\mathrm{bpd} = \\frac{-\\log p(v) + D \\log(\\mathrm{num\\_bins})}{D \\ln 2}.

    Args:
        log_px: log density of ``v`` in nats, any shape (one value per image).
        dim: number of dimensions ``D = C * H * W`` of one image.
        num_bins: number of pixel levels (256 for 8-bit images).

    Example:
        >>> import torch
        >>> bits_per_dim(torch.tensor([0.0]), 784)  # uniform density on the unit cube: 8 bits
        tensor([8.])
    """
    if int(dim) < 1 or int(dim) != dim:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    if int(num_bins) < 2 or int(num_bins) != num_bins:
        raise ValueError(f"num_bins must be an integer of at least 2, got {num_bins!r}")
    return (-log_px + dim * math.log(num_bins)) / (dim * math.log(2.0))


class Squeeze(TransformModule):
    """Space-to-depth: each 2x2 spatial block becomes 4 channels, ``(C, H, W) -> (4C, H/2, W/2)``.

    Output channel ``4c + 2i + j`` holds input channel ``c`` at offset ``(i, j)`` of each block (the order
    of :func:`torch.nn.functional.pixel_unshuffle`). A permutation of coordinates: ``log|det J| = 0``.

    Example:
        >>> import torch
        >>> sq = Squeeze()
        >>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
        >>> sq(x).shape, torch.equal(sq._inverse(sq(x)), x)
        (torch.Size([1, 4, 2, 2]), True)
    """

    bijective = True
    domain = constraints.independent(constraints.real, 3)
    codomain = constraints.independent(constraints.real, 3)

    __repr__ = nn.Module.__repr__  # torch's Transform.__repr__ would hide extra_repr

    def __init__(self):
        super().__init__(cache_size=0)

    def _call(self, x):
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            raise ValueError(f"Squeeze needs even height and width, got shape {tuple(x.shape)}")
        batch = x.shape[:-3]
        y = F.pixel_unshuffle(x.reshape(-1, *x.shape[-3:]), 2)
        return y.reshape(*batch, *y.shape[-3:])

    def _inverse(self, y):
        batch = y.shape[:-3]
        x = F.pixel_shuffle(y.reshape(-1, *y.shape[-3:]), 2)
        return x.reshape(*batch, *x.shape[-3:])

    def log_abs_det_jacobian(self, x, y):
        return x.new_zeros(x.shape[:-3])

    def forward_shape(self, shape):
        *batch, c, h, w = shape
        return torch.Size((*batch, 4 * c, h // 2, w // 2))

    def inverse_shape(self, shape):
        *batch, c, h, w = shape
        return torch.Size((*batch, c // 4, 2 * h, 2 * w))


class Dequantize(TransformModule):
    """Dequantise 8-bit pixels and map them to the real line by a logit: the first transform of an image flow.

    Inputs are floats in ``[0, 1]`` equal to ``pixel / 255``. The map is

    .. math::
        v = \\frac{255\\,x + u}{256}, \\qquad
        y = \\operatorname{logit}\\big(\\alpha + (1 - 2\\alpha)\\,v\\big),

    with ``u ~ U(0, 1)`` (one draw per pixel) in training mode and ``u = 1/2`` (the centre of the pixel's
    bin) in eval mode, so evaluation is deterministic. ``alpha`` keeps the logit away from the infinite ends
    (Real NVP used 0.05; any value in ``[1e-6, 0.05]`` is accepted).

    The log-determinant counts only ``v -> y``:
    ``log(1 - 2 alpha) - log s - log(1 - s)`` per pixel with ``s = sigmoid(y)``, so a flow starting with this
    transform gives the density of ``v`` on ``[0, 1]^D`` (see :func:`bits_per_dim`). The inverse is exact for
    the eval-mode map: ``x = (256 v - 1/2) / 255`` with ``v = (sigmoid(y) - alpha) / (1 - 2 alpha)``. A ``y``
    outside the image of ``[0, 1]`` (only sampling produces one: ``v`` would leave ``[0, 1]``) is mapped to the
    nearest end, ``v`` clamped to ``[0, 1]``, so the inverse never lies more than ``0.5/255`` outside ``[0, 1]``.

    Args:
        alpha: the logit's margin, in ``[1e-6, 0.05]``.

    Example:
        >>> import torch
        >>> dq = Dequantize(alpha=0.05).eval()
        >>> x = torch.tensor([[[[0.0, 1.0], [0.5, 0.2]]]])
        >>> torch.allclose(dq._inverse(dq(x)), x, atol=1e-6)
        True
    """

    bijective = True
    domain = constraints.independent(constraints.unit_interval, 3)
    codomain = constraints.independent(constraints.real, 3)
    __repr__ = nn.Module.__repr__

    def __init__(self, alpha: float = 0.05):
        super().__init__(cache_size=0)
        alpha = float(alpha)
        if not 1e-6 <= alpha <= 0.05:
            raise ValueError(f"alpha must lie in [1e-6, 0.05], got {alpha!r}")
        self.alpha = alpha

    def dequantize(self, x: torch.Tensor) -> torch.Tensor:
        """``v = (255 x + u) / 256``: uniform noise ``u`` in training mode, ``u = 1/2`` in eval mode."""
        u = torch.rand_like(x) if self.training else torch.full_like(x, 0.5)
        return ((_NUM_BINS - 1) * x + u) / _NUM_BINS

    def _call(self, x):
        s = self.alpha + (1 - 2 * self.alpha) * self.dequantize(x)
        return torch.log(s) - torch.log1p(-s)

    def _inverse(self, y):
        v = ((torch.sigmoid(y) - self.alpha) / (1 - 2 * self.alpha)).clamp(0.0, 1.0)
        return (_NUM_BINS * v - 0.5) / (_NUM_BINS - 1)

    def log_abs_det_jacobian(self, x, y):
        # ds/dv = 1 - 2 alpha, dy/ds = 1 / (s (1 - s)), and log s = logsigmoid(y), log(1 - s) = logsigmoid(-y)
        per_pixel = math.log1p(-2 * self.alpha) - F.logsigmoid(y) - F.logsigmoid(-y)
        return per_pixel.flatten(start_dim=-3).sum(-1)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"
