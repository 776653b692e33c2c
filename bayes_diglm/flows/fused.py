"""Hand-written backward passes for tabular flow layers, a chain of them run as one autograd node.

A RealNVP training step on tabular data is small (8 features, batch 512): much of its time is per-operation
overhead, not arithmetic. Recorded by autograd, one coupling layer is about 30 graph nodes and one ActNorm + LU
layer about 20, each saving its inputs and run by the engine on the way back. Here each layer is a *kernel*, a
forward that also returns what its backward needs and a backward written out by hand (the same maths: the
gradients agree with autograd's to rounding, ``tests/test_flows_contract.py``), with fewer and in-place
operations; :func:`run_chain` runs a whole chain of kernels as one :class:`torch.autograd.Function`. Second
derivatives through it (``create_graph=True``) raise a ``RuntimeError`` that names :func:`autograd_only`; the
layers use plain autograd under ``torch.compile``, which fuses the graph itself.

A kernel has ``forward(x, *tensors) -> (y, log_det, saved)`` (``log_det`` one value per row, a scalar for every
row alike, or ``None`` for 0) and ``backward(saved, grad_y, grad_log_det, need_grad_x) -> (grad_x, grads)`` with
one gradient (or ``None``) per tensor; ``saved`` is a tuple of tensors. A kernel class may also have
``prepare(tensor_tuples) -> (derived_tuples, saved)`` and ``prepare_backward(saved, derived_grads) ->
grads``: the chain calls them once for all its kernels of that class (batched over layers), and the kernels'
``forward`` then takes the derived tensors (for ActNorm + LU mixing: the affine maps formed from the
parameters).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["AffineCouplingKernel", "AffineKernel", "GaussianBaseKernel", "ReverseKernel", "autograd_only", "enabled",
           "run_chain"]

_ENABLED = [True]


def enabled() -> bool:
    """Whether layers may use their hand-written kernels (outside ``torch.compile`` and :func:`autograd_only`)."""
    return _ENABLED[0] and not torch.compiler.is_compiling()


@contextmanager
def autograd_only() -> Iterator[None]:
    """Inside this block every layer computes through plain autograd (the reference the kernels are tested
    against; also what ``torch.compile`` traces)."""
    previous, _ENABLED[0] = _ENABLED[0], False
    try:
        yield
    finally:
        _ENABLED[0] = previous


class _Chain(torch.autograd.Function):
    """``(y, log_det)`` of a chain of kernels: one graph node whose backward runs the kernels' in reverse."""

    @staticmethod
    def forward(ctx, x, kernels, *tensors):
        inputs = _split(tensors, [n for _, n in kernels])
        saved, counts, groups = [], [], _prepared(kernels)
        for cls, where in groups:
            derived, kept = cls.prepare([inputs[i] for i in where])
            for i, d in zip(where, derived, strict=True):
                inputs[i] = d
            saved.extend(kept)
            counts.append(len(kept))
        log_det = None
        for (kernel, _), args in zip(kernels, inputs, strict=True):
            x, term, kept = kernel.forward(x, *args)
            if term is not None:
                log_det = term if log_det is None else log_det + term
            saved.extend(kept)
            counts.append(len(kept))
        ctx.kernels, ctx.counts, ctx.groups = kernels, counts, groups
        ctx.save_for_backward(*saved)
        if log_det is None:
            return x, x.new_zeros(x.shape[:1])
        return x, log_det.expand(x.shape[:1]).contiguous() if log_det.dim() == 0 else log_det

    @staticmethod
    def backward(ctx, grad_y, grad_log_det):
        if torch.is_grad_enabled():  # create_graph=True: the kernels' backward is not itself differentiable
            raise RuntimeError("second derivatives through the flow's hand-written backward passes are not "
                               "supported: compute them inside bayes_diglm.flows.fused.autograd_only()")
        saved = _split(ctx.saved_tensors, ctx.counts)
        kernels, grads = ctx.kernels, [None] * len(ctx.kernels)
        for i in range(len(kernels) - 1, -1, -1):
            grad_y, grads[i] = kernels[i][0].backward(saved[len(ctx.groups) + i], grad_y, grad_log_det,
                                                      i > 0 or ctx.needs_input_grad[0])
        for g, (cls, where) in enumerate(ctx.groups):
            for i, grad in zip(where, cls.prepare_backward(saved[g], [grads[i] for i in where]), strict=True):
                grads[i] = grad
        return (grad_y, None, *(g for layer in grads for g in layer))


