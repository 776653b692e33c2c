"""Faults: SIGKILL and resume, Ctrl-C, atomic checkpoints, and files that would run code."""

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bayes_diglm import DIGLMClassifier, DIGLMRegressor, load_estimator
from bayes_diglm.bandits.agents import load_agent
from bayes_diglm.training import CheckpointError, load_checkpoint, save_checkpoint

SCRIPT = Path(__file__).with_name("_train_script.py")
EPOCHS = 6
# The script imports the checked-out package (this repository), not whichever copy is installed.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SCRIPT.parents[1]), os.environ.get("PYTHONPATH", "")])}


def _run(ckpt, final, resume=False, epochs=EPOCHS, **kwargs):
    return subprocess.Popen([sys.executable, str(SCRIPT), str(ckpt), str(final), str(epochs),
                             "resume" if resume else "fresh"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=ENV, **kwargs)


def _wait_for_epoch(ckpt: Path, epoch: int, proc, timeout=240.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"training ended before it could be interrupted: {proc.stderr.read().decode()[-2000:]}")
        if ckpt.exists():
            try:
                if load_checkpoint(ckpt)["epoch"] >= epoch:
                    return
            except CheckpointError:
                pass  # being replaced right now; the atomic rename makes the next read whole
        time.sleep(0.05)
    pytest.fail("no checkpoint appeared in time")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    d = tmp_path_factory.mktemp("full")
    proc = _run(d / "ckpt.pt", d / "final.pt")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()[-2000:]
    return torch.load(d / "final.pt", weights_only=True)


@pytest.mark.parametrize("kill_after_epoch", [0, 3])
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, uninterrupted, kill_after_epoch):
    ckpt, final = tmp_path / "ckpt.pt", tmp_path / "final.pt"
    proc = _run(ckpt, final)
    _wait_for_epoch(ckpt, kill_after_epoch, proc)
    time.sleep(np.random.default_rng(kill_after_epoch).uniform(0, 0.3))  # somewhere inside the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not final.exists()
    assert load_checkpoint(ckpt)["epoch"] >= kill_after_epoch
    resumed = _run(ckpt, final, resume=True)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err.decode()[-2000:]
    result = torch.load(final, weights_only=True)
    assert result["epochs"] == list(range(EPOCHS))
    for name, value in uninterrupted["model"].items():
        assert torch.equal(result["model"][name], value), name


def test_sigint_stops_cleanly_with_a_readable_checkpoint(tmp_path):
    ckpt, final = tmp_path / "ckpt.pt", tmp_path / "final.pt"
    # Many epochs (the interrupt ends it after the first), so the run cannot end on its own before the signal.
    proc = _run(ckpt, final, epochs=500)
    _wait_for_epoch(ckpt, 0, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"finished interrupted" in out
    assert load_checkpoint(ckpt)["epoch"] >= 0


def test_crash_during_checkpoint_write_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_checkpoint({"epoch": 1, "w": torch.ones(3)}, path)

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"epoch": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


class _Exploit:
    """Unpickling this would create a file (through os.system)."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"model": _Exploit(marker)}, f)
    torch.save({"model": _Exploit(marker)}, tmp_path / "evil_torch.pt")
    for path in (evil, tmp_path / "evil_torch.pt"):
        with pytest.raises(CheckpointError, match="refused|could not read"):
            load_checkpoint(path)
        with pytest.raises(CheckpointError):
            load_estimator(path)
        with pytest.raises(CheckpointError):
            DIGLMClassifier.load(path)
        with pytest.raises(CheckpointError):
            load_agent(path)
    assert not marker.exists()


def test_truncated_and_garbage_files_are_refused(tmp_path):
    X = np.random.default_rng(0).normal(size=(100, 2)).astype("float32")
    clf = DIGLMClassifier(epochs=1, quiet=True).fit(X, (X[:, 0] > 0).astype(int))
    path = clf.save(tmp_path / "m.pt")
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    for name in ("cut.pt", "junk.pt"):
        with pytest.raises(CheckpointError):
            load_estimator(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        load_estimator(tmp_path / "missing.pt")


def test_incompatible_architecture_fails_with_a_clear_message(tmp_path):
    X = np.random.default_rng(0).normal(size=(100, 2)).astype("float32")
    clf = DIGLMClassifier(epochs=1, quiet=True).fit(X, (X[:, 0] > 0).astype(int))
    path = clf.save(tmp_path / "m.pt")
    ckpt = load_checkpoint(path)
    assert ckpt["config"]["version"]
    ckpt["config"]["flow_config"]["num_layers"] = 7  # config no longer matches the weights
    save_checkpoint(ckpt, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="does not match the architecture"):
        load_estimator(tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="not a DIGLMRegressor"):
        DIGLMRegressor.load(path)
