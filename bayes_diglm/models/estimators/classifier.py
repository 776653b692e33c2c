"""``DIGLMClassifier``: a DIGLM for class labels, with a posterior over the GLM weights."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from ... import likelihoods
from ...inference.base import encode_labels
from .base import CLASSIFICATION_POSTERIORS, _DIGLMEstimator

__all__ = ["DIGLMClassifier"]


class DIGLMClassifier(ClassifierMixin, _DIGLMEstimator):
    """A DIGLM for class labels (Bernoulli head for two classes, softmax for more), with a posterior over beta.

    Args:
        flow: ``"realnvp"`` or ``"spline"`` (neural spline flow) for tabular X (n, D), D >= 2, or ``"glow"`` for
            images X (n, C, H, W) in [0, 1]; or a user's flow: Pyro transforms (one, a list, a
            ``ComposeTransformModule``), a zuko flow, or a factory of one (:mod:`bayes_diglm.flows.spec`).
        flow_kwargs: extra arguments of the flow builder or factory (``num_layers``, ``hidden_dims``, ...).
        head: the jointly trained point head's family: None (the logistic family for two classes, the softmax
            for more) or any registered classification family (built with ``num_classes=K`` where it takes
            one); ``posterior="laplace"``, ``"svi"`` and ``"nuts"`` put the posterior in the same family.
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

    def _training_targets(self, y, context: dict) -> tuple[torch.Tensor, np.ndarray, dict]:
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
            from ...inference.laplace import LaplaceClassifier

            return LaplaceClassifier(likelihood=self.head)
        if name == "svi":
            from ...inference.svi import SVIClassifier

            return SVIClassifier(likelihood=self.head)
        if name == "nuts":
            from ...inference.nuts import NUTSClassifier

            return NUTSClassifier(likelihood=self.head)
        from ...inference.mixed import MixedEffectsClassifier

        return MixedEffectsClassifier()

    def _extra_config(self) -> dict:
        return {"classes": self.classes_.tolist()}

    def _restore_extra(self, config: dict) -> None:
        self.classes_ = np.asarray(config["classes"])

    @staticmethod
    def _encode(y, classes, name) -> np.ndarray:
        return encode_labels(y, classes, error=f"{name} has labels not seen in training")

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
        from ..sampling import (
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

    def predict_proba(self, X, *, groups=None, **context) -> np.ndarray:
        """Class probabilities (n, K), columns in ``classes_`` order, under :meth:`predict_dist`."""
        return self.predict_dist(X, groups=groups, **context).probs

    def predict(self, X, *, groups=None, **context) -> np.ndarray:
        """The most probable class label per row."""
        proba = self.predict_proba(X, groups=groups, **context)
        return self.classes_[proba.argmax(axis=1)]
