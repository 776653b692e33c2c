"""The DIGLM: an invertible flow ``z = f(x)`` with a GLM head on ``z``, trained by the hybrid objective."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..flows.base import Flow
from ..flows.registry import BUILTIN_FLOWS
from ..flows.spec import build_flow, make_flow
from .heads import GLMHead, make_head

__all__ = ["DIGLM", "FlowOutputs", "build_flow", "build_diglm", "FLOW_BUILDERS"]

#: the package's own flows by name (kept under this name; the registry of flows lives in ``flows.registry``)
FLOW_BUILDERS = BUILTIN_FLOWS


class FlowOutputs(NamedTuple):
    """What one pass through the flow gives, per row: features, density, and the head's noise precision
    (tensors from :meth:`DIGLM.outputs`, float64 arrays from the estimators' ``flow_outputs``)."""

    features: torch.Tensor  #: ``z = f(x)``, shape (batch, D)
    log_px: torch.Tensor  #: exact ``log p(x)`` in nats, shape (batch,)
    noise_precision: torch.Tensor | None  #: ``1 / sigma^2(z)`` of a heteroscedastic head, else None


class DIGLM(nn.Module):
    """Flow plus GLM head with the paper's hybrid objective (eq. 5).

    .. math:: J_\\lambda = \\frac{1}{B} \\sum_n \\log p(y_n | x_n) + \\lambda \\log p(x_n),

    with ``p(y | x) = GLM(y | beta^T f(x) + beta_0)`` and ``log p(x) = log p_z(f(x)) + log|det J_f(x)|``.
    ``px_weight`` is the paper's lambda; ``px_weight = 0`` is the purely discriminative model. One pass through
    the flow gives both terms.

    Args:
        flow: the invertible feature map (data to latent): a ``Flow``, or anything the estimators' ``flow=``
            takes (Pyro transforms, a ``ComposeTransformModule``, a zuko flow, a factory or a name,
            :mod:`bayes_diglm.flows.spec`), built for tabular data of ``head.dim`` features; an object is used
            as it is, not copied. For images, wrap the transforms first:
            ``bayes_diglm.flows.as_flow(transforms, event_shape=(C, H, W))``.
        head: a GLM head on the flattened latent of dimension ``flow.dim``.
        px_weight: the paper's lambda, a non-negative weight on ``log p(x)``.
    """

    def __init__(self, flow, head: GLMHead, px_weight: float = 1.0):
        super().__init__()
        if not isinstance(flow, Flow):
            flow = make_flow(flow, (head.dim,))
        if head.dim != flow.dim:
            raise ValueError(f"head dimension {head.dim} does not match the flow's latent dimension {flow.dim}")
        if not px_weight >= 0:
            raise ValueError(f"px_weight (the paper's lambda) must be non-negative, got {px_weight!r}")
        self.flow = flow
        self.head = head
        self.px_weight = float(px_weight)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The latent features ``z = f(x)``, shape (batch, D)."""
        return self.flow.features(x)

    def log_px(self, x: torch.Tensor) -> torch.Tensor:
        """Exact ``log p(x)`` (nats) per row."""
        return self.flow.log_prob(x)

    def log_py_given_x(self, x: torch.Tensor, y: torch.Tensor, **context) -> torch.Tensor:
        """``log p(y | x)`` per row under the point-estimate head (``context``: the family's per-row keywords)."""
        return self.head.log_prob(self.features(x), y, **context)

    def terms(self, x: torch.Tensor, y: torch.Tensor, **context) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log p(y|x), log p(x))`` per row from a single pass through the flow.

        ``y`` may be shorter than ``x`` (semi-supervised minibatches): its ``m`` targets belong to the first
        ``m`` rows, so ``log p(y|x)`` has ``m`` entries and ``log p(x)`` one per row of ``x``. ``context``: the
        family's per-row keywords (``trials=`` ...) of the labelled rows.
        """
        if y.shape[0] > x.shape[0]:
            raise ValueError(f"y has {y.shape[0]} targets for {x.shape[0]} rows of x")
        z, log_det = self.flow(x)
        return self.head.log_prob(z[: y.shape[0]], y, **context), self.flow.base_log_prob(z) + log_det

    def outputs(self, x: torch.Tensor) -> FlowOutputs:
        """Features, ``log p(x)`` and the point head's noise precision ``exp(-log sigma^2(z))`` (heteroscedastic
        heads; None otherwise) from a single pass through the flow."""
        z, log_det = self.flow(x)
        noise_log_var = getattr(self.head, "noise_log_var", None)
        precision = torch.exp(-noise_log_var(z)) if noise_log_var is not None else None
        return FlowOutputs(z, self.flow.base_log_prob(z) + log_det, precision)

    def objective(self, x: torch.Tensor, y: torch.Tensor, **context) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The hybrid objective ``mean(log p(y|x) + px_weight * log p(x))`` (to maximise) and its parts
        (batch means of ``log_py``, ``log_px`` and ``nats_per_dim``), the protocol of
        :func:`bayes_diglm.training.train_module`.

        When ``y`` is shorter than ``x`` (the first ``len(y)`` rows labelled, the rest unlabelled) this is the
        semi-supervised objective ``mean_labelled log p(y|x) + px_weight * mean_all log p(x)``.

        With ``px_weight = 0`` (the discriminative model) ``log p(x)`` is still reported but kept out of the
        graph, so no gradient work is spent on it.
        """
        log_py, log_px = self.terms(x, y, **context)
        value = log_py.mean()
        if self.px_weight > 0:
            value = value + self.px_weight * log_px.mean()
        log_px = log_px.detach().mean()
        return value, {"log_py": log_py.detach().mean(), "log_px": log_px, "nats_per_dim": -log_px / self.flow.dim}

    def forward(self, x: torch.Tensor, y: torch.Tensor, **context) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Same as :meth:`objective`; training calls the module itself so that DistributedDataParallel's
        gradient hooks see the forward pass."""
        return self.objective(x, y, **context)

    def predict_dist(self, x: torch.Tensor):
        """The head's predictive distribution over ``y`` given ``x`` (point estimate of beta)."""
        return self.head.dist(self.features(x))


def build_diglm(flow_config: dict, head_config: dict, px_weight: float, *, flow: Flow | None = None) -> DIGLM:
    """Build a DIGLM from JSON-able configs (the inverse of what checkpoints store); ``flow``, when given, is an
    already built flow that ``flow_config`` describes (a user's flow object has no config to build it from)."""
    flow = build_flow(flow_config) if flow is None else flow
    head_config = dict(head_config)
    family = head_config.pop("family")
    head_config.pop("dim", None)
    return DIGLM(flow, make_head(family, flow.dim, **head_config), px_weight)
