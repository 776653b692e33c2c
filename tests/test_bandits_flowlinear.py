"""FlowLinear is a DIGLM: its per-arm Gaussian head, its training objective, and agents saved before either."""

import copy
import math

import numpy as np
import pytest
import scipy.stats
import torch

from bayes_diglm.bandits import FlowLinear, load_agent, wheel_bandit
from bayes_diglm.bandits.heads import PerArmHead
from bayes_diglm.models.diglm import DIGLM
from bayes_diglm.training.checkpoint import load_checkpoint, save_checkpoint

SMALL = {"train_every": 20, "train_steps": 5, "batch_size": 16, "hidden_dims": (8,), "augment_dims": 2,
         "num_layers": 2}


def _play(agent, data, steps):
    for t in range(steps):
        arm = agent.act(data.contexts[t])
        agent.update(data.contexts[t], arm, data.rewards[t, arm])


def test_per_arm_head_is_the_gaussian_log_density_of_the_pulled_arm():
    torch.manual_seed(0)
    head = PerArmHead(3, 4).double()
    with torch.no_grad():
        head.linear.weight.normal_()
        head.linear.bias.normal_()
        head.nuisance["noise_variance"].copy_(torch.tensor([-1.0, 0.0, 0.5, 1.0]))  # log sigma^2 per arm
    z = torch.randn(6, 3, dtype=torch.float64)
    arms = np.array([0, 1, 2, 3, 1, 0])
    rewards = np.random.default_rng(0).normal(size=6)
    y = torch.full((6, 4), math.nan, dtype=torch.float64)
    y[torch.arange(6), torch.from_numpy(arms)] = torch.from_numpy(rewards)
    W, b = head.linear.weight.detach().numpy(), head.linear.bias.detach().numpy()
    sd = np.exp(0.5 * np.array([-1.0, 0.0, 0.5, 1.0]))
    want = [scipy.stats.norm.logpdf(r, loc=W[a] @ zi + b[a], scale=sd[a])
            for zi, a, r in zip(z.numpy(), arms, rewards, strict=True)]
    np.testing.assert_allclose(head.log_prob(z, y).detach().numpy(), want, rtol=1e-12)
    # a row observing two arms sums both; a row observing none contributes zero
    y2 = y.clone()
    y2[0, 3], y2[1] = 0.25, math.nan
    got = head.log_prob(z, y2).detach().numpy()
    assert got[0] == pytest.approx(want[0] + scipy.stats.norm.logpdf(0.25, W[3] @ z[0].numpy() + b[3], sd[3]))
    assert got[1] == 0.0
    with pytest.raises(ValueError, match="shape"):
        head.log_prob(z, y[:, :2])
    with pytest.raises(ValueError, match="num_arms"):
        PerArmHead(3, 0)


def test_flowlinear_trains_by_the_diglm_objective_on_labelled_and_density_rows():
    """The first minibatch of a retraining, as the agent's DIGLM receives it (a forward hook on ``agent.module``):
    the history rows drawn from the agent's generator with ``e = 0``, then the density rows (contexts drawn from
    every context seen, jittered, with ``e ~ N(0, I)``), the pulled arms' rewards as targets (the other arms
    missing); its objective is the DIGLM's, written out here with scipy."""
    agent = FlowLinear(5, 2, seed=1, density_batch_size=7, **SMALL)
    assert isinstance(agent.module, DIGLM) and isinstance(agent.module.head, PerArmHead)
    assert agent.module.head.family == "gaussian" and agent.module.px_weight == agent.px_weight
    data = wheel_bandit(30, 0.5, seed=0)
    _play(agent, data, 19)
    x = data.contexts[19]
    arm = agent.act(x)
    replay = copy.deepcopy(agent.rng)  # the retraining's draws, replayed
    seen = []

    def check_first_batch(module, args, output):
        if seen:
            return
        inputs, targets = args
        contexts, arms, rewards = agent.history.data()  # 20 rows: the update has appended its own
        rows = replay.integers(0, 20, size=SMALL["batch_size"])
        picks = replay.integers(0, 20, size=7)
        jitter = agent.density_noise * replay.standard_normal((7, 2))
        noise = replay.standard_normal((7, 2))
        labelled = torch.cat([torch.from_numpy(contexts).float()[rows], torch.zeros(len(rows), 2)], dim=1)
        density = torch.from_numpy(np.hstack([contexts[picks] + jitter, noise])).float()
        assert torch.equal(inputs, torch.cat([labelled, density]))
        want_targets = torch.full((len(rows), 5), math.nan)
        want_targets[torch.arange(len(rows)), torch.from_numpy(arms[rows])] = torch.from_numpy(rewards[rows]).float()
        torch.testing.assert_close(targets, want_targets, equal_nan=True, rtol=0, atol=0)
        flow, head = module.flow, module.head
        with torch.no_grad():
            z = flow.features(labelled).double().numpy()
            log_px = flow.log_prob(torch.cat([labelled, density])).double().numpy()
            W, b = head.linear.weight.double().numpy(), head.linear.bias.double().numpy()
            sd = head.nuisance_values()["noise_variance"].double().sqrt().numpy()
        a, r = arms[rows], rewards[rows]
        log_py = scipy.stats.norm.logpdf(r, loc=np.einsum("nd,nd->n", z, W[a]) + b[a], scale=sd[a])
        value, parts = output
        seen.append(True)
        assert float(value.detach()) == pytest.approx(log_py.mean() + agent.px_weight * log_px.mean(), rel=1e-5)
        assert float(parts["log_py"]) == pytest.approx(log_py.mean(), rel=1e-5)

    handle = agent.module.register_forward_hook(check_first_batch)
    try:
        agent.update(x, arm, data.rewards[19, arm])  # the 20th update: the first retraining
    finally:
        handle.remove()
    assert seen


def test_agent_saved_with_the_former_masked_head_loads_and_acts_alike(tmp_path):
    """Agents saved before FlowLinear was a DIGLM stored the head's log noise scale as ``head.log_sigma``."""
    data = wheel_bandit(60, 0.5, seed=2)
    agent = FlowLinear(5, 2, seed=4, **SMALL)
    _play(agent, data, 25)
    agent.save(tmp_path / "new.pt")
    ckpt = load_checkpoint(tmp_path / "new.pt")
    module = ckpt["state"]["module"]
    log_sigma = 0.5 * module.pop("head.nuisance.noise_variance")  # the former parametrisation
    module["head.log_sigma"] = log_sigma
    ckpt["config"].pop("density_batch_size")  # not a setting then
    save_checkpoint(ckpt, tmp_path / "old.pt")
    resumed = load_agent(tmp_path / "old.pt")
    torch.testing.assert_close(resumed.module.head.nuisance_values()["noise_variance"], torch.exp(2 * log_sigma))
    assert _acts(resumed, data) == _acts(agent, data)


def _acts(agent, data):
    out = []
    for t in range(25, 60):  # crosses the retraining at step 40
        arm = agent.act(data.contexts[t])
        agent.update(data.contexts[t], arm, data.rewards[t, arm])
        out.append(arm)
    return out
