"""A user's own flow (Pyro transforms, a ``ComposeTransformModule``, a zuko flow) as a bayes_diglm ``Flow``.

Direction, decided once for every flow a user brings: **each library's object is read the way that library
reads it**, so that ``log p(x)`` here is the ``log p(x)`` the user's own distribution object gives.

- Pyro (and torch) transforms, alone, in a list, or in a ``ComposeTransformModule``, are read as
  ``pyro.distributions.TransformedDistribution(base, transforms)`` reads them: **base to data**, the first
  transform applied first to a base draw. Our features are then ``z = f(x)`` with
  ``f = (T_n o ... o T_1)^{-1}``, computed with each transform's inverse, and sampling runs the transforms
  forwards. A transform handed over as ``T.inv`` is read the same way, so ``T`` itself is used on data (for
  Pyro's autoregressive transforms, a MAF: one pass for ``log p(x)``, ``D`` passes to sample).
- zuko flows (``zuko.flows.NSF(...)``) and zuko lazy transforms (alone or in a list) are read as zuko's
  ``NormalizingFlow`` reads them: **data to latent**. A zuko flow's transform is used with our base, so its
  own base must be the standard normal (zuko's default).
- A bayes_diglm :class:`~bayes_diglm.flows.base.Flow` (``realnvp(...)``) is used as it is.

The base density is the standard normal on the flattened latent: the ``base`` one writes in Pyro as
``dist.Normal(torch.zeros(D), 1.0).to_event(1)``. Parameters the user trained are kept as the starting
point (the estimators deep-copy the object at ``fit``; only flows built by a factory start from the
estimator's ``seed``).

Example: a flow trained the Pyro way, then handed to an estimator, which trains it further with the head.

    >>> import pyro.distributions as dist
    >>> import pyro.distributions.transforms as T
    >>> import torch
    >>> from sklearn.datasets import make_moons
    >>> from bayes_diglm.flows import clear_transform_cache
    >>> from bayes_diglm.models import DIGLMClassifier
    >>> X, y = make_moons(100, noise=0.1, random_state=0)
    >>> x = torch.tensor(X, dtype=torch.float32)
    >>> transforms = [T.spline_coupling(2, count_bins=8), T.Permute(torch.tensor([1, 0])), T.spline_coupling(2)]
    >>> base = dist.Normal(torch.zeros(2), 1.0).to_event(1)
    >>> pyro_flow = dist.TransformedDistribution(base, transforms)
    >>> params = [p for t in transforms if isinstance(t, torch.nn.Module) for p in t.parameters()]
    >>> optimizer = torch.optim.Adam(params, lr=1e-2)
    >>> for step in range(10):
    ...     optimizer.zero_grad()
    ...     loss = -pyro_flow.log_prob(x).mean()
    ...     loss.backward()
    ...     optimizer.step()
    ...     clear_transform_cache(transforms)
    >>> clf = DIGLMClassifier(flow=transforms, epochs=1, quiet=True).fit(X, y)
    >>> flow = as_flow(transforms, event_shape=(2,))  # the same reading, on the Pyro-trained transforms
    >>> bool(torch.allclose(flow.log_prob(x), pyro_flow.log_prob(x), atol=1e-4))
    True
"""

from __future__ import annotations

import sys

import torch
from torch import nn
from torch.distributions import ComposeTransform, Transform
from torch.distributions.transforms import _InverseTransform

from .adapters import PlainTransform, PyroStep, ZukoTransform, transform_name
from .base import Flow, SequentialFlow, call_and_log_det

__all__ = ["as_flow", "check_flow", "flow_steps"]

_ACCEPTED = ("a Pyro/torch Transform, a list of them, a ComposeTransformModule, a zuko flow or lazy transform "
             "(or a list of those), or a bayes_diglm Flow")


def as_flow(flow, event_shape: tuple[int, ...], *, base_scale: float = 1.0) -> Flow:
    """The :class:`Flow` that reads ``flow`` as this module's docstring says (no copy: it shares parameters).

    Args:
        flow: Pyro/torch transforms (one, a list, a ``ComposeTransformModule``), a zuko flow or lazy transform
            (or a list of lazy transforms), or a bayes_diglm ``Flow`` (returned as is).
        event_shape: shape of one data point, e.g. ``(8,)`` or ``(1, 28, 28)``.
        base_scale: standard deviation of the Gaussian base density.
    """
    event_shape = _event_shape(event_shape)
    if isinstance(flow, Flow):
        if tuple(flow.event_shape) != event_shape:
            raise ValueError(f"the flow takes data of shape {tuple(flow.event_shape)}, the data have {event_shape}")
        return flow
    return SequentialFlow(flow_steps(flow), event_shape=event_shape, base_scale=base_scale)


def _event_shape(event_shape) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in event_shape)
    except TypeError as err:
        raise TypeError(f"event_shape must be a tuple of positive ints, got {event_shape!r}") from err
    if not shape or min(shape) < 1:
        raise ValueError(f"event_shape must be a non-empty tuple of positive ints, got {event_shape!r}")
    return shape


