"""scikit-learn style estimators over the DIGLM: ``DIGLMRegressor`` and ``DIGLMClassifier``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from .. import __version__
from .._validation import as_float_tensor, as_label_tensor, check_fitted, check_positive, check_same_length
from ..training import TrainHistory, batched, train_module
from ..training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .diglm import DIGLM, build_diglm

__all__ = ["DIGLMRegressor", "DIGLMClassifier", "load_estimator"]

_TRAIN_PARAMS = ("epochs", "batch_size", "lr", "weight_decay", "clip_grad", "warmup_steps", "patience", "on_nonfinite")


class _DIGLMEstimator(BaseEstimator):
    """Shared machinery: building the flow, training, density, features, and save/load."""

    _head_families: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        flow: str = "realnvp",
        flow_kwargs: dict | None = None,
        px_weight: float = 1.0,
        epochs: int = 20,
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        clip_grad: float | None = 10.0,
        warmup_steps: int = 0,
        val_fraction: float = 0.0,
        patience: int | None = None,
        seed: int = 0,
        quiet: bool | None = None,
        device: str = "cpu",
        on_nonfinite: str = "raise",
    ):
        self.flow = flow
        self.flow_kwargs = flow_kwargs
        self.px_weight = px_weight
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.clip_grad = clip_grad
        self.warmup_steps = warmup_steps
        self.val_fraction = val_fraction
        self.patience = patience
        self.seed = seed
        self.quiet = quiet
        self.device = device
        self.on_nonfinite = on_nonfinite

    # -- parameters -------------------------------------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict:
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params):
        for k, v in params.items():
            if k not in self._param_names():
                raise ValueError(f"invalid parameter {k!r} for {type(self).__name__}")
            setattr(self, k, v)
        return self

    @classmethod
    def _param_names(cls) -> list[str]:
        import inspect

        names = []
        for klass in reversed(cls.__mro__):
            init = klass.__dict__.get("__init__")
            if init is None or klass is object:
                continue
            names += [p for p in inspect.signature(init).parameters if p != "self" and p != "kwargs"]
        return list(dict.fromkeys(names))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    # -- input handling ---------------------------------------------------------------------------------
    def _check_X(self, X, name: str = "X") -> torch.Tensor:
        X = as_float_tensor(X, name, ndim=(2, 4), dtype=torch.float32)
        if hasattr(self, "model_") and self.model_ is not None:
            expected = tuple(self.model_.flow.event_shape)
            if tuple(X.shape[1:]) != expected:
                raise ValueError(f"{name} must have shape (n, {', '.join(map(str, expected))}), got {tuple(X.shape)}")
        return X

    def _flow_config(self, X: torch.Tensor) -> dict:
        kwargs = dict(self.flow_kwargs or {})
        if self.flow == "realnvp":
            if X.dim() != 2:
                raise ValueError(f"flow='realnvp' needs 2-D X (n, features), got shape {tuple(X.shape)}")
            return {"kind": "realnvp", "dim": int(X.shape[1]), **kwargs}
        if self.flow == "glow":
            if X.dim() != 4:
                raise ValueError(f"flow='glow' needs images X (n, C, H, W), got shape {tuple(X.shape)}")
            return {"kind": "glow", "shape": list(X.shape[1:]), **kwargs}
        raise ValueError(f"flow must be 'realnvp' or 'glow', got {self.flow!r}")

    def _split_validation(self, X, y):
        if not self.val_fraction:
            return X, y, None, None
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        n_val = max(1, int(round(self.val_fraction * X.shape[0])))
        if n_val >= X.shape[0]:
            raise ValueError(f"val_fraction={self.val_fraction!r} leaves no training rows out of {X.shape[0]}")
        perm = torch.randperm(X.shape[0], generator=torch.Generator().manual_seed(self.seed))
        val, train = perm[:n_val], perm[n_val:]
        return X[train], y[train], X[val], y[val]

    # -- fitting ----------------------------------------------------------------------------------------
    def _fit(self, X, y_t, head_config: dict, *, X_val=None, y_val=None, checkpoint_path=None, resume=False):
        check_positive(self.px_weight, "px_weight", allow_zero=True)
        flow_config = self._flow_config(X)
        with torch.random.fork_rng(devices=[]):  # seed the initial weights without touching the caller's stream
            torch.manual_seed(self.seed)
            model = build_diglm(flow_config, head_config, self.px_weight)
        if X_val is None:
            X, y_t, X_val, y_val = self._split_validation(X, y_t)
        config = {"version": __version__, "estimator": type(self).__name__, "flow_config": flow_config,
                  "head_config": head_config, "px_weight": float(self.px_weight), **self._extra_config()}
        history = train_module(
            model, X, y_t, X_val=X_val, y_val=y_val, seed=self.seed, quiet=self.quiet, device=self.device,
            checkpoint_path=checkpoint_path, resume=resume, config=config,
            **{k: getattr(self, k) for k in _TRAIN_PARAMS},
        )
        # Assign fitted state only once training has succeeded, so a failed fit keeps the previous model.
        self.model_ = model.cpu().eval()
        self.history_ = history
        self.config_ = config
        self.n_features_in_ = int(np.prod(X.shape[1:]))
        return self

    def _extra_config(self) -> dict:
        return {}

    # -- outputs ----------------------------------------------------------------------------------------
    def _model(self) -> DIGLM:
        check_fitted(self, "model_")
        return self.model_

    def score_samples(self, X) -> np.ndarray:
        """Exact ``log p(x)`` (nats) per row under the flow; higher means more like the training data."""
        model = self._model()
        return batched(model.log_px, self._check_X(X)).double().numpy()

    log_px = score_samples

    def transform(self, X) -> np.ndarray:
        """The flow features ``z = f(x)`` (n, D)."""
        model = self._model()
        return batched(model.features, self._check_X(X)).double().numpy()

    features = transform

    # -- persistence ------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted model (state_dict + JSON-able config) atomically to ``path``."""
        model = self._model()
        return save_checkpoint({"model": model.state_dict(), "config": self.config_,
                                "params": _jsonable(self.get_params()),
                                "history": self.history_.as_dict()}, path)

    @classmethod
    def load(cls, path: str | os.PathLike):
        """Read a model written by :meth:`save` (never runs code from the file)."""
        ckpt = load_checkpoint(path)
        config = ckpt.get("config") or {}
        if config.get("estimator") != cls.__name__:
            raise CheckpointError(
                f"{str(path)!r} holds a {config.get('estimator')!r}, not a {cls.__name__} checkpoint"
            )
        est = cls(**{k: v for k, v in ckpt.get("params", {}).items() if k in cls._param_names()})
        model = build_diglm(config["flow_config"], config["head_config"], config["px_weight"])
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
        est.n_features_in_ = model.flow.dim
        est._restore_extra(config)
        return est

    def _restore_extra(self, config: dict) -> None:
        pass


