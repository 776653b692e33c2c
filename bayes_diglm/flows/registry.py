"""Flow factories by name: the only code that loading a saved estimator may run to rebuild a user's flow.

A saved estimator holds its flow's weights and the *name* of the factory that builds the flow's architecture,
never the code. Loading calls the factory only if this process registered that name: by
:func:`register_flow`, or by fitting an estimator with that factory (a factory handed over in code is
trusted by the process that ran the code). A file that names anything else is refused before any import.

A factory is called as ``factory(event_shape, **flow_kwargs)`` (``event_shape`` a tuple such as ``(8,)``) and
returns anything :func:`bayes_diglm.flows.user.as_flow` takes.

Example:
    >>> import pyro.distributions.transforms as T
    >>> def coupling_flow(event_shape, layers=2):
    ...     return [T.spline_coupling(event_shape[0]) for _ in range(layers)]
    >>> register_flow(coupling_flow, name="doc-coupling")
    'doc-coupling'
    >>> flow_factory("doc-coupling") is coupling_flow
    True
    >>> unregister_flow("doc-coupling")
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable

__all__ = ["register_flow", "unregister_flow", "flow_factory", "factory_name", "registered_flows", "BUILTIN_FLOWS"]

#: the package's own flows, built from a config (``{"kind": name, ...}``), never registered over
BUILTIN_FLOWS = {
    "realnvp": "bayes_diglm.flows.realnvp:realnvp",
    "spline": "bayes_diglm.flows.spline:spline",
    "glow": "bayes_diglm.flows.glow:glow",
}

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_PATH = re.compile(rf"{_IDENT}(\.{_IDENT})*:{_IDENT}(\.{_IDENT})*")

# name -> a callable, or a "module:function" string imported when first used
_FACTORIES: dict[str, Callable | str] = {}


def _check_path(path: str) -> None:
    if not _PATH.fullmatch(path) or any(part.startswith("__") for part in re.split(r"[.:]", path)):
        raise ValueError(f"{path!r} is not an importable 'module:function' path (dunder parts are refused)")


def register_flow(factory: Callable | str, *, name: str | None = None) -> str:
    """Allow ``factory`` to build flows under ``name``, at ``fit`` and when a saved estimator is loaded.

    Args:
        factory: a callable ``factory(event_shape, **flow_kwargs)`` returning a flow, or an importable
            ``"module:function"`` string (imported when first used).
        name: the name files and ``flow=`` use; defaults to the string itself, or ``"module:qualname"`` of an
            importable function (a function defined in a script or a closure needs a name).

    Returns the name. Registering the same factory again is a no-op; another factory under a taken name, or a
    name of the package's own flows, is a ``ValueError``.
    """
    if isinstance(factory, str):
        _check_path(factory)
        name = factory if name is None else name
    elif callable(factory):
        name = _importable_name(factory) if name is None else name
        if name is None:
            raise ValueError(f"{factory!r} has no importable 'module:qualname' (a lambda, a closure, or defined in a "
                             "script): register it with a name, register_flow(factory, name='my-flow')")
    else:
        raise TypeError(f"factory must be a callable or a 'module:function' string, got {type(factory).__name__}")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if name in BUILTIN_FLOWS:
        raise ValueError(f"{name!r} is one of the package's own flows {sorted(BUILTIN_FLOWS)}; choose another name")
    if name in _FACTORIES and not _same(_FACTORIES[name], factory):
        raise ValueError(f"flow factory name {name!r} is taken by {_FACTORIES[name]!r}; unregister it first")
    _FACTORIES[name] = factory
    return name


def _same(a, b) -> bool:
    """Whether two registry entries are one factory (a function and its own "module:qualname" path count)."""
    if a is b or (isinstance(a, str) and isinstance(b, str) and a == b):
        return True
    path, fn = (a, b) if isinstance(a, str) else (b, a)
    return isinstance(path, str) and callable(fn) and _importable_name(fn) == path


def unregister_flow(name: str) -> None:
    """Forget the factory registered as ``name`` (files naming it no longer load); unknown names are ignored."""
    _FACTORIES.pop(name, None)


def registered_flows() -> tuple[str, ...]:
    """The names of the registered factories, sorted."""
    return tuple(sorted(_FACTORIES))


def flow_factory(name: str) -> Callable:
    """The factory registered as ``name`` (a ``"module:function"`` entry is imported now); ``ValueError`` naming
    how to register it otherwise. Nothing is imported for a name that is not registered."""
    entry = _FACTORIES.get(name) if isinstance(name, str) else None
    if entry is None:
        raise ValueError(f"flow factory {name!r} is not registered in this process, so it is not run: if you trust "
                         f"it, call bayes_diglm.flows.register_flow({name!r}) (a 'module:function' path) or "
                         f"register_flow(your_function, name={name!r}) first")
    if isinstance(entry, str):
        module_name, _, qualname = entry.partition(":")
        try:
            obj = importlib.import_module(module_name)
            for attr in qualname.split("."):
                obj = getattr(obj, attr)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"registered flow factory {entry!r} cannot be found: {err}") from err
        if not callable(obj):
            raise TypeError(f"{entry!r} is a {type(obj).__name__}, not a callable flow factory")
        return obj
    return entry


def factory_name(factory) -> str | None:
    """The name under which ``factory`` is registered (a callable, or a registered name or path string), or
    None."""
    if isinstance(factory, str):
        return factory if factory in _FACTORIES else None
    for name, entry in _FACTORIES.items():
        if entry is factory:
            return name
    return None


def _importable_name(fn) -> str | None:
    """``"module:qualname"`` when that path, in an already imported module, leads back to ``fn`` itself."""
    module_name, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not module_name or not qualname or "<" in qualname or module_name not in sys.modules:
        return None
    path = f"{module_name}:{qualname}"
    try:
        _check_path(path)
    except ValueError:
        return None
    obj = sys.modules[module_name]
    for attr in qualname.split("."):
        obj = getattr(obj, attr, None)
    return path if obj is fn else None
