"""Bandits: the wheel sampler, exact per-arm posteriors, reproducibility, save/load, and learning."""

import numpy as np
import pytest
import scipy.linalg
import scipy.stats

from bayes_diglm.bandits import (
    FlowLinear,
    LinFullPost,
    NeuralLinear,
    UniformAgent,
    classification_bandit,
    digits_bandit,
    load_agent,
    make_agent,
    run_agent,
    wheel_bandit,
)
from bayes_diglm.inference.conjugate import ConjugateLinearRegression
from bayes_diglm.inference.nig import NormalInverseGamma
from bayes_diglm.training.checkpoint import CheckpointError, save_checkpoint

# ---------------------------------------------------------------------------------------------------------
# environments
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("delta", [0.5, 0.7, 0.9, 0.95, 0.99])
def test_wheel_regions_means_and_outer_fraction(delta):
    n = 200_000
    data = wheel_bandit(n, delta, seed=1)
    x, mu = data.contexts, data.mean_rewards
    r = np.linalg.norm(x, axis=1)
    assert r.max() <= 1.0
    outer = r >= delta
    # outer-region fraction 1 - delta^2 within 4 binomial standard errors
    p = 1 - delta**2
    assert abs(outer.mean() - p) < 4 * np.sqrt(p * (1 - p) / n)
    # inside: arms 0-3 pay 1.0, arm 4 pays 1.2 and is optimal
    assert np.all(mu[~outer] == np.array([1.0, 1.0, 1.0, 1.0, 1.2]))
    assert np.all(data.optimal_arms[~outer] == 4)
    # outside: the quadrant's arm pays 50 and is optimal, the others keep their inner means
    quadrant = np.select(
        [(x[:, 0] > 0) & (x[:, 1] > 0), (x[:, 0] > 0) & (x[:, 1] < 0), (x[:, 0] < 0) & (x[:, 1] > 0)], [0, 1, 2], 3
    )
    assert np.all(data.optimal_arms[outer] == quadrant[outer])
    assert np.all(mu[outer, quadrant[outer]] == 50.0)
    assert np.all(np.sort(mu[outer], axis=1)[:, :4] == np.array([1.0, 1.0, 1.0, 1.2]))
    # rewards are N(mu, 0.01^2)
    noise = (data.rewards - mu).ravel()
    assert abs(noise.std() - 0.01) < 1e-4 and abs(noise.mean()) < 1e-4


def test_wheel_contexts_uniform_on_disk_and_regret_uses_means():
    data = wheel_bandit(20_000, 0.9, seed=2)
    r2 = (data.contexts**2).sum(1)  # uniform on the disk <=> squared radius ~ U(0, 1), angle uniform
    assert scipy.stats.kstest(r2, "uniform").pvalue > 1e-3
    angle = np.arctan2(data.contexts[:, 1], data.contexts[:, 0])
    assert scipy.stats.kstest(angle, "uniform", args=(-np.pi, 2 * np.pi)).pvalue > 1e-3
    arms = np.zeros(data.num_steps, dtype=np.int64)
    expected = data.mean_rewards.max(1) - data.mean_rewards[:, 0]
    np.testing.assert_array_equal(data.regret(arms), expected)
    assert np.all(data.regret(data.optimal_arms) == 0)
    with pytest.raises(ValueError, match="arms"):
        data.regret(np.zeros(3, dtype=np.int64))


def test_wheel_argument_errors():
    with pytest.raises(ValueError, match="delta"):
        wheel_bandit(10, 1.5)
    with pytest.raises(ValueError, match="num_steps"):
        wheel_bandit(0, 0.5)


def test_classification_bandit_and_digits():
    X = np.random.default_rng(0).normal(size=(7, 3))
    y = np.array([0, 1, 2, 0, 1, 2, 0])
    data = classification_bandit(X, y, num_steps=10, seed=0)
    assert data.rewards.shape == (10, 3) and np.all(data.rewards.sum(1) == 1)
    # every row appears once in the first pass, and its reward names its class
    first = data.contexts[:7]
    idx = [int(np.flatnonzero((X == row).all(1))[0]) for row in first]
    assert sorted(idx) == list(range(7))
    assert np.all(data.optimal_arms[:7] == y[idx])
    digits = digits_bandit(seed=0)
    assert digits.contexts.shape == (1797, 64) and digits.num_arms == 10
    np.testing.assert_allclose(digits.contexts.mean(0), 0, atol=1e-10)


# ---------------------------------------------------------------------------------------------------------
# posteriors
# ---------------------------------------------------------------------------------------------------------


def _reference_heads(Z, arms, y, k, lam=0.25, a0=6.0, b0=6.0):
    heads = []
    for a in range(k):
        rows = arms == a
        head = ConjugateLinearRegression(prior_precision=lam, intercept_prior_precision=lam, a0=a0, b0=b0)
        heads.append(head.fit(Z[rows], y[rows]))
    return heads