def _split(flat, counts: list[int]) -> list[tuple]:
    out, start = [], 0
    for n in counts:
        out.append(tuple(flat[start:start + n]))
        start += n
    return out


def _prepared(kernels) -> list[tuple[type, list[int]]]:
    """``(kernel class, positions)`` for every kernel class in the chain that prepares its tensors."""
    groups: dict[type, list[int]] = {}
    for i, (kernel, _) in enumerate(kernels):
        if hasattr(kernel, "prepare"):
            groups.setdefault(type(kernel), []).append(i)
    return list(groups.items())


def run_chain(x: torch.Tensor, kernels: list[tuple[object, tuple[torch.Tensor, ...]]]):
    """``(y, log|det J|)`` (one value per row) of the kernels applied in order, each with its tensors."""
    flat = [t for _, tensors in kernels for t in tensors]
    return _Chain.apply(x, [(kernel, len(tensors)) for kernel, tensors in kernels], *flat)


class AffineCouplingKernel:
    """``y = (x1, x2 * exp(s) + t)`` with ``(t, raw) = MLP(x1)``, ReLU between the MLP's linear layers and
    ``s = bound * tanh(raw / bound)``; tensors: ``weight, bias`` of each linear layer in order, the first taking
    ``x1 = x[:, :in_features]``, the last returning ``(t, raw)``."""

    def __init__(self, bound: float):
        self.bound = float(bound)

    def forward(self, x, *params):
        split = params[0].shape[1]
        x1, x2 = x.narrow(1, 0, split), x.narrow(1, split, x.shape[1] - split)
        hidden = [x1]
        for i in range(0, len(params) - 2, 2):
            hidden.append(torch.addmm(params[i + 1], hidden[-1], params[i].t()).relu_())
        out = torch.addmm(params[-1], hidden[-1], params[-2].t())
        d2 = x2.shape[1]
        shift, raw = out.narrow(1, 0, d2), out.narrow(1, d2, d2)
        tanh = raw.mul(1.0 / self.bound).tanh_()
        log_scale = tanh * self.bound
        scale = log_scale.exp()
        y = torch.cat([x1, torch.addcmul(shift, x2, scale)], dim=1)
        return y, log_scale.sum(1), (x2, tanh, scale, *hidden, *params[0:-1:2])

    def backward(self, saved, grad_y, grad_log_det, need_grad_x):
        x2, tanh, scale = saved[:3]
        num = (len(saved) - 3) // 2
        hidden, weights = saved[3:3 + num], saved[3 + num:]
        split = hidden[0].shape[1]
        grad_y1, grad_y2 = grad_y.narrow(1, 0, split), grad_y.narrow(1, split, grad_y.shape[1] - split)
        grad_x2 = grad_y2 * scale
        grad_log_scale = torch.addcmul(grad_log_det.unsqueeze(1), grad_x2, x2)  # d/ds of (x2 e^s, sum s)
        grad_out = torch.cat([grad_y2, grad_log_scale.mul_(1.0 - tanh * tanh)], dim=1)
        grads = [None] * (2 * num)
        for i in range(num - 1, -1, -1):
            grads[2 * i] = grad_out.t().mm(hidden[i])
            grads[2 * i + 1] = grad_out.sum(0)
            if i > 0:
                grad_out = torch.ops.aten.threshold_backward(grad_out.mm(weights[i]), hidden[i], 0)
        if not need_grad_x:
            return None, tuple(grads)
        return torch.cat([torch.addmm(grad_y1, grad_out, weights[0]), grad_x2], dim=1), tuple(grads)


