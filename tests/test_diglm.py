"""The DIGLM model, its heads, training, checkpoints and estimators."""

import math
import os

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.datasets import make_moons

from bayes_diglm import DIGLMClassifier, DIGLMRegressor, load_estimator
from bayes_diglm.flows import realnvp
from bayes_diglm.models import DIGLM, make_head
from bayes_diglm.training import CheckpointError, NonFiniteLossError, load_checkpoint, train_module


def _moons(n, seed):
    X, y = make_moons(n, noise=0.1, random_state=seed)
    return X.astype("float32"), y


@pytest.mark.parametrize("family", ["bernoulli", "categorical", "gaussian", "heteroscedastic", "poisson"])
def test_heads_log_prob_matches_scipy(family, float64):
    torch.manual_seed(1)
    kwargs = {"num_classes": 3} if family == "categorical" else {}
    head = make_head(family, 4, **kwargs)
    for p in head.parameters():
        p.data.normal_(0, 0.5)
    z = torch.randn(6, 4)
    eta = (z @ head.linear.weight.T + head.linear.bias).detach().numpy()
    if family == "gaussian":
        y = torch.randn(6)
        ref = stats.norm(eta[:, 0], math.sqrt(head.likelihood.noise_variance.item())).logpdf(y.numpy())
    elif family == "heteroscedastic":
        y = torch.randn(6)
        sd = torch.exp(0.5 * head.noise_log_var(z)).detach().numpy()
        ref = stats.norm(eta[:, 0], sd).logpdf(y.numpy())
    elif family == "bernoulli":
        y = torch.tensor([0, 1, 1, 0, 1, 0])
        ref = stats.bernoulli(1 / (1 + np.exp(-eta[:, 0]))).logpmf(y.numpy())
    elif family == "categorical":
        y = torch.tensor([0, 1, 2, 2, 1, 0])
        logp = eta - np.log(np.exp(eta).sum(1, keepdims=True))
        ref = logp[np.arange(6), y.numpy()]
    else:
        y = torch.tensor([0.0, 1, 3, 2, 0, 5])
        ref = stats.poisson(np.exp(eta[:, 0])).logpmf(y.numpy())
    np.testing.assert_allclose(head.log_prob(z, y).detach().numpy(), ref, rtol=1e-10)


def test_objective_is_log_py_plus_weighted_log_px(float64):
    flow = realnvp(2, num_layers=2, hidden_dims=(8,))
    model = DIGLM(flow, make_head("bernoulli", 2), px_weight=0.3)
    x, y = torch.randn(16, 2), torch.randint(0, 2, (16,))
    value, parts = model.objective(x, y)
    expected = model.log_py_given_x(x, y).mean() + 0.3 * model.log_px(x).mean()
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(parts["log_px"], model.log_px(x).mean().detach())


def test_hybrid_classifies_and_flags_far_points():
    X, y = _moons(800, 0)
    X_test, y_test = _moons(400, 1)
    clf = DIGLMClassifier(epochs=40, px_weight=0.1, quiet=True, seed=0).fit(X, y)
    assert clf.score(X_test, y_test) > 0.9
    far = np.random.default_rng(0).normal(size=(200, 2)).astype("float32") * 0.5 + np.array([6.0, -6.0], "float32")
    assert np.median(clf.score_samples(X_test)) > np.max(clf.score_samples(far))
    assert clf.history_.epochs[-1]["log_px"] > clf.history_.epochs[0]["log_px"]


def test_discriminative_model_trains():
    X, y = _moons(800, 0)
    clf = DIGLMClassifier(epochs=40, px_weight=0.0, quiet=True).fit(X, y)
    assert clf.score(*_moons(400, 1)) > 0.9


def test_regressor_fits_heteroscedastic_noise():
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(1000, 2)).astype("float32")
    y = (X[:, 0] + np.sin(2 * X[:, 1]) + rng.normal(size=1000) * (0.1 + 0.3 * (X[:, 0] > 0))).astype("float32")
    reg = DIGLMRegressor(epochs=40, px_weight=0.05, quiet=True, lr=3e-3).fit(X, y)
    assert reg.score(X, y) > 0.8
    _, std = reg.predict(X, return_std=True)
    assert std[X[:, 0] > 0.5].mean() > 1.5 * std[X[:, 0] < -0.5].mean()


def test_checkpoint_round_trip_is_exact(tmp_path):
    X, y = _moons(300, 0)
    clf = DIGLMClassifier(epochs=5, quiet=True).fit(X, y)
    path = clf.save(tmp_path / "model.pt")
    loaded = load_estimator(path)
    assert isinstance(loaded, DIGLMClassifier)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(loaded.score_samples(X), clf.score_samples(X))
    with pytest.raises(CheckpointError, match="DIGLMClassifier"):
        DIGLMRegressor.load(path)


