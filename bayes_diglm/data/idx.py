"""MNIST-format (IDX) files: a validating reader and a loader for MNIST-like image folders."""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

__all__ = ["DEFAULT_DATA_DIR", "load_mnist_format", "read_idx"]

#: Where the Debian package ``dataset-fashion-mnist`` puts Fashion-MNIST.
DEFAULT_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")

_GZIP_MAGIC = b"\x1f\x8b"
_UBYTE = 0x08
_PREFIXES = {"train": "train", "test": "t10k"}


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as err:
        raise ValueError(f"{path}: corrupt or truncated gzip stream ({err})") from err


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file of unsigned bytes (the MNIST format), gzip-compressed or raw.

    Compression is recognised by the gzip magic bytes, not the file name. The header is two zero bytes,
    the type byte ``0x08`` (unsigned byte), the number of dimensions ``k`` and ``k`` big-endian 32-bit
    sizes; images are ``0x00000803`` (N, rows, cols), labels ``0x00000801`` (N,). The payload must hold
    exactly the product of the sizes.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of the header's shape.

    Raises
    ------
    ValueError
        Wrong magic number, unsupported type, truncated or oversized payload; the message names the path.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "labels"
    >>> _ = path.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1]))
    >>> read_idx(path)
    array([7, 2, 1], dtype=uint8)
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    ndim = data[3]
    if data[:2] != b"\x00\x00" or data[2] != _UBYTE or ndim == 0:
        raise ValueError(
            f"{path}: not an unsigned-byte IDX file (magic 0x{magic:08x}; expected 0x00000801 for labels "
            "or 0x00000803 for images)"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated header ({len(data)} bytes, {ndim} dimensions need {header})")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = math.prod(shape)
    if len(data) - header != expected:
        found = len(data) - header
        state = "truncated" if found < expected else "longer than its header says"
        raise ValueError(f"{path}: payload {state}: shape {shape} needs {expected} bytes, found {found}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy()


def _find(folder: Path, stem: str) -> Path:
    """The file for ``stem`` (e.g. ``train-images-idx3-ubyte``), also under the ``.gz`` / dotted variants."""
    variants = [stem, stem.replace("-idx", ".idx")]
    for name in variants:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        f"no {stem}[.gz] in {folder}; get Fashion-MNIST with `apt-get install dataset-fashion-mnist` "
        "(it installs to /usr/share/datasets/fashion-mnist) or pass --data-dir / data_dir= pointing at any "
        "folder of MNIST-format files"
    )


def load_mnist_format(
    data_dir: str | os.PathLike | None = None, split: str = "train"
) -> tuple[np.ndarray, np.ndarray]:
    """Load the images and labels of one split of an MNIST-format folder (Fashion-MNIST by default).

    Looks for ``train-images-idx3-ubyte`` / ``train-labels-idx1-ubyte`` (``split="train"``) or the
    ``t10k-`` files (``split="test"``), raw or ``.gz`` (``train-images.idx3-ubyte`` is accepted too), so
    MNIST, Fashion-MNIST and KMNIST folders all work.

    Parameters
    ----------
    data_dir : path, optional
        Folder of the IDX files; default :data:`DEFAULT_DATA_DIR`.
    split : {"train", "test"}

    Returns
    -------
    images : numpy.ndarray
        ``uint8`` of shape ``(N, 28, 28)`` (white object on black for MNIST).
    labels : numpy.ndarray
        ``int64`` of shape ``(N,)``.

    Raises
    ------
    FileNotFoundError
        When the files are missing, with how to get them.
    """
    if split not in _PREFIXES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
    if not folder.is_dir():
        raise FileNotFoundError(
            f"data folder {folder} does not exist; get Fashion-MNIST with `apt-get install "
            "dataset-fashion-mnist` or pass --data-dir / data_dir= pointing at a folder of MNIST-format files"
        )
    prefix = _PREFIXES[split]
    image_path = _find(folder, f"{prefix}-images-idx3-ubyte")
    label_path = _find(folder, f"{prefix}-labels-idx1-ubyte")
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3:
        raise ValueError(f"{image_path}: expected (N, rows, cols) images, got shape {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"{label_path}: {labels.shape} labels for {images.shape[0]} images in {image_path}")
    return images, labels.astype(np.int64)
