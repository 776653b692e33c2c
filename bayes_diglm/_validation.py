"""Input checks shared by every public entry point; each error names the argument and the problem."""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "as_float_tensor",
    "as_label_tensor",
    "check_positive",
    "check_same_length",
]


def _describe(x) -> str:
    return f"{type(x).__name__} with shape {tuple(getattr(x, 'shape', ()))}"


def as_float_tensor(
    x,
    name: str,
    *,
    ndim: int | tuple[int, ...] | None = None,
    dtype: torch.dtype | None = None,
    allow_empty: bool = False,
) -> torch.Tensor:
    """Return ``x`` as a floating tensor, refusing NaN/Inf, empty input, integer dtypes and wrong ranks.

    Integer and boolean arrays are refused rather than cast, since features stored as integers are usually
    a mistake (labels passed as features); cast them yourself with ``.float()`` when that is meant.
    """
    if isinstance(x, torch.Tensor):
        t = x
    else:
        try:
            arr = np.asarray(x)
        except Exception as err:  # pragma: no cover - numpy's own message is kept
            raise TypeError(f"{name} must be array-like, got {type(x).__name__}") from err
        if arr.dtype == object:
            raise TypeError(f"{name} must be a numeric array, got an object array ({_describe(arr)})")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if not (t.is_floating_point()):
        raise TypeError(
            f"{name} must hold floating-point values, got dtype {t.dtype}; cast it explicitly "
            "(e.g. x.astype('float32')) if integer values are meant as features"
        )
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if t.dim() not in allowed:
            ranks = " or ".join(map(str, allowed))
            raise ValueError(f"{name} must have {ranks} dimensions, got shape {tuple(t.shape)}")
    if not allow_empty and t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s)")
    if dtype is not None:
        t = t.to(dtype)
    return t


def as_label_tensor(y, name: str, *, num_classes: int | None = None, n: int | None = None) -> torch.Tensor:
    """Return class labels as an int64 tensor of shape (n,), checking their range 0..num_classes-1."""
    t = y if isinstance(y, torch.Tensor) else torch.as_tensor(np.asarray(y))
    if t.dim() != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty")
    if t.is_floating_point():
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or infinite values")
        if not bool((t == t.round()).all()):
            raise ValueError(f"{name} must hold integer class labels, got non-integer values")
    elif t.dtype == torch.bool:
        t = t.long()
    t = t.long()
    if n is not None and t.shape[0] != n:
        raise ValueError(f"{name} has {t.shape[0]} entries but the inputs have {n} rows")
    lo, hi = int(t.min()), int(t.max())
    if lo < 0 or (num_classes is not None and hi >= num_classes):
        rng = f"0..{num_classes - 1}" if num_classes is not None else "non-negative"
        raise ValueError(f"{name} has labels outside {rng}: found range {lo}..{hi}")
    return t


def check_same_length(**arrays) -> int:
    """Check that all given arrays share their first dimension; return it."""
    lengths = {k: int(v.shape[0]) for k, v in arrays.items() if v is not None}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{k} has {v}" for k, v in lengths.items())
        raise ValueError(f"mismatched lengths: {detail} rows")
    return next(iter(lengths.values()))


def check_positive(value, name: str, *, allow_zero: bool = False) -> float:
    """Check a positive (or non-negative) finite scalar."""
    try:
        v = float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a number, got {value!r}") from err
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'non-negative' if allow_zero else 'positive'} and finite, got {value!r}")
    return v
