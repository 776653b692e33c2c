"""The flow interface: ``z, log_det = flow(x)`` maps data to latent; ``flow.inverse(z)`` maps back.

Direction, written down once for the whole package: a flow ``f`` maps **data to latent**, ``z = f(x)``, the
direction used for DIGLM features and for the density

.. math:: \\log p(x) = \\log p_z(f(x)) + \\log |\\det \\partial f / \\partial x|.

Every step inside a :class:`SequentialFlow` is used in this data-to-latent direction: its ``_call`` is
``x -> z`` and its ``log_abs_det_jacobian(x, z)`` is the term above. This is the *opposite* of how Pyro's
``TransformedDistribution`` reads its transforms (base to data); wrap a flow as ``TransformedDistribution(base,
[t.inv for t in reversed(transforms)])`` if you need one. Sampling uses ``f^{-1}``. Transforms a user brings
(Pyro's, zuko's) are read the way their own library reads them and adapted to this direction: the rule is
written in :mod:`bayes_diglm.flows.user`.
"""

from __future__ import annotations

import math

import torch
from pyro.distributions.torch_transform import TransformModule
from torch import nn
from torch.distributions import constraints
from torch.distributions.transforms import ComposeTransform, _InverseTransform

from .fused import GaussianBaseKernel, run_chain

__all__ = ["Flow", "SequentialFlow", "ActNorm", "InverseAccuracyWarning", "call_and_log_det",
           "clear_transform_cache"]


class InverseAccuracyWarning(RuntimeWarning):
    """A flow's inverse (or round trip) lost accuracy: the inputs lie far from where the flow was trained."""


def clear_transform_cache(transform) -> None:
    """Drop the cached ``(x, y)`` pairs (and log-dets, log-scales: every ``_cache*`` attribute) of a Pyro transform
    and of every transform inside it (DESIGN.md: stale caches break ``backward``).

    Inside means: the parts of a ``ComposeTransform``, the transform that ``T.inv`` wraps, submodules, and the
    items of a list. Call it on transforms trained the Pyro way before handing them over: their caches hold the
    last batch's graph, which ``copy.deepcopy`` (``sklearn.clone``) refuses.
    """
    stack, seen = [transform], set()
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        for key in [k for k in getattr(t, "__dict__", ()) if k.startswith("_cache") and k != "_cache_size"]:
            setattr(t, key, (None, None) if key == "_cached_x_y" else None)  # Pyro's _cached_log_scale, ...
        if isinstance(t, list | tuple):
            stack.extend(t)
        if isinstance(t, ComposeTransform):
            stack.extend(t.parts)
        if isinstance(t, _InverseTransform):
            stack.append(t._inv)
        if isinstance(t, nn.Module):
            stack.extend(t.children())


def _sum_to_batch(log_det: torch.Tensor, batch_shape: torch.Size) -> torch.Tensor:
    """Reduce a log-det term to one value per batch element (transforms differ in what they return)."""
    if log_det.dim() == 0:
        return log_det.expand(batch_shape)
    return log_det.reshape(*batch_shape, -1).sum(-1) if log_det.shape != batch_shape else log_det


