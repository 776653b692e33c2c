"""The agent API as a library: every name of AGENTS builds from Python, the CLI and the docs use the same list,
and the docs' Thompson-sampling loop on a user's own environment runs."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest

from bayes_diglm.bandits import AGENTS, BanditAgent, load_agent, make_agent, run_agent, simulate, wheel_bandit
from bayes_diglm.cli import build_parser

DOCS = Path(__file__).resolve().parents[1] / "docs" / "bandits.md"
# a few cheap training steps, valid for every class that retrains (ignored by the others)
CHEAP = {"train_every": 20, "train_steps": 2, "batch_size": 8}


def _cheap(name: str) -> dict:
    return {k: v for k, v in CHEAP.items() if AGENTS[name].cls.kind in ("NeuralLinear", "FlowLinear")}


@pytest.mark.parametrize("name", list(AGENTS))
def test_every_name_builds_an_agent_that_plays(name):
    agent = make_agent(name, 5, 2, seed=0, **_cheap(name))
    spec = AGENTS[name]
    assert isinstance(agent, spec.cls) and agent.name == name
    for key, value in spec.settings.items():  # the name's settings reach the constructor
        if key not in CHEAP:
            assert agent.config()[key] == (list(value) if isinstance(value, tuple) else value), key
    run = run_agent(wheel_bandit(30, 0.5, seed=0), agent)
    assert run.agent == name and run.arms.shape == (30,)


def test_settings_override_the_names_own_and_errors_name_the_value():
    agent = make_agent("FlowLinear[fast]", 5, 2, train_steps=3, augment_dims=6)
    assert (agent.train_steps, agent.batch_size, agent.augment_dims) == (3, 256, 6)
    with pytest.raises(ValueError, match="'Oracle'.*LinFullPost"):
        make_agent("Oracle", 3, 2)
    with pytest.raises(TypeError, match="name must be a str"):
        make_agent(3, 3, 2)
    with pytest.raises(ValueError, match="unknown agent"):
        simulate(lambda s: wheel_bandit(5, 0.5, seed=s), ["LinFullPost", "FlowLinear[nope]"], [0])


def test_a_saved_variant_comes_back_under_its_name(tmp_path):
    data = wheel_bandit(50, 0.5, seed=1)
    agent = make_agent("FlowLinear[fast,px0]", 5, 2, seed=2, **CHEAP)
    for t in range(25):
        agent.update(data.contexts[t], agent.act(data.contexts[t]), data.rewards[t, 0])
    agent.save(tmp_path / "agent.pt")
    resumed = load_agent(tmp_path / "agent.pt")
    assert resumed.name == "FlowLinear[fast,px0]" and resumed.px_weight == 0.0
    assert [resumed.act(x) for x in data.contexts[25:]] == [agent.act(x) for x in data.contexts[25:]]


def test_cli_accepts_exactly_the_names_of_agents():
    parser = build_parser()
    args = parser.parse_args(["bandit", "wheel", "--agents", *AGENTS])
    assert args.agents == list(AGENTS)
    with contextlib.redirect_stderr(io.StringIO()), pytest.raises(SystemExit):
        parser.parse_args(["bandit", "wheel", "--agents", "Oracle"])


def test_docs_list_every_name_of_agents_in_order():
    text = DOCS.read_text()
    section = text[text.index("### The agents by name"):]
    rows = re.findall(r"^\| `([^`]+)` \|", section, flags=re.MULTILINE)
    assert rows[:len(AGENTS)] == list(AGENTS)


def test_docs_thompson_sampling_loop_runs_and_learns():
    text = DOCS.read_text()
    start = text.index("<!-- executed by tests/test_bandits_api.py -->")
    code = text[start:].split("```python\n", 1)[1].split("```", 1)[0]
    assert 15 <= len([line for line in code.splitlines() if line.strip()]) <= 25
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(compile(code, str(DOCS), "exec"), namespace)  # our own docs, run as a user would
    agent, weights, regret = namespace["agent"], namespace["weights"], np.asarray(namespace["regret"])
    assert isinstance(agent, BanditAgent) and agent.steps_ == regret.size
    # against an independent yardstick: Uniform's expected regret per step on the same environment, by Monte Carlo
    rng = np.random.default_rng(1)
    values = rng.normal(size=(20_000, weights.shape[1])) @ weights.T
    uniform = float((values.max(axis=1) - values.mean(axis=1)).mean())
    assert regret[-100:].mean() < 0.05 * uniform
    np.testing.assert_allclose(agent.posterior.mean[:, :-1], weights, atol=0.05)
    assert "regret per step" in out.getvalue()
