"""Thompson-sampling contextual bandits: environments, agents (LinFullPost, NeuralLinear, FlowLinear), the loop."""

from bayes_diglm.bandits.agents import (
    AGENT_CLASSES,
    BanditAgent,
    FlowLinear,
    LinFullPost,
    NeuralLinear,
    UniformAgent,
    load_agent,
)
from bayes_diglm.bandits.environments import (
    WHEEL_DELTAS,
    BanditData,
    classification_bandit,
    digits_bandit,
    fashion_bandit,
    statlog_bandit,
    wheel_bandit,
)
from bayes_diglm.bandits.registry import AGENTS, AgentSpec, make_agent
from bayes_diglm.bandits.simulation import BanditRun, run_agent, simulate, summarize

__all__ = [
    "AGENTS",
    "AGENT_CLASSES",
    "AgentSpec",
    "BanditAgent",
    "BanditData",
    "BanditRun",
    "FlowLinear",
    "LinFullPost",
    "NeuralLinear",
    "UniformAgent",
    "WHEEL_DELTAS",
    "classification_bandit",
    "digits_bandit",
    "fashion_bandit",
    "load_agent",
    "make_agent",
    "run_agent",
    "simulate",
    "statlog_bandit",
    "summarize",
    "wheel_bandit",
]
