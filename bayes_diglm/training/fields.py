"""Field-by-field checks of a loaded checkpoint: each refusal is a ``CheckpointError`` naming the file and the field.

A checksum says that a file is the one that was written; it does not say that what was written is sane, and
(unkeyed) anyone who edits a file can recompute it. Loaders therefore check every field they read before they
build or allocate anything from it: its type, its bounds, finiteness, float32/float64 dtypes, and sizes
bounded by what the file itself holds (a config cannot ask for more layers than the file has tensors).
"""

from __future__ import annotations

import os
from numbers import Integral, Real

import numpy as np
import torch

from .checkpoint import CheckpointError

__all__ = ["Fields", "FLOAT_DTYPES"]

#: the dtypes a saved network or posterior may hold (float16 / bfloat16 would change every prediction)
FLOAT_DTYPES = (torch.float32, torch.float64)
_MAX_DEPTH = 64


class Fields:
    """The fields of one loaded checkpoint ``ckpt`` read from ``path``: typed getters that refuse by name.

    Parameters
    ----------
    ckpt : dict
        What :func:`~bayes_diglm.training.load_checkpoint` returned.
    path : str or os.PathLike
        The file, named in every error.
    """

    def __init__(self, ckpt, path: str | os.PathLike):
        self.path = str(path)
        if not isinstance(ckpt, dict):
            raise self.error("(the file)", f"is a {type(ckpt).__name__}, not a dict")
        self.ckpt = ckpt

    def error(self, field: str, problem: str) -> CheckpointError:
        """The error for ``field``: ``'<file>': field <field> <problem>``."""
        return CheckpointError(f"{self.path!r}: field {field!r} {problem}"[:600])

    def get(self, key: str, kinds: type | tuple[type, ...], *, within: dict | None = None, field: str | None = None,
            optional: bool = False):
        """``ckpt[key]`` (or ``within[key]``), required unless ``optional`` (then None when missing), of ``kinds``."""
        source = self.ckpt if within is None else within
        name = field or key
        if key not in source:
            if optional:
                return None
            raise self.error(name, "is missing")
        value = source[key]
        if optional and value is None:
            return None
        if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
            raise self.error(name, f"is a bool, not a {_names(kinds)}")
        if not isinstance(value, kinds):
            raise self.error(name, f"is a {type(value).__name__}, not a {_names(kinds)}")
        return value

    def number(self, value, field: str, *, low: float | None = None, high: float | None = None,
               positive: bool = False) -> float:
        """A finite real number within ``[low, high]`` (``positive``: > 0)."""
        if isinstance(value, bool) or not isinstance(value, Real) or not np.isfinite(float(value)):
            raise self.error(field, f"must be a finite number, got {value!r}")
        v = float(value)
        if (low is not None and v < low) or (high is not None and v > high) or (positive and v <= 0):
            raise self.error(field, f"is out of range: {value!r}")
        return v

    def integer(self, value, field: str, *, low: int = 0, high: int) -> int:
        """An integer in ``[low, high]``: ``high`` is what the file itself can hold, so a size is bounded before
        anything is built from it."""
        if isinstance(value, bool) or not isinstance(value, Integral) or not low <= int(value) <= high:
            raise self.error(field, f"must be an integer in [{low}, {high}], got {value!r}"[:200])
        return int(value)

    def sizes(self, tree, field: str, *, high: int, counts: tuple[str, ...] = (), count_high: int | None = None,
              depth: int = 0) -> None:
        """Every integer in a config ``tree`` at most ``high``; those under keys named in ``counts`` (numbers of
        layers, levels, steps) at most ``count_high``."""
        if depth > _MAX_DEPTH:
            raise self.error(field, "is nested too deeply")
        if isinstance(tree, dict):
            for k, v in tree.items():
                limit = count_high if (k in counts and count_high is not None) else high
                self.sizes(v, f"{field}.{k}", high=limit, counts=counts, count_high=count_high, depth=depth + 1)
        elif isinstance(tree, (list, tuple)):
            for i, v in enumerate(tree):
                self.sizes(v, f"{field}[{i}]", high=high, counts=counts, count_high=count_high, depth=depth + 1)
        elif isinstance(tree, Integral) and not isinstance(tree, bool):
            self.integer(tree, field, low=-high, high=high)
        elif isinstance(tree, float) and not np.isfinite(tree):
            raise self.error(field, f"must be finite, got {tree!r}")

    def values(self, tree, field: str, *, dtype: torch.dtype | None = None, depth: int = 0) -> None:
        """Every array or tensor in ``tree`` (dicts, lists, objects' attributes) finite; floating ones float32 or
        float64 (``dtype``: exactly that one), with magnitudes whose squares stay within their dtype (a weight of
        1e30 in a float32 network overflows every output)."""
        if depth > _MAX_DEPTH:
            raise self.error(field, "is nested too deeply")
        if isinstance(tree, torch.Tensor | np.ndarray):
            self._array(tree, field, dtype)
        elif isinstance(tree, dict):
            for k, v in tree.items():
                self.values(v, f"{field}.{k}", dtype=dtype, depth=depth + 1)
        elif isinstance(tree, (list, tuple)):
            for i, v in enumerate(tree):
                self.values(v, f"{field}[{i}]", dtype=dtype, depth=depth + 1)
        elif isinstance(tree, float | np.floating) and not np.isfinite(tree):
            raise self.error(field, f"is not finite ({tree!r})")
        elif hasattr(tree, "__dict__") and type(tree).__module__.startswith("bayes_diglm"):
            for k, v in vars(tree).items():
                self.values(v, f"{field}.{k}", dtype=dtype, depth=depth + 1)

    def _array(self, value, field: str, dtype: torch.dtype | None) -> None:
        t = torch.from_numpy(value) if isinstance(value, np.ndarray) and value.dtype.kind in "biuf" else value
        if not isinstance(t, torch.Tensor) or not (t.is_floating_point() or t.is_complex()):
            return
        if t.dtype not in FLOAT_DTYPES or (dtype is not None and t.dtype != dtype):
            wanted = dtype if dtype is not None else " or ".join(map(str, FLOAT_DTYPES))
            raise self.error(field, f"has dtype {t.dtype}, not {wanted}")
        if t.numel() == 0:
            return
        if not bool(torch.isfinite(t).all()):
            raise self.error(field, "holds NaN or infinite values")
        limit = float(torch.finfo(t.dtype).max) ** 0.5
        if float(t.abs().max()) > limit:
            raise self.error(field, f"holds values up to {float(t.abs().max()):.3g}, whose squares overflow {t.dtype}")


def _names(kinds) -> str:
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    return " or ".join(k.__name__ for k in kinds)
