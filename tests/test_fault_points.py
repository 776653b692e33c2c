"""SIGKILL at ten seeded points of a run (optimiser steps, inside checkpoint writes, inside the Bayesian head's
fit), then resume: the final flow and posterior are bit-identical to an uninterrupted run's, and whatever
checkpoint a kill leaves on disk is one the uninterrupted run also wrote (never one that loads but is wrong).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bayes_diglm.training import load_checkpoint

SCRIPT = Path(__file__).with_name("_fault_script.py")
ROOT = Path(__file__).resolve().parents[1]
STEPS, EPOCHS = 48, 4  # as in _fault_script.py


def _fault_points(seed: int = 2026) -> list[str]:
    rng = np.random.default_rng(seed)
    steps = sorted(int(s) for s in rng.choice(np.arange(1, STEPS + 1), 6, replace=False))
    writes = sorted(int(w) for w in rng.choice(np.arange(1, EPOCHS + 1), 2, replace=False))
    return [f"step:{s}" for s in steps] + [f"write:{w}" for w in writes] + ["head:enter", "head:exit"]


POINTS = _fault_points()
#: one point of each kind runs in ``make test``; all ten with ``-m slow`` (``make test-all``)
FAST = {next(p for p in POINTS if p.startswith(kind)) for kind in ("step:", "write:")} | {"head:exit"}


def _run(workdir: Path, fault: str, record: bool = False) -> subprocess.CompletedProcess:
    args = [sys.executable, str(SCRIPT), str(workdir), fault] + (["record"] if record else [])
    # the package of this checkout, not whichever one the environment has installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(args, capture_output=True, timeout=600, env=env)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    work = tmp_path_factory.mktemp("uninterrupted")
    done = _run(work, "none", record=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    epochs = {k: load_checkpoint(work / f"epoch{k}.pt") for k in range(EPOCHS)}
    return torch.load(work / "final.pt", weights_only=True), epochs


def _assert_same(a, b, where: str = "") -> None:
    """Equal content, tensors bit for bit; wall-clock seconds in the history may differ."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), where
        for key in a:
            if key != "seconds":
                _assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, z) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, z, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_fault_points_are_seeded_and_cover_every_phase():
    assert POINTS == _fault_points() and len(POINTS) == 10
    assert {p.split(":")[0] for p in POINTS} == {"step", "write", "head"}


@pytest.mark.parametrize("fault", [p if p in FAST else pytest.param(p, marks=pytest.mark.slow) for p in POINTS])
def test_sigkill_at_fault_point_then_resume_is_bit_identical(tmp_path, reference, fault):
    final_ref, epochs = reference
    killed = _run(tmp_path, fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert not (tmp_path / "final.pt").exists()
    ckpt = tmp_path / "ckpt.pt"
    if ckpt.exists():  # what the kill left must be a checkpoint the uninterrupted run also wrote
        left = load_checkpoint(ckpt)
        _assert_same(left, epochs[left["epoch"]], f"checkpoint left after {fault}")
    else:
        assert fault in ("step:1", "write:1") or fault.startswith("step:") and int(fault[5:]) <= STEPS // EPOCHS
    resumed = _run(tmp_path, "none")
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    final = torch.load(tmp_path / "final.pt", weights_only=True)
    for name, value in final_ref["model"].items():
        assert torch.equal(final["model"][name], value), f"{name} differs after {fault}"
    for key in ("coef", "intercept", "predict"):
        assert torch.equal(final[key], final_ref[key]), f"posterior {key} differs after {fault}"
    assert final["log_evidence"] == final_ref["log_evidence"]
    assert not list(tmp_path.glob(".ckpt.pt.*.tmp")), "a half-written checkpoint was left behind"
