"""Thompson-sampling agents: Uniform, LinFullPost, NeuralLinear and FlowLinear (flow features), online API."""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from torch import nn

from .._validation import check_positive
from ..flows.base import ActNorm
from ..flows.realnvp import realnvp
from ..inference.nig import NormalInverseGamma
from ..models.diglm import DIGLM
from ..training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ..training.fields import Fields
from ..training.loop import WithReplacement, train_module
from .heads import PerArmHead

__all__ = [
    "BanditAgent",
    "UniformAgent",
    "LinFullPost",
    "NeuralLinear",
    "FlowLinear",
    "AGENT_CLASSES",
    "load_agent",
]


def _positive_int(value, name: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------------------------------------
# agents
# ----------------------------------------------------------------------------------------------------------


class _History:
    """Growing arrays of (context, arm, reward); amortised O(1) append."""

    def __init__(self, dim: int) -> None:
        self.contexts, self.arms, self.rewards, self.size = np.empty((64, dim)), np.empty(64, np.int64), \
            np.empty(64), 0

    def append(self, context: np.ndarray, arm: int, reward: float) -> None:
        if self.size == self.arms.shape[0]:
            grow = self.arms.shape[0]
            self.contexts = np.concatenate([self.contexts, np.empty_like(self.contexts[:grow])])
            self.arms = np.concatenate([self.arms, np.empty_like(self.arms[:grow])])
            self.rewards = np.concatenate([self.rewards, np.empty_like(self.rewards[:grow])])
        self.contexts[self.size], self.arms[self.size], self.rewards[self.size] = context, arm, reward
        self.size += 1

    def data(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = self.size
        return self.contexts[:n], self.arms[:n], self.rewards[:n]

    def state_dict(self) -> dict:
        names = ("contexts", "arms", "rewards")
        return {k: torch.from_numpy(v.copy()) for k, v in zip(names, self.data(), strict=True)}

    def load_state_dict(self, state: dict) -> None:
        self.size = 0
        for c, a, r in zip(state["contexts"].numpy(), state["arms"].numpy(), state["rewards"].numpy(), strict=True):
            self.append(c, int(a), float(r))


class BanditAgent:
    """Base class of the online API: ``act(context) -> arm``, ``update(context, arm, reward)``, save/load.

    A user's loop calls ``arm = agent.act(x)`` with a context ``x`` of shape ``(context_dim,)``, plays
    ``arm`` in their own environment, and reports the reward with ``agent.update(x, arm, reward)``; nothing
    else is needed (docs/bandits.md has a complete loop). Subclasses keep every random choice on their own
    generator (seeded by ``seed``), so a run is reproducible and :meth:`save` / :func:`load_agent` resume it
    with identical subsequent choices.

    Attributes
    ----------
    num_arms, context_dim, seed : int
        The constructor's arguments.
    rng : numpy.random.Generator
        The agent's generator (saved with it).
    steps_ : int
        Number of updates so far.
    label : str or None
        The name it was built by (``make_agent("FlowLinear[fast]", ...)`` sets it); :attr:`name` falls back
        to the class's name when it is None.
    """

    kind = "abstract"
    label: str | None = None

    def __init__(self, num_arms: int, context_dim: int, *, seed: int = 0) -> None:
        self.num_arms = _positive_int(num_arms, "num_arms")
        self.context_dim = _positive_int(context_dim, "context_dim")
        if not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.steps_ = 0

    @property
    def name(self) -> str:
        """What tables and saved files call the agent: its :attr:`label`, else e.g. ``"LinGreedy"``."""
        return self.label or self._default_name()

    def _default_name(self) -> str:
        return self.kind

    def config(self) -> dict:
        """JSON-able constructor arguments (what :func:`load_agent` rebuilds the agent from)."""
        return {"num_arms": self.num_arms, "context_dim": self.context_dim, "seed": self.seed}

    def _check_context(self, context) -> np.ndarray:
        x = np.asarray(context, dtype=np.float64)
        if x.shape != (self.context_dim,):
            raise ValueError(f"context must have shape ({self.context_dim},), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("context contains NaN or infinite values")
        return x

    def _check_arm(self, arm) -> int:
        if not isinstance(arm, (int, np.integer)) or not 0 <= arm < self.num_arms:
            raise ValueError(f"arm must be an integer in 0..{self.num_arms - 1}, got {arm!r}")
        return int(arm)

    def act(self, context) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def update(self, context, arm: int, reward: float) -> None:
        """Record the reward of ``arm`` for ``context``."""
        self._check_context(context)
        self._check_arm(arm)
        self.steps_ += 1

    def state_dict(self) -> dict:
        return {"steps": self.steps_, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.steps_ = int(state["steps"])
        self.rng.bit_generator.state = state["rng"]

    def save(self, path: str | os.PathLike, *, key: bytes | str | None = None) -> None:
        """Write the agent (config + state: tensors, numbers, dicts) atomically; read with :func:`load_agent`
        (``key``: sign it, :func:`~bayes_diglm.training.save_checkpoint`)."""
        save_checkpoint({"kind": self.kind, "name": self.name, "config": self.config(), "state": self.state_dict()},
                        path, key=key)


class UniformAgent(BanditAgent):
    """Pulls an arm uniformly at random (the baseline that regrets are normalised to).

    Examples
    --------
    >>> agent = UniformAgent(3, 2, seed=0)
    >>> 0 <= agent.act(np.zeros(2)) < 3
    True
    """

    kind = "Uniform"

    def act(self, context) -> int:
        self._check_context(context)
        return int(self.rng.integers(self.num_arms))


class _PosteriorAgent(BanditAgent):
    """Thompson sampling with a per-arm conjugate head on features ``z = phi(context)`` (plus intercept).

    The first ``initial_pulls * num_arms`` decisions pull the arms in turn. Then each decision draws one
    ``beta_a`` per arm from the batched :class:`~bayes_diglm.inference.nig.NormalInverseGamma` state (or takes
    the posterior mean with ``greedy``) and pulls ``argmax_a x^T beta_a``, ``x = [z, 1]`` (``fit_intercept``)
    or ``z``. Feature learners retrain every ``train_every`` updates and then refit the posteriors from the
    stored history; between retrainings each update is rank one.

    Attributes
    ----------
    posterior : NormalInverseGamma
        The per-arm posteriors over the head's weights, one batched float64 state with arm ``a`` as model
        ``a``: ``posterior.mean (k, P)`` the posterior means, ``posterior.precision_cholesky (k, P, P)`` the
        lower Cholesky factors of the precisions, ``posterior.a``, ``posterior.b (k,)`` the Inverse-Gamma
        parameters of each arm's noise variance, ``posterior.counts (k,)`` the rewards seen per arm;
        ``posterior.sample(rng)`` draws one ``beta_a`` per arm (what :meth:`act` does),
        ``posterior.predictive(features(X))`` gives each arm's Student-t predictive reward. ``P`` is the
        feature dimension plus one with ``fit_intercept``; the features are :meth:`features` of the context
        (the context itself for LinFullPost). Read it, do not write it: :meth:`update` keeps it current.
    history
        The contexts, arms and rewards seen (``history.data()`` returns the three arrays); feature learners
        refit the posteriors from it after each retraining.
    """

    def __init__(self, num_arms: int, context_dim: int, *, feature_dim: int, prior_precision: float = 0.25,
                 a0: float = 6.0, b0: float = 6.0, fit_intercept: bool = True, initial_pulls: int = 2,
                 greedy: bool = False, seed: int = 0) -> None:
        super().__init__(num_arms, context_dim, seed=seed)
        if not isinstance(initial_pulls, (int, np.integer)) or initial_pulls < 0:
            raise ValueError(f"initial_pulls must be a non-negative integer, got {initial_pulls!r}")
        self.initial_pulls, self.greedy = int(initial_pulls), bool(greedy)
        self.posterior = NormalInverseGamma(num_arms, _positive_int(feature_dim, "feature_dim"),
                                            prior_precision=prior_precision, a0=a0, b0=b0,
                                            fit_intercept=fit_intercept)
        self.history = _History(context_dim)
        self._cache: tuple[np.ndarray, np.ndarray] | None = None

    greedy_name = "Greedy"

    def _default_name(self) -> str:
        return self.greedy_name if self.greedy else self.kind

    def config(self) -> dict:
        post = self.posterior
        return {**super().config(), "prior_precision": post.prior_precision, "a0": post.a0, "b0": post.b0,
                "fit_intercept": post.fit_intercept, "initial_pulls": self.initial_pulls, "greedy": self.greedy}

    def features(self, contexts: np.ndarray) -> np.ndarray:
        """Features ``(n, D)`` in float64 of contexts ``(n, d)``."""
        return contexts

    def _design_row(self, x: np.ndarray) -> np.ndarray:
        """The design row ``[phi(x), 1]`` of the context being decided on (cached for the following update)."""
        if self._cache is None or not np.array_equal(self._cache[0], x):
            self._cache = (x.copy(), self.posterior.design(self.features(x[None, :])[0]))
        return self._cache[1]

    def _exploration_scale(self, x: np.ndarray) -> float:
        """Factor on the posterior draw's spread around the mean (1: plain Thompson sampling)."""
        return 1.0

    def act(self, context) -> int:
        x = self._check_context(context)
        if self.steps_ < self.initial_pulls * self.num_arms:
            return self.steps_ % self.num_arms
        row = self._design_row(x)
        if self.greedy:
            return int(np.argmax(self.posterior.mean @ row))
        return int(np.argmax(self.posterior.sample(self.rng, scale=self._exploration_scale(x)) @ row))

    def update(self, context, arm: int, reward: float) -> None:
        x, arm = self._check_context(context), self._check_arm(arm)
        reward = float(reward)
        if not math.isfinite(reward):
            raise ValueError(f"reward must be finite, got {reward!r}")
        self.history.append(x, arm, reward)
        self.posterior.update_row(arm, self._design_row(x), reward)
        self.steps_ += 1
        if self._should_retrain():
            self._retrain()
            self._cache = None
            self._refit()

    def _refit(self) -> None:
        contexts, arms, rewards = self.history.data()
        self.posterior.fit(self.features(contexts), rewards, arms)

    def _should_retrain(self) -> bool:
        return False

    def _retrain(self) -> None:  # pragma: no cover - only feature learners retrain
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {**super().state_dict(), "posterior": self.posterior.state_dict(),
                "history": self.history.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        try:
            self.posterior.load_state_dict(state["posterior"])
        except ValueError as err:
            raise CheckpointError(f"posterior: {err}") from err
        self.history.load_state_dict(state["history"])
        self._cache = None


class LinFullPost(_PosteriorAgent):
    """Thompson sampling with a linear NIG model per arm on the raw context plus intercept (Riquelme et al.).

    Defaults follow the paper: ``a0 = b0 = 6``, ``lambda = 0.25`` (prior precision of every coefficient,
    intercept included), 2 initial pulls per arm. ``greedy=True`` is the posterior-mean ablation
    ("LinGreedy"). Per decision: one batched draw over arms, O(k P^2); per update O(P^2). ``agent.posterior``
    is the per-arm :class:`~bayes_diglm.inference.nig.NormalInverseGamma` state over ``[x, 1]`` (``P = d + 1``;
    its fields are described in the ``Attributes`` of the base class ``_PosteriorAgent``).

    Examples
    --------
    >>> agent = LinFullPost(2, 1, seed=0)
    >>> for _ in range(20):
    ...     x = np.array([1.0])
    ...     arm = agent.act(x)
    ...     agent.update(x, arm, 1.0 if arm == 1 else 0.0)
    >>> agent.act(np.array([1.0]))
    1
    """

    kind = "LinFullPost"
    greedy_name = "LinGreedy"

    def __init__(self, num_arms: int, context_dim: int, *, prior_precision: float = 0.25, a0: float = 6.0,
                 b0: float = 6.0, fit_intercept: bool = True, initial_pulls: int = 2, greedy: bool = False,
                 seed: int = 0) -> None:
        super().__init__(num_arms, context_dim, feature_dim=context_dim, prior_precision=prior_precision,
                         a0=a0, b0=b0, fit_intercept=fit_intercept, initial_pulls=initial_pulls, greedy=greedy,
                         seed=seed)


OPTIMIZERS = ("rmsprop", "rmsprop_tf1")


def _rmsprop(params, lr: float, kind: str) -> torch.optim.RMSprop:
    """RMSProp; ``"rmsprop_tf1"`` is TensorFlow 1's ``RMSPropOptimizer`` as Riquelme et al. ran it.

    TensorFlow 1 averages squared gradients with decay 0.9, adds ``1e-10`` and starts the average at **one**
    (PyTorch: 0.99, ``1e-8``, zero). The start matters at their learning rate 0.1: from a zero average the
    first step moves every weight by about ``lr / sqrt(1 - decay)`` (0.3-1.0), from one by ``lr * |grad|``.
    """
    if kind == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, foreach=True)
    params = list(params)
    opt = torch.optim.RMSprop(params, lr=lr, alpha=0.9, eps=1e-10, foreach=True)
    for p in params:
        opt.state[p] = {"step": torch.tensor(0.0), "square_avg": torch.ones_like(p)}
    return opt


class _HistoryObjective(nn.Module):
    """An agent's network as a :func:`train_module` objective: ``objective(contexts, rows)`` is
    ``value(contexts, rows)``, the agent's ``(objective, parts)`` on those history rows (their pulled arms and
    rewards), so the loop's targets are the row numbers."""

    def __init__(self, module: nn.Module, value) -> None:
        super().__init__()
        self.module, self.value = module, value

    def forward(self, contexts: torch.Tensor, rows: torch.Tensor):
        return self.value(contexts, rows)


class _NetworkAgent(_PosteriorAgent):
    """A feature learner retrained every ``train_every`` updates for ``train_steps`` RMSProp minibatch steps.

    The learning rate follows TensorFlow's inverse-time decay, ``lr / (1 + lr_decay * t)``, where ``t`` counts
    optimiser steps since the start (``reset_lr=False``) or since the current retraining began (``True``).
    ``lr_decay = 0`` keeps it constant.
    """

    def __init__(self, num_arms: int, context_dim: int, *, feature_dim: int, train_every: int, train_steps: int,
                 batch_size: int, lr: float, lr_decay: float, reset_lr: bool, optimizer: str, clip_grad: float,
                 **kwargs) -> None:
        super().__init__(num_arms, context_dim, feature_dim=feature_dim, **kwargs)
        self.train_every = _positive_int(train_every, "train_every")
        self.train_steps = _positive_int(train_steps, "train_steps")
        self.batch_size = _positive_int(batch_size, "batch_size")
        self.lr = check_positive(lr, "lr")
        self.lr_decay = check_positive(lr_decay, "lr_decay", allow_zero=True)
        self.reset_lr = bool(reset_lr)
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        self.optimizer_name = optimizer
        self.clip_grad = check_positive(clip_grad, "clip_grad")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.module = self._build()
        self.module.eval()
        self.optimizer = _rmsprop(self.module.parameters(), self.lr, optimizer)
        self.train_steps_done_ = 0

    def config(self) -> dict:
        return {**super().config(), "train_every": self.train_every, "train_steps": self.train_steps,
                "batch_size": self.batch_size, "lr": self.lr, "lr_decay": self.lr_decay, "reset_lr": self.reset_lr,
                "optimizer": self.optimizer_name, "clip_grad": self.clip_grad}

    def _build(self) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def _history_objective(self, arms: torch.Tensor, rewards: torch.Tensor):
        """``(contexts, rows) -> (objective, parts)`` to maximise on those rows of the history (whose pulled
        ``arms`` and ``rewards`` are given for every row); by default minus :meth:`_loss`."""
        return lambda contexts, rows: (-self._loss(contexts, arms[rows], rewards[rows]), {})

    def _loss(self, contexts: torch.Tensor, arms: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - abstract

    def _should_retrain(self) -> bool:
        return self.steps_ % self.train_every == 0

    def _retrain(self) -> None:
        """``train_steps`` minibatches with replacement from the history, by :func:`train_module` with the agent's
        own optimiser (its state carries over between retrainings) and the run-long inverse-time decay."""
        contexts, arms, rewards = self.history.data()
        X, A, R = torch.from_numpy(contexts).float(), torch.from_numpy(arms), torch.from_numpy(rewards).float()
        objective = _HistoryObjective(self.module, self._history_objective(A, R))
        start = 0 if self.reset_lr else self.train_steps_done_
        try:
            train_module(objective, X, torch.arange(X.shape[0]), epochs=1, batch_size=self.batch_size, lr=self.lr,
                         clip_grad=self.clip_grad, optimizer=self.optimizer, seed=self.seed, quiet=True,
                         lr_schedule=lambda t: self.lr / (1.0 + self.lr_decay * (start + t)),
                         batch_sampler=WithReplacement(self.train_steps, self.batch_size, rng=self.rng))
        finally:
            self.module.eval()
            self.train_steps_done_ += self.train_steps

    def state_dict(self) -> dict:
        return {**super().state_dict(), "module": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                "train_steps_done": self.train_steps_done_}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.module.load_state_dict(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.train_steps_done_ = int(state["train_steps_done"])


class NeuralLinear(_NetworkAgent):
    """Riquelme et al.'s NeuralLinear: an MLP trained on the chosen arm's reward, a NIG head per arm on its
    last hidden layer.

    The network (``hidden_dims``, ReLU, one output per arm; weights uniform in ``[-init_scale, init_scale]``
    and zero biases as their ``init_scale=0.3``, or PyTorch's default initialisation with ``init_scale=None``)
    is fit to the squared error of the pulled arm's output (masked MSE) every ``train_every`` updates for
    ``train_steps`` minibatches of ``batch_size`` rows drawn with replacement from the history; then every
    arm's posterior is recomputed on the new last-layer features (no intercept, as theirs), and updated rank
    one until the next retraining.

    Defaults are those of their released code (``example_main.py``, ``hparams_nlinear``): RMSProp as
    TensorFlow 1 runs it, lr 0.1 with inverse-time decay 0.5, gradient norm clipped at 5, 100 minibatches of
    512 every 50 steps, ``a0 = b0 = 6``, ``lambda = 0.25``. Their ``reset_lr=True`` builds a new learning-rate
    tensor that the already-built optimiser never reads, so their learning rate decays over *all* steps:
    ``reset_lr=False`` here reproduces what ran. ``agent.posterior`` is the per-arm NIG state over the last
    hidden layer (``P = hidden_dims[-1]``), ``agent.features(X)`` those features, ``agent.module`` the network.

    Examples
    --------
    >>> agent = NeuralLinear(2, 3, train_every=10, train_steps=2, batch_size=8, seed=0)
    >>> x = np.zeros(3)
    >>> for _ in range(10):
    ...     agent.update(x, agent.act(x), 1.0)
    >>> agent.posterior.mean.shape
    (2, 50)
    """

    kind = "NeuralLinear"
    greedy_name = "NeuralGreedy"

    def __init__(self, num_arms: int, context_dim: int, *, hidden_dims: tuple[int, ...] = (50,),
                 init_scale: float | None = 0.3, train_every: int = 50, train_steps: int = 100,
                 batch_size: int = 512, lr: float = 0.1, lr_decay: float = 0.5, reset_lr: bool = False,
                 optimizer: str = "rmsprop_tf1", clip_grad: float = 5.0, prior_precision: float = 0.25,
                 a0: float = 6.0, b0: float = 6.0, fit_intercept: bool = False, initial_pulls: int = 2,
                 greedy: bool = False, seed: int = 0) -> None:
        self.hidden_dims = tuple(_positive_int(h, "hidden_dims") for h in hidden_dims)
        if not self.hidden_dims:
            raise ValueError("hidden_dims must name at least one hidden layer")
        self.init_scale = None if init_scale is None else check_positive(init_scale, "init_scale")
        super().__init__(num_arms, context_dim, feature_dim=self.hidden_dims[-1], train_every=train_every,
                         train_steps=train_steps, batch_size=batch_size, lr=lr, lr_decay=lr_decay,
                         reset_lr=reset_lr, optimizer=optimizer, clip_grad=clip_grad,
                         prior_precision=prior_precision, a0=a0, b0=b0, fit_intercept=fit_intercept,
                         initial_pulls=initial_pulls, greedy=greedy, seed=seed)

    def config(self) -> dict:
        return {**super().config(), "hidden_dims": list(self.hidden_dims), "init_scale": self.init_scale}

    def _build(self) -> nn.Module:
        layers, width = [], self.context_dim
        for h in self.hidden_dims:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        module = nn.ModuleDict({"body": nn.Sequential(*layers), "out": nn.Linear(width, self.num_arms)})
        if self.init_scale is not None:
            for layer in module.modules():
                if isinstance(layer, nn.Linear):
                    nn.init.uniform_(layer.weight, -self.init_scale, self.init_scale)
                    nn.init.zeros_(layer.bias)
        return module

    def features(self, contexts: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.module["body"](torch.from_numpy(contexts).float()).double().numpy()

    def _loss(self, contexts, arms, rewards):
        pred = self.module["out"](self.module["body"](contexts)).gather(1, arms[:, None])[:, 0]
        return (pred - rewards).pow(2).mean()


class FlowLinear(_NetworkAgent):
    r"""Ours: Thompson sampling with a per-arm NIG head on invertible flow features ``z = f(x)``.

    The agent's network ``agent.module`` is a :class:`~bayes_diglm.models.diglm.DIGLM`: a RealNVP flow on the
    context (padded with ``augment_dims`` extra coordinates) and a :class:`~bayes_diglm.bandits.heads.PerArmHead`
    of the registry's ``"gaussian"`` family (one output and one noise variance per arm). Every ``train_every``
    steps (as NeuralLinear) it is retrained for ``train_steps`` minibatches by the DIGLM's own semi-supervised
    hybrid objective,

    .. math:: \tfrac1B\sum_{i} \log N(r_i \mid w_{a_i}^T f(x_i) + c_{a_i}, \sigma_{a_i}^2)
              + \mathrm{px\_weight}\cdot\tfrac1{B + B'}\sum_j \log p(x_j),

    the first term on ``B = batch_size`` history rows (the pulled arm's reward only: the other arms' targets are
    missing), the second on those rows and on ``B' = density_batch_size`` more contexts drawn from *all*
    contexts seen, including unlabeled ones passed to :meth:`observe`. ``px_weight`` is the paper's lambda; by
    default ``0.1 / D`` for a flow on ``D`` dimensions (the paper scales lambda by ``1/D``: ``0.01 / D`` on
    MNIST), since ``log p(x)`` grows with ``D``. The ``B'`` density rows are the contexts plus Gaussian jitter of
    standard deviation ``density_noise`` (like dequantisation): without it a context coordinate that is
    constant in the data (a blank pixel) has no finite density, and ActNorm's data-dependent initialisation
    (from the first density rows) scales it by ``1e6`` per layer, so the features of a later context that
    differs there explode.

    Augmentation: a coupling flow on ``d = 2`` (the wheel) only has 2 features, too few for five per-arm
    linear heads. With ``augment_dims = m > 0`` the flow runs on ``[x, e]``: the density rows draw
    ``e ~ N(0, I_m)`` (an augmented flow, whose density bound is ``log p(x) >= log p_f([x, e]) - log N(e; 0,
    I)``; the constant ``log N(e)`` does not change the gradient), and the features are the deterministic slice
    ``z = f([x, 0])`` of dimension ``d + m``, which the ``B`` labelled rows use.

    Cost: a retraining step costs about 3.5x NeuralLinear's (the flow's nine small transforms run ~1.6 ms of
    per-call overhead forward and back whatever the batch; rows add ~0.8 ms per 1,000), and each decision
    passes one context through the flow (~0.5 ms against the MLP's 0.03). So the default retrains for 25
    minibatches (NeuralLinear: 100) of 512 labelled rows plus ``density_batch_size = 64`` density rows every
    50 steps, at twice the former learning rate (0.006: at lr 0.003 the shorter schedule lost regret at every
    delta of the wheel), about 1.4x NeuralLinear's CPU per decision (30 minibatches measured 1.51x;
    ``benchmarks/bench_bandits.py``); the former default, 100 minibatches with 512 density rows at lr 0.003, is
    the variant ``"FlowLinear[full]"`` (about 4.7x). docs/bandits.md compares their regret.
    ``density_batch_size=None`` draws as many density rows as labelled ones.

    ``agent.posterior`` is the per-arm NIG state over ``[z, 1]`` (``P = d + m + 1``), ``agent.features(X)``
    the flow features, ``agent.log_px(X)`` the flow's ``log p(x)`` and ``agent.module.flow`` the flow.

    Examples
    --------
    >>> agent = FlowLinear(2, 2, augment_dims=2, train_every=10, train_steps=2, batch_size=8, seed=0)
    >>> for x in np.random.default_rng(0).normal(size=(10, 2)):
    ...     agent.update(x, agent.act(x), float(x[0] > 0))
    >>> agent.posterior.mean.shape
    (2, 5)
    """

    kind = "FlowLinear"
    greedy_name = "FlowGreedy"

    def __init__(self, num_arms: int, context_dim: int, *, augment_dims: int = 0, num_layers: int = 3,
                 hidden_dims: tuple[int, ...] = (32,), mixing: str = "permute", px_weight: float | None = None,
                 density_noise: float = 0.05, density_batch_size: int | None = 64, px_explore: float = 0.0,
                 train_every: int = 50, train_steps: int = 25, batch_size: int = 512, lr: float = 6e-3,
                 lr_decay: float = 0.0, reset_lr: bool = False, optimizer: str = "rmsprop", clip_grad: float = 5.0,
                 prior_precision: float = 0.25, a0: float = 6.0, b0: float = 6.0, fit_intercept: bool = True,
                 initial_pulls: int = 2, greedy: bool = False, seed: int = 0) -> None:
        if not isinstance(augment_dims, (int, np.integer)) or augment_dims < 0:
            raise ValueError(f"augment_dims must be a non-negative integer, got {augment_dims!r}")
        self.augment_dims = int(augment_dims)
        self.num_layers = _positive_int(num_layers, "num_layers")
        self.hidden_dims = tuple(_positive_int(h, "hidden_dims") for h in hidden_dims)
        dim = _positive_int(context_dim, "context_dim") + self.augment_dims
        self.px_weight = 0.1 / dim if px_weight is None else check_positive(px_weight, "px_weight", allow_zero=True)
        self.density_noise = check_positive(density_noise, "density_noise", allow_zero=True)
        self.density_batch_size = (None if density_batch_size is None
                                   else _positive_int(density_batch_size, "density_batch_size"))
        self.px_explore = check_positive(px_explore, "px_explore", allow_zero=True)
        if mixing not in ("lu", "permute"):
            raise ValueError(f"mixing must be 'lu' or 'permute', got {mixing!r}")
        self.mixing = mixing
        if dim < 2:
            raise ValueError("a coupling flow needs at least 2 dimensions: use augment_dims >= 1 for d = 1")
        super().__init__(num_arms, context_dim, feature_dim=dim, train_every=train_every,
                         train_steps=train_steps, batch_size=batch_size, lr=lr, lr_decay=lr_decay, reset_lr=reset_lr,
                         optimizer=optimizer, clip_grad=clip_grad, prior_precision=prior_precision, a0=a0, b0=b0,
                         fit_intercept=fit_intercept, initial_pulls=initial_pulls, greedy=greedy, seed=seed)
        self._score_ref = (0.0, 1.0)  # mean and sd of the density score over the history (px_explore)
        self.unlabeled = _History(context_dim)
        self._actnorm_ready = False

    def config(self) -> dict:
        return {**super().config(), "augment_dims": self.augment_dims, "num_layers": self.num_layers,
                "hidden_dims": list(self.hidden_dims), "mixing": self.mixing, "px_weight": self.px_weight,
                "density_noise": self.density_noise, "density_batch_size": self.density_batch_size,
                "px_explore": self.px_explore}

    def _build(self) -> DIGLM:
        dim = self.context_dim + self.augment_dims
        flow = realnvp(dim, num_layers=self.num_layers, hidden_dims=self.hidden_dims, mixing=self.mixing)
        return DIGLM(flow, PerArmHead(dim, self.num_arms, "gaussian"), self.px_weight)

    def observe(self, contexts) -> None:
        """Add unlabeled contexts ``(n, d)`` to the pool that trains ``log p(x)``."""
        X = np.atleast_2d(np.asarray(contexts, dtype=np.float64))
        for x in X:
            self.unlabeled.append(self._check_context(x), 0, 0.0)

    def _pad(self, X: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if not self.augment_dims:
            return X
        extra = X.new_zeros(X.shape[0], self.augment_dims) if noise is None else noise
        return torch.cat([X, extra], dim=1)

    def features(self, contexts: np.ndarray) -> np.ndarray:
        return self._features_and_score(contexts)[0]

    def _features_and_score(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features ``z = f([x, 0])`` and the density score ``log p_f([x, 0])`` from one pass through the flow."""
        with torch.inference_mode():
            out = self.module.outputs(self._pad(torch.from_numpy(contexts).float()))
            return out.features.double().numpy(), out.log_px.double().numpy()

    def _design_row(self, x: np.ndarray) -> np.ndarray:
        if self._cache is None or not np.array_equal(self._cache[0], x):
            z, score = self._features_and_score(x[None, :])
            self._cache = (x.copy(), self.posterior.design(z[0]), float(score[0]))
        return self._cache[1]

    def _exploration_scale(self, x: np.ndarray) -> float:
        r"""``1 + px_explore * max(0, (m - s(x)) / sd)``: wider draws where the flow's density score ``s(x) =
        log p_f([x, 0])`` is below its mean ``m`` over the history (``sd`` its standard deviation there)."""
        if not self.px_explore:
            return 1.0
        self._design_row(x)
        mean, sd = self._score_ref
        return 1.0 + self.px_explore * max(0.0, (mean - self._cache[2]) / sd)

    def _refit(self) -> None:
        contexts, arms, rewards = self.history.data()
        z, score = self._features_and_score(contexts)
        self._score_ref = (float(score.mean()), float(score.std()) or 1.0)
        self.posterior.fit(z, rewards, arms)

    def log_px(self, contexts) -> np.ndarray:
        """``log p(x)`` per row (nats; with augmentation the one-sample bound, drawn from the agent's rng)."""
        X = torch.from_numpy(np.atleast_2d(np.asarray(contexts, dtype=np.float64))).float()
        with torch.no_grad():
            padded, log_q = self._noisy(X)
            return (self.module.log_px(padded) - log_q).double().numpy()

    def _noisy(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``([x, e], log N(e; 0, I))`` with ``e`` from the agent's generator (``(X, 0)`` without augmentation)."""
        if not self.augment_dims:
            return X, X.new_zeros(X.shape[0])
        noise = torch.from_numpy(self.rng.standard_normal((X.shape[0], self.augment_dims))).to(X.dtype)
        log_q = -0.5 * noise.pow(2).sum(1) - 0.5 * self.augment_dims * math.log(2 * math.pi)
        return self._pad(X, noise), log_q

    def _density_rows(self, n: int) -> torch.Tensor:
        """``n`` flow inputs ``[x + jitter, e]`` for the density term, ``x`` drawn from every context seen."""
        seen = self.history.data()[0]
        if self.unlabeled.size:
            seen = np.concatenate([seen, self.unlabeled.data()[0]])
        pool = seen[self.rng.integers(0, seen.shape[0], size=n)]
        if self.density_noise:
            pool = pool + self.density_noise * self.rng.standard_normal(pool.shape)
        padded = self._noisy(torch.from_numpy(pool).float())[0]
        if not self._actnorm_ready:
            flow = self.module.flow
            if any(isinstance(m, ActNorm) and not bool(m.initialized) for m in flow.modules()):
                with torch.no_grad():  # ActNorm initialises from its first batch: make it the (noisy) contexts
                    flow(padded)
            self._actnorm_ready = True
        return padded

    def _history_objective(self, arms: torch.Tensor, rewards: torch.Tensor):
        """The DIGLM's semi-supervised objective: the rows' rewards as targets of their pulled arms (the other
        arms' missing), a density minibatch appended as unlabelled rows."""
        targets = torch.full((arms.shape[0], self.num_arms), math.nan)
        targets[torch.arange(arms.shape[0]), arms] = rewards

        def value(contexts: torch.Tensor, rows: torch.Tensor):
            density = self._density_rows(self.density_batch_size or contexts.shape[0])
            return self.module(torch.cat([self._pad(contexts), density]), targets[rows])

        return value

    def state_dict(self) -> dict:
        return {**super().state_dict(), "unlabeled": self.unlabeled.state_dict(), "score_ref": list(self._score_ref)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.unlabeled.load_state_dict(state["unlabeled"])
        self._score_ref = tuple(float(v) for v in state["score_ref"])


#: The agent classes by their ``kind``, what a saved agent records (the names users pick from are
#: :data:`bayes_diglm.bandits.registry.AGENTS`).
AGENT_CLASSES = {cls.kind: cls for cls in (UniformAgent, LinFullPost, NeuralLinear, FlowLinear)}


#: config keys that size what an agent allocates: bounded by the tensors its file holds (or a small floor)
_AGENT_SIZES = ("num_arms", "context_dim", "hidden_dims", "augment_dims", "num_layers")
_AGENT_SIZE_FLOOR = 1024


def _checked_agent_fields(ckpt, path) -> tuple[str, dict, dict]:
    """``(kind, config, state)`` of a loaded agent file, every field checked (``CheckpointError`` naming it)."""
    f = Fields(ckpt, path)
    kind = f.get("kind", str)
    if kind not in AGENT_CLASSES:
        raise CheckpointError(f"{str(path)!r} does not hold a bandit agent (kind {kind!r})"[:300])
    config, state = dict(f.get("config", dict)), f.get("state", dict)
    f.values(state, "state")
    elements = sum(int(t.numel()) for t in _tensors(state))
    for key in ("num_arms", "context_dim"):
        f.get(key, int, within=config, field=f"config.{key}")
    for key, value in config.items():
        f.sizes(value, f"config.{key}", high=max(elements, _AGENT_SIZE_FLOOR) if key in _AGENT_SIZES else 2**63 - 1)
    if "hidden_dims" in config:
        config["hidden_dims"] = tuple(f.get("hidden_dims", list, within=config, field="config.hidden_dims"))
    return kind, config, state


def _tensors(tree):
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, dict | list | tuple):
        for v in (tree.values() if isinstance(tree, dict) else tree):
            yield from _tensors(v)


def load_agent(path: str | os.PathLike, *, key: bytes | str | None = None) -> BanditAgent:
    """Rebuild an agent written by :meth:`BanditAgent.save` (``torch.load(weights_only=True)``: no code runs).

    The agent comes back with its name (e.g. ``"FlowLinear[fast]"``), settings, posterior, history, network
    and random generator, so it goes on with exactly the choices the saved agent would have made. Every field is
    checked first (types, sizes bounded by the file's own tensors, finite posterior and history), and a field
    the agent refuses is a ``CheckpointError`` naming the file; ``key``: the file must carry the signature that
    ``save(path, key=key)`` wrote.
    """
    ckpt = load_checkpoint(path, key=key)
    kind, config, state = _checked_agent_fields(ckpt, path)
    try:
        agent = AGENT_CLASSES[kind](config.pop("num_arms"), config.pop("context_dim"), **config)
        agent.load_state_dict(state)
    except (TypeError, ValueError, KeyError, IndexError, RuntimeError, AttributeError, OverflowError) as err:
        raise CheckpointError(f"{str(path)!r} holds a {kind} this version cannot rebuild: {type(err).__name__}: "
                              f"{err}"[:600]) from err
    label = ckpt.get("name")
    agent.label = label if isinstance(label, str) and label != agent.name else None
    return agent