def test_resumed_run_continues_where_it_stopped(tmp_path):
    X, y = _moons(300, 0)
    X_t, y_t = torch.as_tensor(X), torch.as_tensor(y)

    def fresh():
        torch.manual_seed(0)
        return DIGLM(realnvp(2, num_layers=2, hidden_dims=(16,)), make_head("bernoulli", 2), px_weight=0.1)

    full = fresh()
    train_module(full, X_t, y_t, epochs=4, batch_size=64, quiet=True, seed=3)
    part = fresh()
    ckpt = tmp_path / "run.pt"
    train_module(part, X_t, y_t, epochs=2, batch_size=64, quiet=True, seed=3, checkpoint_path=ckpt)
    assert load_checkpoint(ckpt)["epoch"] == 1
    resumed = fresh()
    history = train_module(resumed, X_t, y_t, epochs=4, batch_size=64, quiet=True, seed=3,
                          checkpoint_path=ckpt, resume=True)
    assert [r["epoch"] for r in history.epochs] == [0, 1, 2, 3]
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_early_stopping_restores_best_state():
    X, y = _moons(400, 0)
    clf = DIGLMClassifier(epochs=30, val_fraction=0.25, patience=2, lr=5e-2, quiet=True).fit(X, y)
    h = clf.history_
    best = max(h.epochs, key=lambda r: r["val_objective"])
    assert h.best_epoch == best["epoch"]
    assert h.stopped in ("early_stopping", "completed")


def test_nonfinite_loss_stops_and_keeps_last_good_state():
    X, y = _moons(200, 0)
    X_t, y_t = torch.as_tensor(X), torch.as_tensor(y)
    model = DIGLM(realnvp(2, num_layers=1, hidden_dims=(8,)), make_head("bernoulli", 2), px_weight=0.1)
    calls, good = {"n": 0}, {}
    original = model.head.log_prob

    def flaky(z, yb):  # the third batch's likelihood turns NaN
        calls["n"] += 1
        out = original(z, yb)
        if calls["n"] != 3:
            return out
        good.update({k: v.clone() for k, v in model.state_dict().items()})
        return out * float("nan")

    model.head.log_prob = flaky
    with pytest.raises(NonFiniteLossError, match="epoch 0, step 2"):
        train_module(model, X_t, y_t, epochs=1, batch_size=50, quiet=True)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, good[k], msg=k)
    calls["n"] = 0
    history = train_module(model, X_t, y_t, epochs=1, batch_size=50, quiet=True, on_nonfinite="skip")
    assert history.skipped_batches == 1
    assert torch.isfinite(model.log_px(X_t)).all()


@pytest.mark.parametrize(
    "X, y, match",
    [
        (np.zeros((10, 2), "float32"), np.zeros(9), "inconsistent numbers of samples"),
        (np.full((10, 2), np.nan, "float32"), np.zeros(10), "NaN"),
        (np.zeros((10,), "float32"), np.zeros(10), "2D array"),
        (np.zeros((10, 1), "float32"), np.arange(10) % 2, "at least 2 features"),
        (np.zeros((10, 2), "float32"), np.zeros(10), "two classes"),
    ],
)
def test_classifier_rejects_bad_input(X, y, match):
    with pytest.raises((ValueError, TypeError), match=match):
        DIGLMClassifier(epochs=1, quiet=True).fit(X, y)


def test_unfitted_and_failed_fit_keep_state():
    from sklearn.exceptions import NotFittedError

    clf = DIGLMClassifier(epochs=3, quiet=True)
    with pytest.raises(NotFittedError, match="not fitted"):
        clf.predict(np.zeros((2, 2), "float32"))
    X, y = _moons(200, 0)
    clf.fit(X, y)
    before = clf.predict_proba(X)
    with pytest.raises(ValueError):
        clf.fit(np.vstack([X, [[np.inf, 0]]]).astype("float32"), np.append(y, 0))
    np.testing.assert_array_equal(clf.predict_proba(X), before)
    with pytest.raises(ValueError, match="X has 3 features, but DIGLMClassifier is expecting 2"):
        clf.predict(np.zeros((2, 3), "float32"))


