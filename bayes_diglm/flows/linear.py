"""Invertible linear maps ``W = P L U`` (LU-parametrised), alone or fused with ActNorm into one affine map."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pyro.distributions.transforms import GeneralizedChannelPermute
from torch import nn
from torch.distributions import constraints

from .base import ActNorm
from .fused import AffineKernel, run_chain
from .fused import enabled as fused_enabled

__all__ = ["InvertibleLinear", "ActNormLinear"]


def _lu_weight(permutation: torch.Tensor, LU: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W = P L U, log|det W|)`` from Pyro's dense LU storage (unit lower ``L`` below, ``U`` on and above)."""
    eye = torch.eye(LU.shape[0], dtype=LU.dtype, device=LU.device)
    weight = permutation @ ((LU.tril(-1) + eye) @ LU.triu())
    return weight, LU.diagonal().abs().log().sum()


def _lu_solve(permutation: torch.Tensor, LU: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``W^{-1} y`` for ``y`` of shape ``(..., D)`` by two triangular solves (no inverse)."""
    flat = y.reshape(-1, y.shape[-1]) @ permutation  # rows of P^T y
    lower = torch.linalg.solve_triangular(LU, flat.T, upper=False, unitriangular=True)
    return torch.linalg.solve_triangular(LU, lower, upper=True).T.reshape(y.shape)


class InvertibleLinear(GeneralizedChannelPermute):
    """An invertible linear map ``y = W x`` on tabular data, ``W = P L U`` (LU-parametrised).

    Pyro's :class:`GeneralizedChannelPermute` (the Glow 1x1 convolution) supplies the parameters: a fixed
    permutation ``P`` and the trainable dense LU storage, initialised from a random orthogonal matrix. Here
    it acts on ``(batch, D)`` by one matrix product; the log-determinant is ``sum log|diag U|`` and the
    inverse two triangular solves.
    """

    domain = constraints.independent(constraints.real, 1)
    codomain = constraints.independent(constraints.real, 1)
    __repr__ = nn.Module.__repr__  # torch's Transform.__repr__ would hide extra_repr

    def __init__(self, dim: int):
        super().__init__(channels=dim)
        self._cache_size = 0

    def call_and_log_det(self, x):
        weight, log_det = _lu_weight(self.permutation, self.LU)
        return x @ weight.T, log_det.expand(x.shape[:-1])

    def _call(self, x):
        return self.call_and_log_det(x)[0]

    def _inverse(self, y):
        return _lu_solve(self.permutation, self.LU, y)

    def log_abs_det_jacobian(self, x, y):
        return self.LU.diagonal().abs().log().sum().expand(x.shape[:-1])

    def extra_repr(self) -> str:
        return f"dim={self.LU.shape[0]}"


class ActNormLinear(ActNorm):
    """ActNorm followed by an LU-parametrised invertible linear map, applied as one affine map.

    ``y = W (x * exp(s) + b) = A x + c`` with ``A = W diag(exp(s))``, ``c = W b`` and ``W = P L U``, per
    feature (``event_dim=1``, one ``addmm``) or per pixel across channels (``event_dim=3``, the Glow 1x1
    convolution, one ``conv2d`` with bias). ``log|det J| = (sum s + sum log|diag U|)`` times ``H W`` for
    images. ``A``, ``c`` and the log-det are formed once per call from the parameters; without gradients
    (evaluation) they are kept until a parameter changes, so a loop over batches forms them once.

    ActNorm's data-dependent initialisation is kept (the first training-mode call standardises ``x`` per
    channel), and it remains an :class:`ActNorm` (``initialized``), so code that initialises ActNorm layers
    finds it. The inverse is exact: two triangular solves, then ActNorm's inverse.

    Args:
        num_channels: features (``event_dim=1``) or channels (``event_dim=3``).
        event_dim: 1 for inputs ``(batch, D)``; 3 for ``(batch, C, H, W)``.

    Example:
        >>> import torch
        >>> layer = ActNormLinear(3)
        >>> x = torch.randn(8, 3)
        >>> y, log_det = layer.call_and_log_det(x)
        >>> torch.allclose(layer._inverse(y), x, atol=1e-5), log_det.shape
        (True, torch.Size([8]))
    """

    def __init__(self, num_channels: int, event_dim: int = 1):
        super().__init__(num_channels, event_dim)
        lu = GeneralizedChannelPermute(channels=num_channels)  # Pyro's random orthogonal LU initialisation
        self.register_buffer("permutation", lu.permutation.detach().clone())
        self.LU = nn.Parameter(lu.LU.detach().clone())
        self._frozen = None

    def _affine(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(A, c, per-position log-det)``; reused across no-gradient calls until a parameter changes."""
        if torch.is_grad_enabled() or torch.compiler.is_compiling():
            return self._form_affine()
        key = (self.LU._version, self.log_scale._version, self.bias._version, self.permutation._version,
               self.LU.dtype, self.LU.device)
        if self._frozen is None or self._frozen[0] != key:
            self._frozen = (key, self._form_affine())
        return self._frozen[1]

    def _form_affine(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        weight, log_det_w = _lu_weight(self.permutation, self.LU)
        scale = self.log_scale.reshape(-1)
        return weight * scale.exp(), weight @ self.bias.reshape(-1), scale.sum() + log_det_w

    @classmethod
    def fused_kernels(cls, layers: list[ActNormLinear], x: torch.Tensor) -> list | None:
        """``(kernel, tensors)`` per layer for a chain with hand-written backward passes
        (:mod:`~bayes_diglm.flows.fused`, which forms the affine maps of all ``layers`` at once); ``None`` unless
        every layer is tabular and initialised, with gradients, outside ``torch.compile``."""
        if x.dim() != 2 or not torch.is_grad_enabled() or not fused_enabled():
            return None
        if any(layer._event_dim != 1 or (layer.training and not bool(layer.initialized)) for layer in layers):
            return None
        return [(AffineKernel(), (layer.log_scale, layer.bias, layer.LU, layer.permutation)) for layer in layers]

    def call_and_log_det(self, x):
        self._maybe_initialize(x)
        fused = self.fused_kernels([self], x)
        if fused is not None:
            return run_chain(x, fused)
        matrix, offset, log_det = self._affine()
        if self._event_dim == 1:
            y = torch.addmm(offset, x, matrix.T) if x.dim() == 2 else x @ matrix.T + offset
        else:
            flat = x.reshape(-1, *x.shape[-3:])
            y = F.conv2d(flat, matrix[..., None, None], offset).reshape(x.shape)
        return y, self._per_point(x, log_det)

    def _call(self, x):
        return self.call_and_log_det(x)[0]

    def _inverse(self, y):
        if self._event_dim == 1:
            u = _lu_solve(self.permutation, self.LU, y)
        else:
            u = _lu_solve(self.permutation, self.LU, y.movedim(-3, -1)).movedim(-1, -3)
        return super()._inverse(u)

    def log_abs_det_jacobian(self, x, y):
        return self._per_point(x, self.log_scale.sum() + self.LU.diagonal().abs().log().sum())

    def train(self, mode: bool = True):
        self._frozen = None
        return super().train(mode)

    def _apply(self, fn, *args, **kwargs):
        self._frozen = None  # .double(), .to(device): the frozen affine map belongs to the old tensors
        return super()._apply(fn, *args, **kwargs)