def call_and_log_det(transform, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y, log|det dy/dx|)`` of one transform used data-to-latent, the log-det one value per batch element.

    Our own layers compute both in one pass (their ``call_and_log_det`` method, which skips Pyro's cache and a
    second evaluation of their parameters); any other Pyro transform goes through ``__call__`` and
    ``log_abs_det_jacobian``, and its cache is cleared afterwards (DESIGN.md).
    """
    fused = getattr(transform, "call_and_log_det", None)
    if fused is not None:
        return fused(x)
    y = transform(x)
    log_det = _sum_to_batch(transform.log_abs_det_jacobian(x, y), x.shape[:1])
    clear_transform_cache(transform)
    return y, log_det


class Flow(nn.Module):
    """Base class: an invertible map ``z = f(x)`` with a factorised Gaussian base density on ``z``.

    Subclasses implement :meth:`forward` (``x -> (z, log_det)``, ``z`` flattened to ``(batch, dim)``) and
    :meth:`inverse` (``z -> x``). The base density is ``N(0, base_scale^2 I)``; a ``base_scale`` other than 1
    is the paper's reading of the base variance as a Jacobian regulariser.

    Args:
        event_shape: shape of one data point, e.g. ``(8,)`` or ``(1, 28, 28)``.
        base_scale: standard deviation of the Gaussian base density.
    """

    def __init__(self, event_shape: tuple[int, ...], base_scale: float = 1.0):
        super().__init__()
        if not base_scale > 0:
            raise ValueError(f"base_scale must be positive, got {base_scale!r}")
        self.event_shape = tuple(int(s) for s in event_shape)
        self.dim = int(math.prod(self.event_shape))
        self.register_buffer("base_log_scale", torch.tensor(math.log(base_scale)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def inverse(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def base_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """Log density of the factorised Gaussian base at flattened ``z`` (summed over dimensions)."""
        log_scale = self.base_log_scale.to(z.dtype)
        quad = z.square().sum(-1) * torch.exp(-2 * log_scale)
        return -0.5 * quad - self.dim * (log_scale + 0.5 * math.log(2 * math.pi))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact ``log p(x)`` in nats, one value per batch element."""
        z, log_det = self(x)
        return self.base_log_prob(z) + log_det

    def features(self, x: torch.Tensor, *, check: bool = False, rtol: float = 1e-3) -> torch.Tensor:
        """The latent ``z = f(x)`` flattened to ``(batch, dim)``: the DIGLM features.

        ``f(x)`` itself is computed as exactly as float arithmetic allows anywhere, but far from the training
        data a deep coupling flow stops being numerically invertible (``f^{-1}(f(x))`` can be off by orders of
        magnitude of ``|x|`` while ``log p(x)`` stays finite). With ``check=True`` the round trip is computed too
        and an :class:`InverseAccuracyWarning` names the rows whose reconstruction is off by more than ``rtol``
        (relative to ``1 + |x|``), so features of such inputs are flagged instead of passing silently.
        """
        z = self(x)[0]
        if check:
            with torch.no_grad():
                _warn_if_inaccurate(self.inverse(z.detach()), x, rtol, "features: f^-1(f(x)) differs from x")
        return z

    def inverse_checked(self, z: torch.Tensor, *, rtol: float = 1e-3) -> torch.Tensor:
        """``x = f^{-1}(z)``, then ``f(x)`` again: warns (:class:`InverseAccuracyWarning`) for latents whose round
        trip is off by more than ``rtol`` relative to ``1 + |z|`` (latents far from any data's)."""
        x = self.inverse(z)
        with torch.no_grad():
            _warn_if_inaccurate(self(x)[0], z.reshape(z.shape[0], -1), rtol, "inverse: f(f^-1(z)) differs from z")
        return x

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` samples ``x = f^{-1}(z)``, ``z`` from the base density (round trip checked, see
        :meth:`inverse_checked`)."""
        if int(n) < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if int(n) * self.dim > _MAX_SAMPLE_VALUES:  # bounded before anything is allocated, as every sampler is
            raise ValueError(f"n={int(n)} would allocate {int(n) * self.dim:.3g} values (more than 2**30); draw in "
                             "batches")
        ref = self.base_log_scale
        z = torch.randn(int(n), self.dim, generator=generator, dtype=ref.dtype, device=ref.device)
        return self.inverse_checked(z * self.base_log_scale.exp())

    def _check_input(self, x: torch.Tensor) -> None:
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(
                f"x must have shape (batch, {', '.join(map(str, self.event_shape))}), got {tuple(x.shape)}"
            )


#: the most values one call may allocate (the count rule of :func:`bayes_diglm._validation.check_count`, which
#: this layer does not import)
_MAX_SAMPLE_VALUES = 2**30


def _warn_if_inaccurate(got: torch.Tensor, want: torch.Tensor, rtol: float, what: str) -> None:
    got, want = got.reshape(got.shape[0], -1), want.reshape(want.shape[0], -1)
    err = ((got - want).abs() / (1 + want.abs())).amax(dim=-1)
    bad = ~(err <= rtol)  # NaN counts as bad
    if bool(bad.any()):
        import warnings

        worst = float(err[bad].nan_to_num(float("inf")).max())
        warnings.warn(f"{what} for {int(bad.sum())} of {len(err)} rows (worst relative error {worst:.3g} > {rtol:g}): "
                      "they lie far from the data the flow was trained on, where it is not numerically invertible",
                      InverseAccuracyWarning, stacklevel=3)


class SequentialFlow(Flow):
    """A flow made of a chain of Pyro ``TransformModule`` objects, each used data-to-latent.

    Example:
        >>> import torch
        >>> from bayes_diglm.flows import realnvp
        >>> flow = realnvp(3, num_layers=2, hidden_dims=(8,))
        >>> z, log_det = flow(torch.randn(5, 3))
        >>> z.shape, log_det.shape
        (torch.Size([5, 3]), torch.Size([5]))
    """

    def __init__(self, transforms, event_shape: tuple[int, ...], base_scale: float = 1.0):
        super().__init__(event_shape, base_scale)
        self.transforms = nn.ModuleList(transforms)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_input(x)
        if torch.is_grad_enabled() and len(self.transforms) > 1:
            kernels = self._fused_kernels(x)
            if kernels is not None:  # every step has a hand-written backward: one autograd node for the chain
                return run_chain(x, kernels)
        log_det = None
        for t in self.transforms:
            x, term = call_and_log_det(t, x)
            log_det = term if log_det is None else log_det + term
        return x.reshape(x.shape[0], -1), log_det

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact ``log p(x)`` in nats, one value per batch element (the base density joins the chain's one autograd
        node when every step has a hand-written backward, unless the flow was compiled: then its compiled call)."""
        self._check_input(x)
        if torch.is_grad_enabled() and len(self.transforms) > 1 and self._compiled_call_impl is None:
            kernels = self._fused_kernels(x)
            if kernels is not None:
                return run_chain(x, [*kernels, (GaussianBaseKernel(), (self.base_log_scale,))])[1]
        return super().log_prob(x)

    def _fused_kernels(self, x: torch.Tensor) -> list | None:
        """Every step's ``(kernel, tensors)`` from its class's ``fused_kernels(layers, x)`` (called once per class
        with all its steps, see :mod:`~bayes_diglm.flows.fused`), or ``None`` if any step has none. The
        conditions are checked on the chain's input ``x``: every kernel keeps the shape ``(batch, D)``."""
        transforms = list(self.transforms)
        by_class: dict[type, list[int]] = {}
        for i, t in enumerate(transforms):
            by_class.setdefault(type(t), []).append(i)
        kernels = [None] * len(transforms)
        for cls, where in by_class.items():
            make = getattr(cls, "fused_kernels", None)
            made = make([transforms[i] for i in where], x) if make is not None else None
            if made is None:
                return None
            for i, kernel in zip(where, made, strict=True):
                kernels[i] = kernel
        return kernels

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        x = z.reshape(z.shape[0], *self.event_shape)
        for t in reversed(self.transforms):
            x = t.inv(x)  # not t._inverse: a ComposeTransform inverts through .inv only
            clear_transform_cache(t)
        return x


class ActNorm(TransformModule):
    """Activation normalisation (Kingma & Dhariwal, 2018): ``y = x * exp(log_scale) + bias`` per channel.

    The first call in training mode initialises ``log_scale`` and ``bias`` from the batch so that outputs have
    zero mean and unit variance per channel (data-dependent initialisation); a channel whose spread in that
    batch is below 1e-4 is only centred. Unlike batch normalisation its
    inverse is exact in every mode.

    Args:
        num_channels: features (tabular, ``event_dim=1``) or channels (images, ``event_dim=3``).
        event_dim: 1 for inputs ``(batch, D)``; 3 for ``(batch, C, H, W)``.
    """

    bijective = True
    __repr__ = nn.Module.__repr__  # torch's Transform.__repr__ would hide extra_repr

    def __init__(self, num_channels: int, event_dim: int = 1):
        super().__init__(cache_size=0)
        if event_dim not in (1, 3):
            raise ValueError(f"event_dim must be 1 (tabular) or 3 (images), got {event_dim!r}")
        self._event_dim = event_dim
        shape = (num_channels,) if event_dim == 1 else (num_channels, 1, 1)
        self.log_scale = nn.Parameter(torch.zeros(shape))
        self.bias = nn.Parameter(torch.zeros(shape))
        self.register_buffer("initialized", torch.tensor(False))

    @constraints.dependent_property(is_discrete=False)
    def domain(self):
        return constraints.independent(constraints.real, self._event_dim)

    @constraints.dependent_property(is_discrete=False)
    def codomain(self):
        return constraints.independent(constraints.real, self._event_dim)

    def _reduce_dims(self) -> tuple[int, ...]:
        return (0,) if self._event_dim == 1 else (0, 2, 3)

    @torch.no_grad()
    def _initialize(self, x: torch.Tensor) -> None:
        dims = self._reduce_dims()
        mean = x.mean(dim=dims).reshape(self.bias.shape)
        std = x.std(dim=dims).reshape(self.bias.shape) if x.shape[0] > 1 else torch.ones_like(mean)
        # A (near-)constant channel is only centred: dividing by its tiny spread would scale it by ~1e6 and
        # blow up every later layer.
        std = torch.where(std > 1e-4, std, torch.ones_like(std))
        log_scale = -torch.log(std)
        self.log_scale.copy_(log_scale)
        self.bias.copy_(-mean * log_scale.exp())
        self.initialized.fill_(True)

    def _maybe_initialize(self, x: torch.Tensor) -> None:
        # Under torch.compile the check would break the graph on every call: compile after the first
        # (initialising) training step, as train loops that compile do.
        if self.training and not torch.compiler.is_compiling() and not bool(self.initialized):
            self._initialize(x)

    def _call(self, x):
        self._maybe_initialize(x)
        return x * self.log_scale.exp() + self.bias

    def _inverse(self, y):
        return (y - self.bias) * torch.exp(-self.log_scale)

    def _per_point(self, x: torch.Tensor, log_det: torch.Tensor) -> torch.Tensor:
        """A per-position log-det, times the number of positions for images, expanded to the batch."""
        if self._event_dim == 3:
            log_det = log_det * (x.shape[-1] * x.shape[-2])
        return log_det.expand(x.shape[: x.dim() - self._event_dim])

    def log_abs_det_jacobian(self, x, y):
        return self._per_point(x, self.log_scale.sum())

    def call_and_log_det(self, x):
        return self._call(x), self._per_point(x, self.log_scale.sum())

    def extra_repr(self) -> str:
        return f"num_channels={self.bias.shape[0]}, event_dim={self._event_dim}"
