"""Sampling labelled data from a DIGLM's joint model ``p(x, y) = p(y | f(x)) p(x)``.

A DIGLM is a generative model of ``x`` (the flow) and a discriminative model of ``y`` given ``z = f(x)``
(the GLM head), so it is a joint model and can be sampled ancestrally: ``z`` from the flow's base density,
``x = f^{-1}(z)``, then ``y`` from the head's predictive at ``z`` (:func:`sample_joint`).

Class-conditional sampling, ``x ~ p(x | y = k)``, happens in latent space, where

.. math:: p(z \\mid y = k) \\propto p(y = k \\mid z)\\, p(z)

(the Jacobian of ``f`` cancels: conditioning on ``y`` does not change the map between ``z`` and ``x``).
:func:`sample_class_conditional` draws from it by **rejection sampling with the base density as proposal**:
propose ``z ~ p(z)``, accept with probability ``p(y = k | z)``. Why this sampler and not importance resampling,
MCMC or HMC in ``z``:

- the likelihood ratio ``p(z | y = k) / p(z) = p(y = k | z) / p(y = k)`` is bounded, with the bound
  ``1 / p(y = k)`` attained by accepting with probability ``p(y = k | z) <= 1``; so rejection sampling is
  available and is **exact for every sample size** (independent draws, effective sample size equals ``n``),
  not only in the limit as self-normalised importance resampling or a Markov chain are;
- its cost is ``1 / p(y = k)`` proposals per sample (about 10 for a balanced 10-class model), each costing one
  matrix product with the head in latent space; the flow is inverted for accepted ``z`` only. HMC/NUTS in a
  784-dimensional ``z`` needs gradients, tuning and convergence diagnostics for the same exact answer, and an
  independent Metropolis-Hastings chain with the base as proposal accepts at most as often as this sampler
  while producing correlated draws;
- with a Bayesian head, ``p(y = k | z)`` is the posterior predictive ``E_beta[p(y = k | z, beta)]``. Drawing
  a fresh ``beta`` from the posterior for every proposal and accepting with ``p(y = k | z, beta)`` samples
  ``(z, beta)`` from ``p(z) p(beta | D) p(y = k | z, beta)``, whose ``z``-marginal is exactly
  ``p(z | y = k, D)``: no probit or other predictive approximation enters.

The acceptance rate is reported (:class:`ConditionalSample`); it estimates the model's marginal
``p(y = k)``. A class the model almost never predicts makes the sampler slow, and ``max_proposals`` stops it
with a message instead of looping.

A ``temperature`` below 1 scales the base standard deviation (the "reduced temperature" of Glow samples):
it draws from a tempered base, no longer from the model, and is off by default.

Label models are callables on latent features, built by :func:`point_label_model` (the jointly trained
point head) or :func:`posterior_label_model` (a fitted posterior head of the contract in
:mod:`bayes_diglm.inference`, through its public ``sample`` draws of ``"beta"`` and ``"intercept"``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from bayes_diglm import likelihoods
from bayes_diglm._validation import check_count

__all__ = [
    "ClassConditionalSample",
    "class_probabilities",
    "JointSample",
    "LabelModel",
    "labels_from",
    "point_label_model",
    "posterior_label_model",
    "sample_class_conditional",
    "sample_joint",
    "sample_latent",
]

#: ``label_probs(z, rng) -> (n, K)`` class probabilities at latent rows ``z`` (float64 array (n, D)); each
#: row may use its own posterior draw of beta, so the probabilities are random given ``rng``.
LabelModel = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass
class JointSample:
    """Draws ``(x, y)`` from the joint model, with the latent ``z = f(x)`` they came from."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray


@dataclass
class ClassConditionalSample:
    """Draws ``x ~ p(x | y = label)`` with the sampler's bookkeeping.

    Attributes:
        x: samples in data space, ``f^{-1}(z)``.
        z: their latent values.
        label: the class index that was conditioned on.
        n_proposals: base draws proposed to get ``len(x)`` accepted ones.
        acceptance_rate: ``len(x) / n_proposals``, a Monte Carlo estimate of the model's ``p(y = label)``.
        effective_sample_size: ``len(x)``: rejection sampling gives independent, exact draws.
    """

    x: np.ndarray
    z: np.ndarray
    label: int
    n_proposals: int
    acceptance_rate: float
    effective_sample_size: int


def _rng(generator) -> np.random.Generator:
    if generator is None or isinstance(generator, (int, np.integer)):
        return np.random.default_rng(generator)
    if isinstance(generator, np.random.Generator):
        return generator
    raise TypeError(f"generator must be a numpy Generator, an int seed or None, got {type(generator).__name__}")


def _count(n, name: str = "n") -> int:
    return check_count(n, name)


def _base_scale(flow) -> float:
    return float(flow.base_log_scale.exp())


