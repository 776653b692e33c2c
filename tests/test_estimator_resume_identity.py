"""``fit(..., checkpoint_path=..., resume=True)`` resumes only the same run: same architecture, same lambda and
the same training data; any other is refused by name before a step is taken."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayes_diglm.flows import realnvp
from bayes_diglm.models import DIGLM, DIGLMClassifier, make_head
from bayes_diglm.training import CheckpointError, load_checkpoint, train_module

SMALL = {"epochs": 2, "batch_size": 32, "lr": 1e-2, "flow_kwargs": {"num_layers": 2}, "quiet": True}


def _data(seed=0, n=96):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(int)


def test_a_resumed_fit_of_the_same_run_takes_the_checkpoint(tmp_path):
    X, y = _data()
    ckpt = tmp_path / "run.pt"
    first = DIGLMClassifier(px_weight=0.5, **SMALL).fit(X, y, checkpoint_path=ckpt)
    again = DIGLMClassifier(px_weight=0.5, **SMALL).fit(X, y, checkpoint_path=ckpt, resume=True)
    assert len(again.history_.epochs) == SMALL["epochs"]
    for a, b in zip(first.model_.state_dict().values(), again.model_.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert load_checkpoint(ckpt)["config"]["data_sha256"] == again.config_["data_sha256"]


@pytest.mark.parametrize("change, match", [
    ("data", "other training data"),
    ("labels", "other training data"),
    ("px_weight", "weight of log p"),
    ("flow", "another model"),
])
def test_a_checkpoint_of_another_run_is_refused(tmp_path, change, match):
    X, y = _data()
    ckpt = tmp_path / "run.pt"
    DIGLMClassifier(px_weight=0.5, **SMALL).fit(X, y, checkpoint_path=ckpt)
    params = dict(SMALL, px_weight=0.5)
    if change == "data":
        X = X.copy()
        X[0, 0] += 1.0
    elif change == "labels":
        y = 1 - y
    elif change == "px_weight":
        params["px_weight"] = 0.25
    else:
        params["flow_kwargs"] = {"num_layers": 4}
    before = ckpt.read_bytes()
    with pytest.raises(CheckpointError, match=match):
        DIGLMClassifier(**params).fit(X, y, checkpoint_path=ckpt, resume=True)
    assert ckpt.read_bytes() == before  # refused before any step: the checkpoint is left as it was


def test_train_module_compares_what_the_config_records(tmp_path):
    X, y = _data()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    def model():
        torch.manual_seed(0)
        return DIGLM(realnvp(2, num_layers=1, hidden_dims=(4,)), make_head("bernoulli", 2))

    ckpt = tmp_path / "m.pt"
    config = {"flow_config": {"kind": "realnvp", "dim": 2, "num_layers": 1}, "head_config": {"family": "bernoulli"},
              "px_weight": 0.5}
    train_module(model(), Xt, yt, epochs=1, quiet=True, checkpoint_path=ckpt, config=config)
    with pytest.raises(CheckpointError, match="another configuration"):
        train_module(model(), Xt, yt, epochs=2, quiet=True, checkpoint_path=ckpt, resume=True,
                     config={**config, "px_weight": 0.1})
    with pytest.raises(CheckpointError, match="other training data"):  # the checkpoint records no data digest
        train_module(model(), Xt, yt, epochs=2, quiet=True, checkpoint_path=ckpt, resume=True,
                     config={**config, "data_sha256": "0" * 64})
    history = train_module(model(), Xt, yt, epochs=2, quiet=True, checkpoint_path=ckpt, resume=True, config=config)
    assert len(history.epochs) == 2
