"""Other libraries' transforms as data-to-latent ``TransformModule`` steps that a :class:`SequentialFlow` chains.

Three adapters, each turning a user's object into a step ``x -> z`` with its log-det, its inverse for sampling,
and a :meth:`probe` that runs every operation once and names the one that is missing:

- :class:`PyroStep`: a Pyro (or torch) transform ``T``, read as Pyro's ``TransformedDistribution`` reads it
  (base to data, so the step is ``T^{-1}`` and its log-det ``-log|det dT/dz|``) or, given as ``T.inv``, as is;
- :class:`PlainTransform`: a transform that is not an ``nn.Module`` (Pyro's ``Permute``, torch's
  ``AffineTransform``) as one, its tensors kept as buffers so they are saved, moved and restored;
- :class:`ZukoTransform`: a zuko lazy transform, data to latent as zuko reads it.

Which direction a user's object is taken in is decided in :mod:`bayes_diglm.flows.user`.
"""

from __future__ import annotations

import contextlib

import torch
from pyro.distributions.torch_transform import TransformModule
from torch import nn
from torch.distributions import constraints
from torch.distributions.utils import lazy_property

from .base import _sum_to_batch, clear_transform_cache

__all__ = ["PyroStep", "PlainTransform", "ZukoTransform", "transform_name"]


def transform_name(transform) -> str:
    """A short name of a user's transform for error messages (the class, or the wrapped object's class)."""
    inner = getattr(transform, "transform", None) if isinstance(transform, PlainTransform) else None
    return type(inner if inner is not None else transform).__name__


def _needs(what: str, owner, fn, *args):
    """``fn(*args)``, a ``NotImplementedError`` turned into a ``ValueError`` naming ``owner`` and ``what`` (and a
    ``KeyError``: Pyro's Planar, Radial and Sylvester raise it for an inverse they only look up in their cache)."""
    try:
        return fn(*args)
    except (NotImplementedError, KeyError) as err:
        detail = f" ({type(err).__name__}: {err})" if str(err) else ""
        raise ValueError(f"{transform_name(owner)} has no {what}{detail}: a flow step needs an inverse and a "
                         "log-det (Pyro's _inverse and log_abs_det_jacobian, zuko's inv and call_and_ladj)") from err


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    """Make ``dtype`` torch's default for the call: Pyro's autoregressive inverses allocate their start with the
    default dtype (float32), which fails against float64 parameters."""
    if dtype not in (torch.float32, torch.float64) or dtype == torch.get_default_dtype():
        yield
        return
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


