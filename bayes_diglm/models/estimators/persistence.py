"""Saving and loading DIGLM estimators: checksummed ``weights_only`` files, no code from the file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from ... import __version__
from ...flows.spec import saveable_flow_config
from ...inference.persistence import to_state
from ...training import CheckpointError, TrainHistory, load_checkpoint, save_checkpoint
from ..diglm import build_diglm
from ..saved import check_saved_estimator

__all__ = ["load_estimator"]


class _Persistence:
    """``save`` and ``load`` of a fitted estimator (its flow, point head, posterior head, parameters, history)."""

    def save(self, path: str | os.PathLike, *, flow_factory=None, key: bytes | str | None = None) -> Path:
        """Write the fitted estimator atomically to ``path``, checksummed: the flow and point head (``state_dict``),
        the posterior head whatever ``posterior`` is (its fitted state as tensors plus JSON,
        :func:`bayes_diglm.inference.persistence.to_state`), the parameters, the history and a JSON-able config.

        :meth:`load` reads it with ``torch.load(weights_only=True)``: no pickle, no code from the file. A user's
        flow is stored as its weights plus the name of the factory that builds its architecture
        (:mod:`bayes_diglm.flows.registry`); ``flow_factory`` names it for a flow given as an object (a
        registered name, a ``"module:function"`` path or a function), checked by building it here.
        """
        check_is_fitted(self)
        flow_config = saveable_flow_config(self.config_["flow_config"], self.model_.flow, factory=flow_factory,
                                           argument=self.flow)
        params = self.get_params(deep=False)
        if not isinstance(params["flow"], str):
            params["flow"] = flow_config["factory"]  # the factory's name, never the object
        payload = {"model": self.model_.state_dict(), "config": {**self.config_, "flow_config": flow_config},
                   "params": to_state(params), "history": self.history_.as_dict(),
                   "posterior": None if self.posterior_ is None else to_state(self.posterior_)}
        if hasattr(self, "noise_normaliser_"):
            payload["noise_normaliser"] = float(self.noise_normaliser_)
        if hasattr(self, "feature_names_in_"):
            payload["feature_names"] = [str(name) for name in self.feature_names_in_]
        return save_checkpoint(payload, path, key=key)

    @classmethod
    def load(cls, path: str | os.PathLike, *, key: bytes | str | None = None):
        """Read an estimator written by :meth:`save` (never runs code from the file); predictions equal the saved
        estimator's. Every field is checked before anything is built from it
        (:func:`bayes_diglm.models.saved.check_saved_estimator`); with ``key``, the file must carry the signature
        that ``save(path, key=key)`` wrote."""
        ckpt = load_checkpoint(path, key=key)
        params, posterior = check_saved_estimator(ckpt, path, cls)
        config = ckpt["config"]
        est = cls(**{k: v for k, v in params.items() if k in cls._get_param_names()})
        try:
            model = build_diglm(config["flow_config"], config["head_config"], config["px_weight"])
        except (ValueError, TypeError, KeyError) as err:  # a factory that is not registered here is never run
            raise CheckpointError(f"{str(path)!r} cannot be loaded: {err}") from err
        model = model.to(getattr(torch, config.get("dtype", "float32")))
        try:
            model.load_state_dict(ckpt["model"])
        except RuntimeError as err:
            raise CheckpointError(
                f"{str(path)!r} does not match the architecture in its own config "
                f"(saved by bayes_diglm {config.get('version')}, this is {__version__}): {err}"
            ) from err
        est.model_ = model.eval()
        est.config_ = config
        est.history_ = TrainHistory.from_dict(ckpt["history"])
        if posterior is not None and getattr(posterior, "n_features_in_", model.head.dim) != model.head.dim:
            raise CheckpointError(f"{str(path)!r}: field 'posterior' takes {posterior.n_features_in_} features, the "
                                  f"network gives {model.head.dim}")
        est.posterior_ = posterior
        if "noise_normaliser" in ckpt:
            est.noise_normaliser_ = float(ckpt["noise_normaliser"])
        if ckpt.get("feature_names") is not None:
            est.feature_names_in_ = np.asarray(ckpt["feature_names"], dtype=object)
        shape = tuple(model.flow.event_shape)
        est.n_features_in_ = int(shape[0])  # scikit-learn counts X.shape[1] (channels for images)
        est._restore_extra(config)
        return est

    def _restore_extra(self, config: dict) -> None:
        pass


def load_estimator(path: str | os.PathLike, *, key: bytes | str | None = None):
    """Load a saved :class:`DIGLMRegressor` or :class:`DIGLMClassifier`, whichever the file holds (``key``: as
    in :meth:`DIGLMRegressor.load`)."""
    from .classifier import DIGLMClassifier
    from .regressor import DIGLMRegressor

    config = load_checkpoint(path, key=key).get("config")
    classes = {c.__name__: c for c in (DIGLMRegressor, DIGLMClassifier)}
    if not isinstance(config, dict) or not isinstance(config.get("estimator"), str) or (
            config["estimator"] not in classes):
        raise CheckpointError(f"{str(path)!r} is not a saved DIGLM estimator")
    return classes[config["estimator"]].load(path, key=key)
