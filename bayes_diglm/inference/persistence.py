"""A fitted posterior head as tensors plus JSON, for ``weights_only`` checkpoints (no pickle, no code from files).

:func:`to_state` turns a head (its parameters and fitted attributes, with the NumPy arrays, dataclasses and
factor objects they hold) into ``{"json": str, "tensors": {name: tensor}}``: numbers, strings, lists, dicts,
tensors, which :func:`bayes_diglm.training.save_checkpoint` writes and checksums and
``torch.load(weights_only=True)`` reads back. :func:`from_state` rebuilds it. The JSON names the
classes of the objects; only classes defined in ``bayes_diglm`` (and scipy's ``OptimizeResult``) are rebuilt,
by setting their attributes (no constructor, ``__setstate__`` or other code of the file's choosing runs; named
tuples, which have no attributes to set, through their constructor), and anything else is refused. A class is
looked up only in modules this process has already imported: a file never chooses what ``load`` imports
(``bayes_diglm.__main__``, whose import would run the command line, included); names with dunder parts are
refused too.
"""

from __future__ import annotations

import inspect
import json
import sys

import numpy as np
import scipy.optimize
import torch
from sklearn.base import BaseEstimator

from bayes_diglm import likelihoods

__all__ = ["to_state", "from_state"]

_PACKAGE = "bayes_diglm"


def to_state(obj) -> dict:
    """``{"json": str, "tensors": dict}`` holding ``obj`` whole: a head, or plain data such as an estimator's
    parameters (raises ``TypeError`` naming what it cannot hold)."""
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(obj, tensors, type(obj).__name__)
    return {"json": json.dumps(tree), "tensors": tensors}


def from_state(state: dict):
    """The object that :func:`to_state` stored (``ValueError`` for content it did not write)."""
    if not isinstance(state, dict) or not isinstance(state.get("json"), str) or not isinstance(
            state.get("tensors"), dict):
        raise ValueError("a stored state is a dict with a 'json' string and a 'tensors' dict")
    try:
        tree = json.loads(state["json"])
    except json.JSONDecodeError as err:
        raise ValueError(f"the posterior head's state is not valid JSON: {err}") from err
    return _decode(tree, state["tensors"])


def _encode(obj, tensors: dict, path: str):
    if obj is None or type(obj) in (bool, int, float, str):
        return obj  # JSON keeps 1 and 1.0 apart, and writes NaN / Infinity
    if isinstance(obj, np.generic):
        return {"scalar": obj.dtype.str, "value": _encode(obj.item(), tensors, path)}
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "biuf":
            key = str(len(tensors))
            tensors[key] = torch.from_numpy(np.array(obj, order="C", copy=True))
            return {"ndarray": key, "dtype": obj.dtype.str}
        if obj.dtype.kind in "USO":
            items = [_encode(v, tensors, f"{path}[{i}]") for i, v in enumerate(obj.reshape(-1).tolist())]
            return {"items": items, "dtype": obj.dtype.str, "shape": list(obj.shape)}
        raise TypeError(f"cannot store {path}: an array of dtype {obj.dtype}")
    if isinstance(obj, torch.Tensor):
        key = str(len(tensors))
        tensors[key] = obj.detach().cpu().clone()
        return {"tensor": key}
    if isinstance(obj, likelihoods.Likelihood):
        # a family is its registry name and the constructor keywords that rebuild it (its nuisance declarations
        # hold torch constraints, and a user's family lives outside bayes_diglm): rebuilt through the registry
        return {"likelihood": obj.name, "config": _encode(obj.config(), tensors, f"{path}.config")}
    if isinstance(obj, scipy.optimize.OptimizeResult):  # diagnostics; its operators (hess_inv) are left out
        kept = {}
        for k, v in obj.items():
            try:
                kept[k] = _encode(v, tensors, f"{path}.{k}")
            except TypeError:
                continue
        return {"optimize_result": [[k, v] for k, v in kept.items()]}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return {"object": _class_path(obj, path),
                "fields": [_encode(v, tensors, f"{path}.{f}") for f, v in zip(obj._fields, obj, strict=True)]}
    if type(obj) in (list, tuple):
        return {type(obj).__name__: [_encode(v, tensors, f"{path}[{i}]") for i, v in enumerate(obj)]}
    if type(obj) is dict:
        return {"dict": [[_encode(k, tensors, f"{path} key"), _encode(v, tensors, f"{path}[{k!r}]")]
                         for k, v in obj.items()]}
    cls_path = _class_path(obj, path)
    if hasattr(obj, "__dict__"):
        attrs = vars(obj)
    else:
        attrs = {name: getattr(obj, name) for name in getattr(type(obj), "__slots__", ()) if hasattr(obj, name)}
    return {"object": cls_path, "attrs": {k: _encode(v, tensors, f"{path}.{k}") for k, v in attrs.items()}}


def _class_path(obj, path: str) -> str:
    cls = type(obj)
    if not _in_package(cls.__module__):
        raise TypeError(f"cannot store {path}: a {cls.__module__}.{cls.__qualname__} (only bayes_diglm's own "
                        "classes, NumPy arrays, tensors and plain data are stored)")
    return f"{cls.__module__}:{cls.__qualname__}"


def _in_package(module_name: str) -> bool:
    return module_name == _PACKAGE or module_name.startswith(_PACKAGE + ".")