class PyroStep(TransformModule):
    """A Pyro (or torch) transform ``T`` as a data-to-latent step, read in the direction its user meant.

    ``base_to_data=True`` (how ``TransformedDistribution(base, T)`` reads ``T``): the step is ``z = T^{-1}(x)``
    with ``log|det dz/dx| = -T.log_abs_det_jacobian(z, x)``, and sampling calls ``T``. So a flow of these gives
    the same ``log p(x)`` as Pyro's ``TransformedDistribution`` over the same transforms. ``base_to_data=False``
    (a transform the user handed as ``T.inv``): the step is ``T`` itself and sampling calls ``T^{-1}``. Pyro's
    caches are cleared after every call (DESIGN.md: stale caches break ``backward``).

    Args:
        transform: a Pyro ``TransformModule`` (a plain ``Transform`` goes in a :class:`PlainTransform` first).
        base_to_data: whether ``transform`` maps base to data (True) or data to latent (False).
    """

    bijective = True
    __repr__ = nn.Module.__repr__

    def __init__(self, transform: TransformModule, base_to_data: bool = True):
        super().__init__(cache_size=0)
        if not isinstance(transform, nn.Module):
            raise TypeError(f"transform must be an nn.Module transform (wrap a plain Transform in PlainTransform), "
                            f"got {type(transform).__name__}")
        self.transform = transform
        self.base_to_data = bool(base_to_data)

    @constraints.dependent_property(is_discrete=False)
    def domain(self):
        return self.transform.codomain if self.base_to_data else self.transform.domain

    @constraints.dependent_property(is_discrete=False)
    def codomain(self):
        return self.transform.domain if self.base_to_data else self.transform.codomain

    def _to_latent(self, x):
        return self.transform.inv(x) if self.base_to_data else self.transform(x)

    def _to_data(self, z):
        return self.transform(z) if self.base_to_data else self.transform.inv(z)

    def _log_det(self, x, z):
        if self.base_to_data:
            return -self.transform.log_abs_det_jacobian(z, x)
        return self.transform.log_abs_det_jacobian(x, z)

    def _run(self, fn, *args):
        """``fn(*args)`` in the inputs' dtype, the transform's caches cleared afterwards."""
        try:
            with _default_dtype(args[0].dtype):
                return fn(*args)
        finally:
            clear_transform_cache(self.transform)

    def call_and_log_det(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        def both(x):
            z = self._to_latent(x)
            return z, self._log_det(x, z)

        z, log_det = self._run(both, x)
        return z, _sum_to_batch(log_det, x.shape[:1])

    def _call(self, x):
        return self._run(self._to_latent, x)

    def _inverse(self, z):
        return self._run(self._to_data, z)

    def log_abs_det_jacobian(self, x, y):
        return self._run(self._log_det, x, y)

    def probe(self, x: torch.Tensor) -> torch.Tensor:
        """Run the step, its log-det and its inverse once on ``x``; a missing one is a ``ValueError`` naming it."""
        t = self.transform
        there, back = ("_inverse", "_call") if self.base_to_data else ("_call", "_inverse")

        def run(x):
            z = _needs(f"{'inverse' if self.base_to_data else 'forward'} ({there}), which maps data to latent", t,
                       self._to_latent, x)
            _needs("log-det (log_abs_det_jacobian)", t, self._log_det, x, z)
            clear_transform_cache(t)
            _needs(f"{'forward' if self.base_to_data else 'inverse'} ({back}), which sampling uses", t,
                   self._to_data, z)
            return z

        return self._run(run, x)


class PlainTransform(TransformModule):
    """A ``Transform`` that is not an ``nn.Module`` (Pyro's ``Permute``, torch's ``AffineTransform``) as one.

    Its tensor attributes (a permutation, a location) become buffers of this module, shared with the transform:
    they are in the ``state_dict`` (so a random permutation drawn by a factory is restored by ``load_state_dict``,
    not drawn again), and ``.to()`` / ``.double()`` move them. Values the transform derived lazily from them
    (Pyro's ``inv_permutation``) are dropped whenever the buffers change, to be derived again. Same direction
    as the transform (wrap it in :class:`PyroStep` to read it base to data).

    Args:
        transform: a ``torch.distributions.Transform`` that is not a module.
    """

    __repr__ = nn.Module.__repr__

    def __init__(self, transform: torch.distributions.Transform):
        super().__init__(cache_size=0)
        if isinstance(transform, nn.Module) or not isinstance(transform, torch.distributions.Transform):
            raise TypeError(f"transform must be a torch Transform that is not an nn.Module, got "
                            f"{type(transform).__name__}")
        self.transform = transform
        self._drop_derived()
        self._tensor_names = [k for k, v in vars(transform).items() if isinstance(v, torch.Tensor)]
        for name in self._tensor_names:
            self.register_buffer(name, getattr(transform, name))

    @property
    def bijective(self):
        return self.transform.bijective

    @constraints.dependent_property(is_discrete=False)
    def domain(self):
        return self.transform.domain

    @constraints.dependent_property(is_discrete=False)
    def codomain(self):
        return self.transform.codomain

    def _drop_derived(self) -> None:
        cls = type(self.transform)
        for key in [k for k in vars(self.transform) if isinstance(getattr(cls, k, None), lazy_property)]:
            delattr(self.transform, key)

    def _sync(self) -> None:
        for name in self._tensor_names:
            setattr(self.transform, name, getattr(self, name))
        self._drop_derived()

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        self._sync()
        return out

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._sync()

    # ``_call`` / ``_inverse`` directly: the transform's own cache (Pyro's Permute keeps one) is never filled
    def _call(self, x):
        return self.transform._call(x)

    def _inverse(self, y):
        return self.transform._inverse(y)

    def log_abs_det_jacobian(self, x, y):
        return self.transform.log_abs_det_jacobian(x, y)

    def extra_repr(self) -> str:
        return repr(self.transform)


class ZukoTransform(TransformModule):
    """A zuko lazy transform (data to latent, as zuko's ``NormalizingFlow`` reads it) as a ``TransformModule``.

    Every call builds the transform from the lazy module's current parameters (``lazy()``, no context) and
    uses zuko's one-pass ``call_and_ladj``; the inverse is zuko's ``inv``.

    Args:
        lazy: a ``zuko.lazy.LazyTransform`` (for a whole ``zuko.flows.Flow``, its ``.transform``).
    """

    bijective = True
    domain = constraints.independent(constraints.real, 1)
    codomain = constraints.independent(constraints.real, 1)
    __repr__ = nn.Module.__repr__

    def __init__(self, lazy: nn.Module):
        super().__init__(cache_size=0)
        if not isinstance(lazy, nn.Module):
            raise TypeError(f"lazy must be a zuko LazyTransform, got {type(lazy).__name__}")
        self.lazy = lazy

    def call_and_log_det(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, ladj = self.lazy().call_and_ladj(x)
        return y, _sum_to_batch(ladj, x.shape[:1])

    def _call(self, x):
        return self.lazy()(x)

    def _inverse(self, y):
        return self.lazy().inv(y)

    def log_abs_det_jacobian(self, x, y):
        return self.lazy().log_abs_det_jacobian(x, y)

    def probe(self, x: torch.Tensor) -> torch.Tensor:
        """Build the transform and run it, its log-det and its inverse once on ``x``, naming what is missing."""
        transform = self.lazy()
        y, _ = _needs("log-det (call_and_ladj)", transform, transform.call_and_ladj, x)
        _needs("inverse (inv)", transform, transform.inv, y)
        return y