def sample_latent(flow, n: int, rng: np.random.Generator, temperature: float = 1.0) -> np.ndarray:
    """``n`` draws of ``z`` from the flow's base ``N(0, (temperature * base_scale)^2 I)``, float64 (n, D)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    return rng.standard_normal((n, int(flow.dim))) * (temperature * _base_scale(flow))


def _invert(flow, z: np.ndarray, batch_size: int) -> np.ndarray:
    """``x = f^{-1}(z)`` in batches, without gradients, in the flow's own dtype and device."""
    ref = flow.base_log_scale
    was_training = flow.training
    flow.eval()  # ActNorm must not re-initialise from generated data
    out = []
    try:
        with torch.no_grad():
            for s in range(0, z.shape[0], batch_size):
                zb = torch.as_tensor(z[s:s + batch_size], dtype=ref.dtype, device=ref.device)
                out.append(flow.inverse(zb).cpu().double().numpy())
    finally:
        flow.train(was_training)
    if not out:
        return np.zeros((0, *flow.event_shape))
    return np.concatenate(out)


def point_label_model(head) -> LabelModel:
    """Class probabilities from a point-estimate classification head (``head.mean(z)`` is (n, K))."""
    if getattr(head, "task", None) != "classification":
        raise TypeError(f"point_label_model needs a classification head, got {type(head).__name__}")

    def probs(z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        param = next(head.parameters())
        with torch.no_grad():
            return head.mean(torch.as_tensor(z, dtype=param.dtype, device=param.device)).cpu().double().numpy()

    return probs


def class_probabilities(draws: dict, Z: np.ndarray, *, paired: bool = False, likelihood=None) -> np.ndarray:
    """Class probabilities of a GLM classifier under named posterior draws (the head contract's ``sample``).

    Args:
        draws: ``"beta"`` (S, D) for a binary head (the logit of the second class) or (S, K, D) for a softmax
            head, and optionally ``"intercept"`` (S,) or (S, K).
        Z: features (n, D).
        paired: ``False``: every draw at every row, result (S, n, K); ``True``: draw ``i`` at row ``i`` only
            (needs ``S == n``), result (n, K).
        likelihood: the head's classification family (its ``probs`` maps the linear predictor to the class
            probabilities); None: the registered logistic family for one output, the softmax for several.
    """
    beta = np.asarray(draws["beta"], dtype=np.float64)
    Z = np.asarray(Z, dtype=np.float64)
    binary = beta.ndim == 2
    if binary:
        beta = beta[:, None, :]
    if beta.ndim != 3 or beta.shape[2] != Z.shape[1]:
        raise ValueError(f"beta draws of shape {np.shape(draws['beta'])} do not match features {Z.shape}")
    if paired and beta.shape[0] != Z.shape[0]:
        raise ValueError(f"paired draws need one draw per row: {beta.shape[0]} draws, {Z.shape[0]} rows")
    if paired:
        logits = np.einsum("skd,sd->sk", beta, Z)
    else:  # one BLAS product (S*K, D) x (D, n) instead of einsum's loops
        logits = (beta.reshape(-1, beta.shape[2]) @ Z.T).reshape(beta.shape[0], beta.shape[1], Z.shape[0])
        logits = logits.transpose(0, 2, 1)
    if "intercept" in draws:
        bias = np.asarray(draws["intercept"], dtype=np.float64).reshape(beta.shape[0], -1)
        logits = logits + (bias if paired else bias[:, None, :])
    if likelihood is None:  # one logit column: the logistic family; several: the softmax
        k = logits.shape[-1]
        likelihood = likelihoods.build("bernoulli" if k == 1 else "categorical", num_classes=k)
    return likelihood.probs(logits)


def posterior_label_model(posterior) -> LabelModel:
    """Class probabilities from a fitted posterior classification head, one posterior draw of beta per row.

    Uses the head contract's public ``sample(n, generator=)``: ``"beta"`` (n, D) for a binary head (logit of
    the second class) or (n, K, D) for a softmax head, and ``"intercept"`` (n,) or (n, K) when fitted. Row
    ``i`` of ``probs(z, rng)`` is ``p(y | z_i, beta_i)`` with ``beta_i`` a fresh posterior draw, so averaging
    over rows (or accepting with it) integrates beta out exactly.
    """
    if not callable(getattr(posterior, "sample", None)):
        raise TypeError(f"{type(posterior).__name__} has no sample(n, generator=) method of the head contract")

    def probs(z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return class_probabilities(posterior.sample(z.shape[0], generator=rng), z, paired=True,
                                   likelihood=getattr(posterior, "likelihood_", None))

    return probs


def sample_joint(
    flow,
    sample_y: Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray],
    n: int,
    *,
    generator=None,
    temperature: float = 1.0,
    batch_size: int = 512,
) -> JointSample:
    """Ancestral draws from the joint model: ``z ~ p(z)``, ``x = f^{-1}(z)``, ``y ~ sample_y(x, z, rng)``.

    Args:
        flow: a :class:`~bayes_diglm.flows.base.Flow` (data to latent; sampling uses its inverse).
        sample_y: draws one label or target per row, ``sample_y(x, z, rng) -> (n,)``; for a classifier
            :func:`labels_from` turns a label model into one.
        n: number of pairs.
        generator: numpy Generator or int seed (the only source of randomness).
        temperature: scale of the base standard deviation (1 = the model).
        batch_size: rows per inverse pass of the flow.

    Example:
        >>> from bayes_diglm.flows import realnvp
        >>> flow = realnvp(2, num_layers=2, hidden_dims=(8,)).eval()
        >>> s = sample_joint(flow, lambda x, z, rng: (z[:, 0] > 0).astype(int), 5, generator=0)
        >>> s.x.shape, s.y.shape
        ((5, 2), (5,))
    """
    n = _count(n)
    rng = _rng(generator)
    z = sample_latent(flow, n, rng, temperature)
    x = _invert(flow, z, _count(batch_size, "batch_size"))
    y = np.asarray(sample_y(x, z, rng))
    if y.shape[:1] != (n,):
        raise ValueError(f"sample_y returned shape {y.shape}, expected ({n}, ...)")
    return JointSample(x=x, y=y, z=z)


def labels_from(label_model: LabelModel) -> Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]:
    """A ``sample_y`` for :func:`sample_joint` drawing class indices from a label model's probabilities."""

    def sample_y(x: np.ndarray, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        p = label_model(z, rng)
        u = rng.random((p.shape[0], 1))
        return np.minimum((np.cumsum(p, axis=1) < u).sum(axis=1), p.shape[1] - 1)

    return sample_y


def sample_class_conditional(
    flow,
    label_model: LabelModel,
    n: int,
    label: int,
    *,
    generator=None,
    temperature: float = 1.0,
    max_proposals: int = 1_000_000,
    batch_size: int = 4096,
) -> ClassConditionalSample:
    """Exact draws of ``x ~ p(x | y = label)`` by rejection from the base (see the module docstring).

    Proposes ``z ~ p(z)`` in batches, accepts each with probability ``p(y = label | z)`` (with a fresh
    posterior draw of beta per proposal for a Bayesian label model), and inverts the flow on the first ``n``
    accepted latents.

    Args:
        flow: the flow (data to latent).
        label_model: ``probs(z, rng) -> (m, K)``, from :func:`point_label_model` or
            :func:`posterior_label_model`.
        n: number of samples wanted.
        label: the class index ``k`` in ``0..K-1`` (the head's encoding, not the user's labels).
        generator: numpy Generator or int seed.
        temperature: base scale (1 = the model; otherwise a tempered base, no longer exact for the model).
        max_proposals: stop with a ``RuntimeError`` after this many proposals (a class the model rarely
            predicts needs about ``n / p(y = label)``).
        batch_size: proposals per round.

    Raises:
        ValueError: bad ``n``, ``label``, ``max_proposals`` or ``batch_size``.
        RuntimeError: fewer than ``n`` accepted within ``max_proposals``; the message gives the rate.
    """
    n = _count(n)
    max_proposals = _count(max_proposals, "max_proposals")
    batch_size = _count(batch_size, "batch_size")
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or label < 0:
        raise ValueError(f"label must be a non-negative class index, got {label!r}")
    rng = _rng(generator)
    accepted: list[np.ndarray] = []
    n_accepted = n_proposed = 0
    while n_accepted < n:
        if n_proposed >= max_proposals:
            rate = n_accepted / max(n_proposed, 1)
            raise RuntimeError(
                f"only {n_accepted} of {n} samples of class {label} accepted in {n_proposed} proposals "
                f"(acceptance rate {rate:.2g}, the model's p(y = {label})); raise max_proposals"
            )
        m = min(batch_size, max_proposals - n_proposed)
        z = sample_latent(flow, m, rng, temperature)
        p = np.asarray(label_model(z, rng))
        if p.ndim != 2 or p.shape[0] != m:
            raise ValueError(f"label_model returned shape {p.shape}, expected ({m}, K)")
        if label >= p.shape[1]:
            raise ValueError(f"label {label} is out of range for a model with {p.shape[1]} classes")
        keep = rng.random(m) < p[:, label]
        # Only proposals up to the n-th acceptance count: stopping there keeps the draws exact and the
        # acceptance rate an unbiased-in-the-limit estimate of p(y = label).
        idx = np.flatnonzero(keep)
        need = n - n_accepted
        if idx.size >= need:
            last = idx[need - 1]
            accepted.append(z[idx[:need]])
            n_proposed += int(last) + 1
            n_accepted = n
        else:
            accepted.append(z[idx])
            n_proposed += m
            n_accepted += int(idx.size)
    z_acc = np.concatenate(accepted)
    x = _invert(flow, z_acc, 512)
    return ClassConditionalSample(x=x, z=z_acc, label=int(label), n_proposals=int(n_proposed),
                                  acceptance_rate=n / n_proposed, effective_sample_size=n)
