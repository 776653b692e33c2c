"""Thompson-sampling agents: Uniform, LinFullPost, NeuralLinear and FlowLinear (flow features), online API."""

from __future__ import annotations

import math
import os

import numpy as np
import scipy.linalg
import torch
from torch import nn

from .._validation import check_positive
from ..flows.base import ActNorm
from ..flows.realnvp import realnvp
from ..inference.linalg import cholesky_rank_one_update
from ..training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

__all__ = [
    "ArmPosteriors",
    "BanditAgent",
    "UniformAgent",
    "LinFullPost",
    "NeuralLinear",
    "FlowLinear",
    "AGENTS",
    "make_agent",
    "load_agent",
]


# ----------------------------------------------------------------------------------------------------------
# per-arm conjugate posteriors
# ----------------------------------------------------------------------------------------------------------


class ArmPosteriors:
    r"""Independent Normal-Inverse-Gamma posteriors of ``k`` linear reward models, batched across arms.

    For arm ``a`` with design rows ``x = [z, 1]`` (``fit_intercept``) and rewards ``r``:

    .. math::
        \sigma_a^2 \sim \mathrm{InvGamma}(a_0, b_0),\quad \beta_a \mid \sigma_a^2 \sim N(0, \sigma_a^2
        \lambda^{-1} I),\quad r \mid x, \beta_a, \sigma_a^2 \sim N(x^T\beta_a, \sigma_a^2),

    the same model (and the same numbers) as :class:`bayes_diglm.inference.conjugate.ConjugateLinearRegression`
    with ``prior_precision = intercept_precision = lambda``. The state is stacked over arms: lower Cholesky
    factors ``L (k, P, P)`` of :math:`\Lambda_a`, means ``(k, P)``, ``a (k,)``, ``b (k,)``, all float64.
    :meth:`update` adds one observation to one arm in O(P^2):

    .. math::
        v = L^{-1}x,\ k = L^{-T}v,\ e = r - x^T\mu,\ \mu \leftarrow \mu + k\,e/(1+v^Tv),\
        b \leftarrow b + \tfrac12 e^2/(1+v^Tv),\ a \leftarrow a + \tfrac12,

    and ``L`` by a rank-one Cholesky update. :meth:`fit` recomputes all arms from stored data (O(k P^3),
    used only when the features change). :meth:`sample` draws one :math:`\beta_a` per arm in one batched
    triangular solve.

    Examples
    --------
    >>> post = ArmPosteriors(2, 1, prior_precision=1.0, a0=2.0, b0=2.0)
    >>> post.update(0, np.array([1.0]), 3.0)
    >>> post.mean.shape, post.a.tolist()
    ((2, 2), [2.5, 2.0])
    """

    def __init__(self, num_arms: int, dim: int, *, prior_precision: float = 0.25, a0: float = 6.0,
                 b0: float = 6.0, fit_intercept: bool = True) -> None:
        self.num_arms, self.dim = _positive_int(num_arms, "num_arms"), _positive_int(dim, "dim")
        self.prior_precision = check_positive(prior_precision, "prior_precision")
        self.a0, self.b0 = check_positive(a0, "a0"), check_positive(b0, "b0")
        self.fit_intercept = bool(fit_intercept)
        self.reset()

    @property
    def design_dim(self) -> int:
        """``P``: the feature dimension plus one for the intercept."""
        return self.dim + int(self.fit_intercept)

    def reset(self) -> None:
        """Back to the prior for every arm."""
        k, P = self.num_arms, self.design_dim
        self.cholesky = np.tile(math.sqrt(self.prior_precision) * np.eye(P), (k, 1, 1))
        self.mean = np.zeros((k, P))
        self.a = np.full(k, self.a0)
        self.b = np.full(k, self.b0)

    def design(self, Z: np.ndarray) -> np.ndarray:
        """Rows ``[z, 1]`` (or ``z``) in float64; ``Z`` is (n, dim) or (dim,)."""
        Z = np.asarray(Z, dtype=np.float64)
        if Z.shape[-1] != self.dim:
            raise ValueError(f"features have dimension {Z.shape[-1]}, expected {self.dim}")
        if not self.fit_intercept:
            return Z
        return np.concatenate([Z, np.ones(Z.shape[:-1] + (1,))], axis=-1)

    def update(self, arm: int, z: np.ndarray, reward: float) -> None:
        """Add one observation ``(z, reward)`` to ``arm``'s posterior (rank one, O(P^2))."""
        x = self.design(z)
        L, mean = self.cholesky[arm], self.mean[arm]
        v = scipy.linalg.solve_triangular(L, x, lower=True, check_finite=False)
        gain = scipy.linalg.solve_triangular(L.T, v, lower=False, check_finite=False)
        denom = 1.0 + float(v @ v)
        err = float(reward) - float(x @ mean)
        self.mean[arm] = mean + gain * (err / denom)
        self.b[arm] += 0.5 * err * err / denom
        self.a[arm] += 0.5
        self.cholesky[arm] = cholesky_rank_one_update(L, x, p=v)

    def fit(self, Z: np.ndarray, arms: np.ndarray, rewards: np.ndarray) -> ArmPosteriors:
        """Recompute every arm's posterior from all its data (rows of ``Z`` with ``arms == a``)."""
        X = self.design(np.atleast_2d(Z))
        arms, rewards = np.asarray(arms), np.asarray(rewards, dtype=np.float64)
        if arms.shape != (X.shape[0],) or rewards.shape != (X.shape[0],):
            raise ValueError(f"arms {arms.shape} and rewards {rewards.shape} must have {X.shape[0]} entries")
        k, P, lam = self.num_arms, self.design_dim, self.prior_precision
        cholesky, mean = np.empty((k, P, P)), np.empty((k, P))
        a, b = np.empty(k), np.empty(k)
        for arm in range(k):
            rows = arms == arm
            Xa, ra = X[rows], rewards[rows]
            try:
                L = scipy.linalg.cholesky(lam * np.eye(P) + Xa.T @ Xa, lower=True, check_finite=False)
            except np.linalg.LinAlgError as err:
                raise ValueError(
                    f"arm {arm}: lambda I + Z^T Z is not numerically positive definite (features too large or "
                    f"degenerate: max |z| = {np.abs(Xa).max():.3g})"
                ) from err
            mu = scipy.linalg.cho_solve((L, True), Xa.T @ ra, check_finite=False)
            resid = ra - Xa @ mu
            cholesky[arm], mean[arm] = L, mu
            a[arm] = self.a0 + 0.5 * rows.sum()
            b[arm] = self.b0 + 0.5 * (float(resid @ resid) + lam * float(mu @ mu))
        self.cholesky, self.mean, self.a, self.b = cholesky, mean, a, b
        return self

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        r"""One draw per arm, ``(k, P)``: :math:`\sigma^2 = b/g,\ g\sim\Gamma(a)`, :math:`\beta = \mu +
        \sigma L^{-T}\epsilon`."""
        sigma2 = self.b / rng.gamma(self.a)
        eps = rng.standard_normal((self.num_arms, self.design_dim, 1))
        white = torch.linalg.solve_triangular(
            torch.from_numpy(self.cholesky).transpose(1, 2), torch.from_numpy(eps), upper=True
        ).numpy()[..., 0]
        return self.mean + np.sqrt(sigma2)[:, None] * white

    def state_dict(self) -> dict:
        return {name: torch.from_numpy(getattr(self, name).copy()) for name in ("cholesky", "mean", "a", "b")}

    def load_state_dict(self, state: dict) -> None:
        for name in ("cholesky", "mean", "a", "b"):
            value = state[name].numpy().astype(np.float64)
            if value.shape != getattr(self, name).shape:
                raise CheckpointError(f"posterior {name} has shape {value.shape}, expected {getattr(self, name).shape}")
            setattr(self, name, value.copy())


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

    Subclasses keep every random choice on their own generator (seeded by ``seed``), so a run is
    reproducible and :meth:`save` / :func:`load_agent` resume it with identical subsequent choices.
    """

    kind = "abstract"

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

    def save(self, path: str | os.PathLike) -> None:
        """Write the agent (config + state: tensors, numbers, dicts) atomically; read with :func:`load_agent`."""
        save_checkpoint({"kind": self.kind, "config": self.config(), "state": self.state_dict()}, path)


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
    ``beta_a`` per arm from :class:`ArmPosteriors` (or takes the posterior mean with ``greedy``) and pulls
    ``argmax_a [z, 1]^T beta_a``. Feature learners retrain every ``train_every`` updates and then refit the
    posteriors from the stored history; between retrainings each update is rank one.
    """

    def __init__(self, num_arms: int, context_dim: int, *, feature_dim: int, prior_precision: float = 0.25,
                 a0: float = 6.0, b0: float = 6.0, initial_pulls: int = 2, greedy: bool = False,
                 seed: int = 0) -> None:
        super().__init__(num_arms, context_dim, seed=seed)
        if not isinstance(initial_pulls, (int, np.integer)) or initial_pulls < 0:
            raise ValueError(f"initial_pulls must be a non-negative integer, got {initial_pulls!r}")
        self.initial_pulls, self.greedy = int(initial_pulls), bool(greedy)
        self.posterior = ArmPosteriors(num_arms, feature_dim, prior_precision=prior_precision, a0=a0, b0=b0)
        self.history = _History(context_dim)
        self._cache: tuple[np.ndarray, np.ndarray] | None = None

    greedy_name = "Greedy"

    @property
    def name(self) -> str:
        return self.greedy_name if self.greedy else self.kind

    def config(self) -> dict:
        post = self.posterior
        return {**super().config(), "prior_precision": post.prior_precision, "a0": post.a0, "b0": post.b0,
                "initial_pulls": self.initial_pulls, "greedy": self.greedy}

    def features(self, contexts: np.ndarray) -> np.ndarray:
        """Features ``(n, D)`` in float64 of contexts ``(n, d)``."""
        return contexts

    def _feature(self, x: np.ndarray) -> np.ndarray:
        if self._cache is None or not np.array_equal(self._cache[0], x):
            self._cache = (x.copy(), self.features(x[None, :])[0])
        return self._cache[1]

    def act(self, context) -> int:
        x = self._check_context(context)
        if self.steps_ < self.initial_pulls * self.num_arms:
            return self.steps_ % self.num_arms
        row = self.posterior.design(self._feature(x))
        beta = self.posterior.mean if self.greedy else self.posterior.sample(self.rng)
        return int(np.argmax(beta @ row))

    def update(self, context, arm: int, reward: float) -> None:
        x, arm = self._check_context(context), self._check_arm(arm)
        reward = float(reward)
        if not math.isfinite(reward):
            raise ValueError(f"reward must be finite, got {reward!r}")
        self.history.append(x, arm, reward)
        self.posterior.update(arm, self._feature(x), reward)
        self.steps_ += 1
        if self._should_retrain():
            self._retrain()
            self._cache = None
            self.posterior.fit(self.features(self.history.data()[0]), *self.history.data()[1:])

    def _should_retrain(self) -> bool:
        return False

    def _retrain(self) -> None:  # pragma: no cover - only feature learners retrain
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {**super().state_dict(), "posterior": self.posterior.state_dict(),
                "history": self.history.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.posterior.load_state_dict(state["posterior"])
        self.history.load_state_dict(state["history"])
        self._cache = None


class LinFullPost(_PosteriorAgent):
    """Thompson sampling with a linear NIG model per arm on the raw context plus intercept (Riquelme et al.).

    Defaults follow the paper: ``a0 = b0 = 6``, ``lambda = 0.25`` (prior precision of every coefficient,
    intercept included), 2 initial pulls per arm. ``greedy=True`` is the posterior-mean ablation
    ("LinGreedy"). Per decision: one batched draw over arms, O(k P^2); per update O(P^2).

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
                 b0: float = 6.0, initial_pulls: int = 2, greedy: bool = False, seed: int = 0) -> None:
        super().__init__(num_arms, context_dim, feature_dim=context_dim, prior_precision=prior_precision,
                         a0=a0, b0=b0, initial_pulls=initial_pulls, greedy=greedy, seed=seed)


class _NetworkAgent(_PosteriorAgent):
    """A feature learner retrained every ``train_every`` updates for ``train_steps`` RMSProp minibatch steps."""

    def __init__(self, num_arms: int, context_dim: int, *, feature_dim: int, train_every: int, train_steps: int,
                 batch_size: int, lr: float, clip_grad: float, **kwargs) -> None:
        super().__init__(num_arms, context_dim, feature_dim=feature_dim, **kwargs)
        self.train_every = _positive_int(train_every, "train_every")
        self.train_steps = _positive_int(train_steps, "train_steps")
        self.batch_size = _positive_int(batch_size, "batch_size")
        self.lr = check_positive(lr, "lr")
        self.clip_grad = check_positive(clip_grad, "clip_grad")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.module = self._build()
        self.module.eval()
        self.optimizer = torch.optim.RMSprop(self.module.parameters(), lr=self.lr)

    def config(self) -> dict:
        return {**super().config(), "train_every": self.train_every, "train_steps": self.train_steps,
                "batch_size": self.batch_size, "lr": self.lr, "clip_grad": self.clip_grad}

    def _build(self) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def _loss(self, contexts: torch.Tensor, arms: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - abstract

    def _should_retrain(self) -> bool:
        return self.steps_ % self.train_every == 0

    def _retrain(self) -> None:
        contexts, arms, rewards = self.history.data()
        X = torch.from_numpy(contexts).float()
        A, R = torch.from_numpy(arms), torch.from_numpy(rewards).float()
        self.module.train()
        try:
            for _ in range(self.train_steps):
                idx = torch.from_numpy(self.rng.integers(0, X.shape[0], size=self.batch_size))
                loss = self._loss(X[idx], A[idx], R[idx])
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(self.module.parameters(), self.clip_grad)
                self.optimizer.step()
        finally:
            self.module.eval()

    def state_dict(self) -> dict:
        return {**super().state_dict(), "module": self.module.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.module.load_state_dict(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])


class NeuralLinear(_NetworkAgent):
    """Riquelme et al.'s NeuralLinear: an MLP trained on the chosen arm's reward, a NIG head per arm on its
    last hidden layer.

    The network (``hidden_dims``, ReLU, one output per arm) is fit by RMSProp to the squared error of the
    pulled arm's output (masked MSE) every ``train_every`` updates for ``train_steps`` minibatches of
    ``batch_size`` rows drawn with replacement from the history; then every arm's posterior is recomputed
    on the new last-layer features, and updated rank one until the next retraining.

    Examples
    --------
    >>> agent = NeuralLinear(2, 3, train_every=10, train_steps=2, batch_size=8, seed=0)
    >>> x = np.zeros(3)
    >>> for _ in range(10):
    ...     agent.update(x, agent.act(x), 1.0)
    >>> agent.posterior.mean.shape
    (2, 51)
    """

    kind = "NeuralLinear"
    greedy_name = "NeuralGreedy"

    def __init__(self, num_arms: int, context_dim: int, *, hidden_dims: tuple[int, ...] = (50,),
                 train_every: int = 50, train_steps: int = 100, batch_size: int = 512, lr: float = 1e-2,
                 clip_grad: float = 5.0, prior_precision: float = 0.25, a0: float = 6.0, b0: float = 6.0,
                 initial_pulls: int = 2, greedy: bool = False, seed: int = 0) -> None:
        self.hidden_dims = tuple(_positive_int(h, "hidden_dims") for h in hidden_dims)
        if not self.hidden_dims:
            raise ValueError("hidden_dims must name at least one hidden layer")
        super().__init__(num_arms, context_dim, feature_dim=self.hidden_dims[-1], train_every=train_every,
                         train_steps=train_steps, batch_size=batch_size, lr=lr, clip_grad=clip_grad,
                         prior_precision=prior_precision, a0=a0, b0=b0, initial_pulls=initial_pulls,
                         greedy=greedy, seed=seed)

    def config(self) -> dict:
        return {**super().config(), "hidden_dims": list(self.hidden_dims)}

    def _build(self) -> nn.Module:
        layers, width = [], self.context_dim
        for h in self.hidden_dims:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        return nn.ModuleDict({"body": nn.Sequential(*layers), "out": nn.Linear(width, self.num_arms)})

    def features(self, contexts: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.module["body"](torch.from_numpy(contexts).float()).double().numpy()

    def _loss(self, contexts, arms, rewards):
        pred = self.module["out"](self.module["body"](contexts)).gather(1, arms[:, None])[:, 0]
        return (pred - rewards).pow(2).mean()


class _MaskedGaussianHead(nn.Module):
    """One Gaussian output per arm, ``r | z, a ~ N(w_a^T z + c_a, exp(2 s_a))``; only the pulled arm counts."""

    def __init__(self, dim: int, num_arms: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, num_arms)
        self.log_sigma = nn.Parameter(torch.zeros(num_arms))

    def log_prob(self, z: torch.Tensor, arms: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
        loc = self.linear(z).gather(1, arms[:, None])[:, 0]
        log_sigma = self.log_sigma[arms]
        return -0.5 * ((rewards - loc) * torch.exp(-log_sigma)).pow(2) - log_sigma - 0.5 * math.log(2 * math.pi)


class FlowLinear(_NetworkAgent):
    r"""Ours: Thompson sampling with a per-arm NIG head on invertible flow features ``z = f(x)``.

    A RealNVP flow on the context (padded with ``augment_dims`` extra coordinates) is retrained on
    NeuralLinear's schedule with the DIGLM's hybrid objective

    .. math:: \tfrac1B\sum_{i} \log N(r_i \mid w_{a_i}^T f(x_i) + c_{a_i}, s_{a_i}^2)
              + \mathrm{px\_weight}\cdot\tfrac1B\sum_j \log p(x_j),

    the first term on the pulled arm's reward only (a masked Gaussian head with one output per arm), the
    second on contexts drawn from *all* contexts seen, including unlabeled ones passed to :meth:`observe`.
    ``px_weight`` is the paper's lambda; by default ``0.1 / D`` for a flow on ``D`` dimensions (the paper
    scales lambda by ``1/D``: ``0.01 / D`` on MNIST), since ``log p(x)`` grows with ``D``.
    The density term sees the contexts plus Gaussian jitter of standard deviation ``density_noise`` (like
    dequantisation): without it a context coordinate that is constant in the data (a blank pixel) has no
    finite density, and ActNorm's data-dependent initialisation scales it by ``1e6`` per layer, so the
    features of a later context that differs there explode.

    Augmentation: a coupling flow on ``d = 2`` (the wheel) only has 2 features, too few for five per-arm
    linear heads. With ``augment_dims = m > 0`` the flow runs on ``[x, e]``, ``e ~ N(0, I_m)`` (an augmented
    flow): the density term uses the one-sample bound ``log p(x) >= log p_f([x, e]) - log N(e; 0, I)``, and the
    features are the deterministic slice ``z = f([x, 0])`` of dimension ``d + m``.

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
                 density_noise: float = 0.05, train_every: int = 50, train_steps: int = 100, batch_size: int = 512,
                 lr: float = 3e-3,
                 clip_grad: float = 5.0, prior_precision: float = 0.25, a0: float = 6.0, b0: float = 6.0,
                 initial_pulls: int = 2, greedy: bool = False, seed: int = 0) -> None:
        if not isinstance(augment_dims, (int, np.integer)) or augment_dims < 0:
            raise ValueError(f"augment_dims must be a non-negative integer, got {augment_dims!r}")
        self.augment_dims = int(augment_dims)
        self.num_layers = _positive_int(num_layers, "num_layers")
        self.hidden_dims = tuple(_positive_int(h, "hidden_dims") for h in hidden_dims)
        dim = _positive_int(context_dim, "context_dim") + self.augment_dims
        self.px_weight = 0.1 / dim if px_weight is None else check_positive(px_weight, "px_weight", allow_zero=True)
        self.density_noise = check_positive(density_noise, "density_noise", allow_zero=True)
        if mixing not in ("lu", "permute"):
            raise ValueError(f"mixing must be 'lu' or 'permute', got {mixing!r}")
        self.mixing = mixing
        feature_dim = _positive_int(context_dim, "context_dim") + self.augment_dims
        if feature_dim < 2:
            raise ValueError("a coupling flow needs at least 2 dimensions: use augment_dims >= 1 for d = 1")
        super().__init__(num_arms, context_dim, feature_dim=feature_dim, train_every=train_every,
                         train_steps=train_steps, batch_size=batch_size, lr=lr, clip_grad=clip_grad,
                         prior_precision=prior_precision, a0=a0, b0=b0, initial_pulls=initial_pulls,
                         greedy=greedy, seed=seed)
        self.unlabeled = _History(context_dim)
        self._actnorm_ready = False

    def config(self) -> dict:
        return {**super().config(), "augment_dims": self.augment_dims, "num_layers": self.num_layers,
                "hidden_dims": list(self.hidden_dims), "mixing": self.mixing, "px_weight": self.px_weight,
                "density_noise": self.density_noise}

    def _build(self) -> nn.Module:
        dim = self.context_dim + self.augment_dims
        flow = realnvp(dim, num_layers=self.num_layers, hidden_dims=self.hidden_dims, mixing=self.mixing)
        return nn.ModuleDict({"flow": flow, "head": _MaskedGaussianHead(dim, self.num_arms)})

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
        with torch.no_grad():
            return self.module["flow"].features(self._pad(torch.from_numpy(contexts).float())).double().numpy()

    def log_px(self, contexts) -> np.ndarray:
        """``log p(x)`` per row (nats; with augmentation the one-sample bound, drawn from the agent's rng)."""
        X = torch.from_numpy(np.atleast_2d(np.asarray(contexts, dtype=np.float64))).float()
        with torch.no_grad():
            return self._density(X).double().numpy()

    def _noisy(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``([x, e], log N(e; 0, I))`` with ``e`` from the agent's generator (``(X, 0)`` without augmentation)."""
        if not self.augment_dims:
            return X, X.new_zeros(X.shape[0])
        noise = torch.from_numpy(self.rng.standard_normal((X.shape[0], self.augment_dims))).to(X.dtype)
        log_q = -0.5 * noise.pow(2).sum(1) - 0.5 * self.augment_dims * math.log(2 * math.pi)
        return self._pad(X, noise), log_q

    def _density(self, X: torch.Tensor) -> torch.Tensor:
        padded, log_q = self._noisy(X)
        return self.module["flow"].log_prob(padded) - log_q

    def _loss(self, contexts, arms, rewards):
        seen = self.history.data()[0]
        if self.unlabeled.size:
            seen = np.concatenate([seen, self.unlabeled.data()[0]])
        pool = seen[self.rng.integers(0, seen.shape[0], size=contexts.shape[0])]
        if self.density_noise:
            pool = pool + self.density_noise * self.rng.standard_normal(pool.shape)
        padded, log_q = self._noisy(torch.from_numpy(pool).float())
        flow = self.module["flow"]
        if not self._actnorm_ready:
            if any(isinstance(m, ActNorm) and not bool(m.initialized) for m in flow.modules()):
                with torch.no_grad():  # ActNorm initialises from its first batch: make it the (noisy) contexts
                    flow(padded)
            self._actnorm_ready = True
        # one pass through the flow for both terms: density rows, then the labeled rows at e = 0
        z, log_det = flow(torch.cat([padded, self._pad(contexts)]))
        B = pool.shape[0]
        log_px = flow.base_log_prob(z[:B]) + log_det[:B] - log_q
        log_py = self.module["head"].log_prob(z[B:], arms, rewards)
        return -(log_py.mean() + self.px_weight * log_px.mean())

    def state_dict(self) -> dict:
        return {**super().state_dict(), "unlabeled": self.unlabeled.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.unlabeled.load_state_dict(state["unlabeled"])


AGENTS = {cls.kind: cls for cls in (UniformAgent, LinFullPost, NeuralLinear, FlowLinear)}


def make_agent(name: str, num_arms: int, context_dim: int, *, seed: int = 0, **kwargs) -> BanditAgent:
    """Build an agent by name: ``AGENTS``' keys, or ``"LinGreedy"`` / ``"FlowGreedy"`` (posterior-mean ablations).

    Examples
    --------
    >>> make_agent("LinGreedy", 3, 2).name
    'LinGreedy'
    """
    greedy = {"LinGreedy": "LinFullPost", "FlowGreedy": "FlowLinear", "NeuralGreedy": "NeuralLinear"}
    if name in greedy:
        return AGENTS[greedy[name]](num_arms, context_dim, seed=seed, greedy=True, **kwargs)
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; choose one of {sorted([*AGENTS, *greedy])}")
    return AGENTS[name](num_arms, context_dim, seed=seed, **kwargs)


def load_agent(path: str | os.PathLike) -> BanditAgent:
    """Rebuild an agent written by :meth:`BanditAgent.save` (``torch.load(weights_only=True)``: no code runs)."""
    ckpt = load_checkpoint(path)
    kind = ckpt.get("kind")
    if kind not in AGENTS:
        raise CheckpointError(f"{str(path)!r} does not hold a bandit agent (kind {kind!r})")
    config = dict(ckpt["config"])
    if "hidden_dims" in config:
        config["hidden_dims"] = tuple(config["hidden_dims"])
    agent = AGENTS[kind](config.pop("num_arms"), config.pop("context_dim"), **config)
    agent.load_state_dict(ckpt["state"])
    return agent
