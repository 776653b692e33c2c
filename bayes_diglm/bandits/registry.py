"""Agents by name: the one list of names (``AGENTS``) that :func:`make_agent`, the CLI and the docs use."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .agents import BanditAgent, FlowLinear, LinFullPost, NeuralLinear, UniformAgent

__all__ = ["AGENTS", "AgentSpec", "make_agent"]


@dataclass(frozen=True)
class AgentSpec:
    """What a name in :data:`AGENTS` builds: an agent class, the constructor settings the name fixes, and a
    one-line description (the docs' table of names says the same)."""

    cls: type[BanditAgent]
    description: str
    settings: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings", MappingProxyType(dict(self.settings)))  # read-only, not shared


_GREEDY = {"greedy": True}
# FlowLinear's variants, one idea each: "fast" is 25 minibatches of 256 labelled and 256 density rows at lr 0.003
# (a quarter of the former default's retraining work), the schedule the other "fast,..." variants build on; "full"
# is the former default (100 minibatches of 512 labelled and 512 density rows, lr 0.003).
_FAST = {"train_steps": 25, "batch_size": 256, "density_batch_size": None, "lr": 3e-3}

#: Every agent name accepted by :func:`make_agent`, the ``bandit`` subcommand's ``--agents`` and the docs, in
#: the order they are listed. ``"Kind[label]"`` names are variants of ``Kind``: the same class with the
#: settings shown. Iterate for the names; ``AGENTS[name].settings`` are the settings a name fixes.
AGENTS: Mapping[str, AgentSpec] = MappingProxyType({
    "Uniform": AgentSpec(UniformAgent, "a uniformly random arm (the baseline regret is normalised to)"),
    "LinFullPost": AgentSpec(LinFullPost, "Normal-Inverse-Gamma linear model per arm on [x, 1]"),
    "LinGreedy": AgentSpec(LinFullPost, "LinFullPost acting on its posterior mean (ablation)", _GREEDY),
    "NeuralLinear": AgentSpec(NeuralLinear, "the released NeuralLinear: MLP features, NIG head per arm"),
    "NeuralGreedy": AgentSpec(NeuralLinear, "NeuralLinear acting on its posterior mean (ablation)", _GREEDY),
    "NeuralLinear[main]": AgentSpec(
        NeuralLinear, "NeuralLinear as before the published protocol (PyTorch RMSProp, lr 0.01, intercept)",
        {"lr": 1e-2, "lr_decay": 0.0, "optimizer": "rmsprop", "init_scale": None, "fit_intercept": True}),
    "FlowLinear": AgentSpec(FlowLinear, "ours: NIG head per arm on RealNVP flow features (hybrid objective)"),
    "FlowGreedy": AgentSpec(FlowLinear, "FlowLinear acting on its posterior mean (ablation)", _GREEDY),
    "FlowLinear[full]": AgentSpec(FlowLinear, "the former default: 100 minibatches of 512 + 512 density rows, lr "
                                  "0.003 (~4.7x NeuralLinear's CPU)",
                                  {"train_steps": 100, "density_batch_size": None, "lr": 3e-3}),
    "FlowLinear[fast]": AgentSpec(FlowLinear, "25 minibatches of 256 + 256 density rows (a quarter of [full]'s work)",
                                  _FAST),
    "FlowLinear[fast,px0]": AgentSpec(FlowLinear, "fast, without the density term (px_weight = 0)",
                                      {**_FAST, "px_weight": 0.0}),
    "FlowLinear[fast,aug14]": AgentSpec(FlowLinear, "fast, 14 augmentation coordinates (richer features)",
                                        {**_FAST, "augment_dims": 14}),
    "FlowLinear[fast,explore]": AgentSpec(FlowLinear, "fast, wider draws where p(x) is low (px_explore = 1)",
                                          {**_FAST, "px_explore": 1.0}),
    "FlowLinear[fast,big]": AgentSpec(FlowLinear, "fast, twice the flow (4 coupling steps of width 64)",
                                      {**_FAST, "num_layers": 4, "hidden_dims": (64,)}),
    "FlowLinear[every100]": AgentSpec(FlowLinear, "retrain every 100 steps instead of 50", {"train_every": 100}),
})


def make_agent(name: str, num_arms: int, context_dim: int, *, seed: int = 0, **kwargs) -> BanditAgent:
    """Build the agent called ``name`` in :data:`AGENTS`; ``kwargs`` override the settings the name fixes.

    Parameters
    ----------
    name : str
        A key of :data:`AGENTS`, e.g. ``"LinFullPost"``, ``"LinGreedy"`` or ``"FlowLinear[fast]"``.
    num_arms, context_dim : int
        Number of arms and the dimension of a context.
    seed : int
        Seed of the agent's own generator (every random choice it makes).
    **kwargs
        Constructor arguments of the agent's class (e.g. ``augment_dims=6`` for FlowLinear on the wheel).

    Returns
    -------
    BanditAgent
        The agent; its ``name`` is ``name``.

    Examples
    --------
    >>> make_agent("LinGreedy", 3, 2).name
    'LinGreedy'
    >>> agent = make_agent("FlowLinear[fast]", 5, 2, augment_dims=6)
    >>> agent.name, agent.train_steps, agent.batch_size, agent.augment_dims
    ('FlowLinear[fast]', 25, 256, 6)
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; choose one of {list(AGENTS)}")
    spec = AGENTS[name]
    agent = spec.cls(num_arms, context_dim, seed=seed, **{**spec.settings, **kwargs})
    agent.label = name
    return agent
