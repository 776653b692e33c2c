"""The affine coupling layer shared by RealNVP and Glow: Pyro's ``AffineCoupling`` with a bounded log-scale."""

from __future__ import annotations

import torch
from pyro.distributions.transforms import AffineCoupling
from pyro.nn import DenseNN
from torch import nn

from .fused import AffineCouplingKernel, run_chain
from .fused import enabled as fused_enabled

__all__ = ["BoundedAffineCoupling"]


class BoundedAffineCoupling(AffineCoupling):
    """Affine coupling ``y2 = x2 * exp(s) + t`` with ``(t, raw) = net(x1)`` and ``s = bound * tanh(raw / bound)``.

    A Pyro :class:`~pyro.distributions.transforms.AffineCoupling` (same hypernetwork contract: the kept half
    ``x1``, flattened from ``dim`` on, maps to ``(shift, raw log-scale)``) whose log-scale is bounded smoothly:
    close to the raw value near zero, never beyond ``+-bound``, with gradients everywhere (unlike a hard
    clamp, so Pyro's clamp is switched off). :meth:`call_and_log_det` returns ``y`` and ``log|det J| = sum s``
    from one pass, without Pyro's cache; ``_call``/``log_abs_det_jacobian`` keep Pyro's behaviour.

    Args:
        split_dim: size of the kept part ``x1`` along ``dim``.
        hypernet: the conditioner ``x1 -> (shift, raw)``; its last layer should start at zero so the coupling
            starts as the identity.
        dim: the (negative) dimension that is split: -1 for tabular data, -3 for image channels.
        scale_bound: the bound on the log-scale.
        flatten: hand the conditioner ``x1`` flattened from ``dim`` on (Pyro's contract); ``False`` hands it
            unflattened, e.g. ``(batch, C, H, W)`` in whatever memory format it has, to a convolutional net.
    """

    __repr__ = nn.Module.__repr__  # torch's Transform.__repr__ would hide the conditioner

    def __init__(self, split_dim: int, hypernet: nn.Module, *, dim: int = -1, scale_bound: float = 3.0,
                 flatten: bool = True):
        if not scale_bound > 0:
            raise ValueError(f"scale_bound must be positive, got {scale_bound!r}")
        super().__init__(split_dim, hypernet, dim=dim, log_scale_min_clip=-float("inf"),
                         log_scale_max_clip=float("inf"))
        self.scale_bound = float(scale_bound)
        self.flatten = bool(flatten)

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.split([self.split_dim, x.size(self.dim) - self.split_dim], dim=self.dim)

    def _shift_log_scale(self, x1: torch.Tensor, shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
        flat = x1 if self.dim == -1 or not self.flatten else x1.reshape(x1.shape[: self.dim] + (-1,))
        shift, raw = self.nn(flat)
        log_scale = self.scale_bound * torch.tanh(raw / self.scale_bound)
        return shift.reshape(shape), log_scale.reshape(shape)

    def _sum_event(self, log_scale: torch.Tensor) -> torch.Tensor:
        return log_scale.sum(-1) if self.dim == -1 else log_scale.flatten(start_dim=self.dim).sum(-1)

    @classmethod
    def fused_kernels(cls, layers: list[BoundedAffineCoupling], x: torch.Tensor) -> list | None:
        """``(kernel, tensors)`` per layer for a chain with hand-written backward passes
        (:mod:`~bayes_diglm.flows.fused`); ``None`` unless every layer is tabular with a plain ReLU ``DenseNN``
        conditioner, outside ``torch.compile``."""
        if x.dim() != 2 or not fused_enabled():
            return None
        kernels = []
        for layer in layers:
            params = _plain_relu_net_params(layer.nn, x.shape[1] - layer.split_dim) if layer.dim == -1 else None
            if params is None:
                return None
            kernels.append((AffineCouplingKernel(layer.scale_bound), params))
        return kernels

    def call_and_log_det(self, x):
        fused = self.fused_kernels([self], x)
        if fused is not None:
            return run_chain(x, fused)
        x1, x2 = self._split(x)
        shift, log_scale = self._shift_log_scale(x1, x2.shape)
        return torch.cat([x1, x2 * log_scale.exp() + shift], dim=self.dim), self._sum_event(log_scale)

    def _call(self, x):
        x1, x2 = self._split(x)
        shift, log_scale = self._shift_log_scale(x1, x2.shape)
        self._cached_log_scale = log_scale
        return torch.cat([x1, x2 * log_scale.exp() + shift], dim=self.dim)

    def _inverse(self, y):
        y1, y2 = self._split(y)
        shift, log_scale = self._shift_log_scale(y1, y2.shape)
        self._cached_log_scale = log_scale
        return torch.cat([y1, (y2 - shift) * torch.exp(-log_scale)], dim=self.dim)

    def log_abs_det_jacobian(self, x, y):
        x_old, y_old = self._cached_x_y
        if self._cached_log_scale is not None and x is x_old and y is y_old:
            log_scale = self._cached_log_scale
        else:
            x1, x2 = self._split(x)
            log_scale = self._shift_log_scale(x1, x2.shape)[1]
        return self._sum_event(log_scale)

    def extra_repr(self) -> str:
        return f"split_dim={self.split_dim}, dim={self.dim}, scale_bound={self.scale_bound}"


def _plain_relu_net_params(net: nn.Module, out_dim: int) -> tuple[torch.Tensor, ...] | None:
    """``(weight, bias)`` of each layer if ``net`` is a Pyro ``DenseNN`` of hook-free ``nn.Linear`` layers with ReLU
    between them, returning ``(shift, raw)`` of ``out_dim`` each (the conditioner
    :class:`~bayes_diglm.flows.fused.AffineCouplingKernel` computes by hand); ``None`` otherwise."""
    if (type(net) is not DenseNN or type(net.f) is not nn.ReLU or net.param_dims != [out_dim, out_dim]
            or net._forward_hooks or net._forward_pre_hooks):
        return None
    params = []
    for layer in net.layers:
        if type(layer) is not nn.Linear or layer.bias is None or layer._forward_hooks or layer._forward_pre_hooks:
            return None
        params += (layer._parameters["weight"], layer._parameters["bias"])  # plain nn.Linear: no parametrization
    return tuple(params)
