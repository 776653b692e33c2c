"""Input checks shared by every public entry point; each error names the argument and the problem."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions, validate_parameter_constraints

__all__ = [
    "COUNT",
    "FRACTION",
    "Interval",
    "MAX_ELEMENTS",
    "NON_NEGATIVE",
    "POSITIVE",
    "SEED",
    "StrOptions",
    "TOLERANCE",
    "as_float_tensor",
    "as_label_tensor",
    "check_count",
    "check_labels",
    "check_params",
    "check_positive",
    "check_same_length",
    "check_sample_weight",
    "check_seed",
    "check_targets",
    "check_tolerance",
    "numeric_array",
    "refuse_nonfinite_outputs",
    "refuse_overflow",
    "refuse_text",
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


# ----------------------------------------------------------------------------------------------------------
# the one input rule per kind of argument
# ----------------------------------------------------------------------------------------------------------

#: The most elements an array that a count argument sizes may hold (8 GiB of float64): ``sample(10**12)`` is
#: refused by name before NumPy tries to allocate 87 TiB.
MAX_ELEMENTS = 2**30


def _is_text_dtype(dtype) -> bool:
    """NumPy unicode/bytes dtypes and pandas' ``string`` dtypes (``StringDtype``, ``ArrowDtype`` of strings)."""
    return getattr(dtype, "kind", None) in ("U", "S") or "str" in str(getattr(dtype, "name", dtype)).lower()


def _holds_text(values) -> bool:
    return any(isinstance(v, (str, bytes)) for v in values)


def refuse_text(X, name: str) -> None:
    """The rule for numbers given as text: refused, whatever the container.

    NumPy string arrays, object arrays or lists holding a string, pandas ``string`` (or object) columns holding
    one, and Series of them raise ``TypeError`` naming ``name``: ``"1.5"`` is not converted silently, in
    features, targets and weights alike (scikit-learn converts it; the heads never did). Labels of a classifier
    are the exception and do not go through this rule.
    """
    dtypes = getattr(X, "dtypes", None)
    if dtypes is not None and not isinstance(X, np.ndarray | torch.Tensor):  # a DataFrame (or a Series)
        columns = [X] if np.ndim(dtypes) == 0 else [X.iloc[:, j] for j in range(X.shape[1])]
        for column in columns:
            if _is_text_dtype(column.dtype) or (column.dtype == object and _holds_text(column.to_numpy())):
                raise TypeError(f"{name} holds text (column {getattr(column, 'name', None)!r}, dtype "
                                f"{column.dtype}); it must be numeric (convert it first)")
        return
    if isinstance(X, np.ndarray):
        arr = X
    elif isinstance(X, (list, tuple)):
        try:
            arr = np.asarray(X, dtype=object)
        except ValueError:  # ragged: numpy's own conversion names the problem later
            return
    else:
        return
    if _is_text_dtype(arr.dtype) or (arr.dtype == object and _holds_text(arr.flat)):
        raise TypeError(f"{name} holds strings; it must be numeric (convert it first)")


def refuse_overflow(X: np.ndarray, name: str, dtype=np.float64) -> None:
    """The rule for magnitudes: values whose squares overflow ``dtype`` (float64, or a float32 network's dtype; a
    row's sum of squares included) make every posterior and flow quantity inf or NaN, so they are refused by name.

    Two reductions (max, min) settle the usual case without a temporary: a row's sum of squares is at most
    ``width * max|x|^2``. Only when that bound fails (or the data hold NaN / inf) are the squares formed.
    """
    X = np.asarray(X)
    dtype = np.dtype(str(dtype).removeprefix("torch.")) if isinstance(dtype, torch.dtype) else np.dtype(dtype)
    limit = float(np.finfo(dtype).max)
    if X.size:
        largest = max(abs(float(np.max(X))), abs(float(np.min(X))))
        width = X.shape[-1] if X.ndim > 1 else 1
        if np.isfinite(largest) and largest * largest * width < limit:
            return
    with np.errstate(over="ignore", invalid="ignore"):
        squares = np.square(X, dtype=np.float64)
        squares = squares.sum(axis=tuple(range(1, X.ndim))) if X.ndim > 1 else squares
    if not np.all(np.isfinite(squares) & (squares < limit)):
        raise ValueError(f"{name} holds values up to {float(np.max(np.abs(X))):.3g} whose squares overflow {dtype}; "
                         "standardise (rescale) it")