def _assert_matches(post, heads, tol=1e-10):
    for a, head in enumerate(heads):
        np.testing.assert_allclose(post.mean[a], head.posterior_.mean, rtol=tol, atol=tol)
        prec = post.precision_cholesky[a] @ post.precision_cholesky[a].T
        ref = head.posterior_.precision_cholesky @ head.posterior_.precision_cholesky.T
        np.testing.assert_allclose(prec, ref, rtol=tol, atol=tol * np.abs(ref).max())
        assert post.a[a] == pytest.approx(head.posterior_.a, rel=tol)
        assert post.b[a] == pytest.approx(head.posterior_.b, rel=tol)


def test_rank_one_updates_equal_batch_conjugate_fit():
    rng = np.random.default_rng(0)
    n, d, k = 300, 4, 3
    Z = rng.normal(size=(n, d))
    arms = rng.integers(0, k, size=n)
    beta = rng.normal(size=(k, d))
    y = np.einsum("nd,nd->n", Z, beta[arms]) + 50.0 * (arms == 1) + 0.01 * rng.normal(size=n)
    post = NormalInverseGamma(k, d, prior_precision=0.25, a0=6.0, b0=6.0)
    for z, a, r in zip(Z, arms, y, strict=True):
        post.update(int(a), z, float(r))
    heads = _reference_heads(Z, arms, y, k)
    _assert_matches(post, heads)
    refit = NormalInverseGamma(k, d, prior_precision=0.25, a0=6.0, b0=6.0).fit(Z, y, arms)
    _assert_matches(refit, heads)


def test_linfullpost_posterior_after_n_updates_equals_batch_fit():
    data = wheel_bandit(400, 0.7, seed=3)
    agent = LinFullPost(5, 2, seed=0)
    arms = np.array([_step(agent, data, t) for t in range(data.num_steps)])
    rewards = data.rewards[np.arange(data.num_steps), arms]
    _assert_matches(agent.posterior, _reference_heads(data.contexts, arms, rewards, 5))
    assert list(arms[:10]) == [0, 1, 2, 3, 4] * 2  # two initial pulls per arm, in turn


def test_posterior_samples_have_the_nig_moments():
    rng = np.random.default_rng(1)
    Z, y = rng.normal(size=(40, 2)), rng.normal(size=40)
    post = NormalInverseGamma(1, 2, prior_precision=0.5, a0=3.0, b0=2.0).fit(Z, y)
    draws = np.stack([post.sample(rng)[0] for _ in range(20_000)])
    cov = post.b[0] / (post.a[0] - 1) * scipy.linalg.cho_solve((post.precision_cholesky[0], True), np.eye(3))
    se = np.sqrt(np.diag(cov) / draws.shape[0])
    assert np.all(np.abs(draws.mean(0) - post.mean[0]) < 4 * se)
    np.testing.assert_allclose(np.cov(draws.T), cov, rtol=0.05, atol=0.05 * np.abs(cov).max())


