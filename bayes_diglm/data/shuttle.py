"""Statlog (shuttle) from Debian's ``r-cran-mlbench``: a validating reader of ``Shuttle.rda`` (no R, no code run)."""

from __future__ import annotations

import bz2
import functools
import lzma
import os
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "SHUTTLE_CLASSES",
    "SHUTTLE_PATH",
    "SHUTTLE_ROWS",
    "SHUTTLE_TRAIN_ROWS",
    "Shuttle",
    "load_shuttle",
    "read_shuttle",
    "shuttle_path",
]

#: Where ``apt-get install r-cran-mlbench`` puts the data (``dpkg -L r-cran-mlbench``).
SHUTTLE_PATH = Path("/usr/lib/R/site-library/mlbench/data/Shuttle.rda")
#: The seven radiator states in UCI's order: class ``c`` of the UCI files is ``SHUTTLE_CLASSES[c - 1]``.
SHUTTLE_CLASSES = ("Rad.Flow", "Fpv.Close", "Fpv.Open", "High", "Bypass", "Bpv.Close", "Bpv.Open")
#: Rows of mlbench's ``Shuttle``: UCI's ``shuttle.trn`` (the first 43,500) followed by ``shuttle.tst`` (14,500).
SHUTTLE_ROWS = 58_000
SHUTTLE_TRAIN_ROWS = 43_500
_ATTRIBUTES = tuple(f"V{i}" for i in range(1, 10))
_MAX_FILE_BYTES = 16 << 20  # the real file is 371 kB
_MAX_RAW_BYTES = 64 << 20  # and 4.7 MB once decompressed
_RDA_MAGIC = (b"RDX2\n", b"RDX3\n")


@dataclass(frozen=True)
class Shuttle:
    """The Statlog (shuttle) data: ``X (n, 9)`` float64 sensor readings, ``y (n,)`` int64 classes in
    ``0..6`` (UCI's class minus one, names in :attr:`classes`)."""

    X: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...] = SHUTTLE_CLASSES


def shuttle_path(path: str | os.PathLike | None = None) -> Path:
    """``path``, or the Debian package's ``Shuttle.rda``; ``FileNotFoundError`` saying how to get it."""
    resolved = SHUTTLE_PATH if path is None else Path(path)
    if not resolved.is_file():
        raise FileNotFoundError(
            f"{str(resolved)!r} not found: the Statlog (shuttle) data come with Debian's r-cran-mlbench "
            "(`apt-get install r-cran-mlbench` as root, or `make system-packages`)")
    return resolved


def _decompress(data: bytes, path: Path) -> bytes:
    """The serialised R data inside ``data`` (xz, gzip, bzip2 or none), decompressed to at most 64 MB."""
    if data.startswith(b"\xfd7zXZ\x00"):
        decompressor = lzma.LZMADecompressor()
    elif data.startswith(b"\x1f\x8b"):
        decompressor = zlib.decompressobj(wbits=31)
    elif data.startswith(b"BZh"):
        decompressor = bz2.BZ2Decompressor()
    else:
        decompressor = None
    if decompressor is not None:
        try:
            raw = decompressor.decompress(data, _MAX_RAW_BYTES + 1)
        except (lzma.LZMAError, zlib.error, OSError, EOFError, ValueError) as err:
            raise ValueError(f"{path}: corrupt compressed stream ({err})") from err
        if len(raw) > _MAX_RAW_BYTES:
            raise ValueError(f"{path}: decompresses to more than {_MAX_RAW_BYTES >> 20} MB; not mlbench's Shuttle")
    else:
        raw = data
    if not raw.startswith(_RDA_MAGIC):
        raise ValueError(f"{path}: not an R data file (no RDX2/RDX3 header)")
    return raw


def _parse(raw: bytes, path: Path) -> dict:
    """R objects by name, parsed and converted by :mod:`rdata` (a reader of R's serialisation format: it
    builds Python objects from the bytes and never evaluates R code)."""
    try:
        import rdata
    except ImportError as err:  # pragma: no cover - rdata is a dependency of the dev and statlog extras
        raise ImportError("reading Shuttle.rda needs the PyPI package rdata (pip install rdata)") from err
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # rdata's notes on odd encodings: what follows validates
            objects = rdata.conversion.convert(rdata.parser.parse_data(raw))
    except MemoryError as err:
        raise ValueError(f"{path}: declares objects too large to read") from err
    except Exception as err:  # a third-party parser of untrusted bytes: whatever it raises means a bad file
        raise ValueError(f"{path}: unreadable R data ({type(err).__name__}: {err})") from err
    if not isinstance(objects, dict):
        raise ValueError(f"{path}: expected named R objects, got {type(objects).__name__}")
    return objects


