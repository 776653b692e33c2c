"""What a saved estimator file must hold, checked field by field before anything is built from it."""

from __future__ import annotations

import os

import torch

from .. import likelihoods
from .._validation import check_params
from ..inference.persistence import from_state
from ..training.checkpoint import CheckpointError
from ..training.fields import Fields

__all__ = ["check_saved_estimator"]

#: config keys that count layers (each has at least one tensor in the file); every other integer is a size
_LAYER_COUNTS = ("num_layers", "levels", "steps")
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def check_saved_estimator(ckpt: dict, path: str | os.PathLike, cls) -> tuple[dict, object]:
    """Check every field of a loaded estimator checkpoint for ``cls`` and return its ``(params, posterior)``.

    Refuses with :class:`~bayes_diglm.training.CheckpointError` naming the file and the field: missing keys,
    wrong types, another estimator class, a dtype other than float32/float64, NaN/inf or overflowing weights,
    config sizes larger than the file's own tensors could hold (so ``load`` never builds a network the file does
    not describe: 10**6 layers, hidden sizes of 10**7), a posterior head of another class than ``posterior=``
    names, non-finite posterior values, a history or normaliser of the wrong kind.
    """
    f = Fields(ckpt, path)
    config = f.get("config", dict)
    estimator = f.get("estimator", str, within=config, field="config.estimator")
    if estimator != cls.__name__:
        raise CheckpointError(f"{str(path)!r} holds a {estimator!r}, not a {cls.__name__} checkpoint")
    dtype_name = f.get("dtype", str, within=config, field="config.dtype") if "dtype" in config else "float32"
    if dtype_name not in _DTYPES:
        raise f.error("config.dtype", f"must be one of {sorted(_DTYPES)}, got {dtype_name!r}"[:200])
    model = f.get("model", dict)
    if not model or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items()):
        raise f.error("model", "must be a non-empty dict of named tensors (a state_dict)")
    f.values(model, "model", dtype=_DTYPES[dtype_name])
    elements = sum(int(t.numel()) for t in model.values())
    flow_config = f.get("flow_config", dict, within=config, field="config.flow_config")
    f.get("kind", str, within=flow_config, field="config.flow_config.kind")
    f.sizes(flow_config, "config.flow_config", high=elements, counts=_LAYER_COUNTS, count_high=len(model))
    head_config = f.get("head_config", dict, within=config, field="config.head_config")
    family = f.get("family", str, within=head_config, field="config.head_config.family")
    task = "classification" if hasattr(cls, "predict_proba") else "regression"
    if family not in likelihoods.names() or likelihoods.get(family).task != task:
        raise f.error("config.head_config.family", f"must name a registered {task} family, got {family!r}"[:200])
    f.sizes(head_config, "config.head_config", high=elements)
    f.number(f.get("px_weight", (int, float), within=config, field="config.px_weight"), "config.px_weight", low=0)
    _check_history(f)
    if hasattr(cls, "predict_proba"):  # a classifier's labels, sorted as ``classes_`` is
        classes = f.get("classes", list, within=config, field="config.classes")
        try:
            ok = len(classes) >= 2 and all(type(c) in (str, int, float, bool) for c in classes) and all(
                a < b for a, b in zip(classes, classes[1:], strict=False))
        except TypeError:  # labels of kinds that do not compare
            ok = False
        if not ok:
            raise f.error("config.classes", f"must be at least two distinct sorted labels, got {classes!r}"[:300])
    if "noise_normaliser" in ckpt:
        f.number(f.get("noise_normaliser", (int, float)), "noise_normaliser", positive=True)
    names = f.get("feature_names", list, optional=True)
    if names is not None and not all(isinstance(n, str) for n in names):
        raise f.error("feature_names", "must be a list of strings")
    params = _decode(f, "params")
    if not isinstance(params, dict):
        raise f.error("params", f"is a {type(params).__name__}, not a dict")
    posterior = None if ckpt.get("posterior") is None else _decode(f, "posterior")
    _check_posterior_class(f, cls, params, posterior)
    f.values(posterior, "posterior")
    return params, posterior


def _decode(f: Fields, key: str):
    state = f.get(key, dict)
    try:
        return from_state(state)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, RuntimeError) as err:
        raise f.error(key, f"holds content this version cannot read: {err}") from err


def _check_history(f: Fields) -> None:
    history = f.get("history", dict)
    f.get("epochs", list, within=history, field="history.epochs")
    f.get("stopped", (str, type(None)), within=history, field="history.stopped")
    f.get("best_epoch", (int, type(None)), within=history, field="history.best_epoch")
    skipped = f.get("skipped_batches", int, within=history, field="history.skipped_batches", optional=True)
    if skipped is not None:
        f.integer(skipped, "history.skipped_batches", high=2**63 - 1)


def _check_posterior_class(f: Fields, cls, params: dict, posterior) -> None:
    """The posterior head is the class that the saved ``posterior=`` parameter makes (None for ``"point"``)."""
    spec = params.get("posterior", "point")
    if isinstance(spec, str):
        if spec not in cls._posteriors:
            raise f.error("params.posterior", f"must be one of {cls._posteriors}, got {spec!r}"[:200])
        try:
            est = cls(**{k: v for k, v in params.items() if k in cls._get_param_names()})
            check_params(est)
            est._check_params()
            template = est._posterior_template()
        except (ValueError, TypeError) as err:
            raise f.error("params", f"do not make a {cls.__name__}: {err}") from err
        expected = None if template is None else type(template)
    else:
        expected = type(spec)
    if (posterior is None) != (expected is None) or (posterior is not None and type(posterior) is not expected):
        raise f.error("posterior", f"is a {type(posterior).__name__}, but posterior={spec!r} makes a "
                      f"{getattr(expected, '__name__', None)}"[:300])
    if posterior is not None and not (hasattr(posterior, "fit") and hasattr(posterior, "predict_dist")):
        raise f.error("posterior", f"is a {type(posterior).__name__}, not a posterior head")