def test_no_cholesky_factorisation_between_retrainings(monkeypatch):
    agent = NeuralLinear(3, 2, train_every=1000, train_steps=1, batch_size=4, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.normal(size=2)
        agent.update(x, agent.act(x), 1.0)

    def forbidden(*args, **kwargs):
        raise AssertionError("an O(P^3) factorisation ran between retrainings")

    monkeypatch.setattr(scipy.linalg, "cholesky", forbidden)
    for _ in range(20):
        x = rng.normal(size=2)
        agent.update(x, agent.act(x), 1.0)


# ---------------------------------------------------------------------------------------------------------
# agents: reproducibility, save/load, learning
# ---------------------------------------------------------------------------------------------------------

SMALL = {
    "Uniform": {},
    "LinFullPost": {},
    "LinGreedy": {},
    "NeuralLinear": {"train_every": 20, "train_steps": 5, "batch_size": 16, "hidden_dims": (8,)},
    "FlowLinear": {"train_every": 20, "train_steps": 5, "batch_size": 16, "hidden_dims": (8,), "augment_dims": 2,
                   "num_layers": 2},
}


def _step(agent, data, t):
    arm = agent.act(data.contexts[t])
    agent.update(data.contexts[t], arm, data.rewards[t, arm])
    return arm


@pytest.mark.parametrize("name", list(SMALL))
def test_choices_reproducible_per_seed(name):
    data = wheel_bandit(80, 0.5, seed=0)
    runs = [run_agent(data, make_agent(name, 5, 2, seed=s, **SMALL[name])).arms for s in (7, 7, 8)]
    np.testing.assert_array_equal(runs[0], runs[1])
    if name != "LinGreedy":  # the greedy ablation has no randomness to vary
        assert not np.array_equal(runs[0], runs[2])


@pytest.mark.parametrize("name", ["Uniform", "LinFullPost", "NeuralLinear", "FlowLinear"])
def test_save_load_resumes_with_identical_choices(name, tmp_path):
    data = wheel_bandit(90, 0.5, seed=1)
    agent = make_agent(name, 5, 2, seed=3, **SMALL[name])
    for t in range(45):
        _step(agent, data, t)
    path = tmp_path / "agent.pt"
    agent.save(path)
    resumed = load_agent(path)
    assert type(resumed) is type(agent) and resumed.steps_ == 45
    # the continuation crosses retrainings (at 60 and 80) for the feature learners
    original = [_step(agent, data, t) for t in range(45, 90)]
    again = [_step(resumed, data, t) for t in range(45, 90)]
    assert original == again


def test_load_refuses_other_files(tmp_path):
    path = tmp_path / "x.pt"
    save_checkpoint({"kind": "Evil", "config": {}, "state": {}}, path)
    with pytest.raises(CheckpointError, match="bandit agent"):
        load_agent(path)


def test_input_errors_name_the_argument():
    agent = LinFullPost(3, 2)
    with pytest.raises(ValueError, match="context"):
        agent.act(np.zeros(3))
    with pytest.raises(ValueError, match="arm"):
        agent.update(np.zeros(2), 3, 1.0)
    with pytest.raises(ValueError, match="reward"):
        agent.update(np.zeros(2), 0, float("nan"))
    with pytest.raises(ValueError, match="unknown agent"):
        make_agent("Oracle", 3, 2)
    with pytest.raises(ValueError, match="augment_dims"):
        FlowLinear(3, 2, augment_dims=-1)
    with pytest.raises(ValueError, match="num_arms"):
        UniformAgent(0, 2)


def test_flowlinear_learns_the_wheel_better_than_uniform():
    data = wheel_bandit(300, 0.5, seed=0)
    uniform = run_agent(data, UniformAgent(5, 2, seed=0)).cumulative_regret
    flow = run_agent(data, FlowLinear(5, 2, augment_dims=2, num_layers=2, train_steps=30, seed=0))
    assert flow.cumulative_regret < 0.5 * uniform
    assert flow.seconds_per_decision > 0


def test_flowlinear_observe_adds_unlabeled_contexts_to_the_density_pool():
    agent = FlowLinear(2, 2, augment_dims=0, train_every=5, train_steps=3, batch_size=8, seed=0)
    agent.observe(np.random.default_rng(0).normal(size=(30, 2)))
    assert agent.unlabeled.size == 30
    x = np.zeros(2)
    for _ in range(5):
        agent.update(x, agent.act(x), 1.0)
    assert np.isfinite(agent.log_px(np.zeros((3, 2)))).all()


@pytest.mark.parametrize("reset_lr", [False, True])
def test_network_agents_train_through_train_module_exactly_as_the_published_loop(reset_lr):
    """NeuralLinear retrains by train_module (agent's TF1 RMSProp kept across retrainings, run-long inverse-time
    decay, minibatches with replacement from the agent's rng, the pulled arm's squared error): the same
    parameters, to the bit, as the loop of the released code written out here and run on a twin agent that never
    retrains by itself (the loop then refits its posteriors on the new features, as the agent does)."""
    import torch
    from torch import nn

    def reference_retrain(agent, train_steps_done):
        contexts, arms, rewards = agent.history.data()
        X, A, R = torch.from_numpy(contexts).float(), torch.from_numpy(arms), torch.from_numpy(rewards).float()
        group = agent.optimizer.param_groups[0]
        agent.module.train()
        for i in range(agent.train_steps):
            t = i if agent.reset_lr else train_steps_done + i
            group["lr"] = agent.lr / (1.0 + agent.lr_decay * t)
            idx = torch.from_numpy(agent.rng.integers(0, X.shape[0], size=agent.batch_size))
            pred = agent.module["out"](agent.module["body"](X[idx])).gather(1, A[idx, None])[:, 0]
            loss = (pred - R[idx]).pow(2).mean()
            agent.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(agent.module.parameters(), agent.clip_grad)
            agent.optimizer.step()
        agent.module.eval()
        agent.posterior.fit(agent.features(contexts), rewards, arms)

    settings = dict(train_steps=4, batch_size=8, reset_lr=reset_lr, seed=2)
    ours = NeuralLinear(3, 2, train_every=15, **settings)
    ref = NeuralLinear(3, 2, train_every=10**9, **settings)
    rng = np.random.default_rng(0)
    for step in range(1, 61):
        x = rng.normal(size=2)
        arm = ours.act(x)
        assert ref.act(x) == arm
        reward = float(x[0] * (arm - 1) + 0.1 * rng.normal())
        ours.update(x, arm, reward)
        ref.update(x, arm, reward)
        if step % 15 == 0:
            reference_retrain(ref, (step // 15 - 1) * ref.train_steps)
    assert ours.train_steps_done_ == 4 * ref.train_steps
    for p, q in zip(ours.module.parameters(), ref.module.parameters(), strict=True):
        assert torch.equal(p, q)
    assert ours.optimizer.param_groups[0]["lr"] == ref.optimizer.param_groups[0]["lr"]