def _validated(frame, path: Path, rows: int | None) -> Shuttle:
    """Check the data frame against mlbench's documented ``Shuttle`` and return it as arrays."""
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{path}: 'Shuttle' is a {type(frame).__name__}, not a data frame")
    columns = tuple(map(str, frame.columns))
    if columns != (*_ATTRIBUTES, "Class"):
        raise ValueError(f"{path}: columns {columns}; expected V1..V9 and Class")
    if rows is not None and frame.shape[0] != rows:
        raise ValueError(f"{path}: {frame.shape[0]} rows; mlbench's Shuttle has {rows}")
    if frame.shape[0] < 1:
        raise ValueError(f"{path}: no rows")
    numeric = frame.loc[:, list(_ATTRIBUTES)]
    if not all(pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t) for t in numeric.dtypes):
        raise ValueError(f"{path}: attributes must be numeric, got {dict(numeric.dtypes.astype(str))}")
    X = numeric.to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{path}: attributes contain {int((~np.isfinite(X)).sum())} missing or infinite values")
    labels = frame["Class"]
    if not isinstance(labels.dtype, pd.CategoricalDtype):
        raise ValueError(f"{path}: Class must be a factor, got {labels.dtype}")
    levels = tuple(map(str, labels.cat.categories))
    if sorted(levels) != sorted(SHUTTLE_CLASSES):
        raise ValueError(f"{path}: Class levels {levels}; expected {SHUTTLE_CLASSES}")
    codes = labels.cat.codes.to_numpy()
    if np.any(codes < 0):
        raise ValueError(f"{path}: Class has {int((codes < 0).sum())} missing values")
    to_uci = np.array([SHUTTLE_CLASSES.index(level) for level in levels], dtype=np.int64)
    return Shuttle(X, to_uci[codes])


def read_shuttle(path: str | os.PathLike, *, rows: int | None = SHUTTLE_ROWS) -> Shuttle:
    """Read and validate mlbench's ``Shuttle.rda`` without R.

    The file must hold one R object, ``Shuttle``: a data frame of nine numeric attributes ``V1..V9`` (finite)
    and a factor ``Class`` with the seven radiator states of :data:`SHUTTLE_CLASSES`, ``rows`` rows (None: any
    number). The bytes are decompressed with a size cap and parsed by the PyPI package ``rdata``, which reads
    R's serialisation format into Python objects; nothing in the file is evaluated.

    Parameters
    ----------
    path : str or os.PathLike
        An ``.rda`` file (xz, gzip, bzip2 or uncompressed), e.g. :data:`SHUTTLE_PATH`.
    rows : int or None
        The number of rows required (58,000 for mlbench's file).

    Returns
    -------
    Shuttle
        ``X (rows, 9)`` float64 and ``y (rows,)`` int64 in UCI's class order minus one.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Anything else wrong with the file; the message names it.
    """
    if rows is not None and (not isinstance(rows, (int, np.integer)) or isinstance(rows, bool) or rows < 1):
        raise ValueError(f"rows must be a positive integer or None, got {rows!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} not found")
    if path.stat().st_size > _MAX_FILE_BYTES:
        raise ValueError(f"{path}: {path.stat().st_size} bytes; mlbench's Shuttle.rda is under 1 MB")
    objects = _parse(_decompress(path.read_bytes(), path), path)
    if list(objects) != ["Shuttle"]:
        raise ValueError(f"{path}: holds {list(objects)[:5]}; expected exactly one object, 'Shuttle'")
    return _validated(objects["Shuttle"], path, rows)


def load_shuttle(path: str | os.PathLike | None = None, *, split: str = "all") -> Shuttle:
    """The Statlog (shuttle) data from ``path`` (default :data:`SHUTTLE_PATH`).

    ``split="train"`` keeps UCI's ``shuttle.trn``, the first 43,500 rows (the file Riquelme et al. 2018 play),
    ``"test"`` the other 14,500 (``shuttle.tst``), ``"all"`` all 58,000.

    Examples
    --------
    >>> data = load_shuttle(split="train")  # doctest: +SKIP
    >>> data.X.shape, data.y.max()  # doctest: +SKIP
    ((43500, 9), 6)
    """
    splits = {"all": slice(None), "train": slice(SHUTTLE_TRAIN_ROWS), "test": slice(SHUTTLE_TRAIN_ROWS, None)}
    if split not in splits:
        raise ValueError(f"split must be one of {tuple(splits)}, got {split!r}")
    resolved = shuttle_path(path).resolve()
    stat = resolved.stat()
    data = _read_once(str(resolved), stat.st_mtime_ns, stat.st_size)
    rows = splits[split]
    return Shuttle(data.X[rows].copy(), data.y[rows].copy())


@functools.lru_cache(maxsize=2)
def _read_once(path: str, mtime_ns: int, size: int) -> Shuttle:
    """:func:`read_shuttle` once per file version (a read takes seconds; every bandit episode needs the data)."""
    return read_shuttle(path)