def numeric_array(X, name: str, convert, dtype=None) -> np.ndarray:
    """The features rule around a converter: text refused (:func:`refuse_text`), then ``convert(X)`` (scikit-learn's
    ``validate_data`` / ``check_array``: shapes, NaN, feature counts), then magnitudes (:func:`refuse_overflow`, in
    ``dtype`` or the converted array's own)."""
    refuse_text(X, name)
    X = convert(X)
    refuse_overflow(X, name, X.dtype if dtype is None else dtype)
    return X


def refuse_nonfinite_outputs(name: str, what: str, *outputs: np.ndarray | None) -> None:
    """The rule for inputs so far from the training data that a network's output overflows: refused by name, the
    same way ``predict`` refuses them (instead of a ``-inf`` density or an ``inf`` feature). ``outputs`` are arrays
    with one row per input (None is skipped); nothing is copied."""
    rows = [np.asarray(v) for v in outputs if v is not None]
    bad = np.zeros(rows[0].shape[0] if rows else 0, dtype=bool)
    for v in rows:
        bad |= ~np.isfinite(v).all(axis=tuple(range(1, v.ndim)))
    if np.any(bad):
        rows = np.flatnonzero(bad)[:5].tolist()
        raise ValueError(f"{name} rows {rows} lie so far outside the training data that {what} overflows "
                         "(not finite); standardise the inputs like the training data")