def flow_steps(flow) -> list[nn.Module]:
    """``flow`` as a list of data-to-latent steps (the modules a :class:`SequentialFlow` chains)."""
    zuko = _zuko_kind(flow)
    if zuko is not None:
        return zuko
    steps = []
    for t in reversed(_pyro_parts(flow, "flow")):
        if isinstance(t, _InverseTransform):  # T.inv maps base to data, so T maps data to latent
            inner = t._inv
            steps.append(PyroStep(inner if isinstance(inner, nn.Module) else PlainTransform(inner), False))
        else:
            steps.append(PyroStep(t if isinstance(t, nn.Module) else PlainTransform(t), True))
    return steps


def _pyro_parts(obj, where: str) -> list[Transform]:
    """Pyro/torch transforms in ``TransformedDistribution``'s order, lists and compositions flattened."""
    if isinstance(obj, list | tuple):
        if not obj:
            raise ValueError(f"{where} is an empty list: a flow needs at least one transform")
        return [t for i, item in enumerate(obj) for t in _pyro_parts(item, f"{where}[{i}]")]
    if isinstance(obj, ComposeTransform):
        if not obj.parts:
            raise ValueError(f"{where} is an empty composition: a flow needs at least one transform")
        return _pyro_parts(list(obj.parts), where)
    if isinstance(obj, Transform) and not _from_zuko(obj):
        return [obj]
    if _from_zuko(obj):
        raise TypeError(f"{where} is a zuko {type(obj).__name__} in a list of Pyro transforms: zuko objects are "
                        "read data to latent and Pyro's base to data, so they cannot be mixed; pass zuko lazy "
                        "transforms on their own (or a zuko flow)")
    raise TypeError(f"{where} must be {_ACCEPTED}; got {type(obj).__name__}")


def _from_zuko(obj) -> bool:
    return any(cls.__module__.split(".")[0] == "zuko" for cls in type(obj).__mro__)


def _zuko_kind(obj) -> list[nn.Module] | None:
    """The data-to-latent steps of a zuko flow, lazy transform or list of lazy transforms; None for others."""
    items = obj if isinstance(obj, list | tuple) else [obj]
    if "zuko" not in sys.modules or not items or not any(_from_zuko(t) for t in items):
        return None
    import zuko.lazy

    if not all(_from_zuko(t) for t in items):
        raise TypeError("flow mixes zuko objects with Pyro transforms: zuko objects are read data to latent and "
                        "Pyro's base to data, so they cannot be mixed in one list")
    if isinstance(obj, zuko.lazy.Flow):
        _check_zuko_base(obj)
        return [ZukoTransform(obj.transform)]
    for i, t in enumerate(items):
        if not isinstance(t, zuko.lazy.LazyTransform):
            where = "flow" if items is not obj else f"flow[{i}]"
            raise TypeError(f"{where} is a zuko {type(t).__name__}: pass a zuko flow (zuko.flows.NSF, ...) or "
                            "zuko lazy transforms (their parameters are trained), not built transforms or other "
                            "distributions")
    return [ZukoTransform(t) for t in items]


def _check_zuko_base(flow) -> None:
    """Refuse a zuko flow whose base is not the standard normal (we keep its transform, with our base)."""
    base = flow.base()
    D = torch.distributions
    normal = base.base_dist if isinstance(base, D.Independent) else base
    standard = (isinstance(normal, D.Normal) and bool((normal.loc == 0).all())
                and bool((normal.scale == 1).all()))
    if not standard:
        raise ValueError(f"the zuko flow's base is a {type(base).__name__} other than the standard normal; "
                         "bayes_diglm uses its transform with a standard normal base, which would change the "
                         "model: build the flow with zuko's default base, or pass flow.transform")


def check_flow(flow: Flow, x: torch.Tensor) -> None:
    """Run every step of ``flow`` once on the rows ``x``, forwards, log-det and back, without gradients.

    A step without an inverse or a log-det, one that fails on these inputs, or a flow whose latent has another
    number of values per row than the data, is a ``ValueError`` naming the step and what is missing. Runs in
    eval mode (no data-dependent initialisation is triggered) and restores the mode.
    """
    training = flow.training
    flow.eval()
    try:
        with torch.no_grad():
            if isinstance(flow, SequentialFlow):
                h = x
                for i, step in enumerate(flow.transforms):
                    h = _probe_step(step, h, i)
                z = h.reshape(h.shape[0], -1)
            else:
                z = flow(x)[0]
                flow.inverse(z)
    finally:
        flow.train(training)
    if z.shape[1] != flow.dim:
        raise ValueError(f"the flow maps {flow.dim} values per row to {z.shape[1]}: a flow must keep the dimension")


def _probe_step(step, x: torch.Tensor, i: int) -> torch.Tensor:
    name = transform_name(getattr(step, "transform", None) or getattr(step, "lazy", None) or step)
    try:
        probe = getattr(step, "probe", None)
        if probe is not None:
            return probe(x)
        y, _ = call_and_log_det(step, x)
        step.inv(y)
        return y
    except ValueError as err:
        raise ValueError(f"flow step {i} ({name}): {err}") from err
    except (RuntimeError, IndexError, NotImplementedError) as err:
        raise ValueError(f"flow step {i} ({name}) fails on inputs of shape {tuple(x.shape[1:])}: "
                         f"{type(err).__name__}: {err}") from err
