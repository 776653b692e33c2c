"""A streamed posterior killed part-way (SIGKILL) and resumed from its saved statistics and chunk position equals
one uninterrupted pass: bit for bit on a synthetic stream, and on the 2.9M US training flights (slow)."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bayes_diglm.inference import ConjugateLinearRegression, SufficientStats
from bayes_diglm.training import CheckpointError, load_checkpoint, save_checkpoint
from bayes_diglm.training.stream import accumulate_stats

SCRIPT = Path(__file__).with_name("_stream_script.py")
ROOT = Path(__file__).resolve().parents[1]


def _run(source: str, workdir: Path, kill_at: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(SCRIPT), source, str(workdir), str(kill_at)], capture_output=True,
                          timeout=1800, env=env)


def _script():
    spec = importlib.util.spec_from_file_location("_stream_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stats(chunk):
    X, y = (np.asarray(c, dtype=np.float64) for c in chunk[:2])
    return SufficientStats.from_data(X, y, fit_intercept=True)


def _kill_and_resume(source: str, tmp_path: Path, kill_at: int) -> dict:
    killed = _run(source, tmp_path, kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert load_checkpoint(tmp_path / "stream.pt")["chunks_done"] == (kill_at - 1) // 3 * 3
    resumed = _run(source, tmp_path, 0)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    return torch.load(tmp_path / "posterior.pt", weights_only=True)


def test_killed_stream_resumes_to_the_same_posterior(tmp_path):
    result = _kill_and_resume("synthetic", tmp_path, kill_at=17)
    reference = accumulate_stats(_stats, _script().synthetic_chunks())
    assert torch.equal(result["stats"], reference.as_tensor())  # the same sums, bit for bit
    mean = ConjugateLinearRegression().fit_stats(reference).posterior_.mean
    np.testing.assert_allclose(result["mean"].numpy(), mean, rtol=0, atol=1e-12)


def _chunks(n_chunks: int, rows: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(rows, 2)), rng.normal(size=rows)) for _ in range(n_chunks)]


def test_checkpointed_sum_equals_the_plain_sum_and_resume_of_a_finished_stream(tmp_path):
    path = tmp_path / "s.pt"
    plain = accumulate_stats(_stats, _chunks(7))
    saved = accumulate_stats(_stats, _chunks(7), checkpoint_path=path, checkpoint_every=3)
    assert torch.equal(saved.as_tensor(), plain.as_tensor())
    assert load_checkpoint(path)["chunks_done"] == 7  # the tail after the last multiple of 3 is saved too
    again = accumulate_stats(lambda c: pytest.fail("nothing left to do"), _chunks(7), checkpoint_path=path,
                             resume=True)
    assert torch.equal(again.as_tensor(), plain.as_tensor())


def test_resume_refuses_another_stream_and_altered_checkpoints(tmp_path):
    path = tmp_path / "s.pt"
    accumulate_stats(_stats, _chunks(4), checkpoint_path=path)
    with pytest.raises(CheckpointError, match="has only 2"):
        accumulate_stats(_stats, _chunks(2), checkpoint_path=path, resume=True)
    with pytest.raises(CheckpointError, match="not the stream"):
        accumulate_stats(_stats, _chunks(5, rows=11), checkpoint_path=path, resume=True)
    save_checkpoint({"kind": "something else"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="statistics stream"):
        accumulate_stats(_stats, _chunks(4), checkpoint_path=tmp_path / "other.pt", resume=True)
    data = bytearray(path.read_bytes())
    data[-200] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        accumulate_stats(_stats, _chunks(4), checkpoint_path=path, resume=True)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_checkpoint_every_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match="checkpoint_every"):
        accumulate_stats(_stats, _chunks(2), checkpoint_every=bad)


def _us_flights_available() -> bool:
    try:
        from bayes_diglm.data.flights_us import flights_us_path

        flights_us_path()
        return True
    except (FileNotFoundError, ImportError):
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _us_flights_available(), reason="US flights 2001 not fetched (make data)")
def test_killed_stream_over_the_us_training_flights_resumes_to_the_same_posterior(tmp_path):
    result = _kill_and_resume("us2001", tmp_path, kill_at=31)  # of 56 chunks of 50,000 flights
    assert result["n"] >= 2_800_000  # the protocol's training rows (validation, the period's end, apart)
    reference_dir = tmp_path / "reference"
    reference_dir.mkdir()
    done = _run("us2001", reference_dir, 0)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    reference = torch.load(reference_dir / "posterior.pt", weights_only=True)
    assert result["n"] == reference["n"]
    assert torch.equal(result["stats"], reference["stats"])
    np.testing.assert_allclose(result["mean"].numpy(), reference["mean"].numpy(), rtol=0, atol=1e-12)