def _jsonable(params: dict) -> dict:
    out = {}
    for k, v in params.items():
        if isinstance(v, dict):
            v = {kk: list(vv) if isinstance(vv, tuple) else vv for kk, vv in v.items()}
        out[k] = v
    return out


class DIGLMRegressor(RegressorMixin, _DIGLMEstimator):
    """A DIGLM for real-valued (or count) targets.

    Args:
        head: ``"heteroscedastic"`` (the paper's head: mean and log-variance linear in ``z``), ``"gaussian"``
            (one noise scale) or ``"poisson"`` (log link, counts).
        **kwargs: flow and training settings, see :class:`DIGLMClassifier`.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(200, 2)).astype("float32")
        >>> y = (X[:, 0] - 2 * X[:, 1]).astype("float32")
        >>> reg = DIGLMRegressor(head="gaussian", epochs=30, lr=1e-2, batch_size=32, flow_kwargs={"num_layers": 2},
        ...                      quiet=True).fit(X, y)
        >>> reg.score(X, y) > 0.9
        True
    """

    _head_families = ("heteroscedastic", "gaussian", "poisson")

    def __init__(self, *, head: str = "heteroscedastic", **kwargs):
        super().__init__(**kwargs)
        self.head = head

    def fit(self, X, y, *, X_val=None, y_val=None, checkpoint_path=None, resume=False):
        """Train flow and head by maximum likelihood of the hybrid objective; return ``self``."""
        if self.head not in self._head_families:
            raise ValueError(f"head must be one of {self._head_families}, got {self.head!r}")
        X = self._check_X_fit(X)
        y_t = as_float_tensor(y, "y", ndim=1, dtype=torch.float32)
        if y_t.shape[0] != X.shape[0]:
            raise ValueError(f"mismatched lengths: X has {X.shape[0]} rows, y has {y_t.shape[0]}")
        if self.head == "poisson" and bool((y_t < 0).any() or (y_t != y_t.round()).any()):
            raise ValueError("y must hold non-negative integer counts for head='poisson'")
        if X_val is not None:
            X_val = self._check_X_fit(X_val, "X_val")
            y_val = as_float_tensor(y_val, "y_val", ndim=1, dtype=torch.float32)
        return self._fit(X, y_t, {"family": self.head}, X_val=X_val, y_val=y_val,
                         checkpoint_path=checkpoint_path, resume=resume)

    def _check_X_fit(self, X, name="X"):
        return as_float_tensor(X, name, ndim=(2, 4), dtype=torch.float32)

    def predict(self, X, return_std: bool = False):
        """Predictive mean (and standard deviation of ``y``) under the point-estimate head."""
        model = self._model()
        X = self._check_X(X)
        mean = batched(lambda xb: model.predict_dist(xb).mean, X).double().numpy()
        if not return_std:
            return mean
        std = batched(lambda xb: model.predict_dist(xb).stddev, X).double().numpy()
        return mean, std

    def score(self, X, y) -> float:
        """Coefficient of determination R^2 of :meth:`predict` (scikit-learn's regressor score)."""
        y = as_float_tensor(y, "y", ndim=1).double().numpy()
        pred = self.predict(X)
        return float(1 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum())

    def log_predictive(self, X, y) -> np.ndarray:
        """``log p(y | x)`` per row under the point-estimate head."""
        model = self._model()
        X = self._check_X(X)
        y_t = as_float_tensor(y, "y", ndim=1, dtype=torch.float32)
        check_same_length(X=X, y=y_t)
        out = []
        with torch.no_grad():
            for s in range(0, X.shape[0], 1024):
                out.append(model.log_py_given_x(X[s:s + 1024], y_t[s:s + 1024]))
        return torch.cat(out).double().numpy()


