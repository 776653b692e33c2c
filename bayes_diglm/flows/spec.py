"""The ``flow=`` argument: a name, a factory or a user's own flow, as a ``Flow`` and the config that rebuilds it.

What ``flow=`` takes (on the estimators and on :class:`~bayes_diglm.models.DIGLM`):

- a name of the package's flows (``"realnvp"``, ``"spline"``, ``"glow"``), built with ``flow_kwargs``;
- a factory ``factory(event_shape, **flow_kwargs)`` returning a flow: a callable, the name it was registered
  under (:func:`~bayes_diglm.flows.registry.register_flow`) or an importable ``"module:function"`` string.
  Every ``fit`` builds a fresh flow from it (so ``sklearn.clone`` and ``GridSearchCV`` get one each);
- a flow object: Pyro transforms (one, a list, a ``ComposeTransformModule``), a zuko flow or lazy
  transform, or a bayes_diglm ``Flow``, read as :mod:`bayes_diglm.flows.user` says. The estimators train a
  deep copy (clones and refits never share parameters; the object's own values are the starting point).

The config is JSON-able: ``{"kind": "realnvp", "dim": 8, ...}`` for the package's flows, and
``{"kind": "factory", "factory": name, "shape": [...], "kwargs": {...}}`` for a user's, whose ``factory`` is
None for a flow given as an object until ``save`` names one (:func:`saveable_flow_config`).
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn
from torch.distributions import Transform

from .base import Flow, clear_transform_cache
from .registry import BUILTIN_FLOWS, factory_name, flow_factory, register_flow, registered_flows
from .user import as_flow

__all__ = ["FlowSpec", "USER_KIND", "resolve_flow", "make_flow", "build_flow", "saveable_flow_config"]

#: the ``kind`` of a config whose flow a user's factory builds
USER_KIND = "factory"


@dataclass(frozen=True)
class FlowSpec:
    """A resolved ``flow=`` argument: the config to record, and how to build a fresh flow for one ``fit``."""

    config: dict
    build: Callable[[], Flow]

    @property
    def builtin(self) -> bool:
        """Whether this is one of the package's own flows (a user's flow gets checked at ``fit``)."""
        return self.config["kind"] != USER_KIND


def _is_factory(flow) -> bool:
    return callable(flow) and not isinstance(flow, nn.Module | Transform)


def resolve_flow(flow, flow_kwargs: dict | None, shape: tuple[int, ...]) -> FlowSpec:
    """Check ``flow=`` and ``flow_kwargs`` against data of ``shape`` (``(n, ...)``) before any training.

    Names and factories are resolved (a factory handed over in code, or a ``"module:function"`` string, is
    registered: this process trusts what its own code names, see :mod:`bayes_diglm.flows.registry`); an
    object is type-checked now and deep-copied by ``build``.
    """
    kwargs = dict(flow_kwargs or {})
    event_shape = tuple(int(s) for s in shape[1:])
    if isinstance(flow, str) and flow in BUILTIN_FLOWS:
        config = _builtin_config(flow, kwargs, tuple(shape))
        return FlowSpec(config, lambda: build_flow(config))
    if isinstance(flow, str) or _is_factory(flow):
        name = _factory_name(flow, required=isinstance(flow, str))
        factory = flow_factory(name) if name is not None else flow
        config = {"kind": USER_KIND, "factory": name, "shape": list(event_shape), "kwargs": kwargs}
        return FlowSpec(config, lambda: as_flow(factory(event_shape, **kwargs), event_shape))
    if kwargs:
        raise ValueError(f"flow_kwargs {sorted(kwargs)} build a named flow or go to a factory; flow= is a "
                         f"{type(flow).__name__} object, which takes none")
    as_flow(flow, event_shape)  # refuse a wrong type now; the copy is made per fit
    config = {"kind": USER_KIND, "factory": None, "shape": list(event_shape), "kwargs": {}}
    return FlowSpec(config, lambda: as_flow(_fresh_copy(flow), event_shape))


def make_flow(flow, event_shape: tuple[int, ...], flow_kwargs: dict | None = None) -> Flow:
    """A ``Flow`` from anything ``flow=`` takes, for data points of ``event_shape``; an object is used as it is
    (no copy, as for any ``nn.Module``), names and factories are built."""
    if isinstance(flow, str) or _is_factory(flow):
        return resolve_flow(flow, flow_kwargs, (0, *event_shape)).build()
    if flow_kwargs:
        raise ValueError(f"flow_kwargs go with a named flow or a factory, not a {type(flow).__name__} object")
    return as_flow(flow, event_shape)


def _fresh_copy(flow):
    clear_transform_cache(flow)  # a cache holding the last batch's graph cannot be deep-copied
    return copy.deepcopy(flow)


def _factory_name(factory, *, required: bool) -> str | None:
    """The registered name of ``factory``, registering a callable with an importable name or a
    ``"module:function"`` string; None (``required=False``) or ``ValueError`` for what cannot be named."""
    name = factory_name(factory)
    if name is not None:
        return name
    if isinstance(factory, str):
        if ":" in factory:
            return register_flow(factory)
        raise ValueError(f"flow must be one of {sorted(BUILTIN_FLOWS)}, a registered factory name "
                         f"{list(registered_flows())}, a 'module:function' path, a callable factory, or a flow "
                         f"object (Pyro transforms, a zuko flow); got {factory!r}")
    try:
        return register_flow(factory)
    except ValueError:
        if required:
            raise
        return None


def _builtin_config(kind: str, kwargs: dict, shape: tuple[int, ...]) -> dict:
    if kind in ("realnvp", "spline"):
        if len(shape) != 2:
            raise ValueError(f"flow={kind!r} needs 2-D X (n, features), got shape {tuple(shape)}")
        if shape[1] < 2:
            raise ValueError(f"flow={kind!r} needs at least 2 features, got {shape[1]} feature(s)")
        return {"kind": kind, "dim": int(shape[1]), **kwargs}
    if len(shape) != 4:
        raise ValueError(f"flow='glow' needs images X (n, C, H, W), got shape {tuple(shape)}")
    return {"kind": "glow", "shape": list(shape[1:]), **kwargs}


def build_flow(config: dict) -> Flow:
    """Build a flow from its config: ``{"kind": "realnvp", "dim": 8, ...}``, ``{"kind": "glow", ...}``, or a
    user's ``{"kind": "factory", "factory": name, ...}``, whose factory must be registered in this process
    (``ValueError`` otherwise, before anything is imported)."""
    config = dict(config)
    kind = config.pop("kind", None)
    if kind == USER_KIND:
        name = config.get("factory")
        if name is None:
            raise ValueError("this flow was given as an object and names no factory, so it cannot be rebuilt "
                             "from its config (save(path, flow_factory=...) names one)")
        shape = tuple(int(s) for s in config["shape"])
        return as_flow(flow_factory(name)(shape, **dict(config.get("kwargs") or {})), shape)
    if kind not in BUILTIN_FLOWS:
        raise ValueError(f"unknown flow kind {kind!r}; choose one of {sorted(BUILTIN_FLOWS)} or {USER_KIND!r}")
    module_name, func_name = BUILTIN_FLOWS[kind].split(":")
    builder = getattr(importlib.import_module(module_name), func_name)
    if kind == "glow" and "shape" in config:
        config["shape"] = tuple(config["shape"])
    if "hidden_dims" in config:
        config["hidden_dims"] = tuple(config["hidden_dims"])
    return builder(**config)


def saveable_flow_config(config: dict, flow: Flow, *, factory=None, argument=None) -> dict:
    """The flow config a checkpoint stores: one that names the factory rebuilding ``flow``.

    The package's flows and factories named at ``fit`` keep their config. A flow given as an object needs
    ``factory`` (a registered name, a ``"module:function"`` path, or a callable, registered here); a nameless
    callable given as ``argument`` (the estimator's ``flow=``) is named now if it was registered since. The
    factory is checked by building the flow and loading ``flow``'s ``state_dict`` into it: ``ValueError`` if it
    builds another architecture.
    """
    if config.get("kind") != USER_KIND:
        if factory is not None:
            raise ValueError(f"flow_factory is for flows given as objects; this flow is the package's "
                             f"{config.get('kind')!r}")
        return config
    if factory is None:
        if config.get("factory") is not None:
            return config
        if not _is_factory(argument):
            raise ValueError("this estimator's flow was given as an object, which cannot be saved as code: name "
                             "the factory that builds its architecture, save(path, flow_factory='module:function' "
                             "or a registered name or function)")
        factory = argument
    name = _factory_name(factory, required=True)
    named = {**config, "factory": name}
    rebuilt = build_flow(named)
    try:
        rebuilt.load_state_dict(flow.state_dict())
    except RuntimeError as err:
        raise ValueError(f"flow factory {name!r} builds another architecture than the fitted flow: {err}") from err
    return named
