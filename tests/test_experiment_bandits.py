"""Smoke tests of the bandit pipeline: tiny wheel and digits runs write their table, metrics and figure."""

import json

import numpy as np
import pytest

from bayes_diglm.cli import build_parser
from bayes_diglm.experiments.bandits import run_bandits

SMALL_FLOW = {"train_every": 30, "train_steps": 5, "batch_size": 32, "num_layers": 2, "hidden_dims": (8,),
              "augment_dims": 2}


def test_wheel_pipeline_writes_results(tmp_path):
    result = run_bandits("wheel", deltas=[0.9, 0.5], steps=60, seeds=2, agents=["LinFullPost", "FlowLinear"],
                         agent_kwargs={"FlowLinear": SMALL_FLOW}, out=tmp_path, quiet=True)
    out = tmp_path / "wheel"
    for name in ("metrics.json", "table.md", "regret_curves.png", "wheel_decisions.png"):
        assert (out / name).is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["agents"] == ["Uniform", "LinFullPost", "FlowLinear"] and metrics["deltas"] == [0.9, 0.5]
    rows = {(r["setting"], r["agent"]): r for r in metrics["rows"]}
    assert len(rows) == 6
    for delta in ("delta=0.9", "delta=0.5"):
        assert rows[(delta, "Uniform")]["normalised (Uniform=100)"] == pytest.approx(100.0)
        lin = rows[(delta, "LinFullPost")]
        uni = rows[(delta, "Uniform")]
        expected = 100 * lin["cumulative regret"] / uni["cumulative regret"]
        assert lin["normalised (Uniform=100)"] == pytest.approx(expected)
    curve = metrics["curves"]["delta=0.9"]["FlowLinear"]
    assert curve["steps"][-1] == 60 and np.all(np.diff(curve["mean"]) >= 0)  # cumulative regret never drops
    assert "Normalised cumulative regret" in result["table"]
    assert all(0 <= rows[(d, "LinFullPost")]["realised normalised"] for d in ("delta=0.9", "delta=0.5"))


def test_published_protocol_and_variants(tmp_path):
    result = run_bandits("wheel", protocol="riquelme2018", deltas=[0.5], steps=40, seeds=1,
                         agents=["LinFullPost", "FlowLinear[fast,px0]"],
                         agent_kwargs={"FlowLinear[fast,px0]": SMALL_FLOW}, out=tmp_path, quiet=True)
    metrics = json.loads((tmp_path / "wheel" / "metrics.json").read_text())
    assert metrics["protocol"] == "riquelme2018" and metrics["wheel"] == {"std": 0.05, "std_outer": 0.01}
    assert metrics["agent_kwargs"]["FlowLinear[fast,px0]"]["px_weight"] == 0.0
    assert "published" in result["table"] and {r["agent"] for r in result["rows"]} >= {"FlowLinear[fast,px0]"}
    with pytest.raises(ValueError, match="unknown agent"):
        run_bandits("wheel", agents=["FlowLinear[nope]"], steps=5, seeds=1, out=tmp_path)
    with pytest.raises(ValueError, match="protocol"):
        run_bandits("digits", protocol="riquelme2018", steps=5, seeds=1, out=tmp_path)


def test_digits_pipeline_and_cli_arguments(tmp_path):
    result = run_bandits("digits", steps=40, seeds=2, agents=["LinFullPost"], out=tmp_path, quiet=True)
    assert [r["agent"] for r in result["rows"]] == ["Uniform", "LinFullPost"]
    # every digits reward is 0 or 1, so a run of 40 steps has regret between 0 and 40
    assert all(0 <= r["cumulative regret"] <= 40 for r in result["rows"])
    args = build_parser().parse_args(["bandit", "wheel", "--delta", "0.5", "0.9", "--steps", "10", "--quick"])
    assert args.env == "wheel" and args.delta == [0.5, 0.9] and args.steps == 10 and args.quick
    with pytest.raises(ValueError, match="wheel only"):
        run_bandits("digits", deltas=[0.5], steps=5, seeds=1, out=tmp_path)
    with pytest.raises(ValueError, match="env"):
        run_bandits("mnist", out=tmp_path)


@pytest.mark.slow
def test_fashion_pipeline(tmp_path):
    try:
        result = run_bandits("fashion", steps=50, seeds=1, agents=["LinFullPost"], out=tmp_path, quiet=True)
    except FileNotFoundError as err:
        pytest.skip(f"Fashion-MNIST files missing: {err}")
    assert (tmp_path / "fashion" / "table.md").is_file() and len(result["rows"]) == 2


@pytest.mark.slow
def test_default_wheel_run_quick_configuration(tmp_path):
    result = run_bandits("wheel", quick=True, out=tmp_path, quiet=True)
    assert {r["setting"] for r in result["rows"]} == {"delta=0.5", "delta=0.95"}