def test_actnorm_only_centres_a_constant_channel():
    from bayes_diglm.flows import ActNorm

    layer = ActNorm(3)
    x = torch.randn(64, 3) * torch.tensor([2.0, 1.0, 0.0]) + torch.tensor([1.0, -1.0, 5.0])
    y = layer(x)
    torch.testing.assert_close(y.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(y[:, :2].std(0), torch.ones(2), atol=1e-5, rtol=0)
    assert float(layer.log_scale.detach()[2]) == 0.0


def test_estimators_work_with_scikit_learn_tools():
    from sklearn.base import clone, is_classifier, is_regressor
    from sklearn.model_selection import cross_val_score

    X, y = _moons(200, 0)
    clf = DIGLMClassifier(epochs=2, quiet=True)
    assert is_classifier(clf) and is_regressor(DIGLMRegressor())
    assert clone(clf).get_params() == clf.get_params()
    scores = cross_val_score(clf, X, y, cv=2)
    assert scores.shape == (2,) and np.all((0 <= scores) & (scores <= 1))


def test_fit_leaves_the_callers_random_stream_alone():
    X, y = _moons(100, 0)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    DIGLMClassifier(epochs=1, quiet=True).fit(X, y)
    torch.testing.assert_close(torch.rand(3), expected)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"clip_grad": -1.0}, "clip_grad"), ({"warmup_steps": -5}, "warmup_steps"),
     ({"weight_decay": -1e-3}, "weight_decay"), ({"patience": 0}, "patience")],
)
def test_train_module_rejects_bad_settings(kwargs, match):
    X, y = _moons(50, 0)
    model = DIGLM(realnvp(2, num_layers=1, hidden_dims=(4,)), make_head("bernoulli", 2))
    extra = {"X_val": torch.as_tensor(X), "y_val": torch.as_tensor(y)} if "patience" in kwargs else {}
    with pytest.raises(ValueError, match=match):
        train_module(model, torch.as_tensor(X), torch.as_tensor(y), epochs=1, quiet=True, **kwargs, **extra)


def test_train_module_rejects_shapes_that_would_broadcast():
    X, y = torch.randn(20, 2), torch.randn(20)
    model = DIGLM(realnvp(2, num_layers=1, hidden_dims=(4,)), make_head("gaussian", 2))
    with pytest.raises(ValueError, match="one-dimensional"):
        train_module(model, X, y[:, None], epochs=1, quiet=True)
    with pytest.raises(ValueError, match="validation"):
        train_module(model, X, y, X_val=X, y_val=y[:1], epochs=1, quiet=True)
    with pytest.raises(ValueError, match="empty"):
        train_module(model, X[:0], y[:0], epochs=1, quiet=True)


def test_classifier_refuses_nan_labels_and_an_empty_training_split():
    X, y = _moons(60, 0)
    with pytest.raises(ValueError, match="NaN"):
        DIGLMClassifier(epochs=1, quiet=True).fit(X, np.where(np.arange(60) == 3, np.nan, y.astype(float)))
    with pytest.raises(ValueError, match="no training rows"):
        DIGLMClassifier(epochs=1, quiet=True, val_fraction=0.995).fit(X, y)


def test_resume_refuses_another_architecture_and_keeps_the_callers_lr(tmp_path):
    X, y = _moons(100, 0)
    X_t, y_t = torch.as_tensor(X), torch.as_tensor(y)
    ckpt = tmp_path / "run.pt"
    config = {"flow_config": {"kind": "realnvp", "dim": 2, "num_layers": 1}, "head_config": {"family": "bernoulli"}}
    model = DIGLM(realnvp(2, num_layers=1, hidden_dims=(4,)), make_head("bernoulli", 2))
    train_module(model, X_t, y_t, epochs=1, quiet=True, checkpoint_path=ckpt, config=config)
    other = DIGLM(realnvp(2, num_layers=2, hidden_dims=(4,)), make_head("bernoulli", 2))
    with pytest.raises(CheckpointError, match="another model"):
        train_module(other, X_t, y_t, epochs=2, quiet=True, checkpoint_path=ckpt, resume=True,
                    config={**config, "flow_config": {**config["flow_config"], "num_layers": 2}})
    with pytest.raises(CheckpointError, match="does not match"):
        train_module(other, X_t, y_t, epochs=2, quiet=True, checkpoint_path=ckpt, resume=True)
    train_module(model, X_t, y_t, epochs=2, lr=1e-5, quiet=True, checkpoint_path=ckpt, resume=True, config=config)
    saved = load_checkpoint(ckpt)["optimizer"]["param_groups"][0]["lr"]
    assert saved == pytest.approx(1e-5)
    umask = os.umask(0)
    os.umask(umask)
    assert ckpt.stat().st_mode & 0o777 == 0o666 & ~umask


def test_realnvp_rejects_a_non_positive_scale_bound():
    with pytest.raises(ValueError, match="scale_bound"):
        realnvp(3, scale_bound=0.0)


