"""``DIGLMRegressor``: a DIGLM for real-valued (or count) targets, with a posterior over the GLM weights."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import RegressorMixin
from sklearn.utils.validation import check_is_fitted

from ... import likelihoods
from ..._validation import check_targets
from ...inference.base import context_tags
from .base import REGRESSION_POSTERIORS, _DIGLMEstimator
from .noise import _KNOWN_NOISE_FAMILY, _per_row_noise
from .streaming import _StreamedPosterior

__all__ = ["DIGLMRegressor"]


class DIGLMRegressor(RegressorMixin, _StreamedPosterior, _DIGLMEstimator):
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

    def _training_targets(self, y, context: dict) -> tuple[torch.Tensor, np.ndarray, dict]:
        y = self._family().check_target(y, **context)
        return torch.tensor(y), y, {"family": self.head}

    def _validation_targets(self, y_val) -> torch.Tensor:
        return torch.as_tensor(self._family().check_target(check_targets(y_val, "y_val")))

    def _make_posterior(self, name: str):
        family = self._family()
        if name == "conjugate":
            if not family.gaussian_mean:
                raise ValueError(f"posterior='conjugate' is the Normal-Inverse-Gamma posterior of a Gaussian head; "
                                 f"head={self.head!r} takes posterior='laplace'")
            from ...inference.conjugate import ConjugateLinearRegression

            return ConjugateLinearRegression()
        if name == "laplace":
            from ...inference.laplace import LaplaceRegressor

            return LaplaceRegressor(likelihood=_KNOWN_NOISE_FAMILY if _per_row_noise(family) else self.head)
        if name == "nuts":
            if _per_row_noise(family):
                raise ValueError(f"posterior='nuts' samples beta and the family's nuisance parameters; head="
                                 f"{self.head!r} gives each row its own noise from the features: use posterior="
                                 f"'conjugate' or 'laplace', or a head without per-row noise")
            from ...inference.nuts import NUTSRegressor

            return NUTSRegressor(likelihood=self.head)
        from ...inference.mixed import MixedEffectsRegression

        return MixedEffectsRegression()

    def _uses_noise_weights_for(self, template) -> bool:
        """Whether ``template`` reads the per-row noise of the point head (heteroscedastic) as known noise
        precisions: it declares ``sample_weight`` as noise precisions in its tags (the conjugate head, a Gaussian
        Laplace or SVI head)."""
        return (template is not None and _per_row_noise(self._family())
                and context_tags(template).sample_weight == "noise")

    def _set_known_noise(self, template) -> None:
        """A head with known nuisance values (``likelihood_kwargs``, ``noise_variance``: Laplace, SVI) takes the
        trained point head's: in the head's own family its trained values (the Gaussian head's ``sigma^2``, a
        Student-t's scale ...), or, for a head with per-row noise (heteroscedastic), noise ``1 /
        noise_normaliser_``, so that with the weights ``w_i = precision_i / noise_normaliser_`` each row's variance
        is the learned ``sigma^2(z_i)``."""
        params = template.get_params(deep=False)
        if self._uses_noise_weights_for(template):
            if "noise_variance" in params:
                template.set_params(noise_variance=1.0 / self.noise_normaliser_)
        elif params.get("likelihood") == self.head and "likelihood_kwargs" in params:
            template.set_params(likelihood_kwargs=self._fixed_point_likelihood().config() or None)

    def _uses_noise_weights(self) -> bool:
        return self._uses_noise_weights_for(self.posterior_) and hasattr(self, "noise_normaliser_")

    def sample_joint(self, n: int, *, generator=None, temperature: float = 1.0):
        """Draw ``(X, y)`` from the joint model: ``z`` from the flow's base, ``x = f^{-1}(z)``, ``y`` from
        :meth:`predict_dist` at ``x`` (the posterior predictive, or the point head's likelihood).
        ``temperature < 1`` scales the base: no longer the model. ``generator``: a NumPy Generator or int seed."""
        from ..sampling import sample_joint

        check_is_fitted(self)

        def sample_y(x, z, rng):
            return self.predict_dist(self._sampled_inputs(x)).sample(1, generator=rng)[0]

        s = sample_joint(self.model_.flow, sample_y, n, generator=generator, temperature=temperature)
        return self._sampled_inputs(s.x), s.y

    def predict(self, X, return_std: bool = False, *, groups=None, **context):
        """Predictive mean of ``y`` (and its standard deviation with ``return_std``) under :meth:`predict_dist`."""
        pred = self.predict_dist(X, groups=groups, **context)
        return (pred.mean, pred.stddev) if return_std else pred.mean