class AffineKernel:
    """ActNorm then ``W = P L U``: ``y = x A^T + c`` with ``A = W diag(exp s)``, ``c = W b`` and log-det ``sum s +
    sum log|diag U|`` for every row; tensors: ``log_scale, bias, LU, permutation`` (Pyro's dense LU storage: unit
    lower ``L`` below the diagonal, ``U`` on and above; ``P`` a permutation matrix). ``prepare`` forms ``(A, c,
    log_det)`` for all such layers of a chain at once."""

    @staticmethod
    def prepare(tensor_tuples):
        log_scale, bias, LU, permutation = (torch.stack(t) for t in zip(*tensor_tuples, strict=True))
        lower = LU.tril(-1)
        lower.diagonal(dim1=-2, dim2=-1).fill_(1.0)
        upper = LU.triu()
        weight = permutation @ (lower @ upper)
        scale = log_scale.exp().unsqueeze(-2)
        matrix = weight * scale
        offset = (weight @ bias.unsqueeze(-1)).squeeze(-1)
        diag = LU.diagonal(dim1=-2, dim2=-1)
        log_det = diag.abs().log_().add_(log_scale).sum(-1)
        derived = zip(matrix.unbind(0), offset.unbind(0), log_det.unbind(0), strict=True)
        return list(derived), (bias, permutation, lower, upper, weight, scale, matrix, diag)

    @staticmethod
    def prepare_backward(saved, derived_grads):
        bias, permutation, lower, upper, weight, scale, matrix, diag = saved
        grad_matrix, grad_offset, grad_log_det = (torch.stack(g) for g in zip(*derived_grads, strict=True))
        grad_log_scale = (grad_matrix * matrix).sum(-2).add_(grad_log_det.unsqueeze(-1))
        grad_bias = (weight.mT @ grad_offset.unsqueeze(-1)).squeeze(-1)
        grad_weight = grad_matrix.mul_(scale).add_(grad_offset.unsqueeze(-1) * bias.unsqueeze(-2))
        grad_product = permutation.mT @ grad_weight  # d/d(L U)
        grad_LU = (grad_product @ upper.mT).tril_(-1).add_((lower.mT @ grad_product).triu_())
        grad_LU.diagonal(dim1=-2, dim2=-1).add_(grad_log_det.unsqueeze(-1) / diag)  # d log|u| / du = 1 / u
        return [(*g, None) for g in zip(grad_log_scale.unbind(0), grad_bias.unbind(0), grad_LU.unbind(0),
                                        strict=True)]

    def forward(self, x, matrix, offset, log_det):
        return torch.addmm(offset, x, matrix.t()), log_det, (x, matrix)

    def backward(self, saved, grad_y, grad_log_det, need_grad_x):
        x, matrix = saved
        grad_x = grad_y.mm(matrix) if need_grad_x else None
        return grad_x, (grad_y.t().mm(x), grad_y.sum(0), grad_log_det.sum())


class ReverseKernel:
    """Reverse the features (log-det 0); no tensors."""

    def forward(self, x):
        return x.flip(1), None, ()

    def backward(self, saved, grad_y, grad_log_det, need_grad_x):
        return (grad_y.flip(1) if need_grad_x else None), ()


class GaussianBaseKernel:
    """The base density ``log N(z; 0, e^{2 l} I)`` (summed over features) as the last term of a chain, so the
    chain's log-det output is ``log p(x)``; ``z`` passes unchanged. Tensors: ``l``, a scalar buffer."""

    def forward(self, z, log_scale):
        inv_var = torch.exp(-2.0 * log_scale.to(z.dtype))
        constant = z.shape[1] * (log_scale.to(z.dtype) + 0.5 * math.log(2 * math.pi))
        return z, z.square().sum(1).mul_(-0.5 * inv_var).sub_(constant), (z, inv_var)

    def backward(self, saved, grad_y, grad_log_det, need_grad_x):
        z, inv_var = saved
        return (grad_y - z * (grad_log_det * inv_var).unsqueeze(1) if need_grad_x else None), (None,)