def check_sample_weight(sample_weight, n: int, *, positive: bool = False) -> np.ndarray | None:
    """The rule for per-row weights: ``None``, a number (broadcast, as scikit-learn does) or ``n`` finite
    non-negative numbers (``positive``: all > 0), not all zero, whose sum is finite; text is refused.

    Returns float64 weights of shape (n,), or None.
    """
    if sample_weight is None:
        return None
    refuse_text(sample_weight, "sample_weight")
    w = sample_weight.detach().cpu().numpy() if isinstance(sample_weight, torch.Tensor) else sample_weight
    try:
        w = np.asarray(w, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"sample_weight must be numeric, got {_describe(sample_weight)}") from err
    if w.ndim == 0:
        w = np.full(n, float(w))
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},), got {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("sample_weight contains NaN or infinite values")
    if positive and not np.all(w > 0):
        raise ValueError(f"sample_weight must be positive, got min {float(w.min())}")
    if not np.all(w >= 0):
        raise ValueError(f"sample_weight must be non-negative, got min {float(w.min())}")
    if not np.any(w > 0):
        raise ValueError("sample_weight is all zero: at least one weight must be positive")
    refuse_overflow(w, "sample_weight")
    return w


def check_count(n, name: str, *, minimum: int = 1, per_item: int = 1) -> int:
    """The rule for counts (``n``, ``n_samples``, ``num_steps`` ...): an integer (not a bool) of at least
    ``minimum`` whose array, ``n * per_item`` elements, stays within :data:`MAX_ELEMENTS`; checked before
    anything is allocated."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {n!r}")
    if n < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {n!r}")
    if int(n) * max(int(per_item), 1) > MAX_ELEMENTS:
        raise ValueError(f"{name}={n!r} would allocate {int(n) * max(int(per_item), 1):.3g} values (more than "
                         f"{MAX_ELEMENTS:.3g}); ask for fewer")
    return int(n)


def check_tolerance(tol, name: str = "tol") -> float:
    """The rule for tolerances: a finite number >= 0 (NaN, a negative value and text refused by name)."""
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number >= 0, got {tol!r}")
    if not (np.isfinite(tol) and tol >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {tol!r}")
    return float(tol)


def check_seed(seed, name: str = "seed") -> int:
    """The rule for seeds: a non-negative integer below 2**63 (``torch.Generator.manual_seed`` takes it as is)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{name} must be a non-negative integer, got {seed!r}")
    if not 0 <= int(seed) < 2**63:
        raise ValueError(f"{name} must be in [0, 2**63), got {seed!r}")
    return int(seed)


def check_params(estimator) -> None:
    """Check every constructor parameter against the class's ``_parameter_constraints`` before any work.

    scikit-learn's rule and vocabulary (:class:`Interval`, :class:`StrOptions`, types, ``None``): a bad value
    raises ``InvalidParameterError`` (a ``ValueError`` and a ``TypeError``) naming the parameter, what it must be
    and what it got. Parameters without an entry are left to the class's own checks.
    """
    constraints = getattr(type(estimator), "_parameter_constraints", None)
    if not isinstance(constraints, dict):
        raise TypeError(f"{type(estimator).__name__} declares no _parameter_constraints dict")
    validate_parameter_constraints(constraints, estimator.get_params(deep=False),
                                   caller_name=type(estimator).__name__)


#: the constraints shared by the heads' and estimators' dicts (each class lists its own parameters)
TOLERANCE = [Interval(Real, 0, None, closed="left")]
FRACTION = [Interval(Real, 0, 1, closed="neither")]
POSITIVE = [Interval(Real, 0, None, closed="neither")]
NON_NEGATIVE = [Interval(Real, 0, None, closed="left")]
COUNT = [Interval(Integral, 1, None, closed="left")]
SEED = [Interval(Integral, 0, 2**63 - 1, closed="both")]


class _ShapeError(ValueError):
    """A target of the wrong shape (kept apart from a failed numeric conversion)."""


def _one_column(y, name: str, dtype=None) -> np.ndarray:
    """``y`` as a NumPy array of shape (n,) or (n, 1) (pandas' NA becomes NaN or None)."""
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    if hasattr(y, "to_numpy") and not isinstance(y, np.ndarray):
        y = y.to_numpy(dtype=dtype if dtype is not None else object,
                       **({"na_value": np.nan} if dtype is not None else {}))
    arr = np.asarray(y) if dtype is None else np.asarray(y, dtype=dtype)
    if arr.ndim != 1 and arr.shape[1:] != (1,):  # a column vector is scikit-learn's to flatten (with its warning)
        raise _ShapeError(f"{name} should be a 1d array (n,), got an array of shape {arr.shape} instead")
    if arr.size == 0:
        raise _ShapeError(f"{name} is empty")
    return arr


def check_targets(y, name: str = "y") -> np.ndarray:
    """The rule for numeric targets: 1-D, numbers (text refused), finite (NaN, inf and pandas' NA refused by
    name), squares within float64; returns float64 (None stays None: scikit-learn's check names it)."""
    if y is None:
        return None
    refuse_text(y, name)
    kind = getattr(getattr(y, "dtype", None), "kind", None)
    if kind is None and isinstance(y, (list, tuple)):
        kind = np.asarray(y).dtype.kind
    if kind == "c":
        raise ValueError(f"Complex data not supported: {name} holds complex numbers")
    try:
        arr = _one_column(y, name, np.float64)
    except (TypeError, ValueError) as err:
        if isinstance(err, _ShapeError):
            raise
        raise TypeError(f"{name} must be numeric, got {_describe(y)}: {err}") from err
    bad = ~np.isfinite(arr).all(axis=tuple(range(1, arr.ndim)))
    if np.any(bad):
        raise ValueError(f"{name} contains NaN, missing or infinite values at rows {np.flatnonzero(bad)[:5].tolist()}")
    refuse_overflow(arr, name)
    return arr


def _missing(v) -> bool:
    if v is None or type(v).__name__ == "NAType":  # pandas.NA, without importing pandas here
        return True
    return isinstance(v, (float, np.floating)) and not np.isfinite(v)


def check_labels(y, name: str = "y") -> np.ndarray:
    """The rule for class labels: 1-D, no missing label (None, NaN, pandas' NA) and no infinite one, and not a
    mix of text and numbers (which cannot be sorted into ``classes_``); returns ``y`` itself, unconverted (any
    hashable labels)."""
    if y is None:
        return None
    arr = _one_column(y, name)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr.ravel())
    elif arr.dtype == object:
        bad = np.fromiter((_missing(v) for v in arr.flat), dtype=bool, count=arr.size)
    else:
        bad = np.zeros(arr.size, dtype=bool)
    if np.any(bad):
        raise ValueError(f"{name} holds missing (None, NaN, NA) or infinite labels at rows "
                         f"{np.flatnonzero(bad)[:5].tolist()}")
    if arr.dtype == object:
        text = np.fromiter((isinstance(v, (str, bytes)) for v in arr.flat), dtype=bool, count=arr.size)
        if text.any() and not text.all():
            raise TypeError(f"{name} mixes text and numeric labels (e.g. {arr.flat[np.argmax(text)]!r} and "
                            f"{arr.flat[np.argmin(text)]!r}); use one kind")
    return y
