"""Multiscale Glow for images: ActNorm, invertible 1x1 convolutions and convolutional affine couplings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pyro.distributions.torch_transform import TransformModule
from pyro.distributions.transforms import GeneralizedChannelPermute
from torch import nn

from .base import Flow, call_and_log_det, clear_transform_cache
from .coupling import BoundedAffineCoupling
from .image import Dequantize, Squeeze, bits_per_dim
from .linear import ActNormLinear

__all__ = ["ConvConditioner", "InvertibleConv1x1", "Split", "GlowFlow", "glow"]


class ConvConditioner(nn.Module):
    """The coupling network of Glow: ``conv3x3 -> ReLU -> conv1x1 -> ReLU -> conv3x3`` on the kept channels.

    Pyro's :class:`~pyro.distributions.transforms.AffineCoupling` with ``dim=-3`` hands its network the kept
    half flattened to ``(batch, in_channels * H * W)`` and reshapes what comes back; this network unflattens
    it, runs the convolutions and returns ``(shift, log_scale)``, each flattened to
    ``(batch, out_channels * H * W)``. Given ``(batch, in_channels, H, W)`` instead (our
    :class:`BoundedAffineCoupling` with ``flatten=False``) it returns unflattened maps in the input's memory
    format, so a ``channels_last`` flow never copies to flat layout. The last convolution starts at zero, so
    the coupling starts as the identity map.

    Args:
        in_channels: channels passed through unchanged (the conditioning half).
        out_channels: channels transformed by the coupling.
        hidden_channels: width of the hidden convolutions.
        spatial: ``(H, W)`` of the feature maps.
    """

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int, spatial: tuple[int, int]):
        super().__init__()
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.spatial = (int(spatial[0]), int(spatial[1]))
        self.net = nn.Sequential(
            nn.Conv2d(self.in_channels, hidden_channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden_channels, hidden_channels, 1),
            nn.ReLU(),
            nn.Conv2d(hidden_channels, 2 * self.out_channels, 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x1.dim() == 4:  # unflattened (BoundedAffineCoupling(flatten=False)): keep the memory format
            return self.net(x1).chunk(2, dim=1)
        batch = x1.shape[:-1]
        h = self.net(x1.reshape(-1, self.in_channels, *self.spatial))
        shift, log_scale = h.chunk(2, dim=1)
        return shift.reshape(*batch, -1), log_scale.reshape(*batch, -1)


class InvertibleConv1x1(GeneralizedChannelPermute):
    """Pyro's Glow 1x1 convolution ``W = P L U`` with the forward pass run by :func:`F.conv2d`.

    Pyro's ``_call`` forms a ``(batch, C, C, H, W)`` broadcast product (it supports batched filters for the
    conditional variant); one ``conv2d`` computes the same map with far less memory. The inverse (two
    triangular solves), the log-determinant ``H W sum log|diag U|`` and the parameters are Pyro's.
    """

    __repr__ = nn.Module.__repr__

    def _call(self, x):
        weight = (self.permutation @ self.L @ self.U)[..., None, None]
        y = F.conv2d(x.reshape(-1, *x.shape[-3:]), weight)
        return y.reshape(x.shape)

    def extra_repr(self) -> str:
        return f"channels={self.LU.shape[0]}"


class Split(nn.Module):
    """Multiscale split: the first ``kept`` channels go on through the flow, the rest go to the base density.

    A coordinate selection, so it adds nothing to the log-determinant. ``forward(x) -> (kept, out)`` and
    ``inverse(kept, out) -> x``.
    """

    def __init__(self, kept: int):
        super().__init__()
        self.kept = int(kept)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[..., : self.kept, :, :], x[..., self.kept :, :, :]

    def inverse(self, kept: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return torch.cat([kept, out], dim=-3)

    def extra_repr(self) -> str:
        return f"kept={self.kept}"


class GlowFlow(Flow):
    """Multiscale Glow (Kingma & Dhariwal, 2018) on images ``(C, H, W)`` with pixel values in ``[0, 1]``.

    ``x -> Dequantize`` then, per level, ``Squeeze -> K x (ActNorm -> 1x1 conv -> coupling)``, and on every
    level but the last a :class:`Split` sends half of the channels to the base density. The latent ``z`` is
    the concatenation of every split-off part (first level first) and the last level's output, each
    flattened, so ``z`` has ``D = C H W`` coordinates and :meth:`log_prob` is the density of the dequantised
    image ``v`` on ``[0, 1]^D`` (see :class:`Dequantize`); :meth:`bits_per_dim` turns it into bits/dim of the
    8-bit image. Evaluate in eval mode (``flow.eval()``) for deterministic values.

    Build it with :func:`glow`.

    Args:
        dequantize: the first transform.
        levels: one ``nn.ModuleList`` of transforms per level (starting with its ``Squeeze``).
        splits: one :class:`Split` per level but the last.
        event_shape: ``(C, H, W)``.
        base_scale: standard deviation of the Gaussian base density.
        channels_last: run the levels on ``channels_last`` tensors (the convolutions' faster layout on CPU);
            a memory layout only: ``z``, ``log p(x)`` and the parameters' values are the same either way.
    """

    def __init__(self, dequantize: Dequantize, levels, splits, event_shape: tuple[int, int, int],
                 base_scale: float = 1.0, channels_last: bool = True):
        super().__init__(event_shape, base_scale)
        self.channels_last = bool(channels_last)
        if len(splits) != len(levels) - 1:
            raise ValueError(
                f"need one split per level but the last: {len(levels)} levels, {len(splits)} splits"
            )
        self.dequantize = dequantize
        self.levels = nn.ModuleList(nn.ModuleList(level) for level in levels)
        self.splits = nn.ModuleList(splits)
        self._level_shapes = self._trace_shapes()

    def _trace_shapes(self) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        """Per level: the shape leaving its transforms and the shape split off (``()`` on the last level)."""
        shape = torch.Size(self.event_shape)
        shapes = []
        for i, level in enumerate(self.levels):
            for t in level:
                shape = t.forward_shape(shape) if isinstance(t, Squeeze) else shape
            if i < len(self.splits):
                kept = self.splits[i].kept
                shapes.append((tuple(shape), (shape[0] - kept, *shape[1:])))
                shape = torch.Size((kept, *shape[1:]))
            else:
                shapes.append((tuple(shape), ()))
        return shapes

    def _check_input(self, x: torch.Tensor) -> None:
        super()._check_input(x)
        if bool((x < 0).any()) or bool((x > 1).any()):
            raise ValueError(
                f"x must hold pixel values scaled to [0, 1] (pixel / 255), got range "
                f"[{float(x.min()):.4g}, {float(x.max()):.4g}]"
            )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_input(x)
        h, log_det = call_and_log_det(self.dequantize, x)
        parts = []
        for i, level in enumerate(self.levels):
            for t in level:
                h, term = call_and_log_det(t, h)
                log_det = log_det + term
                if self.channels_last and isinstance(t, Squeeze):
                    h = h.contiguous(memory_format=torch.channels_last)
            if i < len(self.splits):
                h, out = self.splits[i](h)
                parts.append(out.reshape(out.shape[0], -1))
        parts.append(h.reshape(h.shape[0], -1))
        return torch.cat(parts, dim=1), log_det

    def inverse_checked(self, z: torch.Tensor, *, rtol: float = 1e-3) -> torch.Tensor:
        """``f^{-1}(z)`` without a round trip: the pixel-space inverse clamps to the pixel range (see
        :class:`Dequantize`), so ``f(f^{-1}(z))`` is not ``z`` for latents whose pixels would leave ``[0, 1]``,
        and a round-trip check would flag every such sample. Pixels are guaranteed within half a level of
        ``[0, 1]`` instead."""
        return self.inverse(z)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.dim:
            raise ValueError(f"z must have shape (batch, {self.dim}), got {tuple(z.shape)}")
        sizes = [int(torch.Size(out).numel()) for _, out in self._level_shapes[:-1]]
        sizes.append(self.dim - sum(sizes))
        parts = z.split(sizes, dim=1)
        h = parts[-1].reshape(z.shape[0], *self._level_shapes[-1][0])
        for i in reversed(range(len(self.levels))):
            if i < len(self.splits):
                h = self.splits[i].inverse(h, parts[i].reshape(z.shape[0], *self._level_shapes[i][1]))
            for t in reversed(self.levels[i]):
                h = t._inverse(h)
                clear_transform_cache(t)
        return self.dequantize._inverse(h)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` images in pixel space, clipped to ``[0, 1]`` (round ``255 x`` for 8-bit pixels)."""
        return super().sample(n, generator).clamp(0.0, 1.0)

    def bits_per_dim(self, x: torch.Tensor) -> torch.Tensor:
        """Bits/dim of 8-bit images ``x`` (values ``pixel / 255``): ``(-log p(v) + D log 256) / (D ln 2)``."""
        return bits_per_dim(self.log_prob(x), self.dim)


def glow(
    shape: tuple[int, int, int] = (1, 28, 28),
    *,
    levels: int = 2,
    steps: int = 4,
    hidden_channels: int = 64,
    scale_bound: float = 3.0,
    base_scale: float = 1.0,
    alpha: float = 0.05,
    channels_last: bool = True,
) -> GlowFlow:
    """Build a multiscale Glow for images of ``shape = (C, H, W)`` with pixel values ``pixel / 255``.

    Each of the ``levels`` levels squeezes (``C -> 4C``, ``H, W -> H/2, W/2``), then runs ``steps`` steps of
    ``ActNorm -> 1x1 convolution -> affine coupling`` (the first two as one affine map,
    :class:`ActNormLinear`); every level but the last splits half of its channels
    off to the base density. A coupling keeps the first half of the channels ``x1`` and maps the rest by
    ``x2 * exp(s(x1)) + t(x1)``, with ``(t, s)`` from a :class:`ConvConditioner` whose log-scale is bounded
    smoothly, ``s = scale_bound * tanh(raw / scale_bound)`` (:class:`BoundedAffineCoupling`; Glow's sigmoid scale
    is not used).

    Args:
        shape: ``(C, H, W)``; ``H`` and ``W`` must be divisible by ``2**levels``.
        levels: number of squeeze levels.
        steps: coupling steps per level.
        hidden_channels: width of each coupling network.
        scale_bound: bound on each coupling's log-scale.
        base_scale: standard deviation of the Gaussian base density.
        alpha: margin of the dequantisation logit, in ``[1e-6, 0.05]``.
        channels_last: run the levels, and keep the coupling convolutions' weights, in ``channels_last``
            memory format (faster convolutions on CPU; see :class:`GlowFlow`).

    Example:
        >>> import torch
        >>> flow = glow((1, 8, 8), levels=2, steps=1, hidden_channels=8).eval()
        >>> x = torch.randint(0, 256, (3, 1, 8, 8)) / 255.0
        >>> z, log_det = flow(x)
        >>> z.shape, flow.bits_per_dim(x).shape
        (torch.Size([3, 64]), torch.Size([3]))
        >>> torch.allclose(flow.inverse(z), x, atol=1e-5)
        True
    """
    shape = tuple(shape)
    if len(shape) != 3 or any(int(s) != s or int(s) < 1 for s in shape):
        raise ValueError(f"shape must be (C, H, W) with positive integers, got {shape!r}")
    for name, value in (("levels", levels), ("steps", steps), ("hidden_channels", hidden_channels)):
        if int(value) != value or int(value) < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    c, h, w = (int(s) for s in shape)
    if h % 2**levels or w % 2**levels:
        raise ValueError(
            f"height and width must be divisible by 2**levels = {2**levels}, got shape {shape!r}"
        )
    if not scale_bound > 0:
        raise ValueError(f"scale_bound must be positive, got {scale_bound!r}")
    level_list, splits = [], []
    for i in range(int(levels)):
        c, h, w = 4 * c, h // 2, w // 2
        level: list[TransformModule] = [Squeeze()]
        for _ in range(int(steps)):
            coupling = _coupling(c, hidden_channels, (h, w), scale_bound)
            level += [ActNormLinear(c, event_dim=3), coupling]
        level_list.append(level)
        if i < levels - 1:
            splits.append(Split(c // 2))
            c = c // 2
    flow = GlowFlow(Dequantize(alpha), level_list, splits, event_shape=shape, base_scale=base_scale,
                    channels_last=channels_last)
    if channels_last:
        for module in flow.modules():
            if isinstance(module, nn.Conv2d):
                module.to(memory_format=torch.channels_last)
    return flow


def _coupling(
    channels: int, hidden_channels: int, spatial: tuple[int, int], scale_bound: float
) -> BoundedAffineCoupling:
    split = channels // 2
    net = ConvConditioner(split, channels - split, hidden_channels, spatial)
    return BoundedAffineCoupling(split, net, dim=-3, scale_bound=scale_bound, flatten=False)
