"""The shared machinery of the DIGLM estimators: training, the posterior head, one pass through the flow, the
predictive and the posterior's draws."""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ... import __version__, likelihoods
from ..._validation import (
    COUNT,
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    SEED,
    Interval,
    StrOptions,
    check_params,
    check_positive,
    check_targets,
    refuse_nonfinite_outputs,
)
from ...flows.dequantize import TabularDequantizer
from ...flows.user import check_flow
from ...inference.base import Predictive, family_context, keep_state_on_error
from ...inference.mixed.design import group_columns
from ...training import content_digest, train_module
from ..diglm import FlowOutputs, build_diglm
from .inputs import _InputChecks
from .persistence import _Persistence
from .point import PointHead

__all__ = ["CLASSIFICATION_POSTERIORS", "REGRESSION_POSTERIORS"]

_TRAIN_PARAMS = ("epochs", "batch_size", "lr", "weight_decay", "clip_grad", "warmup_steps", "patience", "on_nonfinite")

#: ``posterior=`` strings of each estimator (or pass a fitted-to-be head instance).
REGRESSION_POSTERIORS = ("point", "conjugate", "laplace", "nuts", "mixed")
CLASSIFICATION_POSTERIORS = ("point", "laplace", "svi", "nuts", "mixed")

_OUTPUT_BATCH = 1024


def _group_rows(groups, rows: np.ndarray):
    """The rows ``rows`` of ``groups``, each grouping factor sliced, keeping its form (an array, a mapping of
    factors, a pandas DataFrame or Series) so that the mixed heads find the factors by name."""
    if hasattr(groups, "iloc"):  # pandas DataFrame or Series
        return groups.iloc[rows]
    if isinstance(groups, Mapping):
        return {key: np.asarray(value)[rows] for key, value in groups.items()}
    return np.asarray(groups)[rows]


