"""Semi-supervised training: minibatch composition, the objective, and that unlabelled rows shape p(x)."""

import math

import numpy as np
import pytest
import torch

from bayes_diglm.models.diglm import build_diglm
from bayes_diglm.training import train_module
from bayes_diglm.training.loop import semi_supervised_split


class _Recorder(torch.nn.Module):
    """A model for train_module that records, per minibatch, which labelled and unlabelled rows it was given
    (the rows' first column holds their number: labelled rows ``i``, unlabelled rows ``-1 - j``)."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.batches = []

    def forward(self, x, y):
        ids = x[:, 0].round().long()
        self.batches.append((ids[:len(y)], -1 - ids[len(y):]))
        torch.testing.assert_close(y.double(), ids[:len(y)].double())  # each target stays with its row
        return self.weight * x.sum(), {}


def test_minibatches_have_the_stated_composition_and_cover_the_larger_set():
    assert semi_supervised_split(16, 0.25) == (4, 12)
    recorder = _Recorder()
    X_lab = torch.arange(10.0)[:, None].repeat(1, 2)
    X_unl = (-1.0 - torch.arange(95.0))[:, None].repeat(1, 2)
    train_module(recorder, X_lab, torch.arange(10.0), X_unlabeled=X_unl, labeled_fraction=0.25, batch_size=16,
                 epochs=1, quiet=True)
    batches = recorder.batches
    assert len(batches) == max(math.ceil(10 / 4), math.ceil(95 / 12)) == 8
    assert all(li.shape == (4,) and ui.shape == (12,) for li, ui in batches)
    unl = torch.cat([ui for _, ui in batches])
    assert set(unl.tolist()) == set(range(95))  # every unlabelled row at least once per epoch
    lab = torch.cat([li for li, _ in batches])
    counts = torch.bincount(lab, minlength=10)
    assert int(counts.min()) >= 3 and int(counts.max()) <= 4  # cycled: each pass uses every row once
    assert semi_supervised_split(64, 0.5) == (32, 32)
    assert semi_supervised_split(10, 0.01) == (1, 9) and semi_supervised_split(10, 0.99) == (9, 1)
    for bad in (0.0, 1.0, -0.2, 1.5):
        with pytest.raises(ValueError, match="labeled_fraction"):
            semi_supervised_split(64, bad)


def _diglm(px_weight=1.0, seed=0):
    torch.manual_seed(seed)
    return build_diglm({"kind": "realnvp", "dim": 2, "num_layers": 2, "hidden_dims": [16]},
                       {"family": "categorical", "num_classes": 3}, px_weight).double()


def test_objective_with_fewer_targets_than_rows(float64):
    model = _diglm(px_weight=0.3)
    x = torch.randn(7, 2)
    y = torch.tensor([0, 2, 1])
    value, parts = model(x, y)
    z, log_det = model.flow(x)
    log_py = model.head.log_prob(z[:3], y)
    log_px = model.flow.base_log_prob(z) + log_det
    torch.testing.assert_close(value, log_py.mean() + 0.3 * log_px.mean())
    torch.testing.assert_close(parts["log_px"], log_px.mean().detach())
    with pytest.raises(ValueError, match="targets"):
        model(x[:2], y)


def test_unlabelled_rows_move_the_density_towards_them(float64):
    """20 labelled points near the origin, 400 unlabelled ones around (4, 4): with them, p(x) learns the far
    cluster; without them it does not. The same steps, seed and objective otherwise."""
    rng = np.random.default_rng(0)
    X_lab = torch.as_tensor(rng.normal(size=(20, 2)))
    y_lab = torch.as_tensor(np.arange(20) % 3)
    X_unl = torch.as_tensor(rng.normal(size=(400, 2)) * 0.5 + 4.0)
    kwargs = {"batch_size": 40, "lr": 1e-2, "seed": 0, "quiet": True}
    semi, alone = _diglm(), _diglm()
    history = train_module(semi, X_lab, y_lab, X_unlabeled=X_unl, labeled_fraction=0.25, epochs=4, **kwargs)
    # the same number of steps: 4 epochs x max(20 / 10, 400 / 30) = 56 semi-supervised, 56 x 1 labelled-only
    train_module(alone, X_lab, y_lab, epochs=56, **kwargs)
    with torch.no_grad():
        far = X_unl[:100]
        assert float(semi.log_px(far).mean()) > float(alone.log_px(far).mean()) + 5.0
    assert len(history.epochs) == 4 and math.isfinite(history.epochs[-1]["log_py"])


def test_semi_supervised_arguments_are_checked():
    model = _diglm()
    X, y = torch.randn(10, 2), torch.arange(10) % 3
    with pytest.raises(ValueError, match="X_unlabeled"):
        train_module(model, X, y, X_unlabeled=torch.randn(5, 3), epochs=1, quiet=True)
    with pytest.raises(ValueError, match="X_unlabeled"):
        train_module(model, X, y, X_unlabeled=torch.randn(0, 2), epochs=1, quiet=True)
    with pytest.raises(ValueError, match="labeled_fraction"):
        train_module(model, X, y, X_unlabeled=torch.randn(5, 2), labeled_fraction=1.0, epochs=1, quiet=True)
    with pytest.raises(ValueError, match="distributed"):
        train_module(model, X, y, X_unlabeled=torch.randn(5, 2), distributed=True, epochs=1, quiet=True)


# -- the estimators' joint-model sampler and semi-supervised fit --------------------------------------------


def _moons(n, seed):
    from sklearn.datasets import make_moons

    X, y = make_moons(n, noise=0.1, random_state=seed)
    return X.astype("float32"), np.where(y == 1, "b", "a")


def test_estimator_sample_joint_and_class_conditional():
    from bayes_diglm.models.estimators import DIGLMClassifier

    X, y = _moons(300, 0)
    clf = DIGLMClassifier(epochs=15, px_weight=1.0, batch_size=64, lr=1e-2, quiet=True,
                          flow_kwargs={"num_layers": 2, "hidden_dims": [16]}).fit(X, y)
    Xs, ys = clf.sample_joint(400, generator=0)
    assert Xs.shape == (400, 2) and set(np.unique(ys)) <= {"a", "b"}
    # on its own joint samples the model is right as often as it is confident (z-test)
    proba = clf.predict_proba(Xs)
    correct = (clf.classes_[proba.argmax(1)] == ys).astype(float)
    assert abs(correct.mean() - proba.max(1).mean()) < 4 * np.std(correct - proba.max(1)) / 20 + 0.01
    Xb, yb = clf.sample_joint(200, y="b", generator=1)
    assert np.all(yb == "b") and Xb.shape == (200, 2)
    assert clf.predict_proba(Xb)[:, 1].mean() > clf.predict_proba(Xs)[:, 1].mean()
    first, again = clf.sample_joint(5, y="b", generator=3)[0], clf.sample_joint(5, y="b", generator=3)[0]
    np.testing.assert_array_equal(first, again)
    with pytest.raises(ValueError, match="not one of the classes"):
        clf.sample_joint(3, y="c")


def test_estimator_fit_with_unlabelled_rows():
    from bayes_diglm.models.estimators import DIGLMClassifier, DIGLMRegressor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2)).astype("float32")
    y = (X[:, 0] > 0).astype(int)
    X_unl = (rng.normal(size=(200, 2)) * 0.5 + 3.0).astype("float32")
    kw = {"epochs": 3, "batch_size": 32, "lr": 1e-2, "quiet": True, "flow_kwargs": {"num_layers": 2}}
    semi = DIGLMClassifier(labeled_fraction=0.25, posterior="laplace", **kw).fit(X, y, X_unlabeled=X_unl)
    assert semi.history_.epochs and semi.posterior_.n_features_in_ == 2
    alone = DIGLMClassifier(**kw).fit(X, y)
    assert semi.score_samples(X_unl).mean() > alone.score_samples(X_unl).mean()
    reg = DIGLMRegressor(head="gaussian", **kw).fit(X, X[:, 0] * 2, X_unlabeled=X_unl)
    Xs, ys = reg.sample_joint(50, generator=0)
    assert Xs.shape == (50, 2) and ys.shape == (50,)
    with pytest.raises(ValueError, match="X_unlabeled"):
        DIGLMClassifier(**kw).fit(X, y, X_unlabeled=X_unl[:, :1])


def test_estimator_sample_joint_with_a_bayesian_head_uses_posterior_draws():
    from bayes_diglm.models.estimators import DIGLMClassifier

    X, y = _moons(200, 1)
    clf = DIGLMClassifier(epochs=5, px_weight=1.0, batch_size=64, lr=1e-2, posterior="laplace", quiet=True,
                          flow_kwargs={"num_layers": 2, "hidden_dims": [16]}).fit(X, y)
    Xs, ys = clf.sample_joint(1000, generator=0)
    assert Xs.shape == (1000, 2) and set(np.unique(ys)) <= {"a", "b"}
    # labels drawn with one posterior draw of beta per row follow the posterior predictive at those rows
    p_b = clf.predict_proba(Xs)[:, 1].mean()
    assert abs(np.mean(ys == "b") - p_b) < 4 * np.sqrt(p_b * (1 - p_b) / 1000) + 0.02
