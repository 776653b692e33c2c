"""Tests for the IDX reader, the MNIST-format loader and the out-of-distribution image sets."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from bayes_diglm.data.idx import DEFAULT_DATA_DIR, load_mnist_format, read_idx
from bayes_diglm.data.ood import LETTERS, letter_fonts, notmnist_letters, sklearn_digits_28, uniform_noise


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path, images, compress):
    data = _idx_bytes(images)
    # the file name says nothing: compression is detected from the magic bytes
    path = tmp_path / "images.bin"
    path.write_bytes(gzip.compress(data) if compress else data)
    got = read_idx(path)
    assert got.dtype == np.uint8 and got.shape == (5, 28, 28)
    np.testing.assert_array_equal(got, images)
    assert data[:4] == b"\x00\x00\x08\x03"


def test_read_idx_labels(tmp_path):
    labels = np.array([9, 0, 3, 7], dtype=np.uint8)
    path = tmp_path / "labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(_idx_bytes(labels)))
    np.testing.assert_array_equal(read_idx(path), labels)


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_refuses_truncated(tmp_path, images, compress):
    data = _idx_bytes(images)[:-10]
    path = tmp_path / "short"
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(ValueError, match="truncated") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_refuses_truncated_gzip_stream(tmp_path, images):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(_idx_bytes(images))[:-100])
    with pytest.raises(ValueError, match="truncated") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_refuses_extra_bytes(tmp_path, images):
    path = tmp_path / "long"
    path.write_bytes(_idx_bytes(images) + b"\x00")
    with pytest.raises(ValueError, match="longer than its header"):
        read_idx(path)


@pytest.mark.parametrize(
    "header",
    [b"\x00\x00\x09\x03", b"\x01\x00\x08\x03", b"\x00\x00\x08\x00", b"PK\x03\x04", b"\x00\x00"],
)
def test_read_idx_refuses_wrong_magic(tmp_path, images, header):
    path = tmp_path / "bad"
    path.write_bytes(header + _idx_bytes(images)[4:] if len(header) == 4 else header)
    with pytest.raises(ValueError) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_refuses_truncated_header(tmp_path):
    path = tmp_path / "head"
    path.write_bytes(b"\x00\x00\x08\x03\x00\x00\x00\x05")
    with pytest.raises(ValueError, match="header"):
        read_idx(path)


def _write_split(folder, prefix, images, labels, *, gz: bool):
    suffix = ".gz" if gz else ""
    for kind, arr, dims in (("images", images, 3), ("labels", labels, 1)):
        data = _idx_bytes(arr)
        (folder / f"{prefix}-{kind}-idx{dims}-ubyte{suffix}").write_bytes(gzip.compress(data) if gz else data)


def test_load_mnist_format_from_folder(tmp_path, images):
    labels = np.array([1, 2, 3, 4, 5], dtype=np.uint8)
    _write_split(tmp_path, "train", images, labels, gz=True)
    _write_split(tmp_path, "t10k", images[:2], labels[:2], gz=False)
    x, y = load_mnist_format(tmp_path, split="train")
    np.testing.assert_array_equal(x, images)
    assert y.dtype == np.int64 and y.tolist() == [1, 2, 3, 4, 5]
    x, y = load_mnist_format(tmp_path, split="test")
    assert x.shape == (2, 28, 28) and y.tolist() == [1, 2]


def test_load_mnist_format_refuses_mismatched_counts(tmp_path, images):
    _write_split(tmp_path, "train", images, np.array([1, 2], dtype=np.uint8), gz=False)
    with pytest.raises(ValueError, match="labels"):
        load_mnist_format(tmp_path)


def test_load_mnist_format_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_mnist_format(tmp_path)
    with pytest.raises(FileNotFoundError, match="data-dir"):
        load_mnist_format(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="split"):
        load_mnist_format(tmp_path, split="valid")


@pytest.mark.skipif(
    not (DEFAULT_DATA_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST not in {DEFAULT_DATA_DIR} (apt-get install dataset-fashion-mnist)",
)
def test_real_fashion_mnist():
    x, y = load_mnist_format(split="test")
    assert x.shape == (10_000, 28, 28) and x.dtype == np.uint8
    assert y.dtype == np.int64 and np.bincount(y).tolist() == [1000] * 10
    assert x.max() == 255 and x.min() == 0
    # first test labels of Fashion-MNIST: ankle boot, pullover, trouser, trouser
    assert y[:4].tolist() == [9, 2, 1, 1]


def test_letters_deterministic_and_well_formed():
    a, la = notmnist_letters(60, seed=5)
    b, lb = notmnist_letters(60, seed=5)
    c, _ = notmnist_letters(60, seed=6)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert not np.array_equal(a, c)
    assert a.shape == (60, 28, 28) and a.dtype == np.uint8 and la.dtype == np.int64
    assert np.bincount(la, minlength=10).tolist() == [6] * 10
    assert a.max() == 255  # solid glyph interiors
    ink = (a > 127).mean(axis=(1, 2))
    assert ink.min() > 0.03 and ink.max() < 0.6  # no blank and no filled image
    # white glyph on black, like MNIST: the border is mostly dark
    border = np.concatenate([a[:, 0], a[:, -1], a[:, :, 0], a[:, :, -1]], axis=1)
    assert border.mean() < a.mean()


def test_letters_differ_by_class():
    images, labels = notmnist_letters(400, seed=0)
    means = np.stack([images[labels == k].astype(np.float64).mean(0) for k in range(len(LETTERS))])
    gaps = np.abs(means[:, None] - means[None]).mean(axis=(2, 3))
    off_diagonal = gaps[~np.eye(10, dtype=bool)]
    assert off_diagonal.min() > 5.0  # every pair of letters differs on average by > 5 grey levels
    # a nearest-class-mean classifier on fresh images beats chance (10%) by far
    test, test_labels = notmnist_letters(200, seed=1)
    dist = ((test[:, None].astype(np.float64) - means[None]) ** 2).sum(axis=(2, 3))
    assert (dist.argmin(1) == test_labels).mean() > 0.3


def test_letters_use_several_fonts():
    fonts = letter_fonts()
    assert len(fonts) >= 10
    assert {f.name.split("-")[0].split(".")[0][:4] for f in fonts} >= {"Deja", "STIX", "cmr1"}


def test_letters_refuse_bad_n():
    with pytest.raises(ValueError, match="n must"):
        notmnist_letters(0)


def test_sklearn_digits_28():
    from sklearn.datasets import load_digits

    images, labels = sklearn_digits_28()
    digits = load_digits()
    assert images.shape == (1797, 28, 28) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, digits.target)
    assert images[:, :4].max() == 0 and images[:, 24:].max() == 0
    assert images[:, :, :4].max() == 0 and images[:, :, 24:].max() == 0
    # brightness follows the 8x8 source: block means of the 20x20 core track the original, 0..16 -> 0..255
    core = images[:, 4:24, 4:24].astype(np.float64)
    assert np.corrcoef(core.mean(axis=(1, 2)), digits.images.mean(axis=(1, 2)))[0, 1] > 0.95
    assert images.max() == 255
    sub, sub_labels = sklearn_digits_28(100, seed=2)
    again, _ = sklearn_digits_28(100, seed=2)
    assert sub.shape == (100, 28, 28) and len(sub_labels) == 100
    np.testing.assert_array_equal(sub, again)
    with pytest.raises(ValueError, match="n must"):
        sklearn_digits_28(5000)


def test_uniform_noise():
    noise = uniform_noise(200, seed=1)
    assert noise.shape == (200, 28, 28) and noise.dtype == np.uint8
    np.testing.assert_array_equal(noise, uniform_noise(200, seed=1))
    assert abs(noise.mean() - 127.5) < 1.0
    assert noise.min() == 0 and noise.max() == 255