def test_train_module_takes_an_optimiser_a_schedule_and_draws_with_replacement():
    """optimizer= is stepped as given (its state kept), lr_schedule(step) sets each step's rate, and
    WithReplacement draws its batches lazily from the caller's rng; conflicting options are refused."""
    from bayes_diglm.training import WithReplacement

    class Mean(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mu = torch.nn.Parameter(torch.zeros(()))
            self.rows = []

        def forward(self, x, y):
            self.rows.append(y.clone())
            return -((x[:, 0] - self.mu) ** 2).mean(), {}

    X = torch.arange(10.0)[:, None]
    model = Mean()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    rates = []
    history = train_module(model, X, torch.arange(10), epochs=1, batch_size=4, optimizer=opt, quiet=True,
                           lr_schedule=lambda t: rates.append(0.1 / (1 + t)) or rates[-1],
                           batch_sampler=WithReplacement(3, 4, rng=np.random.default_rng(7)))
    expected = np.random.default_rng(7).integers(0, 10, size=(3, 4))
    np.testing.assert_array_equal(torch.stack(model.rows).numpy(), expected)
    assert rates == [0.1, 0.05, 0.1 / 3] and opt.param_groups[0]["lr"] == 0.1 / 3
    assert len(history.epochs) == 1 and history.epochs[0]["loss"] > 0
    with pytest.raises(ValueError, match="lr_schedule or warmup_steps"):
        train_module(model, X, torch.arange(10), lr_schedule=lambda t: 0.1, warmup_steps=3, quiet=True)
    with pytest.raises(ValueError, match="batch_sampler is not combined"):
        train_module(model, X, torch.arange(10), batch_sampler=WithReplacement(1, 2), X_unlabeled=X, quiet=True)


def test_train_module_refuses_an_optimiser_over_other_tensors_and_bad_schedules_before_training():
    """An optimiser over tensors that are not the model's would train nothing (silently); a non-callable schedule or
    sampler used to fail deep in the loop with AttributeError; a negative rate would ascend the loss."""
    from bayes_diglm.training import WithReplacement

    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)

    class Objective(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, x, y):
            return -((self.net(x)[:, 0] - y) ** 2).mean(), {}

    objective = Objective()
    X, y = torch.randn(20, 2), torch.randn(20)
    before = [p.detach().clone() for p in objective.parameters()]
    stranger = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    cases = [({"optimizer": "adam"}, TypeError, "torch.optim.Optimizer"),
             ({"optimizer": stranger}, ValueError, "model's own parameters"),
             ({"lr_schedule": 0.1}, TypeError, "lr_schedule must be a callable"),
             ({"batch_sampler": 5}, TypeError, "batch_sampler must be a callable"),
             ({"lr_schedule": lambda t: -1.0}, ValueError, r"lr_schedule\(0\)")]
    for kwargs, error, match in cases:
        with pytest.raises(error, match=match):
            train_module(objective, X, y, epochs=1, batch_size=5, quiet=True, **kwargs)
        for p, q in zip(objective.parameters(), before, strict=True):
            torch.testing.assert_close(p, q, rtol=0, atol=0)
    with pytest.raises(ValueError, match="positive integers"):
        WithReplacement(2.5, 3)
    own = torch.optim.SGD(objective.parameters(), lr=0.1)  # the model's own parameters: accepted
    train_module(objective, X, y, epochs=1, batch_size=5, quiet=True, optimizer=own, lr_schedule=lambda t: 0.01)
    assert any(not torch.equal(p, q) for p, q in zip(objective.parameters(), before, strict=True))


def test_head_state_dicts_saved_before_the_registry_still_load():
    """The Gaussian head kept log sigma and the heteroscedastic head a separate log-variance layer."""
    old = {"linear.weight": torch.tensor([[0.5, -1.0]]), "linear.bias": torch.tensor([0.2]),
           "log_sigma": torch.tensor(-0.3)}
    head = make_head("gaussian", 2)
    head.load_state_dict(old)
    assert float(head.likelihood.noise_variance) == pytest.approx(math.exp(-0.6), rel=1e-6)
    old = {"linear.weight": torch.tensor([[0.5, -1.0]]), "linear.bias": torch.tensor([0.2]),
           "log_var.weight": torch.tensor([[0.1, 0.3]]), "log_var.bias": torch.tensor([-0.4])}
    head = make_head("heteroscedastic", 2)
    head.load_state_dict(old)
    z = torch.tensor([[1.0, 2.0]])
    assert float(head.predictor(z)[0, 0]) == pytest.approx(0.5 - 2.0 + 0.2)
    assert float(head.noise_log_var(z)[0]) == pytest.approx(12.0 * math.tanh((0.1 + 0.6 - 0.4) / 12.0), rel=1e-6)