class _DIGLMEstimator(_InputChecks, _Persistence, TransformerMixin, BaseEstimator):
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

    def _head_kwargs(self, precision: np.ndarray | None, groups, context: dict | None = None) -> dict:
        """The per-row context of the posterior head's fit / predict_dist / ArviZ methods at given rows: noise
        precisions (for a head that declares ``sample_weight`` as such), groups, the family's keywords."""
        kw = dict(context or {})
        if precision is not None and self._uses_noise_weights():
            kw["sample_weight"] = precision / self.noise_normaliser_
        if groups is not None:
            kw["groups"] = groups
        return kw

    def _context_names(self) -> tuple[str, ...]:
        """The point head's family's per-row keywords (``("trials",)`` for the binomial)."""
        return tuple(likelihoods.get(self.head).context) if isinstance(self.head, str) else ()

    def _family_context(self, context: dict, n: int) -> dict[str, np.ndarray]:
        """The family's per-row keywords checked (float64, shape (n,)); any other keyword is a ``TypeError``."""
        names = self._context_names()
        unknown = sorted(set(context) - set(names))
        if unknown:
            raise TypeError(f"{type(self).__name__} with head={self.head!r} takes no per-row keyword {unknown}; "
                            f"its family's are {list(names)}")
        return family_context(names, context, n, f"head={self.head!r}")

    def _uses_noise_weights(self) -> bool:
        return False

    # -- fitting ----------------------------------------------------------------------------------------
    _numeric_target = True

    def fit(self, X, y, *, X_unlabeled=None, groups=None, X_val=None, y_val=None, checkpoint_path=None,
            resume=False, **context):
        """Train flow and point head by maximum likelihood of the hybrid objective, then fit the posterior head
        on the training features; return ``self``. ``groups`` (one label per row: an array, or a mapping /
        DataFrame of several grouping factors) is for ``posterior="mixed"``. ``context``: the head family's
        per-row keywords (``trials=`` for ``head="binomial"``), one value per row, carried beside ``y`` through
        training and into the posterior head (not combined with ``X_val``: use ``val_fraction``).

        ``X_unlabeled`` (inputs without targets) makes it semi-supervised: every minibatch holds
        ``labeled_fraction`` labelled rows and the rest unlabelled, and the objective is
        ``mean_labelled log p(y|x) + px_weight * mean_all log p(x)``; the posterior head is fitted on the labelled
        rows' features only."""
        with keep_state_on_error(self):
            check_params(self)
            self._check_params()
            X, y = self._validate_fit(X, y, y_numeric=self._numeric_target)
            context = self._family_context(context, X.shape[0])
            y_t, y_head, head_config = self._training_targets(y, context)
            if X_val is not None and context:
                raise ValueError(f"X_val with per-row context {sorted(context)}: give val_fraction instead (the "
                                 "held-out rows then keep their context)")
            if X_val is not None or y_val is not None:
                X_val, y_val = self._validate_val(X_val, y_val, X)
                y_val = self._validation_targets(y_val)
            return self._fit(X, y_t, y_head, head_config, groups=groups, X_val=X_val, y_val=y_val,
                             checkpoint_path=checkpoint_path, resume=resume,
                             X_unlabeled=self._validate_unlabeled(X_unlabeled, X), context=context)

    def _check_params(self) -> None:
        pass

    def _training_targets(self, y, context: dict) -> tuple[torch.Tensor, np.ndarray, dict]:  # pragma: no cover
        """``(targets for training, targets for the posterior head, the point head's config)``."""
        raise NotImplementedError

    def _validation_targets(self, y_val) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _fit(self, X: torch.Tensor, y_t: torch.Tensor, y_head: np.ndarray, head_config: dict, *, groups, X_val,
             y_val, checkpoint_path, resume, X_unlabeled=None, context: dict):
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
        train_rows, context_val = np.arange(X.shape[0]), None
        context_t = {key: torch.from_numpy(value).to(X.dtype) for key, value in context.items()}
        if X_val is None:
            train_rows, val_rows = self.validation_split(X.shape[0])
            if val_rows is not None:
                X_val, y_val = X[val_rows], y_t[val_rows]
                context_val = {key: value[val_rows] for key, value in context_t.items()}
        config = {"version": __version__, "estimator": type(self).__name__, "flow_config": flow_config,
                  "head_config": head_config, "px_weight": float(self.px_weight),
                  "dtype": str(X.dtype).removeprefix("torch."), **self._extra_config()}
        if checkpoint_path is not None:  # a checkpoint resumes only the run of the same data (train_module checks)
            config["data_sha256"] = content_digest({
                "X": X[train_rows], "y": y_t[train_rows], "X_unlabeled": X_unlabeled,
                "context": {key: value[train_rows] for key, value in context_t.items()}})
        history = train_module(
            model, X[train_rows], y_t[train_rows], X_val=X_val, y_val=y_val, seed=self.seed, quiet=self.quiet,
            device=self.device, checkpoint_path=checkpoint_path, resume=resume, config=config,
            X_unlabeled=X_unlabeled, labeled_fraction=self.labeled_fraction,
            context={key: value[train_rows] for key, value in context_t.items()}, context_val=context_val,
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
            head_context = {key: value[train_rows] for key, value in context.items()}
            self.posterior_.fit(Z, y_head[train_rows], **self._head_kwargs(precision, head_groups, head_context))
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

    def _features_and_kwargs(self, X, groups, context: dict) -> tuple[np.ndarray, dict]:
        """Features at the rows of ``X`` and the head's per-row context there, from one pass through the flow."""
        Z, _, precision = self._outputs(self._validate_X(X))
        return Z, self._head_kwargs(precision, groups, self._family_context(context, Z.shape[0]))

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

    def log_cell_probability(self, X, dequantizer: TabularDequantizer | None, *, draws: int = 4,
                             seed: int = 0) -> np.ndarray:
        """``log p(x)`` per row of integer-valued attributes: the dequantised estimate of each row's cell
        log-probability under the flow, a lower bound on it, averaged over ``draws`` seeded uniform draws within
        the cells of ``dequantizer`` (:meth:`TabularDequantizer.log_cell_probability
        <bayes_diglm.flows.TabularDequantizer.log_cell_probability>` with :meth:`score_samples` as the density).
        The same ``seed`` gives the same draws. Float64, shape (n,). ``dequantizer=None`` (continuous
        attributes, or a flow trained on the values as recorded) is :meth:`score_samples`, whatever the draws.

        Examples
        --------
        >>> import numpy as np
        >>> from bayes_diglm.flows import TabularDequantizer
        >>> from bayes_diglm.models import DIGLMRegressor
        >>> rng = np.random.default_rng(0)
        >>> X = rng.integers(0, 5, size=(200, 2)).astype(np.float32); y = X[:, 0] + rng.normal(size=200)
        >>> reg = DIGLMRegressor(epochs=1, flow_kwargs={"num_layers": 2}, quiet=True).fit(X, y)
        >>> dq = TabularDequantizer([1.0, 1.0])
        >>> a, b = reg.log_cell_probability(X[:5], dq, seed=3), reg.log_cell_probability(X[:5], dq, seed=3)
        >>> a.shape, bool(np.array_equal(a, b))
        ((5,), True)
        """
        check_is_fitted(self)
        if dequantizer is not None and not isinstance(dequantizer, TabularDequantizer):
            raise TypeError(f"dequantizer must be a TabularDequantizer or None, got {type(dequantizer).__name__}")
        for name, value, low in (("draws", draws, 1), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if dequantizer is None:
            return self.score_samples(X)
        X = self._validate_X(X).cpu().numpy()
        return dequantizer.log_cell_probability(
            lambda v: torch.from_numpy(self.score_samples(v.numpy())), torch.from_numpy(X), num_samples=int(draws),
            generator=torch.Generator().manual_seed(int(seed))).numpy()

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

    def head_inputs(self, X, *, groups=None, **context) -> tuple[np.ndarray, dict]:
        """Features ``z = f(x)`` (n, D) and the posterior head's per-row context at the rows of ``X`` (the noise
        weights of a heteroscedastic point head, ``groups``, the family's keywords), from one pass through the
        flow: ``posterior_.predict_dist(Z, **context)`` is :meth:`predict_dist`. For other computations with the
        same head (its prior predictive, a second head on the same features) without running the flow again."""
        check_is_fitted(self)
        return self._features_and_kwargs(X, groups, context)

    def point_head(self) -> PointHead:
        """The jointly trained head at its point estimate, read at features (:class:`PointHead`)."""
        check_is_fitted(self)
        return PointHead(self)

    def flow_outputs(self, X) -> FlowOutputs:
        """Features ``z = f(x)`` (n, D), ``log p(x)`` (n,) and the point head's noise precisions (n,; None unless
        heteroscedastic) from one pass through the flow, as float64 NumPy arrays."""
        return FlowOutputs(*self._outputs(self._validate_X(X)))

    def predict_dist(self, X, *, groups=None, point: bool = False, **context) -> Predictive:
        """The predictive distribution of ``y`` at the rows of ``X``.

        With a Bayesian head it integrates over the posterior of ``beta`` (e.g. Student-t for
        ``posterior="conjugate"``, with the heteroscedastic head's noise precisions at these rows as known
        weights); with ``posterior="point"``, or ``point=True`` whatever the posterior, it is the jointly
        trained head's likelihood at its point estimate. ``context``: the family's per-row keywords at these rows.
        """
        Z, kw = self._features_and_kwargs(X, groups, context)
        classes = getattr(self, "classes_", None)
        if point or self.posterior_ is None:
            return self._point_predictive(Z, classes, {key: kw[key] for key in self._context_names()})
        pred = self.posterior_.predict_dist(Z, **kw)
        return pred if classes is None else Predictive(pred.distribution, classes=classes)

    def _point_predictive(self, Z: np.ndarray, classes, context: dict) -> Predictive:
        """The trained head's likelihood at its point estimate, in float64 (its nuisance values as floats)."""
        head = self.model_.head
        with torch.no_grad():
            f = head.predictor(torch.from_numpy(Z).to(self._dtype())).double()
            lik = self._fixed_point_likelihood()
        return Predictive(lik.dist(f, **context), classes=classes, discrete=lik.discrete)

    def _fixed_point_likelihood(self) -> likelihoods.Likelihood:
        """The point head's family with its trained nuisance parameters as plain numbers (float64)."""
        lik = self.model_.head.likelihood
        return type(lik)(**lik.config())

    def log_predictive(self, X, y, *, groups=None, **context) -> np.ndarray:
        """``log p(y | x)`` per row under :meth:`predict_dist`."""
        return self.predict_dist(X, groups=groups, **context).log_prob(column_or_1d(y))

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

    def pointwise_log_likelihood(self, draws: dict, X, y, *, groups=None, **context) -> np.ndarray:
        """``log p(y_i | x_i, draw_s)`` (S, n): the head's, on the features of ``X`` (for ``az.loo``)."""
        head = self._bayesian("pointwise_log_likelihood")
        Z, kw = self._features_and_kwargs(X, groups, context)
        return head.pointwise_log_likelihood(draws, Z, self._encode_head_y(y), **kw)

    def sample_predictive(self, draws: dict, X, *, generator=None, groups=None, **context) -> np.ndarray:
        """One replicate of ``y`` per draw and row of ``X``, shape (S, n) (the posterior predictive)."""
        head = self._bayesian("sample_predictive")
        Z, kw = self._features_and_kwargs(X, groups, context)
        return self._decode_head_y(head.sample_predictive(draws, Z, generator=generator, **kw))

    def _encode_head_y(self, y) -> np.ndarray:
        return check_targets(y, "y").reshape(-1)

    def _decode_head_y(self, y: np.ndarray) -> np.ndarray:
        return y