def _resolve(cls_path: str) -> type:
    module_name, _, qualname = cls_path.partition(":")
    if not _in_package(module_name) or not qualname:
        raise ValueError(f"refused to rebuild {cls_path!r}: not a bayes_diglm class")
    # Importing a module runs it: bayes_diglm.__main__ would run the command line (with this process's argv)
    # and exit. Only plain identifiers, none of them dunder names, so no such module and no attribute such as
    # __class__ or __globals__ is reached.
    if any(not part.isidentifier() or part.startswith("__") for part in (*module_name.split("."),
                                                                       *qualname.split("."))):
        raise ValueError(f"refused to rebuild {cls_path!r}: a dunder or malformed name")
    # A file never chooses what is imported: only modules this process has already imported are looked in (the
    # estimators and heads import every class they store).
    obj = sys.modules.get(module_name)
    if obj is None:
        raise ValueError(f"refused to rebuild {cls_path!r}: its module is not one this process has loaded")
    try:
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except AttributeError as err:
        raise ValueError(f"the state names {cls_path!r}, which this bayes_diglm does not have") from err
    # a class may be named through the module that re-exports it since a split (files saved before it name
    # bayes_diglm.inference.laplace:LaplaceClassifier): it must still be one of bayes_diglm's own classes
    if not isinstance(obj, type) or not _in_package(obj.__module__):
        raise ValueError(f"refused to rebuild {cls_path!r}: not a class defined in bayes_diglm")
    return obj


def _tensor(tensors: dict, key) -> torch.Tensor:
    value = tensors.get(key)
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"the state refers to tensor {key!r}, which it does not hold")
    return value


_MAX_SHORT_WIDTH = 64


def _dtype(spec, kinds: str) -> np.dtype:
    """The dtype a state names, of one of the ``kinds`` that :func:`to_state` writes: a void, datetime or other
    dtype would let the file choose what is allocated (``np.void(n)`` is ``n`` bytes)."""
    try:
        dtype = np.dtype(spec) if isinstance(spec, str) else None
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind not in kinds or (dtype.kind in "biuf" and dtype.itemsize > 16):
        raise ValueError(f"the state names dtype {spec!r}"[:200] + f", not one of the kinds {kinds!r} it stores")
    return dtype


def _decode(node, tensors: dict):
    if node is None or type(node) in (bool, int, float, str):
        return node
    if not isinstance(node, dict) or len(node) == 0:
        raise ValueError(f"unexpected node in a posterior head's state: {node!r}"[:200])
    if "scalar" in node:
        return _dtype(node["scalar"], "biufUS").type(_decode(node["value"], tensors))
    if "ndarray" in node:
        arr = _tensor(tensors, node["ndarray"]).numpy().copy()
        return arr.astype(_dtype(node["dtype"], "biuf"), copy=False)
    if "items" in node:
        dtype = _dtype(node["dtype"], "USO")
        items = [_decode(v, tensors) for v in node["items"]]
        if dtype.kind in "US":  # the width comes from the file: no wider than its longest item (or 64 characters)
            width = dtype.itemsize // (4 if dtype.kind == "U" else 1)
            longest = max((len(v) for v in items if isinstance(v, str | bytes)), default=0)
            if width > max(longest, _MAX_SHORT_WIDTH):
                raise ValueError(f"the state declares string items of width {width} for items of at most {longest}")
        arr = np.empty(len(items), dtype=dtype)
        for i, v in enumerate(items):
            arr[i] = v
        return arr.reshape(node["shape"])
    if "tensor" in node:
        return _tensor(tensors, node["tensor"]).clone()
    if "list" in node:
        return [_decode(v, tensors) for v in node["list"]]
    if "tuple" in node:
        return tuple(_decode(v, tensors) for v in node["tuple"])
    if "dict" in node:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in node["dict"]}
    if "optimize_result" in node:
        return scipy.optimize.OptimizeResult({k: _decode(v, tensors) for k, v in node["optimize_result"]})
    if "likelihood" in node:
        config = _decode(node["config"], tensors)
        if not isinstance(config, dict) or not all(isinstance(k, str) for k in config):
            raise ValueError("a stored likelihood's config is a dict of keyword arguments")
        return likelihoods.get(node["likelihood"])(**config)  # a registered family only: no code from the file
    if "object" in node:
        cls = _resolve(node["object"])
        if "fields" in node:
            if not (issubclass(cls, tuple) and hasattr(cls, "_fields")):
                raise ValueError(f"{node['object']!r} is not a named tuple")
            return cls(*(_decode(v, tensors) for v in node["fields"]))
        obj = object.__new__(cls)
        attrs = {k: _decode(v, tensors) for k, v in node.get("attrs", {}).items()}
        if hasattr(obj, "__dict__"):
            obj.__dict__.update(attrs)
        else:
            for k, v in attrs.items():
                object.__setattr__(obj, k, v)
        _default_new_params(obj)
        return obj
    raise ValueError(f"unexpected node in a posterior head's state: {sorted(node)}")


def _default_new_params(obj) -> None:
    """A head saved by an earlier version lacks the constructor parameters added since (a classifier's
    ``predictive``, say): they take their defaults, read from the class's own signature."""
    if not isinstance(obj, BaseEstimator):
        return
    for name, param in inspect.signature(type(obj).__init__).parameters.items():
        if param.kind is param.KEYWORD_ONLY and param.default is not param.empty and name not in vars(obj):
            setattr(obj, name, param.default)