class DIGLMClassifier(ClassifierMixin, _DIGLMEstimator):
    """A DIGLM for class labels: Bernoulli head for two classes, softmax head for more.

    Args:
        flow: ``"realnvp"`` for tabular X (n, D) or ``"glow"`` for images X (n, C, H, W) with values in [0, 1].
        flow_kwargs: extra arguments of the flow builder (``num_layers``, ``hidden_dims``, ``levels``, ...).
        px_weight: the paper's lambda, the weight of ``log p(x)`` in the objective (0 = discriminative).
        epochs, batch_size, lr, weight_decay, clip_grad, warmup_steps, patience: training settings.
        val_fraction: hold out this fraction of the training data for early stopping.
        seed: makes training reproducible. quiet: hide the progress bar (None: only on a terminal).
        device: ``"cpu"`` or ``"cuda"``.
        on_nonfinite: ``"raise"`` (stop at a NaN/Inf loss, keeping the last good parameters) or ``"skip"``
            (skip such batches and count them in ``history_.skipped_batches``).

    Example:
        >>> import numpy as np
        >>> from sklearn.datasets import make_moons
        >>> X, y = make_moons(400, noise=0.1, random_state=0)
        >>> clf = DIGLMClassifier(epochs=40, px_weight=0.1, quiet=True).fit(X.astype("float32"), y)
        >>> clf.score(X.astype("float32"), y) > 0.9
        True
    """

    def fit(self, X, y, *, X_val=None, y_val=None, checkpoint_path=None, resume=False):
        """Train flow and head by maximum likelihood of the hybrid objective; return ``self``."""
        X = as_float_tensor(X, "X", ndim=(2, 4), dtype=torch.float32)
        y_arr = np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y)
        if y_arr.ndim != 1:
            raise ValueError(f"y must be one-dimensional, got shape {y_arr.shape}")
        if y_arr.shape[0] != X.shape[0]:
            raise ValueError(f"mismatched lengths: X has {X.shape[0]} rows, y has {y_arr.shape[0]}")
        if y_arr.dtype.kind == "f" and not np.isfinite(y_arr).all():
            raise ValueError("y contains NaN or infinite labels")
        if y_arr.dtype == object:
            raise TypeError("y must be an array of class labels (numbers or strings), not objects")
        classes = np.unique(y_arr)
        if classes.size < 2:
            raise ValueError(f"y must contain at least two classes, found only {classes.tolist()}")
        y_t = torch.as_tensor(np.searchsorted(classes, y_arr))
        if X_val is not None:
            X_val = as_float_tensor(X_val, "X_val", ndim=(2, 4), dtype=torch.float32)
            y_val = torch.as_tensor(self._encode(np.asarray(y_val), classes, "y_val"))
        head = {"family": "bernoulli"} if classes.size == 2 else {"family": "categorical",
                                                                  "num_classes": int(classes.size)}
        self._pending_classes = classes
        try:
            return self._fit(X, y_t, head, X_val=X_val, y_val=y_val, checkpoint_path=checkpoint_path,
                             resume=resume)
        finally:
            del self._pending_classes

    def _extra_config(self) -> dict:
        return {"classes": self._pending_classes.tolist()}

    def _restore_extra(self, config: dict) -> None:
        self.classes_ = np.asarray(config["classes"])

    def _fit(self, *args, **kwargs):
        out = super()._fit(*args, **kwargs)
        self.classes_ = self._pending_classes
        return out

    @staticmethod
    def _encode(y, classes, name):
        unknown = np.setdiff1d(np.unique(y), classes)
        if unknown.size:
            raise ValueError(f"{name} has labels not seen in training: {unknown.tolist()[:10]}")
        return np.searchsorted(classes, y)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (n, K) under the point-estimate head."""
        model = self._model()
        return batched(lambda xb: model.head.mean(model.features(xb)), self._check_X(X)).double().numpy()

    def predict(self, X) -> np.ndarray:
        """The most probable class label per row."""
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(axis=1)]

    def score(self, X, y) -> float:
        """Accuracy of :meth:`predict` (scikit-learn's classifier score)."""
        return float(np.mean(self.predict(X) == np.asarray(y)))

    def log_predictive(self, X, y) -> np.ndarray:
        """``log p(y | x)`` per row under the point-estimate head."""
        proba = self.predict_proba(X)
        idx = as_label_tensor(torch.as_tensor(self._encode(np.asarray(y), self.classes_, "y")), "y",
                              num_classes=len(self.classes_), n=proba.shape[0]).numpy()
        return np.log(np.clip(proba[np.arange(len(idx)), idx], 1e-300, None))


def load_estimator(path: str | os.PathLike):
    """Load a saved :class:`DIGLMRegressor` or :class:`DIGLMClassifier`, whichever the file holds."""
    config = load_checkpoint(path).get("config") or {}
    classes = {c.__name__: c for c in (DIGLMRegressor, DIGLMClassifier)}
    if config.get("estimator") not in classes:
        raise CheckpointError(f"{str(path)!r} is not a saved DIGLM estimator")
    return classes[config["estimator"]].load(path)
