"""Mean and spread of a results table's numbers over repeated runs (seeds) of one experiment."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["SPREADS", "aggregate_tables", "format_spread"]

#: The spreads :func:`format_spread` writes: the sample standard deviation over runs (``ddof = 1``) or the
#: standard error of their mean (``sd / sqrt(n)``).
SPREADS = ("sd", "se")


def _number(value) -> float | None:
    """``value`` as a float when it is a number (or the text of a non-finite one, as JSON stores it), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in ("nan", "inf", "+inf", "-inf", "infinity", "-infinity"):
        return float(value)
    return None


def _cell(values: list) -> dict | object:
    """One column of one row over the runs that have it: its statistics, or the shared text."""
    numbers = [_number(v) for v in values]
    if all(x is not None for x in numbers):
        a = np.asarray(numbers, dtype=np.float64)
        with np.errstate(invalid="ignore"):  # an infinite value: its sd is NaN, and the table shows it
            sd = float(a.std(ddof=1)) if a.size > 1 else float("nan")
        return {"mean": float(a.mean()), "sd": sd, "se": sd / math.sqrt(a.size), "min": float(a.min()),
                "max": float(a.max()), "n": int(a.size), "values": [float(x) for x in a]}
    distinct = list(dict.fromkeys(str(v) for v in values))
    return distinct[0] if len(distinct) == 1 else " / ".join(distinct)


def aggregate_tables(tables: Sequence[Sequence[Mapping]], keys: Sequence[str]) -> list[dict]:
    """Match the rows of one table from several runs by their ``keys`` and summarise every other column.

    Parameters
    ----------
    tables : sequence of sequences of mappings
        One table per run (a list of row dicts, as the experiments write into ``metrics.json``), in run order.
    keys : sequence of str
        The columns that name a row (``["model", "head"]``); every row of every table must have them, and a
        key may occur at most once per table.

    Returns
    -------
    list of dict
        A row per key, in the order keys first occur. Each other column is, when its values are numbers in
        every run that has the row, a dict with ``mean``, ``sd`` (sample standard deviation, ``ddof = 1``;
        NaN for one run), ``se`` (``sd / sqrt(n)``), ``min``, ``max``, ``n`` (runs with the row) and
        ``values`` (per run, in run order); otherwise the shared text, or the distinct texts joined by
        ``" / "``. Non-finite numbers stay in (the mean is then NaN or infinite: the table shows it).

    Raises
    ------
    ValueError
        Fewer than one table, no ``keys``, a row without a key column, or a key twice in one table.

    Examples
    --------
    >>> rows = aggregate_tables([[{"model": "a", "error": 1.0}], [{"model": "a", "error": 3.0}]], ["model"])
    >>> rows[0]["error"]["mean"], rows[0]["error"]["sd"], rows[0]["error"]["n"]
    (2.0, 1.4142135623730951, 2)
    """
    if isinstance(keys, str) or not keys:
        raise ValueError(f"keys must be a non-empty sequence of column names, got {keys!r}")
    if isinstance(tables, Mapping) or len(tables) < 1:
        raise ValueError(f"tables must be a sequence of at least one table (a list of rows), got {tables!r}")
    keys = list(keys)
    cells: dict[tuple, dict[str, list]] = {}
    for t, table in enumerate(tables):
        seen = set()
        for row in table:
            missing = [k for k in keys if k not in row]
            if missing:
                raise ValueError(f"a row of table {t} lacks the key columns {missing}: {dict(row)!r}")
            key = tuple(str(row[k]) for k in keys)
            if key in seen:
                raise ValueError(f"table {t} has the key {dict(zip(keys, key, strict=True))!r} twice")
            seen.add(key)
            columns = cells.setdefault(key, {})
            for column, value in row.items():
                if column not in keys:
                    columns.setdefault(column, []).append(value)
    return [{**dict(zip(keys, key, strict=True)), **{c: _cell(v) for c, v in columns.items()}}
            for key, columns in cells.items()]


def format_spread(rows: Sequence[Mapping], *, spread: str = "sd", digits: int = 3,
                  runs: int | None = None) -> list[dict]:
    """The rows of :func:`aggregate_tables` as text cells ``"mean +- spread"``, ready for a Markdown table.

    Parameters
    ----------
    rows : sequence of mappings
        The output of :func:`aggregate_tables`.
    spread : {"sd", "se"}, default "sd"
        The standard deviation over runs or the standard error of the mean (see :data:`SPREADS`).
    digits : int, default 3
        Decimals of the mean and the spread.
    runs : int, optional
        The number of runs; a cell measured in fewer says so (``"0.912 +- 0.010 (n=2)"``). A cell of one run
        is its value alone with ``(n=1)``.

    Returns
    -------
    list of dict
        The same rows and columns with every statistics cell replaced by its text.
    """
    if spread not in SPREADS:
        raise ValueError(f"spread must be one of {SPREADS}, got {spread!r}")
    if isinstance(digits, bool) or not isinstance(digits, int) or digits < 0:
        raise ValueError(f"digits must be a non-negative integer, got {digits!r}")

    def text(cell: Mapping) -> str:
        mean = f"{cell['mean']:.{digits}f}" if abs(cell["mean"]) < 1e5 else f"{cell['mean']:.4g}"
        if cell["n"] > 1:
            mean += f" +- {cell[spread]:.{digits}f}" if abs(cell[spread]) < 1e5 else f" +- {cell[spread]:.4g}"
        return mean + (f" (n={cell['n']})" if runs is not None and cell["n"] < runs else "")

    return [{column: text(cell) if isinstance(cell, Mapping) else cell for column, cell in row.items()}
            for row in rows]
