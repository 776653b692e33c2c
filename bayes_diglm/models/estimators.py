"""scikit-learn estimators over the DIGLM: ``DIGLMRegressor`` and ``DIGLMClassifier``.

``fit`` trains the flow and a point-estimate GLM head together by maximum likelihood of the hybrid objective
(:class:`bayes_diglm.models.DIGLM`), then, for ``posterior != "point"``, fits a Bayesian head over ``beta`` on
the training features ``z = f(x)`` in one pass (:mod:`bayes_diglm.inference`). Every prediction then goes
through the posterior: ``predict``, ``predict_proba``, ``predict_dist`` (a
:class:`bayes_diglm.inference.base.Predictive`), ``sample`` (posterior draws of the head), and
``bayes_diglm.arviz.to_inference_data(estimator, X=..., y=...)``. ``score_samples`` is ``log p(x)`` under the
flow and ``transform`` gives the features; one pass through the flow gives features, noise weights and
``log p(x)``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, TransformerMixin, clone
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d, validate_data

from .. import __version__, likelihoods
from .._validation import (
    COUNT,
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    SEED,
    Interval,
    StrOptions,
    check_labels,
    check_params,
    check_positive,
    check_targets,
    numeric_array,
    refuse_nonfinite_outputs,
    refuse_overflow,
    refuse_text,
)
from ..flows.spec import FlowSpec, resolve_flow, saveable_flow_config
from ..flows.user import check_flow
from ..inference.base import Predictive, keep_state_on_error
from ..inference.mixed.design import group_columns
from ..inference.persistence import to_state
from ..training import CheckpointError, TrainHistory, load_checkpoint, save_checkpoint, train_module
from .diglm import FlowOutputs, build_diglm
from .saved import check_saved_estimator

__all__ = ["DIGLMRegressor", "DIGLMClassifier", "load_estimator", "REGRESSION_POSTERIORS",
           "CLASSIFICATION_POSTERIORS"]

_TRAIN_PARAMS = ("epochs", "batch_size", "lr", "weight_decay", "clip_grad", "warmup_steps", "patience", "on_nonfinite")

#: ``posterior=`` strings of each estimator (or pass a fitted-to-be head instance).
REGRESSION_POSTERIORS = ("point", "conjugate", "laplace", "nuts", "mixed")
CLASSIFICATION_POSTERIORS = ("point", "laplace", "svi", "nuts", "mixed")

_OUTPUT_BATCH = 1024
# As scikit-learn's MLPs: float32 inputs train a float32 network, all others (float64, int, object) float64.
_FLOAT_DTYPES = (np.float64, np.float32)


def _rows_like_training(name: str):
    """scikit-learn's array check of extra rows (validation, unlabelled) in the estimators' dtypes."""
    return lambda a: check_array(_host(a), dtype=_FLOAT_DTYPES, allow_nd=True, input_name=name)


def _host(X):
    """A torch tensor as a NumPy array of the same dtype (scikit-learn's checks would read it as float64)."""
    return X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else X


class _DIGLMEstimator(TransformerMixin, BaseEstimator):
    """Shared machinery: input checks, training, the posterior head, features, density, save/load.

    Subclasses spell out every hyper-parameter in their own ``__init__`` (scikit-learn reads the signature).
    """

    _posteriors: tuple[str, ...] = ()

    #: every constructor parameter's rule, checked by :func:`bayes_diglm._validation.check_params` before ``fit``
    #: does any work (``flow``, ``head`` and ``posterior`` are resolved by their own lookups)
    _parameter_constraints: dict = {
        "flow": "no_validation", "flow_kwargs": [dict, None], "head": "no_validation",
        "posterior": "no_validation", "px_weight": NON_NEGATIVE, "epochs": COUNT, "batch_size": COUNT,
        "labeled_fraction": FRACTION, "lr": POSITIVE, "weight_decay": NON_NEGATIVE, "clip_grad": [*POSITIVE, None],
        "warmup_steps": [Interval(Integral, 0, None, closed="left")], "val_fraction": [Interval(Real, 0, 1,
                                                                                                closed="left")],
        "patience": [*COUNT, None], "seed": SEED, "quiet": ["boolean", None], "device": [str, torch.device],
        "on_nonfinite": [StrOptions({"raise", "skip"})],
    }

    # -- input handling ---------------------------------------------------------------------------------
    def _validate_X(self, X) -> torch.Tensor:
        """Validated float32 inputs for a fitted estimator (feature count and shape as in ``fit``)."""
        check_is_fitted(self)
        X = numeric_array(X, "X", lambda a: validate_data(self, _host(a), reset=False, dtype=_FLOAT_DTYPES,
                                                          allow_nd=True), self._dtype())
        expected = tuple(self.model_.flow.event_shape)
        if tuple(X.shape[1:]) != expected:
            raise ValueError(f"X must have shape (n, {', '.join(map(str, expected))}), got {tuple(X.shape)}")
        return torch.tensor(X, dtype=self._dtype())

    def _dtype(self) -> torch.dtype:
        """The network's dtype, fixed by the training inputs' (float32 stays float32, anything else float64)."""
        return getattr(torch, self.config_.get("dtype", "float32"))

    def _validate_fit(self, X, y, *, y_numeric: bool):
        refuse_text(X, "X")
        y = (check_targets if y_numeric else check_labels)(_host(y), "y")
        X, y = validate_data(self, _host(X), y, dtype=_FLOAT_DTYPES, allow_nd=True, y_numeric=y_numeric)
        refuse_overflow(X, "X", X.dtype)
        self._flow_spec(X.shape)  # refuse a flow or a shape it cannot take before training anything
        return torch.tensor(X), y

    @staticmethod
    def _validate_unlabeled(X_unlabeled, X: torch.Tensor) -> torch.Tensor | None:
        """Unlabelled inputs checked like the training inputs (None stays None)."""
        if X_unlabeled is None:
            return None
        X_unlabeled = numeric_array(X_unlabeled, "X_unlabeled", _rows_like_training("X_unlabeled"), X.dtype)
        if tuple(X_unlabeled.shape[1:]) != tuple(X.shape[1:]):
            raise ValueError(f"X_unlabeled rows have shape {tuple(X_unlabeled.shape[1:])}, X rows "
                             f"{tuple(X.shape[1:])}")
        return torch.tensor(X_unlabeled, dtype=X.dtype)

    @staticmethod
    def _validate_val(X_val, y_val, X: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
        """Validation data checked like the training data (without touching the estimator's fitted state)."""
        if y_val is None or X_val is None:
            raise ValueError("give both X_val and y_val, or neither")
        X_val = numeric_array(X_val, "X_val", _rows_like_training("X_val"), X.dtype)
        if tuple(X_val.shape[1:]) != tuple(X.shape[1:]):
            raise ValueError(f"X_val rows have shape {tuple(X_val.shape[1:])}, X rows {tuple(X.shape[1:])}")
        y_val = column_or_1d(_host(y_val), warn=True)
        if y_val.shape[0] != X_val.shape[0]:
            raise ValueError(f"mismatched validation data: X_val has {X_val.shape[0]} rows, y_val {y_val.shape[0]}")
        return torch.tensor(X_val, dtype=X.dtype), y_val

    def _flow_spec(self, shape: tuple[int, ...]) -> FlowSpec:
        """``flow=`` and ``flow_kwargs`` resolved for data of ``shape`` (:func:`bayes_diglm.flows.resolve_flow`)."""
        return resolve_flow(self.flow, self.flow_kwargs, shape)

    def _validation_split(self, n: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Row indices of the training part and of the held-out part (``val_fraction``)."""
        if not self.val_fraction:
            return np.arange(n), None
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        n_val = max(1, int(round(self.val_fraction * n)))
        if n_val >= n:
            raise ValueError(f"val_fraction={self.val_fraction!r} leaves no training rows out of {n}")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed)).numpy()
        return perm[n_val:], perm[:n_val]

    # -- the posterior head -----------------------------------------------------------------------------
    def _posterior_template(self):
        """The unfitted Bayesian head that ``posterior`` names (None for ``"point"``)."""
        spec = self.posterior
        if isinstance(spec, str):
            if spec not in self._posteriors:
                raise ValueError(f"posterior must be one of {self._posteriors} or a posterior head instance, "
                                 f"got {spec!r}")
            return None if spec == "point" else self._make_posterior(spec)
        if not (hasattr(spec, "fit") and hasattr(spec, "predict_dist") and hasattr(spec, "get_params")):
            raise TypeError(f"posterior must be a string or a posterior head (with fit, predict_dist, get_params), "
                            f"got {type(spec).__name__}")
        return clone(spec)

    def _make_posterior(self, name: str):  # pragma: no cover - abstract
        raise NotImplementedError

    def _head_kwargs(self, precision: np.ndarray | None, groups) -> dict:
        """Keyword arguments of the posterior head's fit / predict_dist / ArviZ methods at given rows."""
        kw = {}
        if precision is not None and self._uses_noise_weights():
            kw["sample_weight"] = precision / self.noise_normaliser_
        if groups is not None:
            kw["groups"] = groups
        return kw

    def _uses_noise_weights(self) -> bool:
        return False

    # -- fitting ----------------------------------------------------------------------------------------
    _numeric_target = True

    def fit(self, X, y, *, X_unlabeled=None, groups=None, X_val=None, y_val=None, checkpoint_path=None,
            resume=False):
        """Train flow and point head by maximum likelihood of the hybrid objective, then fit the posterior head
        on the training features; return ``self``. ``groups`` (one label per row: an array, or a mapping /
        DataFrame of several grouping factors) is for ``posterior="mixed"``.

        ``X_unlabeled`` (inputs without targets) makes it semi-supervised: every minibatch holds
        ``labeled_fraction`` labelled rows and the rest unlabelled, and the objective is
        ``mean_labelled log p(y|x) + px_weight * mean_all log p(x)``; the posterior head is fitted on the labelled
        rows' features only."""
        with keep_state_on_error(self):
            check_params(self)
            self._check_params()
            X, y = self._validate_fit(X, y, y_numeric=self._numeric_target)
            y_t, y_head, head_config = self._training_targets(y)
            if X_val is not None or y_val is not None:
                X_val, y_val = self._validate_val(X_val, y_val, X)
                y_val = self._validation_targets(y_val)
            return self._fit(X, y_t, y_head, head_config, groups=groups, X_val=X_val, y_val=y_val,
                             checkpoint_path=checkpoint_path, resume=resume,
                             X_unlabeled=self._validate_unlabeled(X_unlabeled, X))

    def _check_params(self) -> None:
        pass

    def _training_targets(self, y) -> tuple[torch.Tensor, np.ndarray, dict]:  # pragma: no cover - abstract
        """``(targets for training, targets for the posterior head, the point head's config)``."""
        raise NotImplementedError

    def _validation_targets(self, y_val) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _fit(self, X: torch.Tensor, y_t: torch.Tensor, y_head: np.ndarray, head_config: dict, *, groups, X_val,
             y_val, checkpoint_path, resume, X_unlabeled=None):
        check_positive(self.px_weight, "px_weight", allow_zero=True)
        if groups is not None:
            group_columns(groups, X.shape[0])  # every factor has one label per row, before training
        template = self._posterior_template()
        spec = self._flow_spec(tuple(X.shape))
        flow_config = spec.config
        with torch.random.fork_rng(devices=[]):  # seed the initial weights without touching the caller's stream
            torch.manual_seed(self.seed)
            model = build_diglm(flow_config, head_config, self.px_weight, flow=spec.build()).to(X.dtype)
        if not spec.builtin:
            check_flow(model.flow, X[:8])  # a step without an inverse or a log-det is named before training
        if y_t.is_floating_point():
            y_t, y_val = y_t.to(X.dtype), None if y_val is None else y_val.to(X.dtype)
        train_rows = np.arange(X.shape[0])
        if X_val is None:
            train_rows, val_rows = self._validation_split(X.shape[0])
            if val_rows is not None:
                X_val, y_val = X[val_rows], y_t[val_rows]
        config = {"version": __version__, "estimator": type(self).__name__, "flow_config": flow_config,
                  "head_config": head_config, "px_weight": float(self.px_weight),
                  "dtype": str(X.dtype).removeprefix("torch."), **self._extra_config()}
        history = train_module(
            model, X[train_rows], y_t[train_rows], X_val=X_val, y_val=y_val, seed=self.seed, quiet=self.quiet,
            device=self.device, checkpoint_path=checkpoint_path, resume=resume, config=config,
            X_unlabeled=X_unlabeled, labeled_fraction=self.labeled_fraction,
            **{k: getattr(self, k) for k in _TRAIN_PARAMS},
        )
        model = model.cpu().eval()
        self.model_, self.history_, self.config_ = model, history, config
        self.posterior_ = None
        self.__dict__.pop("noise_normaliser_", None)
        if template is not None:
            Z, _, precision = self._outputs(X[train_rows])
            if precision is not None and self._uses_noise_weights_for(template):
                self.noise_normaliser_ = float(precision.mean())
            self._set_known_noise(template)
            head_groups = None if groups is None else _group_rows(groups, train_rows)
            self.posterior_ = template
            self.posterior_.fit(Z, y_head[train_rows], **self._head_kwargs(precision, head_groups))
        return self

    def _uses_noise_weights_for(self, template) -> bool:
        return False

    def _set_known_noise(self, template) -> None:
        """Give the head the trained point head's noise where it takes a known one (regression)."""

    def _extra_config(self) -> dict:
        return {}

    # -- one pass through the flow ----------------------------------------------------------------------
    def _outputs(self, X: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Features ``z`` (n, D), ``log p(x)`` (n,) and the point head's noise precisions (n,) or None, float64,
        from one no-gradient pass through the flow in batches."""
        model = self.model_.to(self.device)
        parts = []
        try:
            with torch.no_grad():
                for start in range(0, X.shape[0], _OUTPUT_BATCH):
                    out = model.outputs(X[start:start + _OUTPUT_BATCH].to(self.device))
                    parts.append(type(out)(*(None if t is None else t.cpu() for t in out)))
        finally:
            model.cpu()
        z = torch.cat([p.features for p in parts]).double().numpy()
        log_px = torch.cat([p.log_px for p in parts]).double().numpy()
        precision = None
        if parts[0].noise_precision is not None:
            precision = torch.cat([p.noise_precision for p in parts]).double().numpy()
        refuse_nonfinite_outputs("X", "the flow's output", z, log_px, precision)
        return z, log_px, precision

    def _features_and_kwargs(self, X, groups) -> tuple[np.ndarray, dict]:
        Z, _, precision = self._outputs(self._validate_X(X))
        return Z, self._head_kwargs(precision, groups)

    def _bayesian(self, what: str):
        check_is_fitted(self)
        if self.posterior_ is None:
            raise ValueError(f"{what} needs a posterior over beta; this {type(self).__name__} was fitted with "
                             "posterior='point' (use posterior='conjugate', 'laplace', ... or a head instance)")
        return self.posterior_

    # -- the joint model p(x, y) ------------------------------------------------------------------------
    def _sampled_inputs(self, x: np.ndarray) -> np.ndarray:
        """Generated inputs in the estimator's dtype; a Glow's are clipped to [0, 1] (its logit map reaches
        ``alpha / (1 - 2 alpha)`` beyond), the only images it accepts back."""
        if self.config_["flow_config"].get("kind") == "glow":
            x = np.clip(x, 0.0, 1.0)
        return x.astype(str(self._dtype()).removeprefix("torch."))

    # -- outputs ----------------------------------------------------------------------------------------
    def score_samples(self, X) -> np.ndarray:
        """Exact ``log p(x)`` (nats) per row under the flow; higher means more like the training data."""
        return self._outputs(self._validate_X(X))[1]

    def transform(self, X) -> np.ndarray:
        """The flow features ``z = f(x)`` (n, D), float64."""
        return self._outputs(self._validate_X(X))[0]

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Names of the columns of :meth:`transform`: ``z0 ... z{D-1}`` (so ``set_output(transform="pandas")``
        works); ``input_features``, if given, must match the inputs seen in ``fit``."""
        check_is_fitted(self)
        if input_features is not None:
            names = np.asarray(input_features, dtype=object)
            seen = getattr(self, "feature_names_in_", None)
            if names.ndim != 1 or len(names) != self.n_features_in_ or (
                    seen is not None and not np.array_equal(names, seen)):
                raise ValueError(f"input_features={list(names)} do not match the {self.n_features_in_} inputs "
                                 f"seen in fit{'' if seen is None else f' ({list(seen)})'}")
        return np.asarray([f"z{i}" for i in range(self.model_.head.dim)], dtype=object)

    def flow_outputs(self, X) -> FlowOutputs:
        """Features ``z = f(x)`` (n, D), ``log p(x)`` (n,) and the point head's noise precisions (n,; None unless
        heteroscedastic) from one pass through the flow, as float64 NumPy arrays."""
        return FlowOutputs(*self._outputs(self._validate_X(X)))

    def predict_dist(self, X, *, groups=None, point: bool = False) -> Predictive:
        """The predictive distribution of ``y`` at the rows of ``X``.

        With a Bayesian head it integrates over the posterior of ``beta`` (e.g. Student-t for
        ``posterior="conjugate"``, with the heteroscedastic head's noise precisions at these rows as known
        weights); with ``posterior="point"``, or ``point=True`` whatever the posterior, it is the jointly
        trained head's likelihood at its point estimate.
        """
        Z, kw = self._features_and_kwargs(X, groups)
        classes = getattr(self, "classes_", None)
        if point or self.posterior_ is None:
            return self._point_predictive(Z, classes)
        pred = self.posterior_.predict_dist(Z, **kw)
        return pred if classes is None else Predictive(pred.distribution, classes=classes)

    def _point_predictive(self, Z: np.ndarray, classes) -> Predictive:
        """The trained head's likelihood at its point estimate, in float64 (its nuisance values as floats)."""
        head = self.model_.head
        with torch.no_grad():
            f = head.predictor(torch.from_numpy(Z).to(self._dtype())).double()
            lik = self._fixed_point_likelihood()
        return Predictive(lik.dist(f), classes=classes, discrete=lik.discrete)

    def _fixed_point_likelihood(self) -> likelihoods.Likelihood:
        """The point head's family with its trained nuisance parameters as plain numbers (float64)."""
        lik = self.model_.head.likelihood
        return type(lik)(**lik.config())

    def log_predictive(self, X, y, *, groups=None) -> np.ndarray:
        """``log p(y | x)`` per row under :meth:`predict_dist`."""
        return self.predict_dist(X, groups=groups).log_prob(column_or_1d(y))

    def sample(self, n: int, *, generator=None) -> dict[str, np.ndarray]:
        """``n`` draws from the posterior over the head's weights, named as the head names them
        (``"beta"``, ``"intercept"``, ``"sigma"``, ...), leading axis ``n``."""
        return self._bayesian("sample").sample(n, generator=generator)

    def posterior_dims(self, feature_names=None) -> tuple[dict, dict]:
        """ArviZ dims and coords of :meth:`sample`'s draws (features named ``z0, z1, ...`` by default)."""
        head = self._bayesian("posterior_dims")
        if feature_names is None:
            feature_names = [f"z{j}" for j in range(self.model_.flow.dim)]
        return head.posterior_dims(feature_names)

    def pointwise_log_likelihood(self, draws: dict, X, y, *, groups=None) -> np.ndarray:
        """``log p(y_i | x_i, draw_s)`` (S, n): the head's, on the features of ``X`` (for ``az.loo``)."""
        head = self._bayesian("pointwise_log_likelihood")
        Z, kw = self._features_and_kwargs(X, groups)
        return head.pointwise_log_likelihood(draws, Z, self._encode_head_y(y), **kw)

    def sample_predictive(self, draws: dict, X, *, generator=None, groups=None) -> np.ndarray:
        """One replicate of ``y`` per draw and row of ``X``, shape (S, n) (the posterior predictive)."""
        head = self._bayesian("sample_predictive")
        Z, kw = self._features_and_kwargs(X, groups)
        return self._decode_head_y(head.sample_predictive(draws, Z, generator=generator, **kw))

    def _encode_head_y(self, y) -> np.ndarray:
        return check_targets(y, "y").reshape(-1)

    def _decode_head_y(self, y: np.ndarray) -> np.ndarray:
        return y

    # -- persistence ------------------------------------------------------------------------------------
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


#: the family of the Bayesian heads of a point head whose noise variance is given per row (the heteroscedastic
#: head): a Gaussian whose noise, known per row, enters as weights
_KNOWN_NOISE_FAMILY = "gaussian"


def _known_gaussian_noise(template) -> bool:
    from ..inference.laplace import LaplaceRegressor

    return isinstance(template, LaplaceRegressor) and template.likelihood == _KNOWN_NOISE_FAMILY


def _per_row_noise(lik: likelihoods.Likelihood) -> bool:
    """Whether the family's predictor gives each row its own noise variance (``noise_log_var``)."""
    return callable(getattr(lik, "noise_log_var", None))


def _group_rows(groups, rows: np.ndarray):
    """The rows ``rows`` of ``groups``, each grouping factor sliced, keeping its form (an array, a mapping of
    factors, a pandas DataFrame or Series) so that the mixed heads find the factors by name."""
    if hasattr(groups, "iloc"):  # pandas DataFrame or Series
        return groups.iloc[rows]
    if isinstance(groups, Mapping):
        return {key: np.asarray(value)[rows] for key, value in groups.items()}
    return np.asarray(groups)[rows]


class DIGLMRegressor(RegressorMixin, _DIGLMEstimator):
    """A DIGLM for real-valued (or count) targets, with a posterior over the GLM weights.

    Args:
        flow: ``"realnvp"`` or ``"spline"`` (neural spline flow) for tabular X (n, D), D >= 2, or ``"glow"`` for
            images X (n, C, H, W) in [0, 1]; or a user's flow: Pyro transforms (one, a list, a
            ``ComposeTransformModule``), a zuko flow, or a factory of one (:mod:`bayes_diglm.flows.spec`).
        flow_kwargs: extra arguments of the flow builder or factory (``num_layers``, ``hidden_dims``, ...).
        head: the jointly trained point head, any registered regression family (``likelihoods.names()``):
            ``"heteroscedastic"`` (the paper's: mean and log-variance linear in ``z``), ``"gaussian"`` (one noise
            scale), ``"poisson"`` (log link, counts), or a user's registered family; its nuisance parameters
            are trained with beta.
        posterior: ``"point"`` (the trained head as is), ``"conjugate"`` (exact Normal-Inverse-Gamma over
            beta and sigma^2, with the heteroscedastic head's learned noise precisions as known weights;
            Gaussian heads), ``"laplace"`` (Laplace over beta in the head's family, its trained nuisance values
            taken as known, ``LaplaceRegressor(likelihood=head)``; for the heteroscedastic head the Gaussian
            posterior with the trained noise variances as known, ``LaplaceRegressor(likelihood="gaussian")``;
            conjugate also integrates sigma^2 out), ``"nuts"`` (Pyro's NUTS over beta and the family's nuisance
            parameters, ``NUTSRegressor(likelihood=head)``; not for per-row-noise heads), ``"mixed"``
            (random effects per group: pass ``groups`` to fit and predict), or a posterior head instance
            (cloned and fitted; its parameters are nested, ``posterior__prior_precision``).
        px_weight: the paper's lambda, the weight of ``log p(x)`` in the objective (0 = discriminative).
        epochs, batch_size, lr, weight_decay, clip_grad, warmup_steps, patience: training settings
            (:func:`bayes_diglm.training.train_module`).
        val_fraction: hold out this fraction of the training data for early stopping.
        labeled_fraction: with ``fit(..., X_unlabeled=...)``, the labelled share of every minibatch.
        seed: makes training reproducible. quiet: hide the progress bar (None: only on a terminal).
        device: ``"cpu"`` or ``"cuda"``.
        on_nonfinite: ``"raise"`` or ``"skip"`` batches whose loss is NaN/Inf.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(200, 2))
        >>> y = X[:, 0] - 2 * X[:, 1] + 0.1 * rng.normal(size=200)
        >>> reg = DIGLMRegressor(posterior="conjugate", epochs=30, lr=1e-2, batch_size=32,
        ...                      flow_kwargs={"num_layers": 2}, quiet=True).fit(X, y)
        >>> reg.score(X, y) > 0.9
        True
        >>> lo, hi = reg.predict_dist(X[:3]).interval(0.9)
        >>> bool(np.all(lo < hi))
        True
    """

    _posteriors = REGRESSION_POSTERIORS

    def __init__(
        self,
        *,
        flow="realnvp",
        flow_kwargs: dict | None = None,
        head: str = "heteroscedastic",
        posterior="point",
        px_weight: float = 1.0,
        epochs: int = 20,
        batch_size: int = 128,
        labeled_fraction: float = 0.5,
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
        self.head = head
        self.posterior = posterior
        self.px_weight = px_weight
        self.epochs = epochs
        self.batch_size = batch_size
        self.labeled_fraction = labeled_fraction
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

    def _check_params(self) -> None:
        self._family()

    def _family(self) -> likelihoods.Likelihood:
        """The ``head`` family with its default settings (a registered regression family, else an error)."""
        if not isinstance(self.head, str):
            raise TypeError(f"head must be the name of a registered likelihood family, got {type(self.head).__name__}")
        regression = [n for n in likelihoods.names() if likelihoods.get(n).task == "regression"]
        if self.head not in regression:
            raise ValueError(f"head must be one of the registered regression families {regression}, got {self.head!r}")
        return likelihoods.build(self.head)

    def _training_targets(self, y) -> tuple[torch.Tensor, np.ndarray, dict]:
        y = self._family().check_target(y)
        return torch.tensor(y), y, {"family": self.head}

    def _validation_targets(self, y_val) -> torch.Tensor:
        return torch.as_tensor(self._family().check_target(check_targets(y_val, "y_val")))

    def _make_posterior(self, name: str):
        family = self._family()
        if name == "conjugate":
            if not family.gaussian_mean:
                raise ValueError(f"posterior='conjugate' is the Normal-Inverse-Gamma posterior of a Gaussian head; "
                                 f"head={self.head!r} takes posterior='laplace'")
            from ..inference.conjugate import ConjugateLinearRegression

            return ConjugateLinearRegression()
        if name == "laplace":
            from ..inference.laplace import LaplaceRegressor

            return LaplaceRegressor(likelihood=_KNOWN_NOISE_FAMILY if _per_row_noise(family) else self.head)
        if name == "nuts":
            if _per_row_noise(family):
                raise ValueError(f"posterior='nuts' samples beta and the family's nuisance parameters; head="
                                 f"{self.head!r} gives each row its own noise from the features: use posterior="
                                 f"'conjugate' or 'laplace', or a head without per-row noise")
            from ..inference.nuts import NUTSRegressor

            return NUTSRegressor(likelihood=self.head)
        from ..inference.mixed import MixedEffectsRegression

        return MixedEffectsRegression()

    def _uses_noise_weights_for(self, template) -> bool:
        from ..inference.conjugate import ConjugateLinearRegression

        return _per_row_noise(self._family()) and (isinstance(template, ConjugateLinearRegression)
                                                   or _known_gaussian_noise(template))

    def _set_known_noise(self, template) -> None:
        """A Laplace head takes the trained point head's nuisance as known: in the head's own family its trained
        values (the Gaussian head's ``sigma^2``, a Student-t's scale ...), or, for a head with per-row noise
        (heteroscedastic), noise ``1 / noise_normaliser_``, so that with the weights ``w_i = precision_i /
        noise_normaliser_`` each row's variance is the learned ``sigma^2(z_i)``."""
        from ..inference.laplace import LaplaceRegressor

        if not isinstance(template, LaplaceRegressor):
            return
        if self._uses_noise_weights_for(template):
            template.set_params(noise_variance=1.0 / self.noise_normaliser_)
        elif template.likelihood == self.head:
            template.set_params(likelihood_kwargs=self._fixed_point_likelihood().config() or None)

    def _uses_noise_weights(self) -> bool:
        return self._uses_noise_weights_for(self.posterior_) and hasattr(self, "noise_normaliser_")

    def sample_joint(self, n: int, *, generator=None, temperature: float = 1.0):
        """Draw ``(X, y)`` from the joint model: ``z`` from the flow's base, ``x = f^{-1}(z)``, ``y`` from
        :meth:`predict_dist` at ``x`` (the posterior predictive, or the point head's likelihood).
        ``temperature < 1`` scales the base: no longer the model. ``generator``: a NumPy Generator or int seed."""
        from .sampling import sample_joint

        check_is_fitted(self)

        def sample_y(x, z, rng):
            return self.predict_dist(self._sampled_inputs(x)).sample(1, generator=rng)[0]

        s = sample_joint(self.model_.flow, sample_y, n, generator=generator, temperature=temperature)
        return self._sampled_inputs(s.x), s.y

    def predict(self, X, return_std: bool = False, *, groups=None):
        """Predictive mean of ``y`` (and its standard deviation with ``return_std``) under :meth:`predict_dist`."""
        pred = self.predict_dist(X, groups=groups)
        return (pred.mean, pred.stddev) if return_std else pred.mean

    # -- the posterior head on streamed data ------------------------------------------------------------
    def fit_posterior(self, chunks):
        r"""Fit (or refit) the Bayesian head over beta on data streamed in chunks, the trained flow kept as is.

        ``chunks`` is any iterable of ``(X, y)`` pairs (for example a reader of a file too large for memory).
        Each chunk goes through the flow once (:meth:`flow_outputs`: features ``z = f(x)`` and, for the
        heteroscedastic head, the noise precisions) and is added to a fresh clone of the ``posterior`` head
        with its ``partial_fit``; memory is one chunk plus the head's statistics. The result equals
        ``fit``'s one-pass head on the same rows concatenated (the conjugate head's statistics add).

        Noise weights (``head="heteroscedastic"`` with the conjugate head): as in ``fit``, the known relative
        precisions are the point head's :math:`\exp(-\log\sigma^2(z))` divided by ``noise_normaliser_``, the
        mean precision over the rows of ``fit`` (so heads fitted in memory and streamed on the same flow share
        one scale, and :meth:`noise_weights` gives the same weights at new rows). An estimator fitted with
        ``posterior="point"`` has no normaliser yet: the first chunk's mean precision is used. The scale
        only sets the units of ``sigma^2``; it changes the predictive only through the weak prior.

        Why this spelling and not scikit-learn's ``partial_fit``: ``partial_fit`` continues fitting the whole
        estimator one batch at a time, while this refits only the head, with the flow frozen, and it replaces
        the head only after the last chunk was read. A chunk that is refused (wrong width, non-finite or
        non-numeric values, mismatched lengths) or a reader that fails part-way leaves the fitted state, the
        previous head included, exactly as it was, which a chunk-at-a-time method could not promise.

        Returns ``self``.

        Example:
            >>> import numpy as np
            >>> rng = np.random.default_rng(0)
            >>> X = rng.normal(size=(300, 2)); y = X[:, 0] - X[:, 1] + 0.1 * rng.normal(size=300)
            >>> reg = DIGLMRegressor(posterior="conjugate", epochs=2, flow_kwargs={"num_layers": 2},
            ...                      quiet=True).fit(X[:100], y[:100])
            >>> reg = reg.fit_posterior((X[i:i + 50], y[i:i + 50]) for i in range(0, 300, 50))
            >>> int(reg.posterior_.stats_.n)
            300
        """
        check_is_fitted(self)
        if isinstance(chunks, str | bytes) or not isinstance(chunks, Iterable):
            raise TypeError(f"chunks must be an iterable of (X, y) pairs (e.g. a generator), got "
                            f"{type(chunks).__name__}")
        with keep_state_on_error(self):
            head = self._posterior_template()
            if head is None:
                raise ValueError("fit_posterior needs a Bayesian head: this estimator has posterior='point' (set "
                                 "posterior='conjugate' or a head instance with set_params first)")
            if not hasattr(head, "partial_fit"):
                raise ValueError(f"fit_posterior streams into heads with partial_fit; {type(head).__name__} has "
                                 "none (fit it in memory with fit)")
            weighted = self._uses_noise_weights_for(head)
            normaliser = getattr(self, "noise_normaliser_", None)
            rows = 0
            for k, chunk in enumerate(chunks):
                X, y = self._check_chunk(chunk, k)
                Z, _, precision = self._outputs(self._validate_X(X))
                kw = {}
                if weighted:
                    normaliser = float(precision.mean()) if normaliser is None else normaliser
                    kw["sample_weight"] = precision / normaliser
                head.partial_fit(Z, y, **kw)
                rows += y.shape[0]
            if rows == 0:
                raise ValueError("chunks held no rows: fit_posterior needs at least one (X, y) chunk")
            self.posterior_ = head
            if weighted:
                self.noise_normaliser_ = normaliser
        return self

    @staticmethod
    def _check_chunk(chunk, k: int) -> tuple[object, np.ndarray]:
        if not (isinstance(chunk, tuple | list) and len(chunk) == 2):
            raise TypeError(f"chunk {k} must be an (X, y) pair, got {type(chunk).__name__}"
                            + (f" of length {len(chunk)}" if isinstance(chunk, tuple | list) else ""))
        X, y = chunk
        y = column_or_1d(_host(y), warn=True)
        try:
            y = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise TypeError(f"chunk {k}: y must be numeric, got dtype {y.dtype}") from err
        if not np.all(np.isfinite(y)):
            raise ValueError(f"chunk {k}: y holds NaN or infinite values")
        if len(X) != y.shape[0]:
            raise ValueError(f"chunk {k}: X has {len(X)} rows, y {y.shape[0]}")
        return X, y

    def noise_weights(self, X) -> np.ndarray:
        r"""The known relative noise precisions :math:`w(x)` the conjugate head uses at the rows of ``X``.

        ``y ~ N(x^T beta, sigma^2 / w(x))`` with :math:`w(x) = \exp(-\log\sigma^2(z)) / c`: the heteroscedastic
        point head's precision at ``z = f(x)`` over ``noise_normaliser_`` ``c`` (the mean over the rows the head
        was fitted on). These are the weights :meth:`predict_dist` passes to the head; use them for other
        predictives of the same head (e.g. its prior predictive). Float64, shape (n,).
        """
        check_is_fitted(self)
        if not _per_row_noise(self._family()):
            raise ValueError(f"noise_weights exist for heads with per-row noise (head='heteroscedastic' only), "
                             f"not head={self.head!r}")
        if not hasattr(self, "noise_normaliser_"):
            raise ValueError("noise_weights need a conjugate posterior head (posterior='conjugate'), fitted by fit "
                             "or fit_posterior; this estimator has none")
        return self._outputs(self._validate_X(X))[2] / self.noise_normaliser_


class DIGLMClassifier(ClassifierMixin, _DIGLMEstimator):
    """A DIGLM for class labels (Bernoulli head for two classes, softmax for more), with a posterior over beta.

    Args:
        flow: ``"realnvp"`` or ``"spline"`` (neural spline flow) for tabular X (n, D), D >= 2, or ``"glow"`` for
            images X (n, C, H, W) in [0, 1]; or a user's flow: Pyro transforms (one, a list, a
            ``ComposeTransformModule``), a zuko flow, or a factory of one (:mod:`bayes_diglm.flows.spec`).
        flow_kwargs: extra arguments of the flow builder or factory (``num_layers``, ``hidden_dims``, ...).
        head: the jointly trained point head's family: None (the logistic family for two classes, the softmax
            for more) or any registered classification family (built with ``num_classes=K`` where it takes
            one); ``posterior="laplace"`` puts the posterior in the same family.
        posterior: ``"point"`` (the trained head as is), ``"laplace"`` (Laplace over beta, probit predictive),
            ``"svi"`` (variational, Pyro), ``"nuts"`` (Pyro's NUTS, real chains), ``"mixed"`` (random effects per
            group: pass ``groups``), or a posterior
            head instance (cloned and fitted; nested parameters ``posterior__prior_precision``).
        px_weight: the paper's lambda, the weight of ``log p(x)`` in the objective (0 = discriminative).
        epochs, batch_size, lr, weight_decay, clip_grad, warmup_steps, patience: training settings.
        val_fraction: hold out this fraction of the training data for early stopping.
        labeled_fraction: with ``fit(..., X_unlabeled=...)``, the labelled share of every minibatch.
        seed: makes training reproducible. quiet: hide the progress bar (None: only on a terminal).
        device: ``"cpu"`` or ``"cuda"``.
        on_nonfinite: ``"raise"`` (stop at a NaN/Inf loss, keeping the last good parameters) or ``"skip"``
            (skip such batches and count them in ``history_.skipped_batches``).

    Labels may be any hashable values (``classes_`` holds them sorted); a continuous target is refused.

    Example:
        >>> import numpy as np
        >>> from sklearn.datasets import make_moons
        >>> X, y = make_moons(400, noise=0.1, random_state=0)
        >>> clf = DIGLMClassifier(epochs=40, px_weight=0.1, posterior="laplace", quiet=True).fit(X, y)
        >>> clf.score(X, y) > 0.9
        True
    """

    _posteriors = CLASSIFICATION_POSTERIORS
    _numeric_target = False

    def __init__(
        self,
        *,
        flow="realnvp",
        flow_kwargs: dict | None = None,
        head: str | None = None,
        posterior="point",
        px_weight: float = 1.0,
        epochs: int = 20,
        batch_size: int = 128,
        labeled_fraction: float = 0.5,
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
        self.head = head
        self.posterior = posterior
        self.px_weight = px_weight
        self.epochs = epochs
        self.batch_size = batch_size
        self.labeled_fraction = labeled_fraction
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

    def _check_params(self) -> None:
        if self.head is None:
            return
        classification = [n for n in likelihoods.names() if likelihoods.get(n).task == "classification"]
        if self.head not in classification:
            raise ValueError(f"head must be None or one of the registered classification families {classification}, "
                             f"got {self.head!r}")
        if self.posterior == "svi":
            raise ValueError("posterior='svi' has the logistic/softmax family only; with head= use 'laplace'")

    def _training_targets(self, y) -> tuple[torch.Tensor, np.ndarray, dict]:
        check_classification_targets(y)
        classes, index = np.unique(y, return_inverse=True)
        if classes.size < 2:
            raise ValueError(f"y must contain at least two classes, found only 1 class: {classes.tolist()}")
        self.classes_ = classes
        index = index.reshape(-1)
        family = likelihoods.for_classes(self.head, int(classes.size))
        head = {"family": family.name, **family.config()}
        return torch.as_tensor(index), index, head

    def _validation_targets(self, y_val) -> torch.Tensor:
        return torch.as_tensor(self._encode(y_val, self.classes_, "y_val"))

    def _make_posterior(self, name: str):
        if name == "laplace":
            from ..inference.laplace import LaplaceClassifier

            return LaplaceClassifier(likelihood=self.head)
        if name == "svi":
            from ..inference.svi import SVIClassifier

            return SVIClassifier()
        if name == "nuts":
            from ..inference.nuts import NUTSClassifier

            return NUTSClassifier(likelihood=self.head)
        from ..inference.mixed import MixedEffectsClassifier

        return MixedEffectsClassifier()

    def _extra_config(self) -> dict:
        return {"classes": self.classes_.tolist()}

    def _restore_extra(self, config: dict) -> None:
        self.classes_ = np.asarray(config["classes"])

    @staticmethod
    def _encode(y, classes, name) -> np.ndarray:
        y = column_or_1d(y)
        index = np.clip(np.searchsorted(classes, y), 0, len(classes) - 1)
        unknown = y[classes[index] != y]
        if unknown.size:
            raise ValueError(f"{name} has labels not seen in training: {np.unique(unknown).tolist()[:10]}")
        return index

    def _encode_head_y(self, y) -> np.ndarray:
        return self._encode(y, self.classes_, "y")

    def _decode_head_y(self, y: np.ndarray) -> np.ndarray:
        return self.classes_[np.asarray(y).astype(np.int64)]

    def sample_joint(self, n: int, *, y=None, generator=None, temperature: float = 1.0):
        """Draw ``(X, labels)`` from the joint model ``p(x, y)`` (:mod:`bayes_diglm.models.sampling`).

        ``y=None``: ``z`` from the flow's base, ``x = f^{-1}(z)``, a label from the head's predictive at ``z``
        (the posterior head with a fresh draw of beta per row, or the point head with ``posterior="point"``).
        ``y=k`` (one of ``classes_``): exact draws of ``p(x | y = k)`` by rejection from the base (the
        acceptance rate is the model's ``p(y = k)``; use :func:`~bayes_diglm.models.sampling.sample_class_conditional`
        to see it). ``temperature < 1`` scales the base: no longer the model. ``generator``: a NumPy
        Generator or int seed.
        """
        from .sampling import (
            labels_from,
            point_label_model,
            posterior_label_model,
            sample_class_conditional,
            sample_joint,
        )

        check_is_fitted(self)
        label_model = (point_label_model(self.model_.head) if self.posterior_ is None
                       else posterior_label_model(self.posterior_))
        if y is None:
            s = sample_joint(self.model_.flow, labels_from(label_model), n, generator=generator,
                             temperature=temperature)
            return self._sampled_inputs(s.x), self.classes_[s.y]
        k = np.flatnonzero(self.classes_ == np.asarray(y, dtype=self.classes_.dtype)) if np.ndim(y) == 0 else []
        if len(k) != 1:
            raise ValueError(f"y={y!r} is not one of the classes {self.classes_.tolist()}")
        draw = sample_class_conditional(self.model_.flow, label_model, n, int(k[0]), generator=generator,
                                        temperature=temperature)
        return self._sampled_inputs(draw.x), np.repeat(self.classes_[k], draw.x.shape[0])

    def predict_proba(self, X, *, groups=None) -> np.ndarray:
        """Class probabilities (n, K), columns in ``classes_`` order, under :meth:`predict_dist`."""
        return self.predict_dist(X, groups=groups).probs

    def predict(self, X, *, groups=None) -> np.ndarray:
        """The most probable class label per row."""
        proba = self.predict_proba(X, groups=groups)
        return self.classes_[proba.argmax(axis=1)]


def load_estimator(path: str | os.PathLike, *, key: bytes | str | None = None):
    """Load a saved :class:`DIGLMRegressor` or :class:`DIGLMClassifier`, whichever the file holds (``key``: as
    in :meth:`DIGLMRegressor.load`)."""
    config = load_checkpoint(path, key=key).get("config")
    classes = {c.__name__: c for c in (DIGLMRegressor, DIGLMClassifier)}
    if not isinstance(config, dict) or not isinstance(config.get("estimator"), str) or (
            config["estimator"] not in classes):
        raise CheckpointError(f"{str(path)!r} is not a saved DIGLM estimator")
    return classes[config["estimator"]].load(path, key=key)
